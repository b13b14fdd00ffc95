"""Channel `dingtalk`: a DingTalk enterprise robot in Stream mode (reference/channel-protocols.md §5).

The daemon dials out to DingTalk (stream.py); no public URL is needed. Each robot message is
taken through the pipeline's durable accept path (in the state store's inbox, its msgId as the
dedup key) before its frame is acknowledged. Answers go over HTTP, not over the socket, so an
answer written while the connection is being mended still arrives, once: text to the message's
sessionWebhook while it is valid, else through the robot API; pictures and files uploaded and
sent through the robot API (replies.py). With `dingtalk_card_enabled` text answers are AI cards,
which grow while a streamed Dify answer is written (cards.py).

Differences from the original, on purpose: group rules are the pipeline's (the original forced
`group_name_white_list` to ALL_GROUP and `single_chat_prefix` to ""; here a single chat needs no
prefix and groups follow the configured lists); the msgId dedup survives a restart; a picture
among text (richText) is kept with the text instead of only the first picture.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from dingtalk_stream import AckMessage, CallbackMessage, ChatbotHandler, Credential

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.dingtalk.api import CredentialsRefused, DingTalkApi, DingTalkApiError
from channel.dingtalk.cards import CardPump
from channel.dingtalk.message import DingTalkMessage, Part, UnsupportedMessage, parts_of
from channel.dingtalk.replies import Replier
from channel.dingtalk.stream import AUTH_REFUSED, CONNECTED, CONNECTING, StreamConnection
from channel.refusal_sender import RefusalSender
from channel.reply_media import read_reply_media, with_extension
from common import fetch
from common.log import logger
from common.masking import mask_command
from common.text import safe_data
from common.utils import split_string_by_utf8_length
from config import ConfigError, conf

MEDIA_SEND_MAX = 20 * 1024 * 1024
TEXT_PIECE_BYTES = 7_000  # JSON escapes at most double it
_TEXT_TYPES = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)
_URL_TYPES = (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL)
MEDIA_FAILED_TEXT = "文件没能发送 (the file could not be sent)"
# Robot messages being taken at once (read from the socket, not yet acknowledged): past this the
# reader waits, so a flood holds in DingTalk's socket instead of this process's memory.
MAX_IN_FLIGHT = 100
# Refusals (busy, not saved) waiting to be sent; past this a refusal is logged and dropped (the
# message itself was refused to DingTalk).
MAX_PENDING_REFUSALS = 50
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".bmp": "image/bmp"}


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


class _Handler(ChatbotHandler):
    """The SDK's handler for robot messages: each is handed to the channel on one intake thread
    (so a chat keeps its order), and acknowledged once the channel has stored it."""

    def __init__(self, channel: "DingTalkChannel") -> None:
        super().__init__()
        self.channel = channel

    async def process(self, callback: CallbackMessage):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.channel.intake, self.channel.take, callback.data)


class DingTalkChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # Everything said to the robot in a single chat is meant for it.
    PRIVATE_NEEDS_PREFIX = False

    def __init__(self) -> None:
        super().__init__()
        self.client_id = _setting("dingtalk_client_id")
        self.api: DingTalkApi | None = None
        self.conn: StreamConnection | None = None
        self.replier: Replier | None = None
        self.cards: CardPump | None = None
        self.server = None
        self.intake = ThreadPoolExecutor(1, thread_name_prefix="dingtalk-intake")
        self.refusals = RefusalSender("dingtalk", MAX_PENDING_REFUSALS)
        self._resumed = threading.Event()
        self._stopping = False

    # ================================================================== lifecycle
    def startup(self) -> None:
        secret = _setting("dingtalk_client_secret")
        missing = [k for k, v in (("dingtalk_client_id", self.client_id), ("dingtalk_client_secret", secret)) if not v]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} must be set for channel_type dingtalk (the AppKey and AppSecret "
                              f"of the robot's app, from the DingTalk developer console)")
        api_base = _setting("dingtalk_api_base") or "https://api.dingtalk.com"
        self.api = DingTalkApi(self.client_id, secret, api_base, _setting("dingtalk_oapi_base") or "https://oapi.dingtalk.com")
        try:
            self.api.token()  # checks the credentials before anything is taken
        except CredentialsRefused as e:
            raise ConfigError(str(e)) from None
        except DingTalkApiError as e:
            logger.warning(f"[dingtalk] no access token yet ({e}); replies fetch one when DingTalk is reachable")
        self.replier = Replier(self.api)
        if conf().get("dingtalk_card_enabled"):
            # A card in the chat is part of the answer sent: a crash from then on must not answer
            # the message again (a second card would hold a second answer, the first left
            # "processing"); the inbox item is marked, and a restart sends the cut-off note instead.
            self.cards = CardPump(self.api, _setting("dingtalk_card_template_id"), float(conf().get("dingtalk_card_interval")),
                                  on_shown=self._note_reply_sent)
        self.conn = StreamConnection(Credential(self.client_id, secret), _Handler(self), api_base,
                                     reconnect_max=float(conf().get("dingtalk_reconnect_max")),
                                     max_in_flight=MAX_IN_FLIGHT)
        self._warn_if_no_group_allowed()
        self._start_health()
        state = self.conn.begin()
        if state == AUTH_REFUSED:
            self.conn.stop()
            raise ConfigError(self.conn.reason)
        if state == CONNECTING:
            logger.warning(f"[dingtalk] DingTalk ({api_base}) is not reachable yet; the daemon keeps trying")
        # Messages accepted before the last stop are queued before new ones are taken.
        self.resume_inbox()
        self._resumed.set()
        logger.info("[dingtalk] ready, handling messages")

    @staticmethod
    def _warn_if_no_group_allowed() -> None:
        """The original forced group_name_white_list to ALL_GROUP on DingTalk; here the rules are
        every channel's, so a config written for it may let no group in. Said once, not forced."""
        if conf().get("group_name_white_list") or conf().get("group_name_keyword_white_list"):
            return
        logger.warning('[dingtalk] group_name_white_list and group_name_keyword_white_list are empty: every group '
                       'message is ignored. The original answered all groups on DingTalk; to do so here set '
                       '"group_name_white_list": ["ALL_GROUP"] (or list the group titles)')

    def _start_health(self) -> None:
        port = int(conf().get("dingtalk_health_port") or 0)
        if not port:
            return
        from common.http_server import shared_server

        host = _setting("dingtalk_health_host") or "127.0.0.1"
        self.server = shared_server(host, port, channel=self.channel_type or "dingtalk")
        self.server.set_queue_probe(self.dispatcher.pending)
        self.server.watch_store(conf().state_store)
        self.server.set_connection_probe(self._connection)
        self.server.start()

    def _connection(self) -> tuple[str, str, bool]:
        if self.conn is None:
            return "not started", "", False
        return self.conn.state, self.conn.reason, self.conn.state == CONNECTED

    @property
    def state(self) -> str:
        return self.conn.state if self.conn is not None else "not started"

    def stop_accepting(self) -> None:
        """The first step of a stop: close the Stream before the pipeline waits for running
        answers, so no robot message arrives that could only be refused (DingTalk does not
        push a robot message again). Answers still go out, over HTTP."""
        self._stopping = True
        self._resumed.set()
        if self.conn is not None:
            self.conn.stop()
        super().stop_accepting()

    def _send_refusal(self, context: Context, reply: Reply) -> None:
        """Busy / not-saved refusals go out on a thread of their own: the intake thread takes
        the next message meanwhile (and is never held by the send's retries)."""
        self.refusals.submit(lambda: ChatChannel._send_refusal(self, context, reply))

    def stop(self) -> None:
        self._stopping = True
        self._resumed.set()  # an intake waiting for the resume returns (refusing) instead of hanging
        if self.conn is not None:
            self.conn.stop()
        if self.server is not None:
            self.server.stop()
        self.intake.shutdown(wait=False, cancel_futures=True)
        self.refusals.stop()
        super().stop()

    # ================================================================== messages in
    def take(self, data: dict) -> tuple[int, str]:
        """One robot message (on the intake thread): (ack code, ack text). Acknowledged OK once
        every part is stored, duplicate or dropped by the rules; refused when it cannot be read."""
        self._resumed.wait()
        if self._stopping:
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "stopping"
        if not isinstance(data, dict) or not data.get("msgId"):
            logger.warning(f"[dingtalk] a robot message without a msgId refused: {str(data)[:200]}")
            return AckMessage.STATUS_BAD_REQUEST, "no msgId"
        data = safe_data(data)
        try:
            parts = parts_of(data)
            messages = [DingTalkMessage(data, part, self._download_url) for part in parts]
        except UnsupportedMessage as e:
            logger.info(f"[dingtalk] message {data.get('msgId')} skipped: {e}")
            return AckMessage.STATUS_OK, "OK"
        except Exception as e:  # a field of the wrong type
            logger.warning(f"[dingtalk] message {data.get('msgId')} cannot be read ({type(e).__name__}: {e})")
            return AckMessage.STATUS_BAD_REQUEST, "malformed message"
        for cmsg in messages:
            logger.debug(f"[dingtalk] {'group' if cmsg.is_group else 'private'} {cmsg.ctype} message "
                         f"{cmsg.msg_id}: {mask_command(cmsg.content) if cmsg.ctype == ContextType.TEXT else ''}")
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
            produced = self.produce(context)
            if produced not in (Produced.ACCEPTED, Produced.DUPLICATE, Produced.IGNORED):
                # Not stored (busy, the store failed, stopping): never acknowledged as taken.
                return AckMessage.STATUS_SYSTEM_EXCEPTION, produced.value
        return AckMessage.STATUS_OK, "OK"

    def _download_url(self, download_code: str, robot_code: str) -> str:
        return self.api.download_url(download_code, robot_code or self.client_id)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, DingTalkMessage):
            return super().message_to_record(cmsg)
        part = {"ctype": cmsg.part.ctype.name, "content": cmsg.part.content, "index": cmsg.part.index,
                "file_name": cmsg.part.file_name}
        path = cmsg.content if cmsg.part.ctype != ContextType.TEXT else None
        return {"dingtalk": cmsg.data, "part": part, "path": path}

    def record_to_message(self, record: dict) -> ChatMessage:
        if "dingtalk" not in record:
            return super().record_to_message(record)
        p = record.get("part") or {}
        part = Part(ContextType[p.get("ctype", "TEXT")], str(p.get("content") or ""), int(p.get("index") or 0),
                    str(p.get("file_name") or ""))
        return DingTalkMessage(record["dingtalk"], part, self._download_url, path=record.get("path"))

    # ================================================================== answers out
    def can_show_partial(self, context: Context) -> bool:
        return self.cards is not None and isinstance(context.get("msg"), DingTalkMessage)

    def show_partial(self, context: Context, stream_id: str, text: str) -> None:
        self.cards.show(context, stream_id, text)

    def _handle(self, context: Context) -> None:
        try:
            super()._handle(context)
        finally:
            if self.cards is not None and context is not None:
                self.cards.close(context)

    def send(self, reply: Reply, context: Context) -> None:
        cmsg = context.get("msg")
        if not isinstance(cmsg, DingTalkMessage):
            raise NotImplementedError("a reply without the DingTalk message it answers")
        if reply.type in _TEXT_TYPES:
            way = self._send_text(str(reply.content), context, cmsg, reply)
        elif reply.type in (ReplyType.IMAGE, ReplyType.IMAGE_URL):
            way = self._send_media(reply, cmsg, "image")
        elif reply.type in (ReplyType.FILE, ReplyType.VOICE, ReplyType.VIDEO, ReplyType.VIDEO_URL):
            way = self._send_media(reply, cmsg, "file")
        else:
            raise NotImplementedError(f"DingTalk cannot send {reply.type}")
        logger.info(f"[dingtalk] sent {reply.type} to {context.get('receiver')} ({way})")

    def _send_text(self, text: str, context: Context, cmsg: DingTalkMessage, reply: Reply | None = None) -> str:
        if self.cards is not None:
            shown = self.cards.oldest(context)
            try:
                if shown is not None:
                    stream_id, card = shown
                    self.cards.finish(context, stream_id, card, text)
                else:
                    self.cards.answer(context, cmsg, text)
                return "card"
            except DingTalkApiError as e:
                if shown is not None or self.cards.oldest(context) is not None:
                    raise  # the card is in the chat already: retried, not sent a second way
                logger.warning(f"[dingtalk] the AI card was refused ({e}); sending the answer as text")
        ways = []
        # The robot API takes at most 15,000 bytes of msgParam (the JSON of the text, escapes included).
        self.send_pieces(reply or Reply(ReplyType.TEXT, text), split_string_by_utf8_length(text, TEXT_PIECE_BYTES) or [text],
                         lambda piece: ways.append(self.replier.text(cmsg, piece)))
        return "+".join(sorted(set(ways))) or "nothing new"

    def _send_media(self, reply: Reply, cmsg: DingTalkMessage, kind: str) -> str:
        try:
            data, name = read_reply_media(reply, MEDIA_SEND_MAX, "image" if kind == "image" else "file")
        except (fetch.FetchError, OSError) as e:
            if reply.type in _URL_TYPES:
                logger.warning(f"[dingtalk] {reply.type} not fetched ({e}); sending the link")
                return self.replier.text(cmsg, str(reply.content))
            # A local file (its path means nothing to the user, and says where things are here).
            logger.error(f"[dingtalk] {reply.type} reply could not be read ({type(e).__name__}: {e}); "
                         f"the user is told it could not be sent")
            return self.replier.text(cmsg, MEDIA_FAILED_TEXT)
        if len(data) > MEDIA_SEND_MAX:
            return self.replier.text(cmsg, "文件太大，无法发送 (the file is too large to send)")
        name = with_extension(name, data, ".png" if kind == "image" else ".bin")
        ext = "." + name.rsplit(".", 1)[-1].lower()
        if kind == "image":
            self.replier.image(cmsg, data, name, _MIME.get(ext, "image/png"))
        else:
            self.replier.file(cmsg, data, name, "application/octet-stream")
        return "robot"
