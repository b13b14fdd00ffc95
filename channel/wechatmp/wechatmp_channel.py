"""Channel `wechatmp`: a WeChat Official Account answering in the callback's response (passive
reply, reference/channel-protocols.md §1.5–§1.6).

WeChat waits 5 s for a response, then sends the same message again, three times in all. The
original turns that into about 15 s for the answer, and this channel keeps its scheme:
* each delivery waits up to WAIT seconds for the user's question to be answered;
* deliveries 1 and 2 that find no answer stay silent past WeChat's cut, so WeChat sends again;
* delivery 3 says the answer is coming and the user should write again to get it;
* finished answers wait per user (pending.py, in the state store) and the user's next message,
  whatever it says, fetches the next one; a long text comes in pieces, one per message.
A `#` command starts a question of its own even while another one runs.

Messages go through the pipeline's durable accept path: each is in the state store's inbox
before the callback is answered, is rebuilt from its XML fields after a restart, and its MsgId
(events: sender + time) is recognised when WeChat delivers it again.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.chat_channel import BUSY_TEXT_EN, BUSY_TEXT_ZH, NOT_STORED_TEXT_EN, NOT_STORED_TEXT_ZH, ChatChannel, \
    Produced, refusal_text
from channel.chat_message import ChatMessage
from channel.wechatmp import api as mp_api
from channel.wechatmp import reply_xml
from channel.wechatmp.callback import Callback
from channel.wechatmp.materials import MaterialLedger
from channel.wechatmp.message import HANDLED_TYPES, WechatMPMessage
from channel.wechatmp.pending import PendingReplies
from channel.reply_media import read_reply_media
from common.log import logger
from common.store import MemoryStore
from common.utils import remove_markdown_symbol
from common.wechat_callback import Envelope
from config import ConfigError, conf, subscribe_msg

WAIT = 4.0  # seconds a delivery waits for the answer (WeChat cuts at 5)
OVERRUN = 2.0  # a delivery with no answer yet stays silent this much longer, past WeChat's cut
DELIVERIES = 3  # WeChat's deliveries of one message
LATE_TO_HAND_OUT = 4.5  # seconds after a delivery arrived past which no waiting answer is given to it
THINKING_TEXT = "答案还在准备中，请稍后回复“继续”来获取"
UNSUPPORTED_MARK = "【收到不支持的消息类型，暂无法显示】"
UNSUPPORTED_TEXT = "暂时看不懂这类消息，请发文字、语音或图片"
PREFIX_HINT = "请在消息前加上“{prefix}”，例如：{prefix}你好"
MEDIA_MAX_BYTES = 10 * 1024 * 1024  # image and video material and media (reference §1.7)
VOICE_PIECE_MS = 60 * 1000  # WeChat voice messages last at most 60 s
_TEXT_TYPES = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)
DELIVERY_NAMESPACE = "wechatmp:deliveries"
DELIVERY_MEMORY = 120.0  # seconds a message's delivery count is kept (WeChat's three take about 15 s)


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


class WechatMPChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # A busy or not-saved refusal is said in the callback's response (answer()), not sent.
    REFUSAL_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        appid, secret, token = _setting("wechatmp_app_id"), _setting("wechatmp_app_secret"), _setting("wechatmp_token")
        missing = [k for k, v in (("wechatmp_token", token), ("wechatmp_app_id", appid),
                                  ("wechatmp_app_secret", secret)) if not v]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set for an Official Account channel (the Token, AppID "
                              f"and AppSecret of the account's basic configuration)")
        envelope = None
        if _setting("wechatmp_aes_key"):
            try:
                envelope = Envelope(token, _setting("wechatmp_aes_key"), appid)
            except ValueError as e:
                raise ConfigError(f"wechatmp_aes_key is not an EncodingAESKey ({e})") from None
        self.api = mp_api.make_api(appid, secret)
        self.callback = Callback(self, token, envelope)
        self._pending: PendingReplies | None = None
        self._materials: MaterialLedger | None = None
        self._running: collections.Counter = collections.Counter()  # user -> questions being answered
        self._changed = threading.Condition()
        self._delivery_lock = threading.Lock()  # one read-and-count of the delivery counts at a time

    # ================================================================== lifecycle
    def startup(self) -> None:
        # Messages accepted before the last stop are queued before new ones are taken.
        self.resume_inbox()
        self.materials.start()  # deletes what the last run left as well
        self.callback.start()

    def stop(self) -> None:
        self.callback.stop()
        self.materials.stop()
        super().stop()

    @property
    def pending(self) -> PendingReplies:
        if self._pending is None:
            # The daemon always opens a store; a bare instance (a plugin's test) gets one in memory.
            self._pending = PendingReplies(conf().state_store or MemoryStore())
        return self._pending

    @property
    def materials(self) -> MaterialLedger:
        if self._materials is None:
            self._materials = MaterialLedger(self.pending.store, self.api)
        return self._materials

    # ================================================================== a callback
    def answer(self, fields: dict[str, str], arrived: float) -> str | None:
        """The passive reply XML to one checked callback (None: "success", nothing to show)."""
        kind = fields.get("MsgType")
        if kind == "event":
            return self._on_event(fields)
        if kind not in HANDLED_TYPES:
            logger.info(f"[wechatmp] a {str(kind)[:20]!r} message from {fields.get('FromUserName')} is not handled")
            return None
        cmsg = WechatMPMessage(fields, self._download)
        user = cmsg.from_user_id
        attempt = self._count_delivery(cmsg.msg_id)
        logger.info(f"[wechatmp] delivery {attempt} of {kind} message {cmsg.msg_id} from {user}")
        if cmsg.ctype == ContextType.TEXT and UNSUPPORTED_MARK in cmsg.content:
            return self._text(fields, UNSUPPORTED_TEXT)
        command = cmsg.ctype == ContextType.TEXT and cmsg.content.startswith("#") and attempt == 1
        if command or not self._busy_with(user):
            refusal = self._start(cmsg, attempt, arrived)
            if refusal is not None:
                return self._text(fields, refusal) if refusal else None
        return self._collect(fields, user, attempt, arrived)

    def _count_delivery(self, key: str) -> int:
        """Which delivery of the message `key` this is (1 to 3). Counted in the state store, so a
        restart between two deliveries of one message still knows the third is the last."""
        store = self.pending.store
        with self._delivery_lock:
            try:
                count = int(store.get(DELIVERY_NAMESPACE, key) or 0) + 1
                store.put(DELIVERY_NAMESPACE, key, count, ttl=DELIVERY_MEMORY)
                return count
            except Exception as e:  # counted as a first delivery: at worst it stays silent once more
                logger.warning(f"[wechatmp] could not count the deliveries of message {key}: {e}")
                return 1

    def _busy_with(self, user: str) -> bool:
        with self._changed:
            if self._running[user] > 0:
                return True
        return self.pending.has(user)

    def _start(self, cmsg: WechatMPMessage, attempt: int, arrived: float) -> str | None:
        """Take a new question. None: go on and wait for its answer; a text: answer that instead
        ("" for "success")."""
        if self._is_duplicate(cmsg):
            return None  # accepted before (WeChat again, or a restart): its answer is awaited
        kwargs: dict[str, Any] = {"isgroup": False, "msg": cmsg, "wechatmp_job": True}
        if cmsg.recognized_voice and conf().get("voice_reply_voice"):
            kwargs["desire_rtype"] = ReplyType.VOICE
        self._job_begins(cmsg.from_user_id)  # before produce: the answer may be done before it returns
        accepted = False
        try:
            context = self._compose_context(cmsg.ctype, cmsg.content, **kwargs)
            if context is None:
                return self._dropped_hint(cmsg)
            result = self.produce(context)
            accepted = result is Produced.ACCEPTED
        finally:
            if not accepted:
                self._job_ends(cmsg.from_user_id)
        if result in (Produced.ACCEPTED, Produced.DUPLICATE):
            return None
        if result is Produced.BUSY:
            return refusal_text(BUSY_TEXT_ZH, BUSY_TEXT_EN, cmsg.content, cmsg.ctype)
        # Not stored (or stopping): nothing was acknowledged. Silence past WeChat's cut makes it
        # deliver again, when the store may take it; the last delivery says so.
        if attempt < DELIVERIES:
            self._sleep_until(arrived + WAIT + OVERRUN)
            return ""
        return refusal_text(NOT_STORED_TEXT_ZH, NOT_STORED_TEXT_EN, cmsg.content, cmsg.ctype)

    def _dropped_hint(self, cmsg: WechatMPMessage) -> str:
        """What to say when the rules drop a message: how to address the bot, when a prefix is needed."""
        prefixes = conf().get("single_chat_prefix") or [""]
        prefix = str(prefixes[0] or "")
        if prefix and cmsg.ctype == ContextType.TEXT and not self._is_black_listed(cmsg.from_user_nickname):
            return PREFIX_HINT.format(prefix=prefix)
        return ""

    def _collect(self, fields: dict[str, str], user: str, attempt: int, arrived: float) -> str | None:
        """Wait for the user's answer (up to WAIT after the delivery arrived) and give the next piece."""
        deadline = arrived + WAIT
        with self._changed:
            while self._running[user] > 0 and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            still_running = self._running[user] > 0
        if still_running:
            if attempt < DELIVERIES:
                self._sleep_until(arrived + WAIT + OVERRUN)  # WeChat cuts at 5 s and delivers again
                return None
            return self._text(fields, THINKING_TEXT)
        if time.monotonic() - arrived > LATE_TO_HAND_OUT:
            # WeChat has cut this delivery (or is about to): an answer handed to it would be lost.
            return None
        try:
            item = self.pending.pop(user)
        except Exception as e:
            logger.error(f"[wechatmp] could not read the waiting answers of {user}: {e}")
            return None
        if item is None:
            return None
        kind, payload = item
        logger.info(f"[wechatmp] {kind} answer given to {user} (delivery {attempt})")
        if kind == "text":
            return self._text(fields, payload)
        # The material was only needed for this reply (the account's library is limited).
        self.materials.shown(payload)
        return reply_xml.media_reply(user, fields.get("ToUserName", ""), kind, payload)

    @staticmethod
    def _sleep_until(moment: float) -> None:
        time.sleep(max(0.0, moment - time.monotonic()))

    @staticmethod
    def _text(fields: dict[str, str], text: str) -> str:
        return reply_xml.text_reply(fields.get("FromUserName", ""), fields.get("ToUserName", ""), text)

    def _on_event(self, fields: dict[str, str]) -> str | None:
        event = fields.get("Event", "")
        logger.info(f"[wechatmp] event {event[:30]} from {fields.get('FromUserName')}")
        # A follow through a parameter QR code is `subscribe` with EventKey qrscene_... (subscribe_scan).
        if event == "subscribe" and subscribe_msg():
            return self._text(fields, subscribe_msg())
        return None

    # ================================================================== questions in flight
    def _job_begins(self, user: str) -> None:
        with self._changed:
            self._running[user] += 1

    def _job_ends(self, user: str) -> None:
        with self._changed:
            self._running[user] -= 1
            if self._running[user] <= 0:
                del self._running[user]
            self._changed.notify_all()

    def _handle(self, context: Context) -> None:
        try:
            super()._handle(context)
        finally:
            if context is not None and context.get("wechatmp_job"):
                self._job_ends(str(context.get("receiver")))

    def cancel_session(self, session_id: str) -> list[Context]:
        return self._jobs_dropped(super().cancel_session(session_id))

    def cancel_all_session(self) -> list[Context]:
        return self._jobs_dropped(super().cancel_all_session())

    def _jobs_dropped(self, dropped: list[Context]) -> list[Context]:
        # A question dropped from the queue (#reset) is never handled: its user must not wait for it.
        for context in dropped:
            if context.get("wechatmp_job"):
                self._job_ends(str(context.get("receiver")))
        return dropped

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WechatMPMessage):
            return super().message_to_record(cmsg)
        return {"wechatmp": cmsg.fields}

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wechatmp" not in record:
            return super().record_to_message(record)
        cmsg = WechatMPMessage(record["wechatmp"], self._download)
        # Rebuilt for the inbox kept from the last run: its answer is on the way again.
        self._job_begins(cmsg.from_user_id)
        return cmsg

    def _download(self, media_id: str, max_bytes: int) -> bytes:
        data, _kind = self.api.download("media/get", {"media_id": media_id}, max_bytes)
        return data

    # ================================================================== answers out
    def send(self, reply: Reply, context: Context) -> None:
        """Passive mode: the answer waits for the user's next callback (media uploaded first)."""
        user = str(context.get("receiver"))
        if reply.type in _TEXT_TYPES:
            self.pending.add(user, "text", remove_markdown_symbol(str(reply.content)))
            logger.info(f"[wechatmp] text answer for {user} waits for the next message")
            return
        try:
            uploaded = self._upload_reply(reply, permanent=True)
        except Exception as e:
            line = mp_api.explain(e)
            if line is None:
                raise  # the pipeline retries and logs
            # No retry helps (quota, an account not authorised for material): say why, once.
            logger.error(f"[wechatmp] {reply.type} answer for {user} not uploaded: {line}")
            return
        for kind, media_id, _permanent in uploaded:
            self.pending.add(user, kind, media_id)
            logger.info(f"[wechatmp] {kind} answer for {user} uploaded ({media_id}), waits for the next message")

    def _upload_reply(self, reply: Reply, *, permanent: bool) -> list[tuple[str, str, bool]]:
        """(kind, media id, whether it is permanent material) of each piece of a media reply, uploaded.
        Temporary media takes voice only as AMR or MP3: other voice goes as (permanent) material,
        which is recorded for deletion (materials.py)."""
        pieces = []
        for kind, name, data in self._reply_files(reply):
            keep = permanent or (kind == "voice" and not name.lower().endswith((".amr", ".mp3")))
            media_id = mp_api.upload(self.api, kind, name, data, permanent=keep)
            if keep:
                self.materials.uploaded(media_id)
            pieces.append((kind, media_id, keep))
        return pieces

    @staticmethod
    def _reply_files(reply: Reply) -> list[tuple[str, str, bytes]]:
        """(kind, file name, bytes) of each piece of a media reply."""
        if reply.type == ReplyType.VOICE:
            return [("voice", path, data) for path, data in _voice_pieces(str(reply.content))]
        if reply.type in (ReplyType.IMAGE, ReplyType.IMAGE_URL):
            data = _media_bytes(reply)
            return [("image", f"image.{mp_api.image_suffix(data)}", data)]
        if reply.type in (ReplyType.VIDEO, ReplyType.VIDEO_URL):
            return [("video", "video.mp4", _media_bytes(reply))]
        raise NotImplementedError(f"an Official Account cannot send {reply.type}")


def _media_bytes(reply: Reply) -> bytes:
    return read_reply_media(reply, MEDIA_MAX_BYTES)[0]


def _voice_pieces(path: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each ≤60 s piece of a voice file, in a format WeChat takes."""
    from voice.audio_convert import any_to_wav, split_audio

    if os.path.splitext(path)[1].lower() not in (".mp3", ".amr", ".wav"):
        wav = os.path.splitext(path)[0] + ".wav"
        any_to_wav(path, wav)
        path = wav
    try:
        _duration, files = split_audio(path, VOICE_PIECE_MS)
    except Exception as e:  # a format split_audio cannot decode (AMR): sent whole
        logger.warning(f"[wechatmp] voice not split ({e}); sending it whole")
        files = [path]
    pieces = []
    for piece in files:
        with open(piece, "rb") as f:
            pieces.append((os.path.basename(piece), f.read()))
        if piece != path:  # the pieces split_audio wrote are read: tmp/ keeps only the reply's file
            os.remove(piece)
    return pieces
