"""Channel `wxy`: personal WeChat through a wechaty puppet service (reference/personal-wechat.md §3).

The service (a paid third-party "puppet" that runs a WeChat client for the account) is reached
with the lean gRPC client of puppet.py, on an asyncio loop of its own thread ("wxy-puppet"):
Start, then the Event stream, whose events drive everything:

* SCAN: the login QR, drawn in the terminal and saved as tmp/login.png (the code of `wx`);
* LOGIN: the account's id and name (for @ detection); the first one queues the messages kept
  in the inbox from the last run;
* MESSAGE: its payload (MessagePayload, and the talker's name and the room's topic) becomes a
  WechatyMessage and goes through the pipeline's durable accept path: into the state store's
  inbox (its message id the dedup key) before it is handled, so a MESSAGE event the service sends
  again (after a reconnect) is handled once, and a message taken before a crash is answered once
  after the restart. Media are fetched by the worker that handles them (MessageImage /
  MessageFile), never on the event loop;
* a broken or ended stream, or a service silent for two heartbeat intervals (it is pinged with
  Ding after one), is connected again after a growing pause.

Answers go out from the pipeline's workers: MessageSendText (in a room, with the asker in the
mention list, so WeChat shows a real @) and MessageSendFile with a FileBox JSON for pictures and
files. Voice and video answers are not sent (a voice answer falls back to text).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from typing import Any

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.channel_factory import ChannelError
from channel.chat_channel import ChatChannel
from channel.chat_message import ChatMessage
from channel.reply_media import read_reply_media, with_extension
from channel.login_qr import LOGIN_QRS
from channel.own_sends import MEDIA, TEXT, OwnSends, own_message_skip
from channel.wechat.ilink_login import show_qr
from channel.wechat.instance_lock import InstanceLock, take_account_lock
from channel.wechaty import puppet
from channel.wechaty.puppet import (EVENT_DONG, EVENT_ERROR, EVENT_HEARTBEAT, EVENT_LOGIN, EVENT_LOGOUT,
                                    EVENT_MESSAGE, EVENT_READY, EVENT_RESET, EVENT_SCAN, Endpoint, MissingDependency,
                                    PuppetConnection, PuppetError)
from channel.wechaty.wechaty_message import Malformed, Unsupported, WechatyMessage, facts_of
from common import fetch
from common.expired_dict import ExpiredDict
from common.log import logger
from config import conf

LOCK_FILE = "wxy.lock"
RETRY_MAX = 60.0
PAYLOAD_TRIES = 3  # reads of one message's payload that failed for a passing reason
LOGIN_WAIT = 30.0  # seconds an answer waits for the connection to come back before its send fails
NAMES_TTL = 3600.0  # contact names and room topics are asked again after this
SCAN_WAITING, SCAN_SCANNED, SCAN_CONFIRMED, SCAN_TIMEOUT = 2, 3, 4, 5
NO_LOGIN_TEXT = ("wxy needs `wechaty_puppet_service_token` (the token of your puppet service) or "
                 "`wechaty_puppet_service_endpoint` (host:port of the service). Without a puppet service, use "
                 "channel_type `wx`: personal WeChat through Tencent's official iLink bot API, logged in by QR code")
MEDIA_FAILED_TEXT = "收到的文件没能下载，请再发一次 (the file could not be received; please send it again)"
TOO_BIG_TEXT = "文件太大，无法接收 (the file is too large to receive)"
READ_FAILED_TEXT = "文件没能读取，无法发送 (the file could not be read, so it was not sent)"
TOO_BIG_OUT_TEXT = "文件太大，无法发送 (the file is too large to send)"
_TEXTS = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)
_FILES = (ReplyType.IMAGE, ReplyType.IMAGE_URL, ReplyType.FILE)


class MediaUnavailable(Exception):
    """A media file that cannot be fetched; `notice` is what the user is told."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class _Silent(Exception):
    pass


def _number(key: str, default: float) -> float:
    try:
        return float(conf().get(key))
    except (TypeError, ValueError):
        return default


def _json_object(payload: str) -> dict:
    """An event's payload as an object; raises ValueError."""
    value = json.loads(payload) if payload else {}
    if not isinstance(value, dict):
        raise ValueError(f"a {type(value).__name__}, not an object")
    return value


class WechatyChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE, ReplyType.VIDEO, ReplyType.VIDEO_URL]
    # The service pushes each message once: one that comes while stopping is kept for the restart.
    KEEP_WHILE_STOPPING = True

    def __init__(self) -> None:
        self.token = str(conf().get("wechaty_puppet_service_token") or "").strip()
        self.endpoint_setting = str(conf().get("wechaty_puppet_service_endpoint") or "").strip()
        if not self.token and not self.endpoint_setting:
            raise ChannelError(NO_LOGIN_TEXT)
        self.endpoint: Endpoint | None = None
        if self.endpoint_setting:
            try:
                self.endpoint = puppet.parse_endpoint(self.endpoint_setting)
            except ValueError as e:
                raise ChannelError(f"wechaty_puppet_service_endpoint: {e} (expected host:port)") from None
        try:
            puppet.load_stubs()
        except MissingDependency as e:
            raise ChannelError(str(e)) from None
        super().__init__()
        self.discovery_url = str(conf().get("wechaty_discovery_url") or "").strip()
        self.retry_delay = max(0.1, _number("wechaty_retry_delay", 2.0))
        self.heartbeat = _number("wechaty_heartbeat_interval", 60.0)
        self.media_max = int(_number("wechaty_media_max_bytes", 20 * 1024 * 1024))
        self._stopping = threading.Event()
        self._logged_in = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._conn: PuppetConnection | None = None
        self._lock: InstanceLock | None = None
        self._fatal: str | None = None
        self._connected_once = False
        self._resumed = False
        self._last_qr = ""
        self._last_event = 0.0
        self._names: ExpiredDict = ExpiredDict(NAMES_TTL, maxsize=5000)
        # What this daemon sent: the service reports it back as MESSAGE events of the account,
        # which must not be taken as questions (an answer would answer itself).
        self._own = OwnSends()
        # Before any channel starts: a web page of this daemon then knows to look for the QR.
        LOGIN_QRS.expect("wxy")

    # ================================================================== lifecycle
    def startup(self) -> None:
        self._lock = take_account_lock(LOCK_FILE, "wechaty")
        self._thread = threading.Thread(target=self._run_loop, name="wxy-puppet", daemon=True)
        self._thread.start()
        # Held here so that a puppet thread that cannot go on ends the daemon instead of leaving
        # it up and deaf; signals still reach the main thread between the waits.
        while self._thread.is_alive():
            self._thread.join(1.0)
        if self._fatal is not None and not self._stopping.is_set():
            if not self._connected_once:
                raise ChannelError(self._fatal)
            logger.error(f"[wxy] {self._fatal}; the daemon stops")
        if not self._stopping.is_set():
            self.exit_code = self.exit_code or EXIT_PLATFORM_LOST
            self.finished = True

    def stop(self) -> None:
        self._stopping.set()
        LOGIN_QRS.withdraw("wxy")
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop has closed already
                pass
        super().stop()
        if self._lock is not None:
            self._lock.release()

    @property
    def state(self) -> str:
        return "logged in" if self._logged_in.is_set() else "logging in"

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._main_task = loop.create_task(self._main())
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("[wxy] the puppet thread failed")
        finally:
            self._loop = None
            loop.close()

    # ================================================================== connecting
    async def _main(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                endpoint = self.endpoint or await asyncio.get_running_loop().run_in_executor(
                    None, puppet.discover, self.discovery_url, self.token)
                conn = PuppetConnection(endpoint, self.token)
                self._conn = conn
                try:
                    worked = await self._session(conn)
                finally:
                    self._conn = None
                    self._logged_in.clear()
                    conn.close()
                why = "the puppet service ended the event stream"
            except PuppetError as e:
                if e.refused:
                    self._fatal = f"{e}: check wechaty_puppet_service_token"
                    logger.error(f"[wxy] {self._fatal}")
                    return
                worked = False
                why = str(e)
            except _Silent:
                worked = True
                why = (f"no event from the puppet service for {2 * self.heartbeat:g} s (nor an answer to the "
                       f"heartbeat)")
            failures = 1 if worked else failures + 1
            delay = min(RETRY_MAX, self.retry_delay * 2 ** min(failures - 1, 10))
            logger.error(f"[wxy] {why}; connecting again in {delay:g} s")
            if self._stopping.is_set():
                return
            await asyncio.sleep(delay)

    async def _session(self, conn: PuppetConnection) -> bool:
        """Start the puppet and follow its event stream until it ends (returns whether any event
        came, i.e. the connection worked). Raises PuppetError or _Silent."""
        await conn.start()
        self._connected_once = True
        logger.info(f"[wxy] connected to the puppet service at {conn.endpoint}")
        self._last_event = time.monotonic()
        received = [False]
        consume = asyncio.ensure_future(self._consume(conn, received))
        if self.heartbeat <= 0:
            await consume
            return received[0]
        watch = asyncio.ensure_future(self._watch(conn))
        try:
            done, _ = await asyncio.wait({consume, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (consume, watch):
                task.cancel()
        if consume in done:
            consume.result()
            return received[0]
        watch.result()
        raise _Silent()

    async def _watch(self, conn: PuppetConnection) -> None:
        """Returns when the service has been silent for two heartbeat intervals."""
        pinged = False
        while True:
            await asyncio.sleep(min(self.heartbeat / 4, 5.0))
            silent = time.monotonic() - self._last_event
            if silent >= 2 * self.heartbeat:
                return
            if silent >= self.heartbeat and not pinged:
                pinged = True
                try:
                    await conn.ding("heartbeat")
                except PuppetError as e:
                    logger.warning(f"[wxy] the heartbeat (Ding) failed: {e}")
            elif silent < self.heartbeat:
                pinged = False

    async def _consume(self, conn: PuppetConnection, received: list) -> None:
        async for kind, payload in conn.events():
            self._last_event = time.monotonic()
            received[0] = True
            try:
                await self._on_event(conn, kind, payload)
            except PuppetError:
                raise
            except Exception:
                # One event must not end receiving for everyone.
                logger.exception(f"[wxy] an event of type {kind} could not be handled; skipped")

    # ================================================================== events
    async def _on_event(self, conn: PuppetConnection, kind: int, payload: str) -> None:
        if kind in (EVENT_HEARTBEAT, EVENT_DONG, EVENT_READY, EVENT_RESET):
            logger.debug(f"[wxy] event {kind}")
            return
        if kind not in (EVENT_SCAN, EVENT_LOGIN, EVENT_LOGOUT, EVENT_MESSAGE, EVENT_ERROR):
            logger.debug(f"[wxy] event {kind} not handled")
            return
        try:
            data = _json_object(payload)
        except ValueError as e:
            logger.warning(f"[wxy] a malformed event of type {kind} skipped ({e}): {payload[:200]!r}")
            return
        if kind == EVENT_SCAN:
            await self._on_scan(data)
        elif kind == EVENT_LOGIN:
            await self._on_login(conn, data)
        elif kind == EVENT_LOGOUT:
            self._logged_in.clear()
            logger.error("[wxy] the account was logged out of the puppet service; scan the next QR to log in "
                         "again (an answer waits up to a minute for it, then is given up)")
        elif kind == EVENT_ERROR:
            logger.warning(f"[wxy] the puppet service reports an error: {str(data.get('data', data))[:300]}")
        else:
            message_id = data.get("messageId")
            if not isinstance(message_id, str) or not message_id:
                logger.warning(f"[wxy] a MESSAGE event without a messageId skipped: {payload[:200]!r}")
                return
            await self._take(conn, message_id)

    async def _on_scan(self, data: dict) -> None:
        status, qrcode = data.get("status"), data.get("qrcode")
        if isinstance(qrcode, str) and qrcode and qrcode != self._last_qr and status in (SCAN_WAITING, SCAN_TIMEOUT):
            self._last_qr = qrcode
            # Its content is a login credential while it lives: never in the log.
            path, png = await asyncio.get_running_loop().run_in_executor(None, show_qr, qrcode, "wxy")
            if png:
                LOGIN_QRS.show("wxy", png)
            logger.info(f"[wxy] scan the QR with WeChat to log in (shown in the terminal, saved as {path})")
        elif status == SCAN_SCANNED:
            logger.info("[wxy] QR scanned; confirm the login on the phone")
        else:
            logger.debug(f"[wxy] scan status {status!r}")

    async def _on_login(self, conn: PuppetConnection, data: dict) -> None:
        contact_id = data.get("contactId")
        if not isinstance(contact_id, str) or not contact_id:
            logger.warning("[wxy] a LOGIN event without a contactId skipped")
            return
        self.user_id = contact_id
        LOGIN_QRS.withdraw("wxy")  # a page must not show the QR once it is used
        self._last_qr = ""
        self.name = await self._contact_name(conn, contact_id) or self.name
        self._logged_in.set()
        logger.info(f"[wxy] logged in as {self.name or contact_id} ({contact_id})")
        if not self._resumed:
            self._resumed = True
            # Messages accepted before the last stop are queued before new ones are taken.
            await asyncio.get_running_loop().run_in_executor(None, self.resume_inbox)
            logger.info("[wxy] ready, handling messages")

    async def _contact_name(self, conn: PuppetConnection, contact_id: str) -> str:
        key = "c:" + contact_id
        if key in self._names:
            return self._names[key]
        try:
            name = (await conn.contact_payload(contact_id)).name
        except PuppetError as e:
            if e.refused:
                raise
            logger.warning(f"[wxy] the name of contact {contact_id} could not be read: {e}")
            return ""
        self._names[key] = name if isinstance(name, str) else ""
        return self._names[key]

    async def _room_topic(self, conn: PuppetConnection, room_id: str) -> str:
        key = "r:" + room_id
        if key in self._names:
            return self._names[key]
        try:
            topic = (await conn.room_payload(room_id)).topic
        except PuppetError as e:
            if e.refused:
                raise
            logger.warning(f"[wxy] the topic of room {room_id} could not be read: {e}")
            return ""
        self._names[key] = topic if isinstance(topic, str) else ""
        return self._names[key]

    async def _payload(self, conn: PuppetConnection, message_id: str) -> Any | None:
        for attempt in range(1, PAYLOAD_TRIES + 1):
            try:
                return await conn.message_payload(message_id)
            except PuppetError as e:
                if e.refused:
                    raise
                if attempt == PAYLOAD_TRIES:
                    logger.error(f"[wxy] message {message_id} could not be read after {attempt} tries ({e}); "
                                 f"it is lost")
                    return None
                logger.warning(f"[wxy] message {message_id} not read yet ({e}); trying again")
                # Short: the events behind this one wait meanwhile.
                await asyncio.sleep(min(self.retry_delay * attempt, 2.0))
        return None

    async def _take(self, conn: PuppetConnection, message_id: str) -> None:
        payload = await self._payload(conn, message_id)
        if payload is None:
            return
        try:
            room_id = payload.room_id if isinstance(payload.room_id, str) else ""
            from_id = payload.from_id if isinstance(payload.from_id, str) else ""
            to_id = payload.to_id if isinstance(payload.to_id, str) else ""
            facts = facts_of(
                payload,
                from_name=await self._contact_name(conn, from_id) if from_id else "",
                to_name=await self._contact_name(conn, to_id) if to_id and not room_id else "",
                room_topic=await self._room_topic(conn, room_id) if room_id else "",
                self_id=self.user_id or "", self_name=self.name or "")
            cmsg = WechatyMessage(facts, fetch=self._fetch_media)
        except Malformed as e:
            logger.warning(f"[wxy] a malformed message skipped: {e}")
            return
        except Unsupported as e:
            logger.info(f"[wxy] {e}; skipped")
            return
        why = own_message_skip(cmsg, self._own, TEXT if cmsg.ctype == ContextType.TEXT else MEDIA)
        if why:
            logger.debug(f"[wxy] message {message_id} skipped: {why}")
            return
        if cmsg.ctype == ContextType.VOICE:
            setting = "group_speech_recognition" if cmsg.is_group else "speech_recognition"
            if not conf().get(setting):
                logger.info(f"[wxy] voice message {cmsg.msg_id} skipped ({setting} is off)")
                return
        # The rules, the plugins and the store write run off the loop (and in order: one
        # message at a time), so that a refusal sent from there cannot wait on this loop.
        await asyncio.get_running_loop().run_in_executor(None, self._accept, cmsg)

    def _accept(self, cmsg: WechatyMessage) -> None:
        context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=cmsg.is_group, msg=cmsg)
        self.produce(context)

    # ================================================================== media in (worker)
    def _on_loop(self, coro, timeout: float = puppet.UNARY_TIMEOUT + 5):
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            coro.close()
            raise PuppetError("not connected to the puppet service")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _connection(self) -> PuppetConnection:
        """The connection once logged in; waits up to LOGIN_WAIT s for a reconnect."""
        deadline = time.monotonic() + LOGIN_WAIT
        while not (self._logged_in.is_set() and self._conn is not None):
            if time.monotonic() >= deadline or self._stopping.is_set():
                raise PuppetError("not connected to the puppet service (or not logged in)")
            self._logged_in.wait(0.2)
        return self._conn

    def _fetch_media(self, cmsg: WechatyMessage) -> None:
        """Fetch the media of `cmsg` into its path. Raises MediaUnavailable or OSError (tmp/)."""
        what = "picture" if cmsg.ctype == ContextType.IMAGE else "voice"
        try:
            conn = self._connection()
            call = conn.message_image if cmsg.ctype == ContextType.IMAGE else conn.message_file
            box = puppet.parse_file_box(self._on_loop(call(cmsg.msg_id)))
            if isinstance(box.get("base64"), str):
                encoded = box["base64"]
                # Measured before it is decoded: an oversized file costs no second copy.
                data = None if len(encoded.rstrip("=")) * 3 // 4 > self.media_max else \
                    base64.b64decode(encoded, validate=True)
            else:
                data, _ = fetch.fetch_bytes(box["remoteUrl"], self.media_max,
                                            extra_hosts=conf().get("allowed_internal_hosts") or [])
        except fetch.FetchTooLarge:
            data = None
        except (PuppetError, ValueError, binascii.Error, fetch.FetchError) as e:
            logger.error(f"[wxy] the {what} of message {cmsg.msg_id} could not be received: {e}")
            raise MediaUnavailable(MEDIA_FAILED_TEXT) from None
        if data is None or len(data) > self.media_max:
            logger.error(f"[wxy] the {what} of message {cmsg.msg_id} is over wechaty_media_max_bytes "
                         f"({self.media_max}): refused")
            raise MediaUnavailable(TOO_BIG_TEXT)
        with open(cmsg.content, "wb") as f:
            f.write(data)
        logger.debug(f"[wxy] {what} of message {cmsg.msg_id}: {len(data)} bytes -> {cmsg.content}")

    def _generate_reply(self, context: Context, reply: Reply | None = None) -> Reply | None:
        cmsg = context.get("msg")
        if isinstance(cmsg, WechatyMessage) and cmsg.has_media and context.type != ContextType.TEXT:
            try:
                cmsg.prepare()  # an OSError (tmp/) goes to _handle, which tells the user
            except MediaUnavailable as e:
                return Reply(ReplyType.ERROR, e.notice)
        return super()._generate_reply(context, reply)

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if not isinstance(cmsg, WechatyMessage):
            return super().message_to_record(cmsg)
        return cmsg.to_record()

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wxy" not in record:
            return super().record_to_message(record)
        return WechatyMessage.from_record(record, self._fetch_media)

    # ================================================================== sending
    def send(self, reply: Reply, context: Context) -> None:
        receiver = str(context.get("receiver") or "")
        conn = self._connection()
        if reply.type in _TEXTS:
            mentions = []
            cmsg = context.get("msg")
            if context.get("isgroup") and reply.type == ReplyType.TEXT and isinstance(cmsg, ChatMessage) \
                    and cmsg.actual_user_id and not context.get("no_need_at", conf().get("no_need_at", False)):
                # The text says "@name" (the pipeline's decoration); the list makes it a real @.
                mentions = [cmsg.actual_user_id]
            noted = self._own.note_send(receiver, TEXT, str(reply.content))
            self._on_loop(self._noted(conn.send_text(receiver, str(reply.content), mentions), noted))
        elif reply.type in _FILES:
            box, notice = self._file_box(reply)
            if box is not None:
                noted = self._own.note_send(receiver, MEDIA)
                self._on_loop(self._noted(conn.send_file(receiver, box), noted))
            else:  # the file could not be read or is too large: the user is told instead
                noted = self._own.note_send(receiver, TEXT, notice)
                self._on_loop(self._noted(conn.send_text(receiver, notice, []), noted))
        else:
            raise NotImplementedError(f"wechaty cannot send {reply.type}")
        logger.info(f"[wxy] sent {reply.type} to {receiver}")

    async def _noted(self, send, record) -> str:
        message_id = await send
        self._own.note_id(message_id, record)
        return message_id

    def _file_box(self, reply: Reply) -> tuple[str | None, str]:
        """(the FileBox JSON of a picture or file reply, "") or (None, the text to send instead)."""
        is_link = reply.type == ReplyType.IMAGE_URL
        try:
            data, name = read_reply_media(reply, self.media_max, "image" if reply.type != ReplyType.FILE else "file")
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[wxy] {reply.type} not read ({e}); " + ("sending the link" if is_link else "saying so"))
            return None, str(reply.content) if is_link else READ_FAILED_TEXT
        if len(data) > self.media_max:
            logger.warning(f"[wxy] {reply.type} over wechaty_media_max_bytes ({self.media_max}), not sent")
            return None, str(reply.content) if is_link else TOO_BIG_OUT_TEXT
        fallback = ".png" if reply.type != ReplyType.FILE else ""
        return puppet.file_box_json(data, with_extension(name, data, fallback)), ""
