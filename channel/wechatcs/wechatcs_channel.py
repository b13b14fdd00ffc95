"""Channel `wechatcom_service`: WeCom customer service (微信客服), reference/channel-protocols.md §3.

WeChat users talk to a customer-service account (open_kfid); WeCom POSTs an encrypted
`kf_msg_or_event` callback to `/wxcomapp` (callback.py), the messages are pulled with a cursor
kept per account (kf_sync.py), and the answers go back through `kf/send_msg` (kf_send.py). The
settings are the WeCom app's, as in the original: wechatcom_corp_id, wechatcomapp_token,
wechatcomapp_aes_key, wechatcomapp_secret (an app allowed to call the customer-service API) and
wechatcomapp_port.

Messages go through the pipeline's durable accept path: each is in the state store's inbox
(with its msgid as dedup key) before the cursor that passed it is saved, is rebuilt from its
record after a restart (resume_inbox), and is marked answered once its answer went out.
"""
from __future__ import annotations

import io
from typing import Any

from bridge.context import Context
from bridge.reply import Reply, ReplyType
from channel.answered_marks import AnsweredMarks
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.wechatcs.callback import LABEL, KfCallback
from channel.wechatcs.kf_message import UnsupportedItem, WechatCsMessage
from channel.wechatcs.kf_send import BudgetRefused, KfSender
from channel.wechatcs.kf_sync import KfPuller, too_old
from channel.reply_media import read_reply_media
from common import fetch
from common.log import logger
from common.utils import compress_imgfile
from common.wechat_api import WechatApi, WechatApiError
from common.wechat_callback import Envelope
from config import ConfigError, conf

ANSWERED_NAMESPACE = "wechatcs:answered"
ANSWERED_TTL = 3 * 24 * 3600  # the platform's sync window: nothing older comes back
ANSWERED = AnsweredMarks(ANSWERED_NAMESPACE, ANSWERED_TTL, LABEL)
REPLY_WINDOW = 48 * 3600  # a customer can be answered this long after their message
# With no cursor yet (a new deployment), sync_msg returns up to 3 days of history: only the
# recent part of it is answered, not every old question at once.
FIRST_PULL_MAX_AGE = 30 * 60
MEDIA_IN_MAX = 20 * 1024 * 1024  # the largest media a customer can send (files: 20 MB)
MEDIA_OUT_MAX = 20 * 1024 * 1024
IMAGE_MAX = 10 * 1024 * 1024
_TEXT = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)
_KINDS = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.VOICE: "voice",
          ReplyType.FILE: "file", ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video"}
_NAMES = {"image": "image.jpg", "voice": "voice.amr", "video": "video.mp4", "file": "file"}
SETTINGS = (
    ("wechatcom_corp_id", "the corp id (企业ID)"),
    ("wechatcomapp_secret", "the Secret of an app allowed to call the customer-service API"),
    ("wechatcomapp_token", "the callback Token"),
    ("wechatcomapp_aes_key", "the callback EncodingAESKey"),
)


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


class WechatComServiceChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # Customers write to the account directly: every message is meant for the bot.
    PRIVATE_NEEDS_PREFIX = False
    # A message the queues or the store cannot take stays behind the cursor and is pulled again
    # later (kf_sync's retry): no refusal text, which would also spend the customer's 5 messages.
    REFUSAL_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        self.api: WechatApi | None = None
        self.sender: KfSender | None = None
        self.puller: KfPuller | None = None
        self.callback: KfCallback | None = None

    # ================================================================== lifecycle
    def startup(self) -> None:
        missing = [f"{key} ({what})" for key, what in SETTINGS if not _setting(key)]
        if missing:
            raise ConfigError(f"channel_type wechatcom_service needs {'; '.join(missing)}")
        corp_id = _setting("wechatcom_corp_id")
        try:
            envelope = Envelope(_setting("wechatcomapp_token"), _setting("wechatcomapp_aes_key"), corp_id)
        except ValueError as e:
            raise ConfigError(f"wechatcomapp_aes_key is not a WeCom EncodingAESKey ({e})") from None
        store = conf().state_store
        if store is None:
            raise ConfigError("channel_type wechatcom_service needs a state store (state_store) for its sync cursors")
        self.api = WechatApi(_setting("wechatcom_api_base") or "https://qyapi.weixin.qq.com",
                             ("gettoken", {"corpid": corp_id, "corpsecret": _setting("wechatcomapp_secret")}),
                             label=LABEL)
        self.sender = KfSender(self.api, LABEL)
        self.puller = KfPuller(self.api, store, self._take, LABEL)
        self.callback = KfCallback(self, envelope, corp_id)
        # Messages kept from the last run are queued before any new one is pulled.
        self.resume_inbox()
        self.callback.start()
        self.puller.start()
        # Messages that arrived while the daemon was down (their callbacks failed) are pulled now.
        for open_kfid in self.puller.known_accounts():
            self.puller.notify(open_kfid, None)
        logger.info(f"[{LABEL}] ready, handling messages")

    def stop(self) -> None:
        if self.puller is not None:
            self.puller.stop()
        if self.callback is not None:
            self.callback.stop()
        super().stop()

    # ================================================================== messages in
    def _take(self, item: Any, first_seen: float | None) -> bool:
        """One sync_msg item through the pipeline; False when it was not taken (not stored, or the
        queues are full) and the cursor must stay before it. `first_seen`: when the account was
        first announced, while it has no cursor yet (else None)."""
        try:
            cmsg = WechatCsMessage(item, self._download)
        except UnsupportedItem as e:
            logger.debug(f"[{LABEL}] item {item.get('msgid') if isinstance(item, dict) else ''} skipped: {e}")
            return True
        if first_seen is not None and too_old(item, FIRST_PULL_MAX_AGE, now=first_seen):
            logger.info(f"[{LABEL}] message {cmsg.msg_id} of {cmsg.external_userid} skipped: sent more than "
                        f"{FIRST_PULL_MAX_AGE // 60} minutes before the account was first seen")
            return True
        if too_old(item, REPLY_WINDOW):
            logger.info(f"[{LABEL}] message {cmsg.msg_id} of {cmsg.external_userid} skipped: sent more than 48 h ago, "
                        f"it cannot be answered")
            return True
        if ANSWERED.contains(cmsg.msg_id):
            return True  # answered before (its dedup key may have expired; this mark lasts longer)
        context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=False, msg=cmsg)
        result = self.produce(context)
        logger.debug(f"[{LABEL}] {cmsg.msgtype} message {cmsg.msg_id} of {cmsg.external_userid}: {result.value}")
        return result not in (Produced.NOT_STORED, Produced.STOPPING, Produced.BUSY)

    def _download(self, media_id: str, path: str) -> None:
        data, _ = self.api.download("media/get", {"media_id": media_id}, MEDIA_IN_MAX)
        with open(path, "wb") as f:
            f.write(data)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WechatCsMessage):
            return super().message_to_record(cmsg)
        return {"wechatcs": cmsg.item, "path": cmsg.content if cmsg.media_id else None}

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wechatcs" not in record:
            return super().record_to_message(record)
        return WechatCsMessage(record["wechatcs"], self._download, record.get("path"))

    def already_answered(self, context: Context) -> bool:
        cmsg = context.get("msg")
        return isinstance(cmsg, WechatCsMessage) and ANSWERED.contains(cmsg.msg_id)

    def _handle(self, context: Context) -> None:
        try:
            super()._handle(context)
        finally:
            cmsg = context.get("msg") if context is not None else None
            if isinstance(cmsg, WechatCsMessage):
                # Each answer spends the customer's 5-message budget: not answered twice after a crash.
                ANSWERED.add(cmsg.msg_id)

    # ================================================================== answers out
    def send(self, reply: Reply, context: Context) -> None:
        cmsg = context.get("msg")
        if not isinstance(cmsg, WechatCsMessage):
            raise NotImplementedError("a customer-service answer needs the customer's message (its open_kfid)")
        try:
            if reply.type in _TEXT:
                self.sender.send_text(cmsg.external_userid, cmsg.open_kfid, str(reply.content))
            elif reply.type in _KINDS:
                self._send_media(reply, cmsg)
            else:
                raise NotImplementedError(f"customer service cannot send {reply.type}")
        except BudgetRefused:
            return  # logged by the sender; a retry cannot help
        logger.info(f"[{LABEL}] sent {reply.type} to {cmsg.external_userid}")

    def _send_media(self, reply: Reply, cmsg: WechatCsMessage) -> None:
        kind = _KINDS[reply.type]
        try:
            data, name = self._media_bytes(reply, kind)
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[{LABEL}] {reply.type} could not be read ({e})")
            if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL):
                self.sender.send_text(cmsg.external_userid, cmsg.open_kfid, str(reply.content))
            return
        if kind == "voice" and not name.lower().endswith(".amr"):
            kind = "file"  # WeCom takes AMR voice only, and there is no AMR encoder here
        if kind == "image" and len(data) >= IMAGE_MAX:
            data = _bytes(compress_imgfile(io.BytesIO(data), IMAGE_MAX - 1))
        try:
            self.sender.send_media(cmsg.external_userid, cmsg.open_kfid, kind, name, data)
        except WechatApiError as e:
            if e.path != "media/upload":
                raise
            logger.warning(f"[{LABEL}] {reply.type} upload refused: {e}")
            if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL):
                self.sender.send_text(cmsg.external_userid, cmsg.open_kfid, str(reply.content))

    @staticmethod
    def _media_bytes(reply: Reply, kind: str) -> tuple[bytes, str]:
        return read_reply_media(reply, MEDIA_OUT_MAX, _NAMES[kind])


def _bytes(file: Any) -> bytes:
    if isinstance(file, (bytes, bytearray)):
        return bytes(file)
    file.seek(0)
    return file.read()
