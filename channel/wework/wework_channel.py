"""WeCom (企业微信) through the PC client hook ``ntwork`` 0.1.3 (Windows, PC WeCom logged in).

Start-up keeps the original's shape: open the client (``wework_smart``), wait for the login, read
contacts and rooms with retries, write ``tmp/wework_contacts.json``, ``tmp/wework_rooms.json`` and
``tmp/wework_room_members.json``, then run until stopped. Differences from the original
(dify-on-wechat channel/wework), each a fix:

- ntwork is imported when the channel starts, after ``NTWORK_LOG`` is set (upper case: ntwork
  reads ``conf.LOG_KEY = "NTWORK_LOG"``; the original's ``ntwork_LOG`` works only on Windows);
  without ntwork start-up stops with one line saying what to do;
- instead of a blind 60 s sleep after login, contacts and rooms are polled every second until
  readable, for at most ``wework_init_wait`` seconds;
- unreadable contacts or rooms stop start-up cleanly (``exit_()``, one line, exit 1); the
  original crashed on ``os.exit``;
- the JSON files are written atomically (temp file + ``os.replace``);
- a WeCom client that quits ends the daemon with ``EXIT_PLATFORM_LOST`` (4) so a supervisor can
  restart it; the original kept sleeping, deaf;
- the hook's callback thread only translates and queues: the reply delay (``wework_reply_delay``)
  is a scheduled time, room names come from a cache, member lists refresh in the background
  (the original called ``get_rooms`` and slept 1 s per group message inside the callback, and
  re-read every room's members inside the callback on each join);
- replies: an @ reply is detected even after ``group_chat_reply_prefix`` and never sent to a
  private chat; long text is split; FILE and VIDEO are sent; temporary images are kept until the
  client has read them; a refused send raises so the pipeline retries it.
"""
from __future__ import annotations

import heapq
import itertools
import os
import random
import sys
import threading
import time
from typing import Any, Callable

from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.channel_factory import ChannelError
from channel.chat_channel import ChatChannel
from channel.chat_message import ChatMessage
from channel.wework import wework_media as media
from channel.wework.wework_message import (
    HANDLED_TYPES,
    MT_RECV_WEWORK_QUIT_MSG,
    MT_ROOM_MEMBER_JOINED,
    LoginInfo,
    UnsupportedMessage,
    WeworkMessage,
    conversation_of,
    is_group_conversation,
    split_join_notice,
)
from channel.wework.run import register_early_handlers
from common.fetch import FetchError
from common.log import logger
from common.masking import mask_command
from common.singleton import singleton
from common.text import safe_data
from common.time_check import time_checker
from common.tmp_dir import TmpDir
from common.utils import split_string_by_utf8_length, write_json_atomic
from config import conf

NTWORK_LOG_LEVEL = "ERROR"
# Messages older than this when they are handled are history the client replays: skipped.
HISTORY_SECONDS = 60
# Start-up: how often to look whether the client's contacts and rooms are readable: soon after
# the login at first (they often are within a fraction of a second), then every half second
# (a get_rooms answer costs the client little; waiting a whole second more for it costs the user).
DATA_POLL_SECONDS = (0.1, 0.2, 0.3, 0.5)
# Then the original's retries: 5 tries. The waiting was done by the poll, so the pause is short.
READ_TRIES = 5
READ_RETRY_SECONDS = 1.0
# A room name not in the cache triggers at most one get_rooms() per room in this time.
ROOM_MISS_REFRESH_SECONDS = 30.0
# Text is cut into pieces of at most this many UTF-8 bytes. WeCom documents 2048 bytes for a
# text message (its server API); the PC client's own limit is not documented and the hook sends
# through the same message store, so stay under the documented one, leaving room for the
# "@name" the client puts in front of an @ reply.
TEXT_MAX_BYTES = 2000
# Python cannot interrupt a lock wait on Windows (Ctrl+C would wait for ever): wait in slices there.
_WAIT_SLICE = 1.0 if sys.platform == "win32" else None

