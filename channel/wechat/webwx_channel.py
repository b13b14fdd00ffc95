"""Channel `wx` with `wx_protocol: itchat`: the original's personal-WeChat path through the web-WeChat
protocol (reference/personal-wechat.md §4), through a small client of our own (webwx_api).

LEGACY AND RISKY: WeChat blocks web logins for most accounts, and since 2025 kicks those that
succeed within seconds (synccheck retcode 1102); accounts have been warned or restricted for it.
It is opt-in only (`wx_protocol: itchat`), never a fallback of the default iLink path, and says so
loudly at every start.

What the user gets (the original's rules): private chats and groups; a group message is taken
when it @s the bot (or matches the group prefixes/keywords), and the answer @s the asker; friend
requests are accepted when their text is one of `accept_friend_commands`; `hot_reload` keeps the
login over a restart.

Durability, all in the state store (never a pickle file):
* the login (cookies, keys, hosts, the own user) and the sync key, as one record, written after
  every batch; with `hot_reload` a restart goes on from it without a scan (a login WeChat no
  longer takes leads to a new QR); without it every start shows a QR, as in the original;
* every message of a webwxsync batch is in the inbox (ChatChannel.produce, its MsgId the dedup
  key) before the sync key moves past it: a crash before the save brings the batch again and its
  messages are recognised; after the save nothing is replayed.

One thread receives (synccheck, then webwxsync) and only stores; media is downloaded by the
worker that handles the message (WebWxMessage.prepare). Answers are sent by the workers; while a
new login waits for its scan they wait for it.
"""
from __future__ import annotations

import threading
import time

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.reply_media import read_reply_media, with_extension
from channel.login_qr import LOGIN_QRS
from channel.wechat.ilink_login import show_qr
from channel.wechat.instance_lock import InstanceLock, take_account_lock
from channel.wechat.store_calls import store_delete, store_get, store_put
from channel.wechat.webwx_api import (QR_LINK, LoggedOut, LoginInfo, MediaTooLarge, WebWxClient, WebWxError,
                                      new_client_msg_id)
from channel.wechat.webwx_message import Malformed, Unsupported, WebWxMessage, describe, is_group_name
from channel.wechat.wx_channel import READ_FAILED_TEXT, TOO_BIG_OUT_TEXT, TOO_BIG_TEXT, MediaUnavailable, split_text
from common import fetch
from common.log import logger
from common.utils import remove_markdown_symbol
from config import conf

LOCK_FILE = "wx.lock"  # the same account lock as the iLink path: one daemon per WeChat
LOGIN_NAMESPACE = "wx:itchat"
LOGIN_KEY = "login"
TEXT_LIMIT = 2000
RETRY_MAX = 30.0
QR_REFRESHES = 10
RELOGIN_PAUSE = 300.0
LOGIN_WAIT = 480.0  # how long an answer waits for a new login
QR_WAIT = 300.0  # one QR is polled this long at most (WeChat expires it sooner, with a code other than 408/201)
PUSH_WAIT = 60.0  # a login pushed to the phone waits this long for the confirmation
MEDIA_TRIES = 3
# With hot_reload, messages older than this in the first sync after a new (QR or phone) login are
# history (the original's rule, made for a reload replaying old messages). Later syncs, and a
# session resumed from the saved login, take every message: the saved sync key and the dedup
# already prevent replays, and a message WeChat accepted while the daemon was down for minutes,
# or a batch the store refused and that is asked again after a pause, must not be thrown away.
HISTORY_SECONDS = 60
ROOM_REFRESH_SECONDS = 10.0
POISON_TRIES = 3
_BUG_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError)
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be received; please send it again)"
BAN_WARNING = (
    "[wx] wx_protocol is 'itchat': personal WeChat through the LEGACY WEB-WECHAT protocol. WeChat blocks web "
    "logins for most accounts and, since 2025, kicks the ones that get in within seconds (synccheck 1102); "
    "accounts have been warned, forced offline or restricted for using it. Use it only with an account you can "
    "afford to lose. The supported way is the default wx_protocol 'ilink' (Tencent's bot API).")
