"""Channel `wx` (also `weixin`): personal WeChat through Tencent's official iLink bot API
(reference/personal-wechat.md §1). The original's `wx` drove web WeChat (itchat), which WeChat
now blocks; users of the name want "connect my WeChat by QR", which iLink gives.

What the user gets: scanning the QR adds a bot contact to their WeChat, and whoever writes to
that contact talks to the bot, one-to-one. There are no groups on iLink, so the group settings
do nothing here (start-up names those that are set).

Durability, all in the state store:
* the login (bot token, bot id, the API host WeChat named at login): a restart does not ask for
  a new scan; when WeChat says the token is stale (-14) it is dropped and a new QR is shown;
* the getupdates cursor, saved only after every message of a batch is in the inbox (ChatChannel
  .produce, with its message id as dedup key): a crash before the save brings the batch again,
  and its messages are then recognised; a restart after the save replays nothing;
* the latest context_token of each user, which every reply must carry: saved when a message
  arrives, so an answer kept over a restart can still be sent.

One thread polls (getupdates long-poll); media are fetched from the CDN and decrypted before the
message is queued (their addresses do not outlive the message by much). Answers are sent by the
pipeline's workers through sendmessage.
"""
from __future__ import annotations

import os
import re
import threading

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel_factory import ChannelError
from channel.chat_channel import ChatChannel, Produced
from channel.reply_media import read_reply_media, with_extension
from channel.wechat import ilink_media
from channel.wechat.ilink_api import (UPLOAD_FILE, UPLOAD_IMAGE, UPLOAD_VIDEO, IlinkClient, IlinkError,
                                      MediaTooLarge)
from channel.wechat.ilink_login import Credentials, QrLogin
from channel.wechat.instance_lock import AlreadyRunning, InstanceLock
from channel.wechat.wx_message import USER_MESSAGE, Malformed, Part, WxMessage, message_id, parts_of, sender_of
from common import fetch
from common.log import logger
from common.tmp_dir import unique_tmp_path
from config import SETTINGS, conf, get_appdata_dir

LOCK_FILE = "wx.lock"
LOGIN_NAMESPACE = "wx:login"
LOGIN_KEY = "account"
CURSOR_NAMESPACE = "wx:cursor"
CURSOR_KEY = "getupdates"
TOKEN_NAMESPACE = "wx:context_token"
TOKEN_TTL = 7 * 24 * 3600  # WeChat takes replies for about 24 h after the user's last message
TEXT_LIMIT = 4000  # characters in one sendmessage text
RETRY_MAX = 30.0
RELOGIN_PAUSE = 300.0  # after a login round nobody completed
QR_REFRESHES = 10
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be received; please send it again)"
TOO_BIG_TEXT = "文件太大，无法接收 (the file is too large to receive)"
TOO_BIG_OUT_TEXT = "文件太大，无法发送 (the file is too large to send)"
_SUFFIX = {"image": "", "voice": ".silk", "video": ".mp4", "file": ""}
_UPLOADS = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.FILE: "file",
            ReplyType.VOICE: "file", ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video"}
# Settings of the original that only mean something in groups (iLink has none).
GROUP_ONLY_SETTINGS = ("group_chat_prefix", "group_chat_keyword", "group_at_off", "group_name_white_list",
                       "group_name_keyword_white_list", "group_chat_in_one_session", "group_chat_reply_prefix",
                       "group_chat_reply_suffix", "group_speech_recognition", "group_welcome_msg",
                       "group_chat_exit_group", "group_exit_msg", "no_need_at", "hot_reload")