TOO_BIG_TEXT = {
    ReplyType.IMAGE_URL: ("抱歉，图片太大了，无法发送。", "Sorry, the image is too big to send."),
    ReplyType.VIDEO_URL: ("抱歉，视频太大了（超过 30 MB），无法发送。", "Sorry, the video is too big to send (over 30 MB)."),
    ReplyType.VIDEO: ("抱歉，视频太大了（超过 30 MB），无法发送。", "Sorry, the video is too big to send (over 30 MB)."),
}
# A linked image or video that could not be fetched (refused, too slow, every download slot taken).
LINK_TEXT = {
    ReplyType.IMAGE_URL: ("图片链接：{}", "Image link: {}"),
    ReplyType.VIDEO_URL: ("视频链接：{}", "Video link: {}"),
}


class SendRefused(RuntimeError):
    """ntwork said the client did not take a send (its call returned False)."""


class _Ended(Exception):
    """Start-up was interrupted: the daemon is stopping or the client quit."""


# --------------------------------------------------------------------------- ntwork import
# The WeCom way that works without the PC client (ntwork is gone from the package index and
# pins a client version WeCom now refuses).
WECOM_BOT_HINT = ("for a WeCom bot without the PC client use channel_type wecom_bot (the official WeCom AI bot: "
                  "set wecom_bot_id and wecom_bot_secret), see README section 'WeCom AI bot'")


def _missing_ntwork_message() -> str:
    if sys.platform == "win32":
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        hint = "" if (3, 8) <= sys.version_info[:2] <= (3, 10) else f" (this is Python {version}: use Python 3.10)"
        return (
            "channel_type 'wework' needs ntwork 0.1.3, which is not installed: download the wheel for "
            f"Python 3.8-3.10{hint}, e.g. ntwork-0.1.3-cp310-cp310-win_amd64.whl, run "
            "'pip install <that .whl file>', see README section 'Windows and WeCom'; "
            + WECOM_BOT_HINT
        )
    return (
        "channel_type 'wework' needs Windows with PC WeCom logged in (ntwork hooks the Windows client); "
        "on this system use channel_type web or terminal, or " + WECOM_BOT_HINT
    )


def import_ntwork() -> Any:
    """Import ntwork with its log level set first (it reads NTWORK_LOG at import time)."""
    os.environ.setdefault("NTWORK_LOG", NTWORK_LOG_LEVEL)
    try:
        import ntwork
    except ImportError as e:
        if e.name == "ntwork":
            raise ChannelError(_missing_ntwork_message()) from None
        raise ChannelError(f"ntwork could not be loaded: {e}") from None
    except Exception as e:  # the native part failed to load
        raise ChannelError(f"ntwork could not be loaded: {type(e).__name__}: {e}") from None
    return ntwork


# --------------------------------------------------------------------------- helpers
def reply_delay_seconds(setting: Any) -> float:
    """``wework_reply_delay``: "1-2" (random in the range), a number, or 0 (none)."""
    if setting is None or setting == "":
        return 0.0
    if isinstance(setting, (int, float)):
        return max(0.0, float(setting))
    text = str(setting).strip()
    if "-" in text:
        low, high = (float(part) for part in text.split("-", 1))
        low, high = min(low, high), max(low, high)
        return random.uniform(low, high) if high > 0 else 0.0
    return max(0.0, float(text))


def rooms_readable(rooms: Any) -> bool:
    return isinstance(rooms, dict) and isinstance(rooms.get("room_list"), list)


def contacts_readable(contacts: Any) -> bool:
    return isinstance(contacts, dict) and bool(contacts)


class _Scheduler:
    """One thread running callables at given times, in time order (FIFO for equal times)."""

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, due: float, fn: Callable, *args: Any) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (due, next(self._seq), fn, args))
            self._cond.notify()

    def call_later(self, delay: float, fn: Callable, *args: Any) -> None:
        self.call_at(time.monotonic() + delay, fn, *args)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
            except Exception:
                logger.exception(f"[wework] scheduled {getattr(fn, '__name__', fn)} failed")


def _is_history(cmsg: ChatMessage) -> bool:
    """Sent more than HISTORY_SECONDS before it arrived: the client replaying old messages."""
    return cmsg.create_time is not None and int(cmsg.create_time) < time.time() - HISTORY_SECONDS


