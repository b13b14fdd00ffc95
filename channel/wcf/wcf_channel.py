"""Channel `wcf`: personal WeChat through WeChatFerry, a hook of the Windows PC WeChat client (as
ntwork is for WeCom), driven by the `wcferry` package (see ferry.py for the connection).

Start-up: take the instance lock of appdata_dir (one daemon per login), connect (wcf_host /
wcf_port, or start the service here on Windows), wait until WeChat is logged in, read the
contacts (names of people and rooms), queue the messages kept from the last run, then ask the
service for messages. Room member names are read per room when first needed.

Durability: WeChatFerry pushes each message once and takes no acknowledgement, so a message is
safe from the moment the receiving thread has put it in the state store's inbox
(ChatChannel.produce, its message id as dedup key): answered once after a crash, and a message
seen again (the service re-sent it, a restart) is recognised. Pictures, voice and files are
fetched by the worker that handles them (WcfMessage.prepare), through the service's calls.

The service lost (WeChat quit, the spy unloaded, the Windows machine gone) or WeChat logged out:
the daemon says so in the log and ends with EXIT_PLATFORM_LOST (4), as the WeCom channel does, so
a supervisor restarts it; what was accepted is in the inbox and answered after the restart.
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time

from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.channel_factory import ChannelError
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.own_sends import MEDIA, TEXT, OwnSends, own_message_skip
from channel.reply_media import read_reply_media, with_extension
from channel.wcf import ferry
from channel.wcf.ferry import ServiceLost
from channel.wcf.wcf_message import Malformed, Unsupported, WcfMessage, describe, raw_fields
from channel.wechat.instance_lock import InstanceLock, take_account_lock
from common import fetch
from common.log import logger
from common.tmp_dir import unique_tmp_path
from config import conf

LOCK_FILE = "wcf.lock"
CHECK_INTERVAL = 2.0  # seconds between checks that the service is there and WeChat logged in
LOGIN_LOG_EVERY = 60.0
# A person or room not in the contacts read at start (a room the account joined since) is looked
# up once; when not found, not again before this many seconds.
NAME_RETRY = 600.0
NAME_LOOKUPS_KEPT = 5000
_SAFE_WXID = re.compile(r"[A-Za-z0-9_@.\-]{1,80}")  # it goes into an SQL string literal
IMAGE_WAIT = 10  # seconds the service may take to decrypt a picture
VOICE_WAIT = 5
FILE_WAIT = 10.0
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be received; please send it again)"
TOO_BIG_TEXT = "文件太大，无法接收 (the file is too large to receive)"
TOO_BIG_OUT_TEXT = ("文件太大，无法发送", "The file is too large to send.")
READ_FAILED_TEXT = ("文件没能读取，无法发送", "The file could not be read, so it was not sent.")
_MEDIA_OUT = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.FILE: "file",
              ReplyType.VIDEO: "file", ReplyType.VIDEO_URL: "file"}
_TEXTS = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)


class SendRefused(Exception):
    """The service answered a send with a failure status."""


class MediaUnavailable(Exception):
    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class WcfChannel(ChatChannel):
    # WeChatFerry cannot send voice (SILK); text, pictures and files go out.
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE]
    # The service pushes each message once: one that comes while stopping is kept for the restart.
    KEEP_WHILE_STOPPING = True

    def __init__(self) -> None:
        super().__init__()
        self.host = str(conf().get("wcf_host") or "").strip()
        self.port = int(conf().get("wcf_port"))
        self.rpc_timeout = float(conf().get("wcf_rpc_timeout"))
        self.media_max = int(conf().get("wcf_media_max_bytes"))
        self.wcf = None
        self._names: dict[str, str] = {}  # wxid (people, rooms) -> name
        self._members: dict[str, dict[str, str]] = {}  # room -> {wxid: name in the room}
        self._names_lock = threading.Lock()
        self._looked_up: dict[str, float] = {}  # wxid -> when it was last looked up and not found
        self._stopping = threading.Event()
        self._lock: InstanceLock | None = None
        self._receiver: threading.Thread | None = None
        # What this daemon sent: the service reports it back as the account's own messages
        # (WeChatFerry's sends return no message id, so the text to that conversation is noted).
        self._own = OwnSends()

    # ================================================================== lifecycle
    def startup(self) -> None:
        self._lock = take_account_lock(LOCK_FILE)
        where = f"{self.host or '127.0.0.1'}:{self.port}"
        self.wcf = ferry.connect(self.host, self.port, self.rpc_timeout)
        logger.info(f"[wcf] connected to WeChatFerry at {where}")
        try:
            if not self._wait_login():
                return
            self.user_id = self.wcf.get_self_wxid()
            self.name = self.wcf.get_user_info().get("name") or self.user_id
            logger.info(f"[wcf] logged in as {self.name} ({self.user_id})")
            self._read_contacts()
            # Messages accepted before the last stop are queued before new ones are taken.
            self.resume_inbox()
            if not self.wcf.enable_receiving_msg():
                raise ChannelError(f"WeChatFerry at {where} refused to send messages (FUNC_ENABLE_RECV_TXT)")
            self._receiver = threading.Thread(target=self._receive_loop, name="wcf-receive", daemon=True)
            self._receiver.start()
            logger.info("[wcf] ready, handling messages")
            self._watch()
        except ServiceLost as e:
            if self._stopping.is_set():
                return
            logger.error(f"[wcf] the WeChatFerry service at {where} stopped answering ({e}): WeChat quit or the "
                         f"service stopped; the daemon exits (code {EXIT_PLATFORM_LOST}) so that it can be started "
                         f"again once the service runs; accepted messages are answered then")
            self.exit_code = EXIT_PLATFORM_LOST
            self.finished = True

    def _wait_login(self) -> bool:
        said = 0.0
        while not self._stopping.is_set():
            if self.wcf.is_login():
                return True
            if time.monotonic() - said >= LOGIN_LOG_EVERY:
                logger.info("[wcf] waiting for WeChat to be logged in on the PC (scan the QR in PC WeChat)")
                said = time.monotonic()
            self._stopping.wait(1.0)
        return False

    def _watch(self) -> None:
        """Held on the main thread: checks the service and the login until the daemon stops."""
        while not self._stopping.wait(CHECK_INTERVAL):
            if not self.wcf.is_login():
                if self._stopping.is_set():
                    return
                logger.error(f"[wcf] WeChat logged out on the PC; the daemon exits (code {EXIT_PLATFORM_LOST}); log "
                             f"in again and start it")
                self.exit_code = EXIT_PLATFORM_LOST
                self.finished = True
                return

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
        if self.wcf is not None:
            self.wcf.cleanup()
        if self._lock is not None:
            self._lock.release()

    # ================================================================== names
    def _read_contacts(self) -> None:
        contacts = self.wcf.get_contacts()
        with self._names_lock:
            for contact in contacts:
                wxid = contact.get("wxid")
                if wxid:
                    self._names[wxid] = contact.get("remark") or contact.get("name") or wxid
        rooms = sum(1 for w in self._names if w.endswith("@chatroom"))
        logger.info(f"[wcf] {len(self._names) - rooms} contacts and {rooms} rooms read")

    def _name(self, wxid: str, room: str) -> str:
        if room:
            with self._names_lock:
                members = self._members.get(room)
            if (members is None or wxid not in members) and not _SAFE_WXID.fullmatch(room):
                members = {}  # wcferry puts the room id into its SQL as it is
            elif members is None or wxid not in members:
                try:
                    members = self.wcf.get_chatroom_members(room)
                except ServiceLost:
                    raise
                except Exception as e:
                    logger.warning(f"[wcf] members of room {room} not read: {e}")
                    members = {}
                with self._names_lock:
                    self._members[room] = members
            if members.get(wxid):
                return members[wxid]
        return self._known_name(wxid)

    def _known_name(self, wxid: str) -> str:
        """The name of a person or room: from the contacts read at start, else looked up in
        WeChat's contact table (once, then again after NAME_RETRY s while not found)."""
        now = time.monotonic()
        with self._names_lock:
            if wxid in self._names:
                return self._names[wxid]
            last = self._looked_up.get(wxid)
            if last is not None and now - last < NAME_RETRY:
                return ""
            if len(self._looked_up) >= NAME_LOOKUPS_KEPT:
                self._looked_up.clear()
            self._looked_up[wxid] = now
        name = self._look_up_name(wxid)
        if name:
            with self._names_lock:
                self._names[wxid] = name
                self._looked_up.pop(wxid, None)
        return name

    def _look_up_name(self, wxid: str) -> str:
        if not _SAFE_WXID.fullmatch(wxid):
            return ""
        try:
            rows = self.wcf.query_sql("MicroMsg.db", f"SELECT NickName FROM Contact WHERE UserName = '{wxid}';")
        except ServiceLost:
            raise
        except Exception as e:
            logger.warning(f"[wcf] the name of {wxid} could not be looked up: {e}")
            return ""
        name = rows[0].get("NickName") if rows and isinstance(rows[0], dict) else ""
        if isinstance(name, str) and name.strip():
            logger.info(f"[wcf] {'room' if wxid.endswith('@chatroom') else 'contact'} {wxid} not read at start, "
                        f"looked up: {name!r}")
            return name
        return ""

    # ================================================================== receiving
    def _receive_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                msg = self.wcf.get_msg()
            except queue.Empty:
                continue
            raw = None
            try:
                raw = raw_fields(msg)
                self.take(raw)
            except ServiceLost as e:
                logger.error(f"[wcf] a message could not be taken, the service stopped answering: {e}")
            except Exception:
                logger.exception(f"[wcf] a message could not be taken: "
                                 f"{describe(raw) if raw is not None else type(msg).__name__}")

    def take(self, raw: dict) -> Produced | None:
        try:
            cmsg = WcfMessage(raw, self.user_id or "", self.name or "", self._name, fetch=self._fetch_media)
        except Unsupported as e:
            logger.debug(f"[wcf] message {raw.get('id')} skipped: {e}")
            return None
        except Malformed as e:
            logger.warning(f"[wcf] a malformed message skipped: {e}: {describe(raw)}")
            return None
        why = own_message_skip(cmsg, self._own, TEXT if cmsg.ctype == ContextType.TEXT else MEDIA)
        if why:
            logger.debug(f"[wcf] message {cmsg.msg_id} skipped: {why}")
            return None
        if cmsg.ctype == ContextType.VOICE:
            setting = "group_speech_recognition" if cmsg.is_group else "speech_recognition"
            if not conf().get(setting):
                logger.info(f"[wcf] voice message {cmsg.msg_id} skipped ({setting} off)")
                return None
        context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
        return self.produce(context)

    # ================================================================== media in (worker)
    def _fetch_media(self, cmsg: WcfMessage) -> None:
        """Write the picture, voice or file of `cmsg` at its path. Raises MediaUnavailable (what to
        tell the user), OSError (tmp/) or ServiceLost."""
        if cmsg.declared_size > self.media_max:
            logger.error(f"[wcf] the file of message {cmsg.msg_id} ({cmsg.declared_size} bytes) is over "
                         f"wcf_media_max_bytes ({self.media_max}): refused")
            raise MediaUnavailable(TOO_BIG_TEXT)
        target = cmsg.content
        folder = os.path.abspath(os.path.dirname(target))
        os.makedirs(folder, exist_ok=True)
        raw = cmsg.raw
        if cmsg.ctype == ContextType.IMAGE:
            got = self.wcf.download_image(raw["id"], raw["extra"], folder, timeout=IMAGE_WAIT)
        elif cmsg.ctype == ContextType.VOICE:
            got = self.wcf.get_audio_msg(raw["id"], folder, timeout=VOICE_WAIT)
        else:
            got = self._download_file(cmsg)
        if not got or not os.path.isfile(got):
            logger.error(f"[wcf] the {cmsg.ctype.name.lower()} of message {cmsg.msg_id} could not be received")
            raise MediaUnavailable(MEDIA_FAILED_TEXT)
        size = os.path.getsize(got)
        if size > self.media_max:
            logger.error(f"[wcf] the {cmsg.ctype.name.lower()} of message {cmsg.msg_id} ({size} bytes) is over "
                         f"wcf_media_max_bytes ({self.media_max}): refused")
            if os.path.abspath(got).startswith(folder + os.sep):
                os.remove(got)
            raise MediaUnavailable(TOO_BIG_TEXT)
        if os.path.abspath(got) != os.path.abspath(target):
            # The file WeChat keeps (a file's `extra`) is copied: it is the user's, not ours.
            (shutil.move if os.path.dirname(os.path.abspath(got)) == folder else shutil.copyfile)(got, target)
        logger.debug(f"[wcf] {cmsg.ctype.name.lower()} of message {cmsg.msg_id}: {size} bytes -> {target}")

    def _download_file(self, cmsg: WcfMessage) -> str:
        path = cmsg.raw["extra"]
        if os.path.isfile(path):
            return path
        if self.wcf.download_attach(cmsg.raw["id"], "", path) != 0:
            return ""
        deadline = time.monotonic() + FILE_WAIT
        while not os.path.isfile(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        return path if os.path.isfile(path) else ""

    def _generate_reply(self, context: Context, reply: Reply | None = None) -> Reply | None:
        cmsg = context.get("msg")
        if isinstance(cmsg, WcfMessage) and cmsg.has_media and context.type != ContextType.TEXT:
            try:
                cmsg.prepare()  # an OSError (tmp/) goes to _handle, which tells the user
            except MediaUnavailable as e:
                return Reply(ReplyType.ERROR, e.notice)
        return super()._generate_reply(context, reply)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WcfMessage):
            return super().message_to_record(cmsg)
        return cmsg.to_record()

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wcf" not in record:
            return super().record_to_message(record)
        return WcfMessage.from_record(record, self.user_id or "", self._fetch_media)

    # ================================================================== sending
    def send(self, reply: Reply, context: Context) -> None:
        if self.wcf is None:
            raise RuntimeError("not connected to WeChatFerry")
        receiver = str(context.get("receiver") or "")
        if reply.type in _TEXTS:
            aters, text = self._at_target(receiver, str(reply.content), context, reply.type)
            self._own.note_send(receiver, TEXT, text)
            self._expect(self.wcf.send_text(text, receiver, aters), "text", receiver)
        elif reply.type in _MEDIA_OUT:
            self._send_media(reply, receiver, context)
        else:
            raise NotImplementedError(f"WeChatFerry cannot send {reply.type}")
        logger.info(f"[wcf] sent {reply.type} to {receiver}")

    @staticmethod
    def _expect(status: int, what: str, receiver: str) -> None:
        if status != 0:
            raise SendRefused(f"WeChatFerry refused the {what} for {receiver} (status {status})")

    @staticmethod
    def _at_target(receiver: str, text: str, context: Context, rtype: ReplyType) -> tuple[str, str]:
        """(wxids to @, text) of a reply: in a room, the pipeline's leading "@nickname" becomes a
        real @ of the member (WeChatFerry wants one "@name" in the text per wxid in aters)."""
        msg = context.get("msg")
        user_id = getattr(msg, "actual_user_id", None)
        nickname = getattr(msg, "actual_user_nickname", None)
        if rtype != ReplyType.TEXT or not receiver.endswith("@chatroom") or not user_id or not nickname:
            return "", text
        mention = "@" + nickname + "\n"
        prefix = conf().get("group_chat_reply_prefix", "") or ""
        if text.startswith(prefix + mention):
            return user_id, "@" + nickname + "\u2005" + prefix + text[len(prefix) + len(mention):]
        return "", text

    def _send_media(self, reply: Reply, receiver: str, context: Context) -> None:
        kind = _MEDIA_OUT[reply.type]
        chinese = is_chinese(str(context.content))
        is_link = reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL)
        try:
            data, name = read_reply_media(reply, self.media_max, kind)
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[wcf] {reply.type} not read ({e}); " + ("sending the link" if is_link else "saying so"))
            text = str(reply.content) if is_link else READ_FAILED_TEXT[0 if chinese else 1]
            self._own.note_send(receiver, TEXT, text)
            self._expect(self.wcf.send_text(text, receiver, ""), "text", receiver)
            return
        if len(data) > self.media_max:
            logger.warning(f"[wcf] {reply.type} over wcf_media_max_bytes ({self.media_max}), not sent")
            text = str(reply.content) if is_link else TOO_BIG_OUT_TEXT[0 if chinese else 1]
            self._own.note_send(receiver, TEXT, text)
            self._expect(self.wcf.send_text(text, receiver, ""), "text", receiver)
            return
        # The service reads the file by its path (on the machine where it runs: with a remote
        # wcf_host, a shared folder): a copy of our own, named as the user will see it.
        folder = unique_tmp_path("-out")
        os.makedirs(folder, exist_ok=True)
        path = os.path.abspath(os.path.join(folder, with_extension(os.path.basename(name) or kind, data,
                                                                  ".png" if kind == "image" else "")))
        with open(path, "wb") as f:
            f.write(data)
        # Not deleted here: WeChat may read it after the call returns; the tmp/ janitor removes
        # it after tmp_max_age.
        method = self.wcf.send_image if kind == "image" else self.wcf.send_file
        self._own.note_send(receiver, MEDIA)
        self._expect(method(path, receiver), kind, receiver)
