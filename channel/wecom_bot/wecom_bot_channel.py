"""Channel `wecom_bot`: the official WeCom AI bot (企业微信智能机器人), reference/wecom-aibot.md.

Two ways in, chosen by `wecom_bot_mode`:
* `websocket` (default): the daemon connects out to WeCom with the bot id and secret; no public
  URL is needed (ws_client.py). Answers are pushed as frames on the same connection.
* `callback`: WeCom POSTs encrypted JSON to `/wecombot` on the shared HTTP server
  (callback.py); answers go back in the HTTP responses, and WeCom polls for a growing answer.

Messages go through the pipeline's durable accept path: each is in the state store's inbox
before anything else happens to it, carries what is needed to answer it after a restart (the
req_id, the response_url, the chat), and a re-delivered msgid is recognised.

Answers (long connection): a growing answer is shown in stream bubbles (streams.py); a finished
text goes as markdown (WeCom refuses plain `text`, 40008); images, files, voice and video are
uploaded (upload.py) and sent as their own replies. When the message can no longer be answered on
its req_id (WeCom forgot it after a reconnect or a restart), the answer is pushed to the chat
(`aibot_send_msg`); when the connection is down, the message's response_url takes a markdown
answer once.
"""
from __future__ import annotations

import queue
import threading
from typing import Any

import requests

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.answered_marks import AnsweredMarks
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.wecom_bot import message as wmsg
from channel.wecom_bot.message import MediaError, Part, UnsupportedMessage, WecomBotMessage
from channel.wecom_bot.streams import INVALID_REQ_ID, STREAM_SAFE_BYTES, StreamPump, pieces
from channel.wecom_bot.upload import UploadRefused, fits, upload
from channel.wecom_bot.ws_client import AUTH_REFUSED, CONNECTING, AibotError, LongConnection, NotConnected
from channel.reply_media import read_reply_media
from common import fetch
from common.log import logger
from common.masking import mask_command
from common.text import safe_data
from config import ConfigError, conf, subscribe_msg

INTAKE_THREADS = 4
ANSWERED_NAMESPACE = "wecom_bot:answered"
ANSWERED_TTL = 7 * 24 * 3600
ANSWERED = AnsweredMarks(ANSWERED_NAMESPACE, ANSWERED_TTL, "wecom_bot")
# Errors after which the req_id cannot carry the answer: push it to the chat instead.
PUSH_INSTEAD = {INVALID_REQ_ID, 846604, 846608}
MEDIA_FETCH_MAX = 20 * 1024 * 1024
_KINDS = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.FILE: "file",
          ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video", ReplyType.VOICE: "file"}
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be downloaded; please send it again)"
TOO_BIG_TEXT = "文件太大，无法发送 (the file is too large to send)"
MEDIA_FAILED_TEXT = "文件没能发送 (the file could not be sent)"
_SUFFIXES = {"image": ".png", "video": ".mp4", "file": ""}


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