def _number(key: str, default: float) -> float:
    try:
        return float(conf().get(key))
    except (TypeError, ValueError):
        return default


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at a blank line, else a line end."""
    pieces = []
    while len(text) > limit:
        cut = text.rfind("\n\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text or not pieces:
        pieces.append(text)
    return pieces


def shown(msg: object) -> str:
    """An update as the log shows it: without its context_token (a reply credential)."""
    if isinstance(msg, dict):
        msg = {k: ("***" if k == "context_token" else v) for k, v in msg.items()}
    return str(msg)[:300]


class WxChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # The bot is a contact of its own: whatever is said to it is meant for it.
    PRIVATE_NEEDS_PREFIX = False
    # A message the store could not take stays after the kept cursor: WeChat brings it again.
    NOT_STORED_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        self.api_base = str(conf().get("wx_ilink_api_base") or "").strip()
        self.cdn_base = str(conf().get("wx_ilink_cdn_base") or "").strip()
        self.poll_wait = _number("wx_ilink_poll_timeout", 35.0)
        self.retry_delay = _number("wx_ilink_retry_delay", 2.0)
        self.media_max = int(_number("wx_media_max_bytes", 20 * 1024 * 1024))
        self.client: IlinkClient | None = None
        self.creds: Credentials | None = None
        self._stopping = threading.Event()
        self._logged_in = threading.Event()
        self._tokens: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._lock: InstanceLock | None = None

    # ================================================================== lifecycle
    def startup(self) -> None:
        self._lock = InstanceLock(os.path.join(get_appdata_dir(), LOCK_FILE))
        try:
            self._lock.acquire()
        except AlreadyRunning:
            raise ChannelError(f"another daemon is running with this WeChat login (it holds "
                               f"{self._lock.path}); stop it first, or give this one its own appdata_dir") from None
        self._report_ignored_settings()
        self._thread = threading.Thread(target=self._run, name="wx-ilink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
        if self._lock is not None:
            self._lock.release()

    @property
    def state(self) -> str:
        return "logged in" if self._logged_in.is_set() else "logging in"

    def _report_ignored_settings(self) -> None:
        ignored = [key for key in GROUP_ONLY_SETTINGS if conf().get(key) != SETTINGS[key][0]]
        if ignored:
            logger.warning(f"[wx] WeChat's iLink bot talks one-to-one only, so these group settings are ignored: "
                           f"{', '.join(ignored)}")

    def _run(self) -> None:
        try:
            creds = Credentials.from_record(self._store_get(LOGIN_NAMESPACE, LOGIN_KEY))
            if creds is not None:
                logger.info(f"[wx] using the saved login of bot {creds.bot_id} (no scan needed)")
            else:
                creds = self._login()
            if creds is None:
                return
            self._use(creds)
            # Messages accepted before the last stop are queued before new ones are taken.
            self.resume_inbox()
            logger.info("[wx] ready, handling messages")
            self._poll_loop()
        except Exception:
            logger.exception("[wx] the WeChat thread stopped")

    def _login(self) -> Credentials | None:
        """A QR login, tried again after a pause until someone completes one (or the daemon stops)."""
        client = IlinkClient(self.api_base, self.cdn_base)
        while not self._stopping.is_set():
            login = QrLogin(client, wait=self.poll_wait, timeout=_number("wx_ilink_login_timeout", 480.0),
                            refreshes=QR_REFRESHES, stop=self._stopping)
            creds = login.run()
            if creds is not None:
                self._store_put(LOGIN_NAMESPACE, LOGIN_KEY, creds.to_record())
                return creds
            if self._stopping.is_set():
                break
            logger.error(f"[wx] nobody logged in; a new QR in {RELOGIN_PAUSE:g} s (restart to get one now)")
            self._stopping.wait(RELOGIN_PAUSE)
        return None

    def _use(self, creds: Credentials) -> None:
        self.creds = creds
        self.user_id = creds.bot_id
        # The API host WeChat named at login replaces the configured one.
        self.client = IlinkClient(creds.base_url or self.api_base, self.cdn_base, creds.token)
        self._logged_in.set()

    def _expired(self) -> bool:
        """WeChat said the token is stale (-14): forget it and log in again by QR."""
        logger.error("[wx] WeChat says the login expired (-14): scan the new QR to log in again "
                     "(messages are not received until then)")
        self._logged_in.clear()
        self._store_delete(LOGIN_NAMESPACE, LOGIN_KEY)
        creds = self._login()
        if creds is None:
            return False
        self._use(creds)
        return True

    # ================================================================== receiving
    def _poll_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            cursor = self._store_get(CURSOR_NAMESPACE, CURSOR_KEY) or ""
            try:
                answer = self.client.get_updates(cursor, self.poll_wait)
            except Exception as e:
                if isinstance(e, IlinkError) and e.expired:
                    if not self._expired():
                        return
                    failures = 0
                    continue
                failures += 1
                delay = min(RETRY_MAX, self.retry_delay * 2 ** (failures - 1))
                logger.error(f"[wx] receiving failed ({e if isinstance(e, IlinkError) else repr(e)}); "
                             f"trying again in {delay:g} s")
                self._stopping.wait(delay)
                continue
            if failures:
                logger.info("[wx] receiving works again")
            failures = 0
            msgs = answer.get("msgs")
            if msgs is None:
                msgs = []
            if not isinstance(msgs, list):
                logger.warning(f"[wx] getupdates gave msgs as a {type(msgs).__name__}, not a list: ignored")
                msgs = []
            # Every reply carries the newest token of its user, even a notice about an earlier
            # message of the same batch.
            for msg in msgs:
                if isinstance(msg, dict) and isinstance(msg.get("context_token"), str) and msg["context_token"]:
                    sender = msg.get("from_user_id")
                    if isinstance(sender, str) and sender:
                        self._remember_token(sender, msg["context_token"])
            if not self._take_all(msgs):
                # The cursor stays before what was not taken; asked again after a pause.
                self._stopping.wait(self.retry_delay)
                continue
            new_cursor = answer.get("get_updates_buf")
            if isinstance(new_cursor, str) and new_cursor and new_cursor != cursor:
                self._store_put(CURSOR_NAMESPACE, CURSOR_KEY, new_cursor)

    def _take_all(self, msgs: list) -> bool:
        for msg in msgs:
            if self._stopping.is_set():
                return False
            try:
                if not self.take(msg):
                    return False
            except Exception:
                logger.exception(f"[wx] an update could not be handled: {shown(msg)}")
        return True

    def take(self, msg: object) -> bool:
        """Take one update through the pipeline. False when a part could not be stored (the
        cursor must not pass it); a malformed update is logged and passed."""
        try:
            sender = sender_of(msg)
            if msg.get("message_type") != USER_MESSAGE:
                logger.debug(f"[wx] update of type {msg.get('message_type')!r} skipped")
                return True
            msg_id = message_id(msg)
            parts = parts_of(msg)
        except Malformed as e:
            logger.warning(f"[wx] a malformed update skipped: {e}: {shown(msg)}")
            return True
        for n, part in enumerate(parts):
            cmsg = WxMessage(msg, part, self.creds.bot_id if self.creds else "", first=n == 0)
            if part.ctype == ContextType.VOICE and not conf().get("speech_recognition"):
                logger.info(f"[wx] voice message {msg_id} without WeChat's transcript skipped (speech_recognition off)")
                continue
            extra = {"origin_ctype": ContextType.VOICE} if part.kind == "voice" and part.ctype == ContextType.TEXT else {}
            # Composed (rules, dedup) before a media file is fetched: a re-delivery costs nothing.
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=False, msg=cmsg, **extra)
            if context is None:
                continue
            if part.ctype != ContextType.TEXT:
                path = self._fetch_media(cmsg, context)
                if path is None:
                    # The user was told; a re-delivery is not fetched (and told) again.
                    dedup = context.__dict__.pop("_pending_dedup", None)
                    if dedup is not None:
                        self._remember(dedup)
                    continue
                cmsg.content = context.content = path
            if self.produce(context) in (Produced.NOT_STORED, Produced.STOPPING):
                return False
        return True

    def _fetch_media(self, cmsg: WxMessage, context: Context) -> str | None:
        part: Part = cmsg.part
        try:
            key = ilink_media.parse_key(part.aeskey)
            data = self.client.download(part.media, self.media_max + ilink_media.BLOCK)
            plain = ilink_media.decrypt(data, key)
            if len(plain) > self.media_max:
                raise MediaTooLarge(self.media_max, "download")
        except MediaTooLarge:
            logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} is over wx_media_max_bytes "
                         f"({self.media_max}): refused")
            self._tell(context, TOO_BIG_TEXT)
            return None
        except (IlinkError, ValueError) as e:
            logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} could not be received: {e}")
            self._tell(context, MEDIA_FAILED_TEXT)
            return None
        if part.kind == "file":
            name = re.sub(r"[\x00-\x1f<>:\"|?*/\\]", "_", os.path.basename(part.file_name.replace("\\", "/")))[:120]
            suffix = "-" + name if name else ""
        elif part.kind == "image":
            suffix = with_extension("x", plain, ".jpg")[1:]
        else:
            suffix = _SUFFIX[part.kind]
        path = unique_tmp_path(suffix)
        with open(path, "wb") as f:
            f.write(plain)
        logger.debug(f"[wx] {part.kind} of message {cmsg.msg_id}: {len(plain)} bytes -> {path}")
        return path

    def _tell(self, context: Context, text: str) -> None:
        """A short notice about a message that cannot be handled (nothing is dropped silently)."""
        self._send(Reply(ReplyType.ERROR, text), context)

    # ================================================================== context tokens
    def _remember_token(self, user: str, token: str) -> None:
        if self._tokens.get(user) == token:
            return
        self._tokens[user] = token
        self._store_put(TOKEN_NAMESPACE, user, token, TOKEN_TTL)

    def _token_for(self, user: str, context: Context) -> str:
        token = self._tokens.get(user) or self._store_get(TOKEN_NAMESPACE, user)
        if isinstance(token, str) and token:
            self._tokens[user] = token
            return token
        own = getattr(context.get("msg"), "context_token", "")
        return own if isinstance(own, str) else ""

    # ================================================================== sending
    def send(self, reply: Reply, context: Context) -> None:
        if self.client is None or not self._logged_in.is_set():
            raise RuntimeError("not logged in to WeChat (yet)")
        user = str(context.get("receiver") or "")
        token = self._token_for(user, context)
        if not token:
            logger.error(f"[wx] no context_token for {user}: WeChat only takes replies to someone who wrote to the "
                         f"bot; the {reply.type} reply is dropped")
            return
        try:
            if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
                self.send_pieces(reply, split_text(str(reply.content)), lambda piece: self.client.send_message(
                    user, [{"type": 1, "text_item": {"text": piece}}], token))
            elif reply.type in _UPLOADS:
                self._send_media(reply, user, token)
            else:
                raise NotImplementedError(f"WeChat (iLink) cannot send {reply.type}")
        except IlinkError as e:
            if e.window_closed:
                logger.error(f"[wx] WeChat refused the reply to {user} (-2: the reply window is closed, about 24 h "
                             f"after the user's last message, or the bot is rate-limited); it is dropped")
                return
            if e.expired:
                logger.error("[wx] WeChat says the login expired (-14) while sending; the next QR login fixes it")
            raise
        logger.info(f"[wx] sent {reply.type} to {user}")

    def _send_media(self, reply: Reply, user: str, token: str) -> None:
        kind = _UPLOADS[reply.type]
        try:
            data, name = read_reply_media(reply, self.media_max, "media")
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[wx] {reply.type} not read ({e}); sending the link")
            self.client.send_message(user, [{"type": 1, "text_item": {"text": str(reply.content)}}], token)
            return
        if len(data) > self.media_max:
            logger.warning(f"[wx] {reply.type} over wx_media_max_bytes ({self.media_max}), not sent")
            link = str(reply.content) if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL) else TOO_BIG_OUT_TEXT
            self.client.send_message(user, [{"type": 1, "text_item": {"text": link}}], token)
            return
        upload_type = {"image": UPLOAD_IMAGE, "video": UPLOAD_VIDEO, "file": UPLOAD_FILE}[kind]
        media = self.client.upload(data, upload_type, user)
        plain_size, cipher_size = media.pop("_plain_size"), media.pop("_cipher_size")
        if kind == "image":
            item = {"type": 2, "image_item": {"media": media, "mid_size": cipher_size}}
        elif kind == "video":
            item = {"type": 5, "video_item": {"media": media, "video_size": cipher_size}}
        else:
            item = {"type": 4, "file_item": {"media": media, "file_name": with_extension(name, data, ""),
                                             "len": str(plain_size)}}
        self.client.send_message(user, [item], token)

    # ================================================================== the state store
    @staticmethod
    def _store_get(namespace: str, key: str):
        store = conf().state_store
        if store is None:
            return None
        try:
            return store.get(namespace, key)
        except Exception as e:
            logger.error(f"[wx] the state store could not read {namespace}: {e}")
            return None

    @staticmethod
    def _store_put(namespace: str, key: str, value, ttl: float | None = None) -> None:
        store = conf().state_store
        if store is None:
            return
        try:
            store.put(namespace, key, value, ttl)
        except Exception as e:
            logger.error(f"[wx] the state store could not save {namespace}: {e}")

    @staticmethod
    def _store_delete(namespace: str, key: str) -> None:
        store = conf().state_store
        if store is None:
            return
        try:
            store.delete(namespace, key)
        except Exception as e:
            logger.error(f"[wx] the state store could not delete {namespace}: {e}")
