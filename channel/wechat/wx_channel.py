"""Channel `wx` (also `weixin`): personal WeChat through Tencent's official iLink bot API
(reference/personal-wechat.md §1). The original's `wx` drove web WeChat (itchat), which WeChat
now blocks; users of the name want "connect my WeChat by QR", which iLink gives.

What the user gets: scanning the QR adds a bot contact to their WeChat, and whoever writes to
that contact talks to the bot, one-to-one. There are no groups on iLink, so the group settings
do nothing here (start-up names those that are set).

Durability, all in the state store:
* the login (bot token, bot id, the API host WeChat named at login): a restart does not ask for
  a new scan; when WeChat says the token is stale (-14) it is dropped and a new QR is shown;
* the getupdates cursor of the bot (read once at start, then kept in memory and only written),
  saved only after every message of a batch is in the inbox (ChatChannel.produce, with its
  message id as dedup key): a crash before the save brings the batch again, and its messages
  are then recognised; a restart after the save replays nothing. A cursor belongs to its bot:
  a login by another WeChat (another bot id) starts from an empty one, as does a cursor the
  server keeps refusing;
* the latest context_token of each user, which every reply must carry: saved when a message
  arrives, so an answer kept over a restart can still be sent (and forgotten with the bot).

One thread polls (getupdates long-poll) and only stores: a media part keeps its CDN reference in
the inbox and is fetched and decrypted by the worker that handles it (WxMessage.prepare), so one
slow file never stops receiving, and a message kept over a restart is fetched then. Notices the
poll thread would send (a full queue) go out from a thread of their own. Answers are sent by the
pipeline's workers through sendmessage; while a -14 re-login waits for its scan, they wait for
it (up to wx_ilink_login_timeout) instead of failing.
"""
from __future__ import annotations

import queue
import threading
import time

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.login_qr import LOGIN_QRS
from channel.reply_media import read_reply_media, with_extension
from channel.wechat import ilink_media
from channel.wechat.ilink_api import (UPLOAD_FILE, UPLOAD_IMAGE, UPLOAD_VIDEO, IlinkClient, IlinkError,
                                      MediaTooLarge, new_client_id)
from channel.wechat.ilink_login import Credentials, QrLogin
from channel.wechat.instance_lock import InstanceLock, take_account_lock
from channel.wechat.store_calls import store_delete, store_get, store_put
from channel.wechat.wx_message import USER_MESSAGE, Malformed, Part, WxMessage, message_id, parts_of, sender_of
from common import fetch
from common.log import logger
from config import SETTINGS, conf

WX = "wx"  # the channel's name (also under its alias `weixin`)
LOCK_FILE = "wx.lock"
LOGIN_NAMESPACE = "wx:login"
LOGIN_KEY = "account"
# The login WeChat called stale (-14), kept until a new login replaces it: its token is offered
# in local_token_list, and `binded_redirect` goes on with it.
PREVIOUS_KEY = "previous"
CURSOR_NAMESPACE = "wx:cursor"
CURSOR_KEY = "getupdates"
TOKEN_NAMESPACE = "wx:context_token"
TOKEN_TTL = 7 * 24 * 3600  # WeChat takes replies for about 24 h after the user's last message
TEXT_LIMIT = 4000  # characters in one sendmessage text
RETRY_MAX = 30.0
RETRY_MIN = 0.5  # wx_ilink_retry_delay below this would make a busy loop
# getupdates refused this many times in a row (not -14): the cursor is dropped and the sync
# starts again from an empty one (replayed messages are recognised by their dedup keys).
CURSOR_RESET_AFTER = 5
# An update whose handling raised a programming error this many times is passed over (logged),
# so one poisoned update cannot stop receiving for everyone. Environment errors (tmp/, disk,
# store) are retried without limit: the cursor stays before the update.
POISON_TRIES = 3
_BUG_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError)
MEDIA_TRIES = 3  # downloads of one media file that failed for a passing reason (network, 5xx)
RELOGIN_PAUSE = 300.0  # after a login round nobody completed
QR_REFRESHES = 10
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be received; please send it again)"
MEDIA_LATER_TEXT = ("收到的文件暂时无法下载，请稍后再发一次 (the file could not be fetched from WeChat right now; "
                    "please send it again in a while)")