class WecomBotChannel(ChatChannel):
    # Voice replies go as files: WeCom takes only AMR voice, which no engine here writes.
    NOT_SUPPORT_REPLYTYPE: list = []
    # Everything said to the bot in a single chat is meant for it (as on WeCom apps).
    PRIVATE_NEEDS_PREFIX = False

    def __init__(self) -> None:
        super().__init__()
        self.mode = _setting("wecom_bot_mode") or "websocket"
        self.bot_id = _setting("wecom_bot_id")
        self.conn: LongConnection | None = None
        self.pump: StreamPump | None = None
        self.callback = None  # callback.CallbackServer in callback mode
        self._intake: list[queue.Queue] = []
        self._resumed = threading.Event()
        self._stopping = False
        self._used_response_urls: set[str] = set()
        self._lock = threading.Lock()

    # ================================================================== lifecycle
    def startup(self) -> None:
        if self.mode == "callback":
            from channel.wecom_bot.callback import CallbackServer

            self.callback = CallbackServer(self)
            # Callbacks are taken on the HTTP server's threads; those kept from the last run first.
            self.resume_inbox()
            self._resumed.set()
            self.callback.start()
            return
        secret = _setting("wecom_bot_secret")
        missing = [k for k, v in (("wecom_bot_id", self.bot_id), ("wecom_bot_secret", secret)) if not v]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} must be set for channel_type wecom_bot (the AI bot's BotID and "
                              f"its long-connection Secret, from the WeCom admin console)")
        url = _setting("wecom_bot_ws_url") or "wss://openws.work.weixin.qq.com"
        self._start_intake()
        self.conn = LongConnection(url, self.bot_id, secret, self._on_frame,
                                   heartbeat=float(conf().get("wecom_bot_heartbeat") or 30))
        self.pump = StreamPump(self.conn)
        state = self.conn.start()
        if state == AUTH_REFUSED:
            self.conn.stop()
            raise ConfigError(self.conn.reason)
        if state == CONNECTING:
            logger.warning(f"[wecom_bot] WeCom ({url}) is not reachable yet; the daemon keeps trying")
        # Messages accepted before the last stop are queued before new ones are taken.
        self.resume_inbox()
        self._resumed.set()
        logger.info("[wecom_bot] ready, handling messages")

    def stop(self) -> None:
        self._stopping = True
        for q in self._intake:
            q.put(None)
        if self.pump is not None:
            self.pump.stop()
        if self.conn is not None:
            self.conn.stop()
        if self.callback is not None:
            self.callback.stop()
        super().stop()

    @property
    def state(self) -> str:
        if self.conn is None:
            return "callback" if self.callback is not None else "not started"
        return self.conn.state

    # ================================================================== messages in
    def _start_intake(self) -> None:
        # Several intake threads, each chat always on the same one: a slow media download
        # holds up only the chats that share its thread, and each chat keeps its order.
        for n in range(INTAKE_THREADS):
            q: queue.Queue = queue.Queue()
            self._intake.append(q)
            threading.Thread(target=self._intake_loop, args=(q,), name=f"wecom-bot-intake-{n}", daemon=True).start()

    def _on_frame(self, frame: dict) -> None:
        """A callback frame from the connection's reader thread: only handed on."""
        body = frame.get("body")
        if not isinstance(body, dict):
            logger.warning(f"[wecom_bot] a {frame.get('cmd')} frame without a body ignored")
            return
        self.take(frame.get("cmd"), body, (frame.get("headers") or {}).get("req_id"))

    def take(self, cmd: Any, body: dict, req_id: Any) -> None:
        if self._stopping:
            return
        sender = body.get("from") if isinstance(body.get("from"), dict) else {}
        chat = str(body.get("chatid") or sender.get("userid") or "")
        self._intake[hash(chat) % len(self._intake)].put((cmd, body, req_id))

    def _intake_loop(self, q: queue.Queue) -> None:
        self._resumed.wait()
        while True:
            item = q.get()
            if item is None:
                return
            cmd, body, req_id = item
            try:
                self._handle_callback(cmd, safe_data(body), req_id if isinstance(req_id, str) else "")
            except Exception:
                logger.exception(f"[wecom_bot] a {cmd} callback could not be handled: {mask_command(str(body))[:300]}")

    def _handle_callback(self, cmd: Any, body: dict, req_id: str) -> list[Produced]:
        """Take one callback through the pipeline; what became of each of its parts."""
        if cmd == "aibot_event_callback" or body.get("msgtype") == "event":
            self._on_event(body, req_id)
            return []
        if cmd != "aibot_msg_callback":
            logger.debug(f"[wecom_bot] {cmd} frame ignored")
            return []
        try:
            parts = wmsg.parts_of(body)
        except UnsupportedMessage as e:
            logger.info(f"[wecom_bot] message {body.get('msgid')} skipped: {e}")
            return []
        results = []
        for part in parts:
            cmsg = WecomBotMessage(body, part, req_id, self.bot_id)
            logger.debug(f"[wecom_bot] {'group' if cmsg.is_group else 'private'} {cmsg.ctype} message: "
                         f"{mask_command(cmsg.content) if not part.kind else part.kind}")
            # Composed (rules, dedup) before a media file is fetched: a re-delivery costs nothing.
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
            if context is None:
                results.append(Produced.IGNORED)
                continue
            if part.kind:
                try:
                    cmsg.content = context.content = wmsg.fetch_media(part, self.media_key())
                except MediaError as e:
                    logger.error(f"[wecom_bot] message {cmsg.msg_id}: {e}")
                    self._tell(context, MEDIA_FAILED_TEXT)
                    results.append(Produced.NOT_STORED)
                    continue
            results.append(self.produce(context))
        return results

    @staticmethod
    def expects_answer(body: dict) -> bool:
        """Whether the pipeline answers this message by itself (a picture alone is kept for the
        next question, files and videos only reach plugins)."""
        try:
            return any(part.ctype == ContextType.TEXT for part in wmsg.parts_of(body))
        except UnsupportedMessage:
            return False

    def media_key(self) -> str | None:
        """The key of media without their own (callback mode: the EncodingAESKey)."""
        return _setting("wecom_bot_aes_key") or None if self.mode == "callback" else None

    def _on_event(self, body: dict, req_id: str) -> None:
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        kind = event.get("eventtype")
        if kind == "enter_chat":
            text = subscribe_msg()
            if not text:
                return
            if self.conn is not None:
                try:
                    self.conn.request("aibot_respond_welcome_msg", {"msgtype": "text", "text": {"content": text}},
                                      req_id, timeout=4.0)  # WeCom takes a welcome within 5 s
                    logger.info(f"[wecom_bot] welcome sent to {(body.get('from') or {}).get('userid')}")
                except AibotError as e:
                    logger.warning(f"[wecom_bot] the welcome could not be sent: {e}")
            return
        if kind == "feedback_event":
            feedback = event.get("feedback_event") if isinstance(event.get("feedback_event"), dict) else event
            logger.info(f"[wecom_bot] feedback on answer {feedback.get('id')}: type {feedback.get('type')}")
            return
        logger.debug(f"[wecom_bot] event {kind} ignored")

    def _tell(self, context: Context, text: str) -> None:
        """A short notice about a message that cannot be handled (nothing is dropped silently)."""
        self._send(Reply(ReplyType.ERROR, text), context)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WecomBotMessage):
            return super().message_to_record(cmsg)
        part = {"ctype": cmsg.ctype.name, "content": cmsg.content, "kind": "", "index": 0}
        if cmsg.msg_id and "#" in str(cmsg.msg_id):
            part["index"] = int(str(cmsg.msg_id).rsplit("#", 1)[1])
        return {"wecom_bot": cmsg.body, "req_id": cmsg.req_id, "part": part}

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wecom_bot" not in record:
            return super().record_to_message(record)
        p = record.get("part") or {}
        part = Part(ContextType[p.get("ctype", "TEXT")], p.get("content") or "", index=int(p.get("index") or 0))
        cmsg = WecomBotMessage(record["wecom_bot"], part, str(record.get("req_id") or ""), self.bot_id)
        # Rebuilt only for the inbox kept from the last run (resume_inbox).
        if self.callback is not None and part.ctype == ContextType.TEXT and not self.answered(str(cmsg.msg_id or "")):
            self.callback.expect(cmsg)
        return cmsg

    def _note_reply_sent(self, context: Context) -> None:
        # In callback mode send() only adds to the answer WeCom fetches on its next refresh; it
        # is stored when the handling ends (callback.handled), and _mark_answered comes after.
        if self.callback is None:
            super()._note_reply_sent(context)

    def already_answered(self, context: Context) -> bool:
        cmsg = context.get("msg")
        return isinstance(cmsg, WecomBotMessage) and self.answered(str(cmsg.msg_id or ""))

    @staticmethod
    def answered(msg_id: str) -> bool:
        """Whether the message `msg_id` was answered (recorded in the state store)."""
        return ANSWERED.contains(msg_id)

    def _mark_answered(self, context: Context) -> None:
        cmsg = context.get("msg")
        if isinstance(cmsg, WecomBotMessage):
            ANSWERED.add(str(cmsg.msg_id or ""))

    def _handle(self, context: Context) -> None:
        try:
            super()._handle(context)
        finally:
            if self.pump is not None and context is not None:
                for answer in self.pump.open_answers(context):
                    self.pump.close(answer)
                self.pump.forget(context)
            if self.callback is not None and context is not None:
                self.callback.handled(context)
            if context is not None:
                self._mark_answered(context)

    # ================================================================== answers out
    def can_show_partial(self, context: Context) -> bool:
        if not isinstance(context.get("msg"), WecomBotMessage):
            return False
        return bool(conf().get("dify_stream_reply") or conf().get("wecom_bot_stream_always"))

    def show_partial(self, context: Context, stream_id: str, text: str) -> None:
        cmsg = context.get("msg")
        if self.callback is not None:
            self.callback.show(context, stream_id, text)
        elif self.pump is not None and isinstance(cmsg, WecomBotMessage) and cmsg.req_id:
            self.pump.show(context, cmsg.req_id, stream_id, text)

    def send(self, reply: Reply, context: Context) -> None:
        if self.callback is not None:
            self.callback.send(reply, context)
            return
        if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
            self._send_text(str(reply.content), context, reply)
        elif reply.type in _KINDS:
            self._send_media(reply, context)
        else:
            raise NotImplementedError(f"the WeCom AI bot cannot send {reply.type}")
        logger.info(f"[wecom_bot] sent {reply.type} to {context.get('receiver')}")

    def _send_text(self, text: str, context: Context, reply: Reply | None = None) -> None:
        cmsg = context.get("msg")
        answer = self.pump.oldest(context) if self.pump is not None else None
        if answer is not None:
            try:
                if self.pump.finish(answer, text):
                    return
            except NotConnected:
                if self._via_response_url(cmsg, text):
                    return
                raise
        self.send_pieces(reply or Reply(ReplyType.TEXT, text), pieces(text, STREAM_SAFE_BYTES), lambda piece: self._respond(
            context, {"msgtype": "markdown", "markdown": {"content": piece}}, text_for_url=piece))

    def _respond(self, context: Context, body: dict, text_for_url: str | None = None) -> None:
        """A reply on the message's req_id; pushed to the chat when the req_id cannot take it,
        sent to the response_url when the connection is down."""
        cmsg = context.get("msg")
        req_id = cmsg.req_id if isinstance(cmsg, WecomBotMessage) else ""
        if req_id:
            try:
                self.conn.request("aibot_respond_msg", body, req_id)
                return
            except NotConnected:
                if text_for_url is not None and self._via_response_url(cmsg, text_for_url):
                    return
                raise
            except AibotError as e:
                if e.errcode not in PUSH_INSTEAD:
                    raise
                logger.info(f"[wecom_bot] message {cmsg.msg_id} cannot be answered on its req_id ({e.errcode}): "
                            f"sending to the chat")
        target = cmsg.chat_target if isinstance(cmsg, WecomBotMessage) else context.get("receiver")
        if not target:
            raise ValueError("no chat to send to")
        self.conn.request("aibot_send_msg", {"chatid": target, **body})

    def _via_response_url(self, cmsg: Any, text: str) -> bool:
        url = getattr(cmsg, "response_url", None)
        if not url:
            return False
        with self._lock:
            if url in self._used_response_urls:
                return False
            self._used_response_urls.add(url)  # usable once
        try:
            r = requests.post(url, json={"msgtype": "markdown", "markdown": {"content": text}}, timeout=10)
            data = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
            if r.status_code == 200 and data.get("errcode", 0) == 0:
                logger.info(f"[wecom_bot] answer to {cmsg.msg_id} sent through its response_url (connection down)")
                return True
            logger.warning(f"[wecom_bot] response_url refused the answer: {r.status_code} {str(data)[:200]}")
        except Exception as e:
            logger.warning(f"[wecom_bot] response_url failed: {e}")
        return False

    def _send_media(self, reply: Reply, context: Context) -> None:
        kind = _KINDS[reply.type]
        try:
            data, name = self._media_bytes(reply, kind)
        except (fetch.FetchError, OSError) as e:
            if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL):
                logger.warning(f"[wecom_bot] {reply.type} not fetched ({e}); sending the link")
                self._send_text(str(reply.content), context)
            else:
                # A local file: its path means nothing to the user (and says where things are here).
                logger.error(f"[wecom_bot] {reply.type} reply could not be read ({type(e).__name__}: {e})")
                self._send_text(MEDIA_FAILED_TEXT, context)
            return
        if not fits(kind, len(data)) and kind != "file" and fits("file", len(data)):
            kind = "file"  # too big for its own type: still deliverable as a file
        try:
            media_id = upload(self.conn, kind, name, data)
        except UploadRefused as e:
            logger.warning(f"[wecom_bot] {reply.type} not sent: {e}")
            link = str(reply.content) if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL) else ""
            self._send_text(link or TOO_BIG_TEXT, context)
            return
        self._respond(context, {"msgtype": kind, kind: {"media_id": media_id}})

    @staticmethod
    def _media_bytes(reply: Reply, kind: str) -> tuple[bytes, str]:
        return read_reply_media(reply, MEDIA_FETCH_MAX, "media" + _SUFFIXES[kind])