# --------------------------------------------------------------------------- channel
@singleton
class WeworkChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list[ReplyType] = []

    def __init__(self) -> None:
        super().__init__()
        self.ntwork: Any = None
        self.wework: Any = None
        self.login = LoginInfo()
        self.inited = False
        self._stopping = False
        self._quit = False
        self._exited = False
        self._cond = threading.Condition()
        self._logged_in = threading.Event()
        self._lock = threading.Lock()
        self._room_names: dict[str, str | None] = {}
        self._room_members: dict[str, Any] = {}
        self._room_miss_at: dict[str, float] = {}
        self._dirty_rooms: set[str] = set()
        self._refresh_wanted = threading.Event()
        self._refresher: threading.Thread | None = None
        self._scheduler: _Scheduler | None = None
        self._last_due = 0.0
        self._senders: dict[ReplyType, Callable[[str, Reply, Context], None]] = {
            ReplyType.TEXT: self._send_text,
            ReplyType.TEXT_: self._send_text,
            ReplyType.ERROR: self._send_notice,
            ReplyType.INFO: self._send_notice,
            ReplyType.IMAGE: self._send_image,
            ReplyType.IMAGE_URL: self._send_image_url,
            ReplyType.FILE: self._send_file,
            ReplyType.VOICE: self._send_file,  # WeCom's hook cannot send voice: as a file, like the original
            ReplyType.VIDEO: self._send_video,
            ReplyType.VIDEO_URL: self._send_video_url,
        }

    # ================================================================== lifecycle
    def startup(self) -> None:
        try:
            self._start()
            logger.info("[wework] ready, handling messages")
            self._wait_for(lambda: False)
        except _Ended:
            pass
        if self._quit:
            logger.error(f"[wework] ended because the WeCom client quit (exit code {self.exit_code})")

    def _start(self) -> None:
        ntwork = import_ntwork()
        self.ntwork = ntwork
        try:
            wework = ntwork.WeWork()
        except Exception as e:  # e.g. WeWorkVersionNotMatchError: no hook for the installed WeCom
            raise ChannelError(
                f"ntwork cannot hook the installed PC WeCom ({type(e).__name__}: {e}); "
                "ntwork 0.1.3 needs PC WeCom 4.0.8.6027, see README section 'Windows and WeCom'; " + WECOM_BOT_HINT
            ) from None
        self.wework = wework
        wework.msg_register(list(HANDLED_TYPES))(self._on_message)
        wework.msg_register(MT_RECV_WEWORK_QUIT_MSG)(self._on_quit)
        register_early_handlers(wework)  # plugins' @wework.msg_register from before the client
        media.clear_send_dir()

        smart = bool(conf().get("wework_smart", True))
        if not wework.open(smart):
            self._exit_client()
            raise ChannelError(
                "ntwork could not open PC WeCom; "
                + ("start PC WeCom and log in first (wework_smart is true: the daemon attaches to it)"
                   if smart else "check that PC WeCom 4.0.8.6027 is installed (wework_smart is false)")
            )
        logger.info("[wework] waiting for the WeCom login...")
        threading.Thread(target=self._wait_login, name="wework-login", daemon=True).start()
        self._wait_for(self._logged_in.is_set)
        self.login = LoginInfo.from_dict(wework.get_login_info())
        self.user_id = self.login.user_id
        self.name = self.login.display_name
        logger.info(f"[wework] logged in: user_id={self.user_id}, name={self.name}")

        contacts, rooms = self._read_client_data()
        if not contacts_readable(contacts) or not rooms_readable(rooms):
            missing = " and ".join(n for n, ok in (("contacts", contacts_readable(contacts)), ("rooms", rooms_readable(rooms))) if not ok)
            logger.error(f"[wework] could not read {missing} from WeCom, exiting")
            self._exit_client()
            raise ChannelError(
                f"could not read {missing} from PC WeCom after {READ_TRIES} tries; "
                "restart WeCom, or raise wework_init_wait if it needs longer after login"
            )
        members = self._read_room_members(rooms)
        folder = TmpDir().path()
        write_json_atomic(os.path.join(folder, "wework_contacts.json"), contacts)
        write_json_atomic(os.path.join(folder, "wework_rooms.json"), rooms)
        write_json_atomic(os.path.join(folder, "wework_room_members.json"), members)
        with self._lock:
            self._room_members = dict(members)
        self._update_room_names(rooms)
        self._scheduler = _Scheduler("wework-intake")
        # Before new messages are taken: those accepted before the last stop come first.
        self.resume_inbox()
        self.inited = True
        logger.info(f"[wework] initialised: {len(self._room_names)} room(s)")

    def stop(self) -> None:
        self._stopping = True
        self._notify()
        self._refresh_wanted.set()
        self._exit_client()
        if self._scheduler is not None:
            self._scheduler.close()
        super().stop()

    def _exit_client(self) -> None:
        if self._exited or self.ntwork is None:
            return
        self._exited = True
        try:
            self.ntwork.exit_()
        except Exception as e:
            logger.warning(f"[wework] ntwork.exit_() failed: {e}")

    def _wait_login(self) -> None:
        try:
            self.wework.wait_login()
        except Exception as e:
            logger.error(f"[wework] waiting for the login failed: {e}")
            return
        self._logged_in.set()
        self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` or ``timeout``; raises _Ended when stopping or the client quit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._stopping or self._quit:
                    raise _Ended()
                if predicate():
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if _WAIT_SLICE is not None:
                    remaining = _WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE)
                self._cond.wait(remaining)

    def _on_quit(self, *_args: Any) -> None:
        # ntwork calls quit handlers with the instance only (MT_ALL ones get the message too).
        if self._stopping or self._exited:  # our own exit_()
            logger.info("[wework] WeCom client closed")
            return
        logger.error("[wework] the WeCom client quit or crashed; exiting so a supervisor can restart the daemon")
        self.exit_code = EXIT_PLATFORM_LOST
        self.finished = True
        self._quit = True
        self._refresh_wanted.set()
        self._notify()

    # ================================================================== client data
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            # The client's answers (contact and room names) can hold lone surrogates too; they
            # are written to tmp/*.json, which would fail on one.
            return safe_data(fn())
        except Exception as e:  # not logged in any more, hook errors
            logger.warning(f"[wework] {what} failed: {e}")
            return None

    def _read_client_data(self) -> tuple[Any, Any]:
        wework = self.wework
        contacts = rooms = None

        def read_missing() -> bool:
            nonlocal contacts, rooms
            if not contacts_readable(contacts):
                contacts = self._call("get_external_contacts", wework.get_external_contacts)
            if not rooms_readable(rooms):
                rooms = self._call("get_rooms", wework.get_rooms)
            return contacts_readable(contacts) and rooms_readable(rooms)

        wait = float(conf().get("wework_init_wait", 60) or 0)
        started = time.monotonic()
        if wait > 0:
            logger.info(f"[wework] waiting for WeCom's contacts and rooms (at most {wait:g} s)")
            deadline = started + wait
            polls = 0
            while not read_missing():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                pause = DATA_POLL_SECONDS[min(polls, len(DATA_POLL_SECONDS) - 1)]
                polls += 1
                self._wait_for(lambda: False, min(pause, remaining))
            else:
                logger.info(f"[wework] contacts and rooms readable after {time.monotonic() - started:.1f} s")
                return contacts, rooms
        for attempt in range(READ_TRIES):
            if read_missing():
                break
            logger.warning(f"[wework] contacts or rooms not readable, try {attempt + 1} of {READ_TRIES}")
            if attempt < READ_TRIES - 1:
                self._wait_for(lambda: False, READ_RETRY_SECONDS)
        return contacts, rooms

    def _read_room_members(self, rooms: dict) -> dict[str, Any]:
        members: dict[str, Any] = {}
        for room in rooms.get("room_list") or []:
            conversation_id = room.get("conversation_id") if isinstance(room, dict) else None
            if conversation_id:
                members[conversation_id] = self._call(
                    "get_room_members", lambda c=conversation_id: self.wework.get_room_members(c)
                )
        return members

    def _update_room_names(self, rooms: Any) -> None:
        if not rooms_readable(rooms):
            return
        names = {
            room["conversation_id"]: room.get("nickname")
            for room in rooms["room_list"]
            if isinstance(room, dict) and room.get("conversation_id")
        }
        with self._lock:
            self._room_names.update(names)

    def room_name(self, conversation_id: str) -> str | None:
        """The room's name; a room not cached is looked up once per ROOM_MISS_REFRESH_SECONDS."""
        with self._lock:
            if conversation_id in self._room_names:
                return self._room_names[conversation_id]
            now = time.monotonic()
            last = self._room_miss_at.get(conversation_id)
            if last is not None and now - last < ROOM_MISS_REFRESH_SECONDS:
                return None
            self._room_miss_at[conversation_id] = now
        self._update_room_names(self._call("get_rooms", self.wework.get_rooms))
        with self._lock:
            return self._room_names.get(conversation_id)

    def _request_room_refresh(self, conversation_id: str) -> None:
        with self._lock:
            self._dirty_rooms.add(conversation_id)
            if self._refresher is None:
                self._refresher = threading.Thread(target=self._refresh_loop, name="wework-rooms", daemon=True)
                self._refresher.start()
        self._refresh_wanted.set()

    def _refresh_loop(self) -> None:
        """Re-read room names and the changed rooms' members, off the hook's thread."""
        while True:
            self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            if self._stopping or self._quit:
                return
            with self._lock:
                dirty, self._dirty_rooms = self._dirty_rooms, set()
            if dirty:
                try:
                    self._refresh_rooms(dirty)
                except Exception:  # keep the thread for the next change
                    logger.exception("[wework] refreshing rooms failed")

    def _refresh_rooms(self, dirty: set[str]) -> None:
        """Re-read room names and the members of the rooms that changed; rewrite the file."""
        self._update_room_names(self._call("get_rooms", self.wework.get_rooms))
        changed = False
        for conversation_id in sorted(dirty):
            members = self._call("get_room_members", lambda c=conversation_id: self.wework.get_room_members(c))
            if members:
                with self._lock:
                    self._room_members[conversation_id] = members
                changed = True
        if changed:
            with self._lock:
                snapshot = dict(self._room_members)
            try:
                write_json_atomic(os.path.join(TmpDir().path(), "wework_room_members.json"), snapshot)
            except OSError as e:
                logger.warning(f"[wework] could not write wework_room_members.json: {e}")
        logger.info(f"[wework] refreshed members of {len(dirty)} room(s)")

    # ================================================================== receiving
    def _on_message(self, _wework: Any, message: Any) -> None:
        """The hook's callback: translate and queue, nothing slow."""
        try:
            if not self.inited or self._stopping:
                return
            data = message.get("data") if isinstance(message, dict) else None
            if not isinstance(data, dict):
                return
            # The client's JSON may carry "\ud800" escapes (broken UTF-16 from the PC client).
            message = safe_data(message)
            data = message["data"]
            if self.user_id and str(data.get("sender") or "") == self.user_id:
                logger.debug("[wework] own message skipped")
                return
            conversation_id = conversation_of(data)
            if not conversation_id:
                logger.debug(f"[wework] message without a conversation id skipped: type {message.get('type')}")
                return
            notices = [message]
            if message.get("type") == MT_ROOM_MEMBER_JOINED:
                if not is_group_conversation(conversation_id):
                    logger.warning(f"[wework] member-joined notice for a non-room id {conversation_id} skipped")
                    return
                self._request_room_refresh(conversation_id)
                notices = split_join_notice(message)
            with self._lock:
                room_name = self._room_names.get(conversation_id)
            for notice in notices:
                try:
                    cmsg = WeworkMessage(notice, self.wework, login=self.login, room_name=room_name)
                except UnsupportedMessage as e:
                    logger.debug(f"[wework] message skipped: {e}")
                    continue
                if cmsg.ctype == ContextType.JOIN_GROUP and cmsg.actual_user_id == self.user_id:
                    logger.info(f"[wework] joined room {conversation_id}")
                    continue
                # Judged on arrival: the reply delay that follows must not make a fresh message old.
                if _is_history(cmsg):
                    logger.debug(f"[wework] history message {cmsg.msg_id} skipped")
                    continue
                self._schedule(cmsg)
        except Exception:
            logger.exception(f"[wework] message dropped: {str(message)[:300]}")

    def _schedule(self, cmsg: WeworkMessage) -> None:
        delay = reply_delay_seconds(conf().get("wework_reply_delay", "1-2"))
        with self._lock:
            # Never before an earlier message: delays are random, the order of questions is not.
            due = max(time.monotonic() + delay, self._last_due)
            self._last_due = due
        self._scheduler.call_at(due, self._intake, cmsg)

    def _intake(self, cmsg: WeworkMessage) -> None:
        if self._stopping:
            return
        if cmsg.is_group:
            if cmsg.other_user_nickname is None:
                # A room the cache does not know yet (created after start-up): looked up here, on
                # the intake thread, never on the hook's.
                cmsg.other_user_nickname = cmsg.from_user_nickname = self.room_name(cmsg.other_user_id)
        self._receive(cmsg)

    @time_checker
    def _receive(self, cmsg: WeworkMessage) -> None:
        # As the original: voice, private or group, is governed by speech_recognition.
        if cmsg.ctype == ContextType.VOICE and not conf().get("speech_recognition"):
            return
        logger.debug(f"[wework] {'group' if cmsg.is_group else 'private'} {cmsg.ctype} message: {mask_command(cmsg.content)}")
        context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
        if context:
            self.produce(context)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WeworkMessage):
            return super().message_to_record(cmsg)
        # The notice the hook gave is the message; rebuilt from it, a media message keeps its
        # lazy download from the client's CDN (into the same path the context names).
        return {"notice": cmsg._rawmsg, "room_name": cmsg.other_user_nickname if cmsg.is_group else None,
                "content": cmsg.content}

    def record_to_message(self, record: dict) -> ChatMessage:
        if "notice" not in record:
            return super().record_to_message(record)
        cmsg = WeworkMessage(record["notice"], self.wework, login=self.login, room_name=record.get("room_name"))
        cmsg.content = record.get("content", cmsg.content)
        return cmsg

    # ================================================================== sending
    def send(self, reply: Reply, context: Context) -> None:
        sender = self._senders.get(reply.type)
        if sender is None:
            raise NotImplementedError(f"WeCom through ntwork 0.1.3 cannot send {reply.type}")
        if self.wework is None:
            raise RuntimeError("the WeCom client is not connected")
        receiver = context["receiver"]
        sender(receiver, reply, context)
        logger.info(f"[wework] sent {reply.type} to {receiver}")

    @staticmethod
    def _expect(result: Any, what: str, receiver: str) -> None:
        if not result:
            raise SendRefused(f"WeCom did not take the {what} for {receiver}")

    def _at_target(self, receiver: str, content: str, context: Context) -> tuple[str | None, str]:
        """(user id to @, text without the pipeline's "@nickname\\n") for a group reply to someone."""
        msg = context.get("msg")
        user_id = getattr(msg, "actual_user_id", None)
        nickname = getattr(msg, "actual_user_nickname", None)
        if not is_group_conversation(receiver) or not user_id or not nickname:
            return None, content
        mention = "@" + nickname + "\n"
        prefix = conf().get("group_chat_reply_prefix", "") or ""
        if prefix and content.startswith(prefix + mention):
            # The client puts the @ first; the prefix goes on the line below, as in the text.
            return user_id, "\n" + prefix + content[len(prefix) + len(mention):]
        if content.startswith(mention):
            return user_id, "\n" + content[len(mention):]
        return None, content

    def _send_pieces(self, receiver: str, reply: Reply, text: str, at_user: str | None) -> None:
        pieces = split_string_by_utf8_length(text, TEXT_MAX_BYTES)
        if not pieces:
            logger.debug(f"[wework] empty text to {receiver} not sent")
            return
        # A retry after a failed piece goes on from there instead of repeating what arrived.
        start = getattr(reply, "_wework_pieces_sent", 0)
        for index in range(start, len(pieces)):
            if index == 0 and at_user:
                result = self.wework.send_room_at_msg(receiver, pieces[0], [at_user])
            else:
                result = self.wework.send_text(receiver, pieces[index])
            self._expect(result, "text", receiver)
            reply._wework_pieces_sent = index + 1
        reply._wework_pieces_sent = 0

    def _send_text(self, receiver: str, reply: Reply, context: Context) -> None:
        at_user, text = self._at_target(receiver, str(reply.content), context)
        self._send_pieces(receiver, reply, text, at_user)

    def _send_notice(self, receiver: str, reply: Reply, context: Context) -> None:
        self._send_pieces(receiver, reply, str(reply.content), None)

    def _too_big(self, receiver: str, reply: Reply, context: Context, error: media.TooLarge) -> None:
        logger.warning(f"[wework] {reply.type} to {receiver} not sent: {error}")
        chinese_text, english_text = TOO_BIG_TEXT.get(reply.type, TOO_BIG_TEXT[ReplyType.IMAGE_URL])
        text = chinese_text if is_chinese(str(context.content)) else english_text
        self._expect(self.wework.send_text(receiver, text), "text", receiver)

    def _send_link(self, receiver: str, reply: Reply, context: Context, error: Exception) -> None:
        logger.warning(f"[wework] {reply.type} to {receiver} sent as a link: {error}")
        chinese_text, english_text = LINK_TEXT[reply.type]
        text = (chinese_text if is_chinese(str(context.content)) else english_text).format(reply.content)
        self._send_pieces(receiver, reply, text, None)

    def _send_own_file(self, method: Callable[[str, str], Any], what: str, receiver: str, path: str, own: bool) -> None:
        """Send a file; our own copy is deleted once the client has had time to read it."""
        try:
            result = method(receiver, path)
        finally:
            if own:
                self._delete_later(path)
        self._expect(result, what, receiver)

    def _delete_later(self, path: str) -> None:
        if self._scheduler is not None:
            self._scheduler.call_later(media.KEEP_SECONDS, media.remove_quietly, path)
        # Without a scheduler (not started) the next start clears tmp/wework_send.

    def _send_image(self, receiver: str, reply: Reply, context: Context) -> None:
        if isinstance(reply.content, (str, os.PathLike)):
            path, own = media.file_for_sending(reply.content, ".png")
        else:
            path, own = media.image_file_from_bytes(media.read_all(reply.content)), True
        self._send_own_file(self.wework.send_image, "image", receiver, path, own)

    def _send_image_url(self, receiver: str, reply: Reply, context: Context) -> None:
        try:
            path = media.image_file_from_url(str(reply.content))
        except media.TooLarge as e:
            self._too_big(receiver, reply, context, e)
            return
        except FetchError as e:
            self._send_link(receiver, reply, context, e)
            return
        self._send_own_file(self.wework.send_image, "image", receiver, path, True)

    def _send_file(self, receiver: str, reply: Reply, context: Context) -> None:
        path, own = media.file_for_sending(reply.content, "")
        self._send_own_file(self.wework.send_file, "file", receiver, path, own)

    def _send_video(self, receiver: str, reply: Reply, context: Context) -> None:
        try:
            path, own = media.file_for_sending(reply.content, ".mp4", media.VIDEO_MAX_BYTES)
        except media.TooLarge as e:
            self._too_big(receiver, reply, context, e)
            return
        self._send_own_file(self.wework.send_video, "video", receiver, path, own)

    def _send_video_url(self, receiver: str, reply: Reply, context: Context) -> None:
        path = media.new_send_path(".mp4")
        try:
            media.download(str(reply.content), path, media.VIDEO_MAX_BYTES)
        except media.TooLarge as e:  # the partial file is already removed
            self._too_big(receiver, reply, context, e)
            return
        except FetchError as e:
            self._send_link(receiver, reply, context, e)
            return
        self._send_own_file(self.wework.send_video, "video", receiver, path, True)