READ_FAILED_TEXT = "文件没能读取，无法发送 (the file could not be read, so it was not sent)"
TOO_BIG_TEXT = "文件太大，无法接收 (the file is too large to receive)"
TOO_BIG_OUT_TEXT = "文件太大，无法发送 (the file is too large to send)"
_UPLOADS = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.FILE: "file",
            ReplyType.VOICE: "file", ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video"}
# Settings of the original that only mean something in groups (iLink has none).
GROUP_ONLY_SETTINGS = ("group_chat_prefix", "group_chat_keyword", "group_at_off", "group_name_white_list",
                       "group_name_keyword_white_list", "group_chat_in_one_session", "group_chat_reply_prefix",
                       "group_chat_reply_suffix", "group_speech_recognition", "group_welcome_msg",
                       "group_chat_exit_group", "group_exit_msg", "no_need_at", "hot_reload",
                       "group_chat_suffix", "group_userid_black_list")


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


_SECRET_FIELDS = frozenset({"context_token", "aes_key", "aeskey", "encrypt_query_param", "full_url"})


def _masked(value: object, depth: int = 0) -> object:
    if depth > 8:
        return "..."
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_FIELDS else _masked(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, depth + 1) for v in value[:20]]
    return value


def shown(msg: object) -> str:
    """An update as the log shows it: without its context_token (a reply credential) nor the
    keys and addresses of its media."""
    return str(_masked(msg))[:300]


class CursorUnreadable(Exception):
    """The saved cursor could not be read: polling without it would replay or skip messages."""