_UPLOADS = {ReplyType.IMAGE: "pic", ReplyType.IMAGE_URL: "pic", ReplyType.FILE: "doc", ReplyType.VOICE: "doc",
            ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video"}


def _number(key: str, default: float) -> float:
    try:
        return float(conf().get(key))
    except (TypeError, ValueError):
        return default


class Contacts:
    """Names of friends and rooms (with their members), read at login and kept up to date from
    ModContactList; a room whose member is unknown is asked for again (at most every 10 s)."""

    def __init__(self, own_user: str, refresh) -> None:
        self.own_user = own_user
        self._refresh = refresh
        self._names: dict[str, str] = {}
        self._rooms: dict[str, dict] = {}
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, contacts: list) -> None:
        rooms = []
        with self._lock:
            for c in contacts:
                if not isinstance(c, dict) or not isinstance(c.get("UserName"), str):
                    continue
                self._names[c["UserName"]] = str(c.get("RemarkName") or c.get("NickName") or "")
                if is_group_name(c["UserName"]):
                    rooms.append(c)
        for room in rooms:
            members = room.get("MemberList")
            if isinstance(members, list) and members:
                self._set_room(room)

    def _set_room(self, room: dict) -> None:
        members = [m for m in room.get("MemberList") or [] if isinstance(m, dict)]
        own = next((m for m in members if m.get("UserName") == self.own_user), None)
        with self._lock:
            self._rooms[room["UserName"]] = {"NickName": str(room.get("NickName") or ""), "Self": own or {},
                                             "MemberList": {m.get("UserName"): m for m in members}}
            self._names[room["UserName"]] = str(room.get("NickName") or "")

    def rooms_without_members(self) -> list[str]:
        with self._lock:
            return [name for name in self._names if is_group_name(name) and name not in self._rooms]

    def load_rooms(self, names: list[str]) -> None:
        for start in range(0, len(names), 50):
            for room in self._refresh(names[start:start + 50]):
                if isinstance(room.get("UserName"), str):
                    self._set_room(room)

    # the view webwx_message.describe reads
    def nickname(self, user_name: str) -> str:
        with self._lock:
            return self._names.get(user_name, "")

    def room(self, room: str) -> dict | None:
        with self._lock:
            return self._rooms.get(room)

    def member(self, room: str, user_name: str) -> dict | None:
        found = self._member(room, user_name)
        if found is None:
            now = time.monotonic()
            if now - self._asked.get(room, -ROOM_REFRESH_SECONDS) >= ROOM_REFRESH_SECONDS:
                self._asked[room] = now
                try:
                    self.load_rooms([room])
                except WebWxError as e:
                    logger.warning(f"[wx] the members of a group could not be read: {e}")
                found = self._member(room, user_name)
        return found

    def _member(self, room: str, user_name: str) -> dict | None:
        with self._lock:
            known = self._rooms.get(room)
            return known["MemberList"].get(user_name) if known else None


class WebWxChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    # A message the store could not take stays after the kept sync key: WeChat brings it again.
    NOT_STORED_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        self.base_url = str(conf().get("itchat_base_url") or "").strip()
        self.poll_wait = _number("itchat_poll_timeout", 35.0)
        self.retry_delay = max(0.1, _number("itchat_retry_delay", 2.0))
        self.media_max = int(_number("wx_media_max_bytes", 20 * 1024 * 1024))
        self.hot_reload = bool(conf().get("hot_reload"))
        self.client: WebWxClient | None = None
        self.contacts: Contacts | None = None
        self._stopping = threading.Event()
        self._logged_in = threading.Event()
        self._resumed = False
        self._first_sync = False  # the first sync after a new login: older messages are history
        self._take_failures: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._lock: InstanceLock | None = None
        # Before any channel starts: a web page of this daemon then knows to look for the QR.
        LOGIN_QRS.expect("wx")

    # ================================================================== lifecycle
    def startup(self) -> None:
        logger.warning(BAN_WARNING)
        self._lock = take_account_lock(LOCK_FILE)
        self._thread = threading.Thread(target=self._run, name="wx-webwx", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(1.0)
        if not self._stopping.is_set():
            self.exit_code = self.exit_code or EXIT_PLATFORM_LOST
            self.finished = True

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
        if not self.hot_reload and self.client is not None:
            self.client.logout()  # the next start shows a QR anyway; end this web session
        if self._lock is not None:
            self._lock.release()

    @property
    def state(self) -> str:
        return "logged in" if self._logged_in.is_set() else "logging in"

    def _run(self) -> None:
        restarts = 0
        while not self._stopping.is_set():
            try:
                self._session()
                return
            except Exception:
                restarts += 1
                delay = self._backoff(restarts)
                logger.exception(f"[wx] the WeChat thread failed; starting it again in {delay:g} s")
                self._stopping.wait(delay)

    def _backoff(self, failures: int) -> float:
        return min(RETRY_MAX, self.retry_delay * 2 ** min(max(failures - 1, 0), 10))

    def _session(self) -> None:
        while not self._stopping.is_set():
            if not self._logged_in.is_set():
                if not self._log_in():
                    return
            if not self._resumed:
                # Messages accepted before the last stop are queued before new ones are taken.
                self.resume_inbox()
                self._resumed = True
            logger.info("[wx] ready, handling messages")
            try:
                self._receive()
            except LoggedOut as e:
                self._logged_out(str(e))

    # ================================================================== login
    def _log_in(self) -> bool:
        """A login: the saved one (hot_reload), else a push to the phone, else a QR."""
        saved = LoginInfo.from_record(store_get(LOGIN_NAMESPACE, LOGIN_KEY))
        if saved is not None and not self.hot_reload:
            store_delete(LOGIN_NAMESPACE, LOGIN_KEY)  # the original: a QR at every start
            saved = None
        unreachable = 0
        while not self._stopping.is_set():
            client = WebWxClient(self.base_url, timeout=self.poll_wait + 10)
            if saved is not None:
                client.resume(saved)
                try:
                    self._start_session(client)
                    logger.info(f"[wx] using the saved login of {client.info.nick_name or client.info.user_name} "
                                f"(hot_reload, no scan needed)")
                    return True
                except WebWxError as e:
                    if e.transient:  # WeChat not reachable: the login may well be good, keep it
                        unreachable += 1
                        delay = self._backoff(unreachable)
                        logger.error(f"[wx] the saved login could not be tried ({e}); again in {delay:g} s")
                        self._stopping.wait(delay)
                        continue
                    logger.warning(f"[wx] the saved login is not taken any more ({e}); a new login follows")
                    store_delete(LOGIN_NAMESPACE, LOGIN_KEY)
                    uin, saved = saved.uin, None
                    client = WebWxClient(self.base_url, timeout=self.poll_wait + 10)
                    uuid = client.push_login(uin)
                    if uuid:
                        logger.info("[wx] confirm the login on the phone (WeChat pushed it there; no scan needed)")
                        if self._wait_confirm(client, uuid, shown=False, wait=PUSH_WAIT):
                            return True
                    continue
            if self._qr_login(client):
                return True
            if self._stopping.is_set():
                break
            logger.error(f"[wx] nobody logged in; a new QR in {RELOGIN_PAUSE:g} s (restart to get one now)")
            self._stopping.wait(RELOGIN_PAUSE)
        return False

    def _qr_login(self, client: WebWxClient) -> bool:
        for shown in range(QR_REFRESHES + 1):
            if self._stopping.is_set():
                return False
            try:
                uuid = client.new_uuid()
            except WebWxError as e:
                logger.error(f"[wx] no login QR from WeChat: {e}")
                self._stopping.wait(self._backoff(shown + 1))
                continue
            path, png = show_qr(QR_LINK.format(uuid=uuid), "wx")
            if png:
                LOGIN_QRS.show("wx", png)
            logger.info(f"[wx] scan the QR with WeChat to log in to web WeChat (shown in the terminal, saved as {path})")
            try:
                if self._wait_confirm(client, uuid, shown=True, wait=QR_WAIT):
                    return True
            finally:
                # Expired, replaced, confirmed or given up: a page must not show it any more.
                LOGIN_QRS.withdraw("wx")
            if shown < QR_REFRESHES and not self._stopping.is_set():
                logger.info("[wx] showing a new login QR")
        return False

    def _wait_confirm(self, client: WebWxClient, uuid: str, shown: bool, wait: float) -> bool:
        """Poll the login of `uuid` for up to `wait` s: 408 waiting, 201 scanned, 200 confirmed;
        anything else ends it."""
        scanned = False
        failures = 0
        deadline = time.monotonic() + wait
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                code, redirect = client.poll_login(uuid, scanned)
            except WebWxError as e:
                failures += 1
                if failures > 5:
                    logger.error(f"[wx] the login status could not be read: {e}")
                    return False
                self._stopping.wait(self._backoff(failures))
                continue
            failures = 0
            if code == "408":
                self._stopping.wait(0.2)
                continue
            if code == "201":
                if not scanned:
                    logger.info("[wx] QR scanned; confirm the login on the phone")
                    scanned = True
                self._stopping.wait(0.2)
                continue
            if code == "200" and redirect:
                try:
                    client.finish_login(redirect)
                    self._start_session(client, new_login=True)
                except WebWxError as e:
                    logger.error(f"[wx] the login did not complete: {e}")
                    return False
                logger.info(f"[wx] logged in to web WeChat as {client.info.nick_name or client.info.user_name}")
                return True
            break
        logger.info("[wx] the login QR expired" if shown else "[wx] the phone did not confirm the login")
        return False

    def _start_session(self, client: WebWxClient, new_login: bool = False) -> None:
        """webwxinit, contacts and rooms; then the login is saved and in use."""
        self._first_sync = new_login
        first = client.init()
        try:
            client.status_notify()
        except WebWxError as e:
            logger.debug(f"[wx] statusnotify failed: {e}")
        info = client.info
        contacts = Contacts(info.user_name, client.batch_contacts)
        contacts.update(first.get("ContactList") if isinstance(first.get("ContactList"), list) else [])
        try:
            contacts.update(client.contacts())
            contacts.load_rooms(contacts.rooms_without_members())
        except WebWxError as e:
            logger.warning(f"[wx] the contact list could not be read ({e}); names are read as messages come")
        self.client, self.contacts = client, contacts
        self.user_id, self.name = info.user_name, info.nick_name
        self._save_login()
        self._logged_in.set()

    def _logged_out(self, why: str) -> None:
        if "1102" in why:
            why += " - WeChat logs out accounts it finds on web WeChat; the account is at risk (see wx_protocol)"
        logger.error(f"[wx] {why}: scan the new QR to log in again (messages are not received and answers wait "
                     f"until then)")
        self._logged_in.clear()
        store_delete(LOGIN_NAMESPACE, LOGIN_KEY)

    def _save_login(self) -> None:
        if self.client is not None and self.client.info is not None:
            self.client.info.cookies = self.client.http.cookies.get_dict()
            store_put(LOGIN_NAMESPACE, LOGIN_KEY, self.client.info.to_record())

    # ================================================================== receiving
    def _receive(self) -> None:
        client = self.client
        failures = 0
        while not self._stopping.is_set():
            try:
                selector = client.sync_check(self.poll_wait + 10)
                if selector == "0":
                    failures = 0
                    continue
                answer = client.sync()
            except LoggedOut:
                raise
            except WebWxError as e:
                failures += 1
                delay = self._backoff(failures)
                logger.error(f"[wx] receiving failed ({e}); trying again in {delay:g} s")
                self._stopping.wait(delay)
                continue
            if failures:
                logger.info("[wx] receiving works again")
            failures = 0
            self._update_contacts(answer.get("ModContactList") or [])
            if not self._take_all(answer.get("AddMsgList") or []):
                # The sync key stays before what was not taken; asked again after a pause.
                failures += 1
                self._stopping.wait(self._backoff(failures))
                continue
            client.advance(answer)
            self._first_sync = False
            self._save_login()

    def _update_contacts(self, contacts: list) -> None:
        if contacts and self.contacts is not None:
            self.contacts.update(contacts)

    def _take_all(self, msgs: list) -> bool:
        for raw in msgs:
            if self._stopping.is_set():
                return False
            try:
                if not self.take(raw):
                    return False
            except Exception as e:
                key = str(raw.get("MsgId") if isinstance(raw, dict) else raw)[:100]
                tries = self._take_failures[key] = self._take_failures.get(key, 0) + 1
                if isinstance(e, _BUG_ERRORS) and tries >= POISON_TRIES:
                    # One poisoned message must not stop receiving for everyone.
                    logger.exception(f"[wx] message {key} failed {tries} times and is passed over")
                    self._take_failures.pop(key, None)
                    continue
                # tmp/, the disk, the state store: the batch is taken again after a pause.
                logger.error(f"[wx] a message could not be taken ({type(e).__name__}: {e}); taken again after a pause")
                return False
        self._take_failures.clear()
        return True

    def take(self, raw: object) -> bool:
        """Take one AddMsgList entry through the pipeline. False when it could not be stored
        (the sync key must not pass it); what the bot does not take is logged and passed."""
        info = self.client.info
        try:
            view = describe(raw, info.user_name, info.nick_name, self.contacts)
        except Unsupported as e:
            logger.debug(f"[wx] message skipped: {e}")
            return True
        except Malformed as e:
            logger.warning(f"[wx] a malformed message skipped: {e}: {str(raw)[:200]}")
            return True
        cmsg = WebWxMessage(raw, view, info.user_name, info.nick_name, fetch=self._fetch_media)
        if self.hot_reload and self._first_sync and cmsg.create_time < time.time() - HISTORY_SECONDS:
            logger.info(f"[wx] message {cmsg.msg_id} from before the login skipped (history; hot_reload)")
            return True
        if cmsg.ctype == ContextType.ACCEPT_FRIEND:
            logger.info(f"[wx] friend request from {cmsg.other_user_nickname or cmsg.other_user_id}")
            context = self._compose_context(cmsg.ctype, cmsg.content, msg=cmsg, session_id=cmsg.other_user_id)
        elif cmsg.is_group:
            if cmsg.ctype == ContextType.VOICE and not conf().get("group_speech_recognition"):
                return True
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=True, msg=cmsg,
                                            no_need_at=conf().get("no_need_at", False))
        else:
            if cmsg.my_msg or cmsg.other_user_id == "weixin":  # own messages, WeChat's team account
                return True
            if cmsg.ctype == ContextType.VOICE and not conf().get("speech_recognition"):
                logger.info(f"[wx] voice message {cmsg.msg_id} skipped (speech_recognition off)")
                return True
            context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=False, msg=cmsg)
        return self.produce(context) not in (Produced.NOT_STORED, Produced.STOPPING)

    # ================================================================== media in (worker)
    def _fetch_media(self, cmsg: WebWxMessage) -> None:
        for attempt in range(1, MEDIA_TRIES + 1):
            try:
                data = self._ready_client(str(cmsg.other_user_id)).download(cmsg.kind, cmsg.raw, self.media_max)
                break
            except MediaTooLarge:
                logger.error(f"[wx] the {cmsg.kind} of message {cmsg.msg_id} is over wx_media_max_bytes "
                             f"({self.media_max}): refused")
                raise MediaUnavailable(TOO_BIG_TEXT) from None
            except WebWxError as e:
                if not e.transient or attempt == MEDIA_TRIES:
                    logger.error(f"[wx] the {cmsg.kind} of message {cmsg.msg_id} could not be received: {e}")
                    raise MediaUnavailable(MEDIA_FAILED_TEXT) from None
                time.sleep(self._backoff(attempt))
        with open(cmsg.content, "wb") as f:
            f.write(data)

    def _generate_reply(self, context: Context, reply: Reply | None = None) -> Reply | None:
        cmsg = context.get("msg")
        if isinstance(cmsg, WebWxMessage) and cmsg.has_media and context.type != ContextType.TEXT:
            try:
                cmsg.prepare()
            except MediaUnavailable as e:
                return Reply(ReplyType.ERROR, e.notice)
        reply = super()._generate_reply(context, reply)
        if context.type == ContextType.ACCEPT_FRIEND and reply is not None and not reply.content:
            request = context.content if isinstance(context.content, dict) else {}
            logger.info(f"[wx] friend request from {request.get('NickName') or request.get('UserName')} not accepted "
                        f"(its text is not one of accept_friend_commands)")
        return reply

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WebWxMessage):
            return super().message_to_record(cmsg)
        return cmsg.to_record()

    def record_to_message(self, record: dict) -> ChatMessage:
        if "webwx" not in record:
            return super().record_to_message(record)
        info = self.client.info if self.client is not None else None
        return WebWxMessage.from_record(record, info.user_name if info else "", info.nick_name if info else "",
                                        self._fetch_media)

    # ================================================================== sending
    def _ready_client(self, user: str) -> WebWxClient:
        if self._logged_in.is_set() and self.client is not None:
            return self.client
        logger.warning(f"[wx] not logged in to WeChat: the reply to {user} waits for the new login")
        if not self._logged_in.wait(LOGIN_WAIT):
            raise RuntimeError(f"not logged in to WeChat after {LOGIN_WAIT:g} s")
        return self.client

    @staticmethod
    def _client_msg_id(reply: Reply, piece: object) -> str:
        """One id per piece of a reply, the same on every try."""
        ids = reply.__dict__.setdefault("_client_ids", {})
        if piece not in ids:
            ids[piece] = new_client_msg_id()
        return ids[piece]

    def send(self, reply: Reply, context: Context) -> None:
        receiver = str(context.get("receiver") or "")
        if reply.type == ReplyType.ACCEPT_FRIEND:
            self._answer_friend_request(reply, context)
            return
        client = self._ready_client(receiver)
        if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
            text = str(reply.content)
            if reply.type == ReplyType.TEXT:
                text = remove_markdown_symbol(text)
            pieces = list(enumerate(split_text(text, TEXT_LIMIT)))
            self.send_pieces(reply, pieces, lambda piece: client.send_text(
                receiver, piece[1], self._client_msg_id(reply, piece[0])))
        elif reply.type in _UPLOADS:
            self._send_media(client, reply, receiver)
        else:
            raise NotImplementedError(f"web WeChat cannot send {reply.type}")
        logger.info(f"[wx] sent {reply.type} to {receiver}")

    def _send_media(self, client: WebWxClient, reply: Reply, receiver: str) -> None:
        media_type = _UPLOADS[reply.type]
        msg_id = self._client_msg_id(reply, "media")
        is_link = reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL)
        try:
            data, name = read_reply_media(reply, self.media_max, "media")
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[wx] {reply.type} not read ({e}); " + ("sending the link" if is_link else "saying so"))
            client.send_text(receiver, str(reply.content) if is_link else READ_FAILED_TEXT, msg_id)
            return
        if len(data) > self.media_max:
            logger.warning(f"[wx] {reply.type} over wx_media_max_bytes ({self.media_max}), not sent")
            client.send_text(receiver, str(reply.content) if is_link else TOO_BIG_OUT_TEXT, msg_id)
            return
        name = with_extension(name, data, ".jpg" if media_type == "pic" else ".mp4" if media_type == "video" else "")
        media_id = reply.__dict__.get("_media_id")
        if not media_id:  # uploaded once, even when the send after it is tried again
            media_id = reply._media_id = client.upload(data, name, receiver, media_type)
        if media_type == "pic":
            client.send_image(receiver, media_id, msg_id)
        elif media_type == "video":
            client.send_video(receiver, media_id, msg_id)
        else:
            client.send_file(receiver, name, len(data), media_id, msg_id)

    def _answer_friend_request(self, reply: Reply, context: Context) -> None:
        request = context.content if isinstance(context.content, dict) else {}
        who = str(request.get("NickName") or request.get("UserName") or "")
        user = str(request.get("UserName") or "")
        client = self._ready_client(user)
        client.accept_friend(user, str(request.get("Ticket") or ""))
        logger.info(f"[wx] accepted the friend request of {who}")
        welcome = conf().get("accept_friend_msg")
        if welcome:
            try:
                client.send_text(user, str(welcome), self._client_msg_id(reply, "welcome"))
            except WebWxError as e:  # the friendship stands; only the greeting is lost
                logger.error(f"[wx] the accept_friend_msg to {who} could not be sent: {e}")
