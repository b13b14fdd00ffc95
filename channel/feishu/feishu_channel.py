"""Channel `feishu`: a Feishu (Lark) self-built app's bot (reference/channel-protocols.md §4).

Two ways in, chosen by `feishu_event_mode`:
* `http` (default): Feishu POSTs events to `/` on the shared HTTP server (port `feishu_port`),
  checked by crypto.py (token, and with an Encrypt Key the signature, clock and decryption);
  webhook.py.
* `websocket`: the daemon connects out with lark-oapi's long-connection client; no public URL
  is needed; long_connection.py.

Either way an `im.message.receive_v1` event is turned into ChatMessages (message.py) and goes
through the pipeline's durable accept: each message is in the state store's inbox before the
platform gets its acknowledgement, and a message id seen in the last 8 hours (Feishu re-pushes
for about 7.1 h) is processed once. Feishu follows the same rules as every channel (prefixes,
group white list, @ in groups); the original forced its own settings here and skipped them.

Out (api.py): a private chat is answered with the create API (receive_id_type open_id), a group
with the reply API on the message that asked. Markdown goes as a card, other text as `text`
(cards.py); images and files are uploaded first. With `dify_stream_reply` the answer grows in
one card replaced in place (streams.py).
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
from urllib.parse import quote
from typing import Any

from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.feishu import cards
from channel.feishu.api import TOKEN_PATH, FeishuApi, FeishuApiError
from channel.feishu.chat_names import ChatNames, NameUnknown
from channel.feishu.message import RESOURCE_PATH, BotIdentity, FeishuMessage, UnsupportedMessage, parts_of
from channel.feishu.streams import CardStreams
from channel.refusal_sender import RefusalSender
from channel.reply_media import read_reply_media, with_extension
from common import fetch
from common.log import logger
from common.store import DedupKey
from common.token_bucket import TokenBucket
from common.text import safe_data
from common.utils import compress_imgfile
from config import ConfigError, conf

MESSAGE_EVENT = "im.message.receive_v1"
# Feishu re-pushes an unacknowledged event for about 7.1 hours (15 s, 5 min, 1 h, 6 h).
DEDUP_TTL_SECONDS = 8 * 3600
IMAGE_MAX_BYTES = 10 * 1024 * 1024  # the image upload's limit
FILE_MAX_BYTES = 30 * 1024 * 1024  # the file upload's limit
# Feishu takes about 50 card updates a second from one app (and 5 a second per card, streams.py):
# past that, the updates in between are skipped (held), a finished text waits for its turn.
CARD_UPDATES_PER_SECOND = 50
FINAL_UPDATE_WAIT = 5.0
RATE_LIMITS = {99991400, 230020}  # the app's, the chat's: the pipeline's retry sends again later
RATE_LIMIT_PAUSE = 1.0
MEDIA_FAILED_TEXT = ("文件没能发送", "The file could not be sent.")
FILE_TOO_LARGE_TEXT = ("文件太大，无法发送", "The file is too large to send.")
BOT_INFO_RETRY = 60.0  # seconds between two reads of the bot's open id while it is unknown
# Refusals (busy) waiting to be sent; past this one is logged and dropped.
MAX_PENDING_REFUSALS = 50
_TEXT_TYPES = (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_)
_FILE_TYPES = (ReplyType.FILE, ReplyType.VIDEO, ReplyType.VIDEO_URL, ReplyType.VOICE)
# code -> what the operator should know (the reply is lost; the log says why).
_SEND_ERRORS = {
    230002: "the bot is not in this chat",
    230011: "the message being answered was withdrawn",
    230013: "the user is outside the app's availability range",
    230020: "Feishu's rate limit for this chat was hit",
    99991400: "Feishu's rate limit was hit",
    99991672: "the app lacks a permission (im:message, im:message:send_as_bot or im:resource)",
}


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


def _in_language(context: Context, texts: tuple[str, str]) -> str:
    return texts[0] if is_chinese(str(context.content)) else texts[1]


def group_names_needed() -> bool:
    """Whether a group rule names groups: only then is a group's name read (events carry only
    its chat id, which stands in for the name otherwise)."""
    config = conf()
    white = list(config.get("group_name_white_list") or [])
    keywords = list(config.get("group_name_keyword_white_list") or [])
    shared = list(config.get("group_chat_in_one_session") or [])
    return ("ALL_GROUP" not in white and bool(white or keywords)) or ("ALL_GROUP" not in shared and bool(shared))


def _card_key(context: Context) -> tuple[str, str] | None:
    """The message a growing card answers: (chat id, message id and part). Every context made
    for that message (the voice path's second one) finds the card; no other does."""
    cmsg = context.get("msg")
    if not isinstance(cmsg, FeishuMessage):
        return None
    return cmsg.chat_id, cmsg.msg_id


class FeishuChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # A message the store could not take is refused to Feishu (503 / an error frame), which pushes it again.
    NOT_STORED_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        self.mode = _setting("feishu_event_mode") or "http"
        self.api: FeishuApi | None = None
        self.bot = BotIdentity(name=_setting("feishu_bot_name"))
        self.streams = CardStreams(self._create_card, self._update_card, _card_key)
        self.chat_names: ChatNames | None = None
        self.webhook = None  # webhook.FeishuWebhook in http mode
        self.connection = None  # long_connection.LongConnection in websocket mode
        self.refusals = RefusalSender("feishu", MAX_PENDING_REFUSALS)
        self._stopped = threading.Event()
        self.card_updates = TokenBucket(60 * CARD_UPDATES_PER_SECOND, burst=CARD_UPDATES_PER_SECOND)

    # ================================================================== lifecycle
    def startup(self) -> None:
        if self.mode not in ("http", "websocket"):
            raise ConfigError(f"feishu_event_mode must be http or websocket (got {self.mode!r})")
        needed = ["feishu_app_id", "feishu_app_secret"] + (["feishu_token"] if self.mode == "http" else [])
        missing = [key for key in needed if not _setting(key)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set for channel_type feishu (from the app's "
                              f"Credentials page and its Events and callbacks page in the Feishu developer console)")
        self.api = FeishuApi(_setting("feishu_api_base") or "https://open.feishu.cn", _setting("feishu_app_id"),
                             _setting("feishu_app_secret"))
        self._learn_bot_identity()
        self.chat_names = ChatNames(self.api)
        if self.mode == "http":
            from channel.feishu.webhook import FeishuWebhook

            self.webhook = FeishuWebhook(self, int(conf().get("feishu_port") or 9891), _setting("feishu_token"),
                                         _setting("feishu_encrypt_key"))
            # Messages accepted before the last stop come first, before new events are taken.
            self.resume_inbox()
            self.webhook.start()
            return
        from channel.feishu.long_connection import LongConnection

        self.resume_inbox()
        self.connection = LongConnection(self, _setting("feishu_app_id"), _setting("feishu_app_secret"),
                                         self.api.base)
        self.connection.start()

    def _learn_bot_identity(self) -> None:
        """The bot's open id, which a group @ must carry (feishu_bot_name is the fallback)."""
        try:
            data = self.api.call("GET", "/open-apis/bot/v3/info")
            info = data.get("bot") if isinstance(data.get("bot"), dict) else {}
            open_id = str(info.get("open_id") or "")
        except FeishuApiError as e:
            if e.path == TOKEN_PATH and e.code is not None:
                raise ConfigError(f"Feishu refused feishu_app_id / feishu_app_secret ({e.msg}, code {e.code}): copy "
                                  f"both from the app's Credentials page") from None
            logger.warning(f"[feishu] the bot's own id could not be read ({e}); a group @ is recognised by "
                           f"feishu_bot_name ({self.bot.name!r}) until it is (tried again every "
                           f"{BOT_INFO_RETRY:g} s)")
            open_id, info = "", {}
            self._retry_bot_identity()
        self.bot = BotIdentity(open_id=open_id, name=self.bot.name or str(info.get("app_name") or ""))
        self.user_id = open_id or None
        self.name = self.bot.name or None
        if not open_id and not self.bot.name:
            logger.warning("[feishu] neither the bot's open id nor feishu_bot_name is known: group @s cannot be told apart")
        else:
            logger.info(f"[feishu] bot {self.bot.name or '(no name)'} {open_id}")

    def _retry_bot_identity(self) -> None:
        """Read the bot's open id again, once a minute, until it is known (a transient failure at
        start must not leave group @s unrecognised for the life of the process)."""

        def retry() -> None:
            while not self._stopped.wait(BOT_INFO_RETRY):
                try:
                    data = self.api.call("GET", "/open-apis/bot/v3/info")
                except FeishuApiError as e:
                    logger.debug(f"[feishu] the bot's own id still cannot be read: {e}")
                    continue
                info = data.get("bot") if isinstance(data.get("bot"), dict) else {}
                open_id = str(info.get("open_id") or "")
                if open_id:
                    self.bot = BotIdentity(open_id=open_id, name=self.bot.name or str(info.get("app_name") or ""))
                    self.user_id = open_id
                    self.name = self.bot.name or None
                    logger.info(f"[feishu] the bot's own id is known now: {open_id}")
                    return

        threading.Thread(target=retry, name="feishu-bot-info", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self.webhook is not None:
            self.webhook.stop()
        if self.connection is not None:
            self.connection.stop()
        self.refusals.stop()
        super().stop()

    def _send_refusal(self, context: Context, reply: Reply) -> None:
        """A busy refusal goes out on a thread of its own: the event is acknowledged at once
        (Feishu waits 3 s, then pushes it again: a send with the pipeline's 3 s / 6 s retries
        before the 200 would bring the event back, and the refusal with it), and the request
        thread is not held."""
        self.refusals.submit(lambda: ChatChannel._send_refusal(self, context, reply))

    # ================================================================== events in
    def take_event(self, envelope: dict) -> list[Produced]:
        """One checked event envelope (schema 2.0) through the pipeline: what became of each of
        its messages. Called before the platform gets its acknowledgement."""
        header = envelope.get("header") if isinstance(envelope.get("header"), dict) else {}
        event_type = header.get("event_type")
        if event_type != MESSAGE_EVENT:
            logger.debug(f"[feishu] event {event_type} ignored")
            return []
        event = safe_data(envelope.get("event"))
        if not isinstance(event, dict):
            return []
        try:
            parts, _ = parts_of(event, self.bot)
        except UnsupportedMessage as e:
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            logger.info(f"[feishu] message {message.get('message_id')} skipped: {e}")
            return []
        results = []
        group_name = None
        message = event.get("message") or {}
        if message.get("chat_type") == "group" and self.chat_names is not None and group_names_needed():
            try:
                group_name = self.chat_names.name(str(message.get("chat_id") or ""))
            except NameUnknown as e:
                logger.warning(f"[feishu] message {message.get('message_id')} refused for now: the name of group "
                               f"{message.get('chat_id')} is needed for the group rules and could not be read ({e}); "
                               f"Feishu pushes it again")
                return [Produced.NOT_STORED]
        for index in range(len(parts)):
            cmsg = FeishuMessage(event, index, self.bot, self._download)
            if cmsg.ctype == ContextType.VOICE and not conf().get(
                    "group_speech_recognition" if cmsg.is_group else "speech_recognition"):
                logger.debug(f"[feishu] voice message {cmsg.msg_id} skipped (speech recognition is off)")
                continue
            if cmsg.is_group and group_name is not None:
                cmsg.other_user_nickname = group_name
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
            results.append(self.produce(context))
        return results

    def _dedup_key(self, cmsg) -> DedupKey | None:
        key = super()._dedup_key(cmsg)
        return None if key is None else DedupKey(key.namespace, key.key, max(key.ttl, DEDUP_TTL_SECONDS))

    def _download(self, message_id: str, file_key: str, kind: str, max_bytes: int) -> bytes:
        path = RESOURCE_PATH.format(message_id=quote(message_id, safe=""), file_key=quote(file_key, safe=""))
        return self.api.download(path, {"type": kind}, max_bytes)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if isinstance(cmsg, FeishuMessage):
            return {"feishu": cmsg.event, "part": cmsg.index, "path": "" if cmsg.part.text else cmsg.content,
                    "group_name": cmsg.other_user_nickname if cmsg.is_group else ""}
        return super().message_to_record(cmsg)

    def record_to_message(self, record: dict) -> ChatMessage:
        if "feishu" in record:
            cmsg = FeishuMessage(record["feishu"], int(record.get("part") or 0), self.bot, self._download,
                                 str(record.get("path") or ""))
            if cmsg.is_group and record.get("group_name"):
                cmsg.other_user_nickname = str(record["group_name"])
            return cmsg
        return super().record_to_message(record)

    def _handle(self, context: Context) -> None:
        cmsg = context.get("msg") if context is not None else None
        if isinstance(cmsg, FeishuMessage):
            # A voice message is answered under a second context (the transcribed text) carrying
            # this message: a card created there marks this context's inbox item.
            cmsg.answering = context
        try:
            super()._handle(context)
        finally:
            if context is not None:
                self.streams.forget(context)
            if isinstance(cmsg, FeishuMessage):
                cmsg.answering = None

    # ================================================================== answers out
    def can_show_partial(self, context: Context) -> bool:
        return isinstance(context.get("msg"), FeishuMessage) and bool(conf().get("dify_stream_reply"))

    def show_partial(self, context: Context, stream_id: str, text: str) -> None:
        self.streams.show(context, stream_id, text)

    def _create_card(self, context: Context, text: str) -> str:
        message_id = self._deliver(context, "interactive", cards.card_content(text))
        # Part of the answer is in the chat now: after a crash the message is not asked again
        # (a second card would repeat it); the restart sends the cut-off note instead.
        self._note_reply_sent(getattr(context.get("msg"), "answering", None) or context)
        return message_id

    def _update_card(self, message_id: str, text: str, final: bool = False) -> bool:
        """Replace a card's text; False when an update in between is skipped (the app's budget)."""
        if not self.card_updates.get_token(FINAL_UPDATE_WAIT if final else 0):
            if not final:
                return False
            logger.warning(f"[feishu] the card update budget is spent; updating card {message_id} anyway")
        self._call("PATCH", f"/open-apis/im/v1/messages/{quote(message_id, safe='')}",
                   {"content": cards.card_content(text)})
        return True

    def send(self, reply: Reply, context: Context) -> None:
        if reply.type in _TEXT_TYPES:
            self._send_text(str(reply.content), context, reply)
        elif reply.type in (ReplyType.IMAGE, ReplyType.IMAGE_URL):
            self._send_image(reply, context)
        elif reply.type in _FILE_TYPES:
            self._send_file(reply, context)
        else:
            raise NotImplementedError(f"Feishu cannot send {reply.type}")
        logger.info(f"[feishu] sent {reply.type} to {context.get('receiver')}")

    def _send_text(self, text: str, context: Context, reply: Reply | None = None) -> None:
        reply = reply or Reply(ReplyType.TEXT, text)
        if reply.type == ReplyType.TEXT and not hasattr(reply, "_feishu_card"):
            # The card the answer grew in takes its final text (kept on the reply for a retry).
            reply._feishu_card = self.streams.finish(context)
        card = getattr(reply, "_feishu_card", None)
        pieces = cards.pieces(text)
        if len(pieces) > 1:
            logger.info(f"[feishu] a text of {len(text)} characters goes in {len(pieces)} pieces")

        def send_one(numbered: tuple[int, str]) -> None:
            n, piece = numbered
            if n == 0 and card is not None:
                self._finish_card(card, piece, context)
            else:
                self._deliver(context, *cards.message_body(piece))

        self.send_pieces(reply, list(enumerate(pieces)), send_one)

    def _finish_card(self, card, text: str, context: Context) -> None:
        if text == card.shown:
            return  # the card shows it already
        try:
            try:
                self._update_card(card.message_id, text, final=True)
            except FeishuApiError as e:
                if e.code not in RATE_LIMITS:
                    raise
                # Feishu's limits are per second: one more try after a pause, then the pipeline's retries.
                logger.info(f"[feishu] card {card.message_id}: rate limited ({e.code}), trying again in "
                            f"{RATE_LIMIT_PAUSE:g} s")
                time.sleep(RATE_LIMIT_PAUSE)
                self._update_card(card.message_id, text, final=True)
        except FeishuApiError as e:
            if e.code is None or e.code in RATE_LIMITS:
                raise  # not reachable, or too soon: the pipeline's retry tries the card again
            # The card cannot take it (withdrawn, too old to edit...): the answer goes as a new message.
            logger.warning(f"[feishu] card {card.message_id} not updated ({e.code}); sending the answer anew")
            self._deliver(context, *cards.message_body(text))

    def _media_not_read(self, reply: Reply, context: Context, error: Exception) -> None:
        """A picture or file that could not be read: a link is sent as a link; a local file
        (its path, or a stream's repr, means nothing to the user and says where things are
        here) becomes a short note in the user's language."""
        if isinstance(reply.content, str) and reply.content.startswith(("http://", "https://")):
            logger.warning(f"[feishu] {reply.type} not fetched ({error}); sending the link instead")
            self._deliver(context, *cards.message_body(reply.content))
            return
        logger.error(f"[feishu] {reply.type} reply could not be read ({type(error).__name__}: {error}); "
                     f"the user is told it could not be sent")
        self._deliver(context, *cards.message_body(_in_language(context, MEDIA_FAILED_TEXT)))

    def _send_image(self, reply: Reply, context: Context) -> None:
        try:
            data, name = read_reply_media(reply, IMAGE_MAX_BYTES, "image")
        except (fetch.FetchError, OSError) as e:
            self._media_not_read(reply, context, e)
            return
        if len(data) > IMAGE_MAX_BYTES:
            data = compress_imgfile(io.BytesIO(data), IMAGE_MAX_BYTES - 1).getvalue()
        uploaded = self._call("POST", "/open-apis/im/v1/images", form={"image_type": "message"},
                              files={"image": (with_extension(name, data, ".png"), data)})
        image_key = (uploaded.get("data") or {}).get("image_key")
        if not image_key:
            raise FeishuApiError(None, "the image upload gave no image_key", "/open-apis/im/v1/images")
        self._deliver(context, "image", cards.json_content({"image_key": image_key}))

    def _send_file(self, reply: Reply, context: Context) -> None:
        try:
            data, name = read_reply_media(reply, FILE_MAX_BYTES, "file")
        except (fetch.FetchError, OSError) as e:
            self._media_not_read(reply, context, e)
            return
        if len(data) > FILE_MAX_BYTES:
            logger.warning(f"[feishu] a {reply.type} of more than {FILE_MAX_BYTES} bytes cannot be uploaded")
            self._deliver(context, *cards.message_body(_in_language(context, FILE_TOO_LARGE_TEXT)))
            return
        name = with_extension(name, data, ".bin")
        uploaded = self._call("POST", "/open-apis/im/v1/files", form={"file_type": "stream", "file_name": name},
                              files={"file": (name, data)})
        file_key = (uploaded.get("data") or {}).get("file_key")
        if not file_key:
            raise FeishuApiError(None, "the file upload gave no file_key", "/open-apis/im/v1/files")
        self._deliver(context, "file", cards.json_content({"file_key": file_key}))

    def _deliver(self, context: Context, msg_type: str, content: str) -> str:
        """Send one message in answer to the context's message; its message id. A group message
        is answered with the reply API, anything else is sent to the receiver."""
        cmsg = context.get("msg")
        # Feishu keeps a send's uuid for an hour: a retry of a send that did arrive is not shown
        # twice. The content is part of it: a different message in the same place (a notice sent
        # instead of an answer after a restart) must not be taken for the earlier one.
        sequence = getattr(context, "_feishu_sent", 0)
        body: dict[str, Any] = {"msg_type": msg_type, "content": content}
        if isinstance(cmsg, FeishuMessage):
            seed = f"{cmsg.msg_id}/{sequence}/{msg_type}/{content}".encode("utf-8", "surrogatepass")
            body["uuid"] = hashlib.sha256(seed).hexdigest()[:40]
        if isinstance(cmsg, FeishuMessage) and cmsg.is_group:
            answer = self._call("POST", f"/open-apis/im/v1/messages/{quote(cmsg.message_id, safe='')}/reply", body)
        else:
            receiver = str(context.get("receiver") or "")
            if not receiver:
                raise ValueError("no receiver for the reply")
            id_type = "chat_id" if receiver.startswith("oc_") else "open_id"
            answer = self._call("POST", "/open-apis/im/v1/messages", {"receive_id": receiver, **body},
                                params={"receive_id_type": id_type})
        context._feishu_sent = sequence + 1
        return str((answer.get("data") or {}).get("message_id") or "")

    def _call(self, method: str, path: str, payload: dict | None = None, **kwargs: Any) -> dict:
        try:
            return self.api.call(method, path, payload, **kwargs)
        except FeishuApiError as e:
            hint = _SEND_ERRORS.get(e.code or 0)
            logger.error(f"[feishu] {method} {e}{': ' + hint if hint else ''}")
            raise