class MediaUnavailable(Exception):
    """A media file that cannot be fetched; `notice` is what the user is told."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class _Notices:
    """Sends notices for the poll thread, which must not wait through a send's retries."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def submit(self, send, *args) -> None:
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wx-notices", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((send, args))
        except queue.Full:
            logger.error("[wx] too many notices waiting; one is not sent")

    def _run(self) -> None:
        while True:
            send, args = self._queue.get()
            try:
                send(*args)
            except Exception:
                logger.exception("[wx] a notice could not be sent")


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
        self.retry_delay = max(RETRY_MIN, _number("wx_ilink_retry_delay", 2.0))
        self.login_timeout = _number("wx_ilink_login_timeout", 480.0)
        self.media_max = int(_number("wx_media_max_bytes", 20 * 1024 * 1024))
        self.client: IlinkClient | None = None
        self.creds: Credentials | None = None
        self._stopping = threading.Event()
        self._logged_in = threading.Event()
        self._tokens: dict[str, str] = {}
        self._cursor: str | None = None  # None until read from the store
        self._resumed = False
        self._take_failures: dict[str, int] = {}
        self._notices = _Notices()
        self._thread: threading.Thread | None = None
        self._lock: InstanceLock | None = None
        # Before any channel starts: a web page of this daemon then knows to look for the QR.
        LOGIN_QRS.expect(WX)

    # ================================================================== lifecycle
    def startup(self) -> None:
        self._lock = take_account_lock(LOCK_FILE)
        self._report_ignored_settings()
        self._thread = threading.Thread(target=self._run, name="wx-ilink", daemon=True)
        self._thread.start()
        # Held here so that a WeChat thread that cannot go on ends the daemon (non-zero) instead
        # of leaving it up and deaf; signals still reach the main thread between the waits.
        while self._thread.is_alive():
            self._thread.join(1.0)
        if not self._stopping.is_set():
            self.exit_code = self.exit_code or EXIT_PLATFORM_LOST
            self.finished = True

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
        """The WeChat thread: started again (with a growing pause) after an unexpected error;
        ends the daemon when it cannot go on."""
        restarts = 0
        while not self._stopping.is_set():
            try:
                self._session()
                return
            except CursorUnreadable as e:
                logger.error(f"[wx] {e}; not receiving, so the daemon stops (fix the state store and start it again)")
                self.exit_code = EXIT_PLATFORM_LOST
                return
            except Exception:
                restarts += 1
                delay = min(RETRY_MAX, self.retry_delay * 2 ** min(restarts - 1, 10))
                logger.exception(f"[wx] the WeChat thread failed; starting it again in {delay:g} s")
                self._stopping.wait(delay)

    def _session(self) -> None:
        if self.creds is None:
            creds = Credentials.from_record(store_get(LOGIN_NAMESPACE, LOGIN_KEY))
            if creds is not None:
                logger.info(f"[wx] using the saved login of bot {creds.bot_id} (no scan needed)")
            else:
                creds = self._login()
            if creds is None:
                return
            self._use(creds)
        if not self._resumed:
            # Messages accepted before the last stop are queued before new ones are taken.
            self.resume_inbox()
            self._resumed = True
            logger.info("[wx] ready, handling messages")
        if self._cursor is None:
            self._cursor = self._load_cursor()
        self._poll_loop()

    def _login(self, previous: Credentials | None = None) -> Credentials | None:
        """A QR login, tried again after a pause until someone completes one (or the daemon stops)."""
        if previous is None:
            previous = Credentials.from_record(store_get(LOGIN_NAMESPACE, PREVIOUS_KEY))
        client = IlinkClient(self.api_base, self.cdn_base)
        while not self._stopping.is_set():
            login = QrLogin(client, wait=self.poll_wait, timeout=self.login_timeout, refreshes=QR_REFRESHES,
                            stop=self._stopping, previous=previous, channel=WX)
            creds = login.run()
            if creds is not None:
                store_put(LOGIN_NAMESPACE, LOGIN_KEY, creds.to_record())
                store_delete(LOGIN_NAMESPACE, PREVIOUS_KEY)
                return creds
            if self._stopping.is_set():
                break
            logger.error(f"[wx] nobody logged in; a new QR in {RELOGIN_PAUSE:g} s (restart to get one now)")
            self._stopping.wait(RELOGIN_PAUSE)
        return None

    def _use(self, creds: Credentials) -> None:
        if self.creds is not None and self.creds.bot_id != creds.bot_id:
            # Another WeChat scanned: the old bot's cursor and reply tokens mean nothing to this one.
            logger.warning(f"[wx] logged in as another bot ({creds.bot_id}, was {self.creds.bot_id}): receiving starts "
                           f"afresh and the saved reply tokens are dropped")
            self._forget_bot_state(creds.bot_id)
        self.creds = creds
        self.user_id = creds.bot_id
        # The API host WeChat named at login replaces the configured one.
        self.client = IlinkClient(creds.base_url or self.api_base, self.cdn_base, creds.token)
        self._logged_in.set()

    def _forget_bot_state(self, bot_id: str) -> None:
        self._tokens.clear()
        store = conf().state_store
        if store is not None:
            try:
                store.clear(TOKEN_NAMESPACE)
            except Exception as e:
                logger.error(f"[wx] the state store could not drop the old reply tokens: {e}")
        if self._cursor is not None:
            self._set_cursor("", bot_id)

    def _expired(self) -> bool:
        """WeChat said the token is stale (-14): log in again by QR. The dropped login is kept
        (as the previous one) until a new login replaces it."""
        logger.error("[wx] WeChat says the login expired (-14): scan the new QR to log in again "
                     "(messages are not received and answers wait until then)")
        self._logged_in.clear()
        previous = self.creds
        if previous is not None:
            store_put(LOGIN_NAMESPACE, PREVIOUS_KEY, previous.to_record())
        store_delete(LOGIN_NAMESPACE, LOGIN_KEY)
        creds = self._login(previous)
        if creds is None:
            return False
        self._use(creds)
        return True

    # ================================================================== the cursor
    def _load_cursor(self) -> str:
        """The saved cursor of the logged-in bot, read once; raises CursorUnreadable."""
        store = conf().state_store
        if store is None:
            return ""
        try:
            saved = store.get(CURSOR_NAMESPACE, CURSOR_KEY)
        except Exception as e:
            raise CursorUnreadable(f"the state store could not read the receiving cursor ({e})") from None
        bot = self.creds.bot_id if self.creds else ""
        if isinstance(saved, dict):
            if saved.get("bot") != bot:
                if saved.get("buf"):
                    logger.info("[wx] the saved cursor belongs to another bot; receiving starts afresh")
                return ""
            saved = saved.get("buf")
        return saved if isinstance(saved, str) else ""

    def _set_cursor(self, cursor: str, bot_id: str | None = None) -> None:
        self._cursor = cursor
        bot = bot_id if bot_id is not None else (self.creds.bot_id if self.creds else "")
        store_put(CURSOR_NAMESPACE, CURSOR_KEY, {"bot": bot, "buf": cursor})

    # ================================================================== receiving
    def _poll_loop(self) -> None:
        failures = refusals = 0
        while not self._stopping.is_set():
            try:
                answer = self.client.get_updates(self._cursor, self.poll_wait)
            except IlinkError as e:
                if e.expired:
                    if not self._expired():
                        return
                    failures = refusals = 0
                    continue
                failures += 1
                if e.ret is not None:
                    refusals += 1
                    if refusals >= CURSOR_RESET_AFTER and self._cursor:
                        logger.warning(f"[wx] getupdates refused {refusals} times in a row; starting again from an "
                                       f"empty cursor (messages seen before are recognised)")
                        self._set_cursor("")
                        refusals = 0
                delay = self._backoff(failures)
                logger.error(f"[wx] receiving failed ({e}); trying again in {delay:g} s")
                self._stopping.wait(delay)
                continue
            if failures:
                logger.info("[wx] receiving works again")
            failures = refusals = 0
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
                # The cursor stays before what was not taken; asked again after a growing pause.
                failures += 1
                self._stopping.wait(self._backoff(failures))
                continue
            new_cursor = answer.get("get_updates_buf")
            if isinstance(new_cursor, str) and new_cursor and new_cursor != self._cursor:
                self._set_cursor(new_cursor)

    def _backoff(self, failures: int) -> float:
        return min(RETRY_MAX, self.retry_delay * 2 ** min(max(failures - 1, 0), 10))

    def _take_all(self, msgs: list) -> bool:
        for msg in msgs:
            if self._stopping.is_set():
                return False
            try:
                if not self.take(msg):
                    return False
            except Exception as e:
                key = shown(msg)
                if not isinstance(e, _BUG_ERRORS):
                    # tmp/, the disk, the state store: the update stays after the cursor, taken again later.
                    logger.error(f"[wx] an update could not be taken ({type(e).__name__}: {e}); it is taken again "
                                 f"after a pause")
                    return False
                tries = self._take_failures[key] = self._take_failures.get(key, 0) + 1
                if tries < POISON_TRIES:
                    logger.exception(f"[wx] an update could not be taken (try {tries} of {POISON_TRIES}): {key}")
                    return False
                self._take_failures.pop(key, None)
                logger.exception(f"[wx] an update failed {tries} times and is passed over: {key}")
                continue
            if self._take_failures:
                self._take_failures.pop(shown(msg), None)
        return True

    def take(self, msg: object) -> bool:
        """Take one update through the pipeline. False when a part could not be stored (the
        cursor must not pass it); a malformed update is logged and passed."""
        try:
            sender_of(msg)
            if msg.get("message_type") != USER_MESSAGE:
                logger.debug(f"[wx] update of type {msg.get('message_type')!r} skipped")
                return True
            msg_id = message_id(msg)
            parts = parts_of(msg)
        except Malformed as e:
            logger.warning(f"[wx] a malformed update skipped: {e}: {shown(msg)}")
            return True
        for n, part in enumerate(parts):
            if part.ctype == ContextType.VOICE and not conf().get("speech_recognition"):
                logger.info(f"[wx] voice message {msg_id} without WeChat's transcript skipped (speech_recognition off)")
                continue
            # A media part names its file now and is fetched by the worker (prepare).
            cmsg = WxMessage(msg, part, self.creds.bot_id if self.creds else "", first=n == 0,
                             fetch=self._fetch_media)
            extra = {"origin_ctype": ContextType.VOICE} if part.kind == "voice" and part.ctype == ContextType.TEXT else {}
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=False, msg=cmsg, **extra)
            if self.produce(context) in (Produced.NOT_STORED, Produced.STOPPING):
                return False
        return True

    # ================================================================== media in (worker)
    def _fetch_media(self, cmsg: WxMessage) -> None:
        """Fetch, decrypt and write the media of `cmsg` to its path. Raises MediaUnavailable
        (what to tell the user) or OSError (tmp/ cannot be written)."""
        part: Part = cmsg.part
        try:
            key = ilink_media.parse_key(part.aeskey)
        except ValueError as e:
            logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} cannot be decrypted: {e}")
            raise MediaUnavailable(MEDIA_FAILED_TEXT) from None
        for attempt in range(1, MEDIA_TRIES + 1):
            try:
                data = self._client().download(part.media, self.media_max + ilink_media.BLOCK)
                plain = ilink_media.decrypt(data, key)
                if len(plain) > self.media_max:
                    raise MediaTooLarge(self.media_max, "download")
                break
            except MediaTooLarge:
                logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} is over wx_media_max_bytes "
                             f"({self.media_max}): refused")
                raise MediaUnavailable(TOO_BIG_TEXT) from None
            except IlinkError as e:
                if not e.transient:
                    logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} could not be received: {e}")
                    raise MediaUnavailable(MEDIA_FAILED_TEXT) from None
                if attempt == MEDIA_TRIES:
                    logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} could not be received after "
                                 f"{MEDIA_TRIES} tries: {e}")
                    raise MediaUnavailable(MEDIA_LATER_TEXT) from None
                delay = self._backoff(attempt)
                logger.warning(f"[wx] the {part.kind} of message {cmsg.msg_id} not received yet ({e}); "
                               f"trying again in {delay:g} s")
                time.sleep(delay)
            except ValueError as e:  # a wrong key or a damaged file: fetching again gives the same
                logger.error(f"[wx] the {part.kind} of message {cmsg.msg_id} could not be received: {e}")
                raise MediaUnavailable(MEDIA_FAILED_TEXT) from None
        with open(cmsg.content, "wb") as f:
            f.write(plain)
        logger.debug(f"[wx] {part.kind} of message {cmsg.msg_id}: {len(plain)} bytes -> {cmsg.content}")

    def _client(self) -> IlinkClient:
        if self.client is None:
            raise IlinkError(None, "not logged in yet", "download", transient=True)
        return self.client

    def _generate_reply(self, context: Context, reply: Reply | None = None) -> Reply | None:
        cmsg = context.get("msg")
        if isinstance(cmsg, WxMessage) and cmsg.has_media and context.type != ContextType.TEXT:
            try:
                cmsg.prepare()  # an OSError (tmp/) goes to _handle, which tells the user
            except MediaUnavailable as e:
                return Reply(ReplyType.ERROR, e.notice)
        return super()._generate_reply(context, reply)

    def _send_reply(self, context: Context, reply: Reply | None) -> None:
        if threading.current_thread() is self._thread:
            # A notice from the poll thread (a full queue): its send and retries go elsewhere.
            self._notices.submit(super()._send_reply, context, reply)
            return
        super()._send_reply(context, reply)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WxMessage):
            return super().message_to_record(cmsg)
        return cmsg.to_record()

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wx" not in record:
            return super().record_to_message(record)
        return WxMessage.from_record(record, self._fetch_media)

    # ================================================================== context tokens
    def _remember_token(self, user: str, token: str) -> None:
        if self._tokens.get(user) == token:
            return
        self._tokens[user] = token
        store_put(TOKEN_NAMESPACE, user, {"bot": self.creds.bot_id if self.creds else "", "token": token},
                        TOKEN_TTL)

    def _token_for(self, user: str, context: Context) -> str:
        token = self._tokens.get(user)
        if not token:
            saved = store_get(TOKEN_NAMESPACE, user)
            if isinstance(saved, dict) and saved.get("bot") == (self.creds.bot_id if self.creds else ""):
                token = saved.get("token")
            elif isinstance(saved, str):  # written by an earlier version
                token = saved
        if isinstance(token, str) and token:
            self._tokens[user] = token
            return token
        cmsg = context.get("msg")
        if isinstance(cmsg, WxMessage) and self.creds is not None and cmsg.bot_id not in ("", self.creds.bot_id):
            return ""  # a token given to another bot
        own = getattr(cmsg, "context_token", "")
        return own if isinstance(own, str) else ""

    # ================================================================== sending
    def _wait_login(self, user: str, stale: IlinkClient | None = None) -> IlinkClient:
        """The client once logged in (with `stale`: once logged in again, with another client
        than that one). While a re-login waits for its scan, the answer waits too (up to
        wx_ilink_login_timeout; at a stop it waits for the process to end, so its inbox item
        stays for the next start)."""
        def ready() -> bool:
            return self._logged_in.is_set() and self.client is not None and self.client is not stale

        if ready():
            return self.client
        logger.warning(f"[wx] not logged in to WeChat: the reply to {user} waits for the new login")
        deadline = time.monotonic() + self.login_timeout
        while not ready():
            if time.monotonic() >= deadline and not self._stopping.is_set():
                raise RuntimeError(f"not logged in to WeChat after {self.login_timeout:g} s")
            self._logged_in.wait(0.5)
            if self._logged_in.is_set() and not ready():
                time.sleep(0.5)  # logged in still with the stale client: the poll thread finds out soon
        return self.client

    def send(self, reply: Reply, context: Context) -> None:
        user = str(context.get("receiver") or "")
        stale: IlinkClient | None = None
        for attempt in (1, 2):
            client = self._wait_login(user, stale)
            token = self._token_for(user, context)
            if not token:
                logger.error(f"[wx] no context_token for {user}: WeChat only takes replies to someone who wrote to "
                             f"the bot; the {reply.type} reply is dropped")
                return
            try:
                self._send_with(client, reply, user, token)
                break
            except IlinkError as e:
                if e.window_closed:
                    logger.error(f"[wx] WeChat refused the reply to {user} (-2: the reply window is closed, about 24 h "
                                 f"after the user's last message, or the bot is rate-limited); it is dropped")
                    return
                if not e.expired or attempt == 2:
                    raise
                logger.error("[wx] WeChat says the login expired (-14) while sending; the reply waits for the "
                             "new login")
                # The poll thread's next call gets -14 too and logs in again; the send waits for
                # a login other than this one (bounded, as above).
                stale = client
        logger.info(f"[wx] sent {reply.type} to {user}")

    @staticmethod
    def _client_id(reply: Reply, piece: object) -> str:
        """One client_id per piece of a reply, the same on every try (cf. send_pieces)."""
        ids = reply.__dict__.setdefault("_client_ids", {})
        if piece not in ids:
            ids[piece] = new_client_id()
        return ids[piece]

    def _send_with(self, client: IlinkClient, reply: Reply, user: str, token: str) -> None:
        if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
            pieces = list(enumerate(split_text(str(reply.content))))
            self.send_pieces(reply, pieces, lambda piece: client.send_message(
                user, [{"type": 1, "text_item": {"text": piece[1]}}], token, self._client_id(reply, piece[0])))
        elif reply.type in _UPLOADS:
            self._send_media(client, reply, user, token)
        else:
            raise NotImplementedError(f"WeChat (iLink) cannot send {reply.type}")

    def _send_media(self, client: IlinkClient, reply: Reply, user: str, token: str) -> None:
        kind = _UPLOADS[reply.type]
        client_id = self._client_id(reply, "media")
        is_link = reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL)
        try:
            data, name = read_reply_media(reply, self.media_max, "media")
        except (fetch.FetchError, OSError) as e:
            # A link can still be followed by the user; a local path means nothing to them.
            logger.warning(f"[wx] {reply.type} not read ({e}); " + ("sending the link" if is_link else "saying so"))
            text = str(reply.content) if is_link else READ_FAILED_TEXT
            client.send_message(user, [{"type": 1, "text_item": {"text": text}}], token, client_id)
            return
        if len(data) > self.media_max:
            logger.warning(f"[wx] {reply.type} over wx_media_max_bytes ({self.media_max}), not sent")
            link = str(reply.content) if is_link else TOO_BIG_OUT_TEXT
            client.send_message(user, [{"type": 1, "text_item": {"text": link}}], token, client_id)
            return
        upload_type = {"image": UPLOAD_IMAGE, "video": UPLOAD_VIDEO, "file": UPLOAD_FILE}[kind]
        media = client.upload(data, upload_type, user)
        plain_size, cipher_size = media.pop("_plain_size"), media.pop("_cipher_size")
        if kind == "image":
            item = {"type": 2, "image_item": {"media": media, "mid_size": cipher_size}}
        elif kind == "video":
            item = {"type": 5, "video_item": {"media": media, "video_size": cipher_size}}
        else:
            item = {"type": 4, "file_item": {"media": media, "file_name": with_extension(name, data, ""),
                                             "len": str(plain_size)}}
        client.send_message(user, [item], token, client_id)
