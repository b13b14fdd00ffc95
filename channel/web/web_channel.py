"""Web channel: a chat page in the browser, private chat only, one session per user id.

Routes (the original's, on `web_port`): `GET /chat` the page, `POST /message`
`{user_id, message}` -> `{"status": "success", "message": "Message received", ...}`, and
`GET /sse/<user_id>`, a Server-Sent Events stream of `{"type", "content", "timestamp"}`
(`type` is the reply type's name as the original sends it: "TEXT", "IMAGE_URL", "IMAGE",
"FILE", "ERROR", "INFO", ...). `content` is always a string, as in the original: for
IMAGE, FILE and VIDEO it is the link to the file (the original put the server's file
path there), with `url`, `name` and `mime` beside it. The refusals the original had
("Invalid JSON", "No message provided") keep its HTTP 200 and text, with `detail` added.
`user_id` is any text (missing: "default_user", as in the original), see ids.py.

A streamed answer is shown growing in one bubble: the bot calls `show_partial`, the
page gets SSE events named `partial` (`{"type": "TEXT_PARTIAL", "stream", "offset",
"delta"}`; an EventSource `onmessage` handler, as old front ends use, never sees them),
then the whole answer once as a normal TEXT event carrying the same `stream` id.
`GET /history/<user_id>` gives the user's recent conversation (kept in the state store)
so a reloaded page shows it again. When another channel of the daemon (`wx`) waits for its login QR
to be scanned, `GET /login/status` names it and `GET /login/qr/<channel>` is its picture, which the
page shows until the login is done (behind `web_password` like the API: the QR logs in whoever
scans it).

Better than the original:
- a reply is pushed the moment it exists (an event per connection, no polling), so a
  streamed Dify answer (`dify_stream_reply`) appears piece by piece;
- nothing sent while the page was away is lost, a restart (even `kill -9`) included: each user
  has an outbox of numbered events (SSE `id:` lines, `<epoch>-<seq>`) kept in the state store
  with the conversation (history.py), and the ids go on across restarts. A reconnect with
  `Last-Event-ID` (or `?last_event_id=`) gets what came after it, a fresh connection gets what
  was never written to any connection, an id that cannot be placed (malformed, of another
  epoch, ahead of the store) gets every event kept. The outbox is bounded (OUTBOX_MAX per
  user); an event that no connection was given and that the history does not show expires
  after OUTBOX_TTL seconds;
- every event names the message it answers (`reply_to`); the last one of a message carries
  `"final": true` and is written together with the record that the message was answered
  (`already_answered`, so a message resumed after a crash is not answered twice). To know
  which is last, a message's newest event waits until the next one exists, its handling
  ends, or HOLD_MAX seconds pass; when a message ends with no event waiting, an `end` event
  (unseen by `onmessage`) is the final one;
- async handlers on one shared server (common/http_server): hundreds of open streams cost no
  thread each;
- input is checked (ids, sizes, JSON) and refused with a JSON error;
- optional `web_password`: the API then wants `Authorization: Bearer <password>`. EventSource
  and <img> cannot send headers, so the page trades the password for a short-lived stream
  token bound to its user id (`POST /token`) and passes it as `?token=`: the password itself
  never appears in a URL (server logs, browser history). Media links are unguessable ids.
  Tokens are signed with a key derived from the password, so changing it revokes them; the
  password is compared as NFC UTF-8 (the page sends its UTF-8 bytes; a latin-1 header works too).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import mimetypes
import os
import queue
import re
import secrets
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel_factory import ChannelError
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.login_qr import LOGIN_QRS
from channel.web.history import UserRecord, WebJournal
from channel.web.ids import DEFAULT_USER, BadId, for_log, parse_id, url_part
from channel.web.media_store import Media, MediaStore, MediaTooLarge
from common.http_server import HttpServer, HttpServerError, json_error, shared_server
from common.json_limits import JsonTooDeep, loads_limited
from common.log import logger
from common.masking import mask_command
from common.secret_compare import header_matches
from common.store import MemoryStore
from common.text import safe_data, safe_text
from config import conf

MAX_MESSAGE_CHARS = 8000
MAX_BODY_BYTES = 64 * 1024
OUTBOX_MAX = 100  # undelivered events kept per user
OUTBOX_TTL = 600.0  # seconds an undelivered event not in the history waits for its reader
MEDIA_MAX = 50  # images/files kept per user for the page to fetch (bytes: web_media_user_max_bytes)
MEDIA_EXPIRY_INTERVAL = 60.0  # seconds between sweeps of expired media
MAX_USERS = 10000  # outboxes kept in memory; the idle oldest go first
KEEPALIVE = 15.0  # seconds between SSE comments, so dead connections are noticed
TOKEN_TTL = 3600  # seconds a stream token is valid
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
# The only files /static serves (vendor/: see vendor/VERSIONS.md).
STATIC_FILES = {
    "chat.js": _JS, "chat.css": _CSS,
    "vendor/marked.min.js": _JS, "vendor/purify.min.js": _JS, "vendor/highlight.min.js": _JS,
    "vendor/highlight-github.min.css": _CSS,
}
PARTIAL_EVENT = "partial"  # SSE event name of the growing answer; `onmessage` never sees it
MARKS_DELAY = 0.2  # seconds the delivery marks of a burst are gathered before one write per user
HOLD_MAX = 0.5  # seconds a message's newest event waits to learn whether it is the last
END_EVENT = "end"  # SSE event name of "handled, no answer" (a plugin swallowed it); `onmessage` never sees it
ALL_INTERFACES = ("0.0.0.0", "::", "")


class _AnyText(Convertor):
    """A path part that may hold anything, '/' and newlines too (a decoded user id)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("webid", _AnyText())


class WebMessage(ChatMessage):
    def __init__(self, msg_id: str, content: str, user_id: str) -> None:
        super().__init__(None)
        self.msg_id = msg_id
        self.ctype = ContextType.TEXT
        self.content = content
        self.from_user_id = user_id
        self.to_user_id = "Chatgpt"
        self.other_user_id = user_id
        self.create_time = int(time.time())


@dataclass
class _Partial:
    """An answer being shown while it grows. `generation` changes when the text is not
    an extension of what was shown (Dify's message_replace), so readers resend it whole."""

    owner: Any  # the context whose bot shows it
    reply_to: str | None = None  # the message it answers
    text: str = ""
    generation: int = 0


@dataclass
class _Outbox:
    """One user's live state in memory; the durable part is the user's record in the store.

    Two locks, so the server's event loop never waits for a disk: `lock` guards the
    in-memory fields and is held only for a few list operations (the loop takes it);
    `write_lock` serialises this user's store writes and is taken by worker threads only.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    # A copy of the record's numbering as of its last read or write, and of the events an open
    # stream may still write (see _copy_numbering). The record itself, with the history and the
    # answers it shows, stays in the store: memory holds no conversation.
    loaded: bool = False
    epoch: str = ""
    seq: int = 0
    events: tuple = ()  # immutable snapshot, replaced whole
    delivered: int = 0  # highest seq written to some connection
    saved_delivered: int = 0  # what the store has of it
    # asyncio.Event of each open stream -> the seq it has written up to (None: it follows
    # `delivered`), so the events kept here are exactly those some open stream has not written.
    waiters: dict = field(default_factory=dict)
    partials: dict = field(default_factory=dict)  # stream id -> _Partial, oldest first
    touched: float = field(default_factory=time.monotonic)
    pins: int = 0  # threads using the box now (under the channel's _lock): not evicted
    # The record as last written when that write failed (disk full, store locked): it goes on
    # from here instead of re-reading the older stored one, whose lower numbers would hide every
    # later event from streams already past them. Cleared by the next write that succeeds.
    unsaved: Any = None


@dataclass
class _Handling:
    """A message being handled. Its newest event is held back until the next one exists or
    HOLD_MAX seconds passed (then it goes out as it is), or the handling ends (then it goes out
    with `final: true`, in the same store write that records the message as answered)."""

    context: Any
    user_id: str
    msg_id: str | None
    held: tuple[dict, str | None] | None = None
    held_since: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)  # keeps this message's events in order


def _has_question(history: list[dict], msg_id: str | None) -> bool:
    return msg_id is not None and any(e.get("role") == "user" and e.get("msg_id") == msg_id for e in history)


class WebChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE]
    PRIVATE_NEEDS_PREFIX = False  # a web page is a direct conversation with the bot
    # A refused message is answered by its POST (503 with the reason), which the page shows; a
    # busy reply on the stream as well would say it twice, once per retry of the POST.
    REFUSAL_IN_RESPONSE = True

    def __init__(self) -> None:
        super().__init__()
        # Guards the dict of outboxes (and pins) only; never held while waiting for anything.
        self._lock = threading.Lock()
        self._outboxes: dict[str, _Outbox] = {}
        self._handling: dict[int, _Handling] = {}  # id(context) -> _Handling; worker threads only
        # Guards _handling; the flusher thread waits on it for the next held event to be due.
        self._handling_cv = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()
        # (user id, outbox) of streams that wrote events: the loop only puts, a thread saves.
        self._marks: queue.SimpleQueue = queue.SimpleQueue()
        self._marks_saver: threading.Thread | None = None
        self._run_id = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._closing = False
        # Stream tokens are signed with a key made of this run's secret and the password:
        # changing web_password (#reconf) makes every token issued before it invalid.
        self._token_secret = secrets.token_bytes(32)
        self.server: HttpServer | None = None
        # Without a state store (a channel made outside the daemon) the records live in memory.
        self.journal = WebJournal(conf().state_store or MemoryStore(), int(conf().get("web_history_size")))
        self.media = MediaStore(lambda: conf().get("web_media_user_max_bytes"), lambda: conf().get("web_media_max_bytes"),
                                ttl=OUTBOX_TTL, user_max_items=MEDIA_MAX)

    # ------------------------------------------------------------------ lifecycle
    def startup(self) -> None:
        host = str(conf().get("web_host"))
        port = int(conf().get("web_port", 9899))
        server = shared_server(host, port, max_body=MAX_BODY_BYTES, channel=self.channel_type or "web")
        self.register_routes(server)
        # Before the server takes new messages: those accepted before the last stop come first.
        self.resume_inbox()
        server.set_queue_probe(self.dispatcher.pending)
        server.watch_store(conf().state_store)
        server.on_stopping(self._close_streams)
        self._marks_saver = threading.Thread(target=self._save_marks, name="web-delivery-marks", daemon=True)
        self._marks_saver.start()
        try:
            server.start()
        except HttpServerError as e:
            raise ChannelError(str(e)) from None
        self.server = server
        threading.Thread(target=self._expire_media, name="web-media-expiry", daemon=True).start()
        if host.strip() in ALL_INTERFACES and not self._password():
            logger.warning(
                f"[web] the chat listens on all network interfaces (web_host {host or '0.0.0.0'}) without a "
                f"password: anyone who can reach port {server.port} can talk to the bot as any user and read "
                "their answers" + (f", and see the login QR of {', '.join(LOGIN_QRS.channels())} (whoever scans it "
                                   "logs in)" if LOGIN_QRS.channels() else "")
                + ". Set web_password, or web_host 127.0.0.1 to accept this computer only."
            )
        shown = "localhost" if host in ALL_INTERFACES else host
        print(f"\nWeb channel is running, open http://{shown}:{server.port}/chat", flush=True)
        logger.info(f"[web] chat page at http://{shown}:{server.port}/chat")

    def register_routes(self, server: HttpServer) -> None:
        server.add_route("/", self._root, ["GET"])
        server.add_route("/chat", self._chat_page, ["GET"])
        server.add_route("/static/{name:path}", self._static, ["GET"])
        server.add_route("/message", self._post_message, ["POST"])
        server.add_route("/token", self._post_token, ["POST"])
        # `:webid`: a user id may hold '/' or a newline, which arrives percent-decoded (the original's
        # route took any text after /sse/ too).
        server.add_route("/sse/{user_id:webid}", self._sse, ["GET"])
        server.add_route("/history/{user_id:webid}", self._history, ["GET"])
        server.add_route("/media/{user_id:webid}/{media_id}", self._media, ["GET"])
        server.add_route("/login/status", self._login_status, ["GET"])
        server.add_route("/login/qr/{channel}", self._login_qr, ["GET"])

    def stop_accepting(self) -> None:
        super().stop_accepting()
        if self.server is not None:
            self.server.mark_stopping()

    def stop(self) -> None:
        self._stopped.set()
        with self._handling_cv:
            self._handling_cv.notify_all()  # the held-event flusher ends; _finish writes what is held
        if self.server is not None:
            self.server.stop(float(conf().get("shutdown_timeout")))
        super().stop()
        if self._marks_saver is not None:
            self._marks.put(None)
            self._marks_saver.join(5)  # the marks of the last deliveries are saved before exit

    def _expire_media(self) -> None:
        # On a schedule: media of users who never come back would otherwise wait for the memory cap.
        while not self._stopped.wait(MEDIA_EXPIRY_INTERVAL):
            dropped = self.media.expire()
            if dropped:
                logger.debug(f"[web] {dropped} expired media item(s) dropped")

    def _close_streams(self) -> None:
        # Streams write what is left in their outbox, then end.
        self._closing = True
        with self._lock:
            boxes = list(self._outboxes.values())
        waiters = []
        for box in boxes:
            with box.lock:
                waiters.extend(box.waiters)
        self._wake(waiters)

    def _wake(self, waiters) -> None:
        loop = self.server.loop if self.server is not None else None
        if loop is None or loop.is_closed():
            return
        for event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile
                return

    # ------------------------------------------------------------------ outbox
    def _acquire(self, user_id: str, waiter: asyncio.Event | None = None) -> _Outbox:
        """The user's outbox, created if needed, pinned (or given `waiter`, which keeps it
        too) so it is not evicted while in use. Pair with _release (not for a waiter)."""
        with self._lock:
            box = self._outboxes.get(user_id)
            if box is None:
                if len(self._outboxes) >= MAX_USERS:
                    self._evict()
                box = self._outboxes[user_id] = _Outbox()
            box.touched = time.monotonic()
            if waiter is None:
                box.pins += 1
            else:
                with box.lock:
                    # Everything kept is needed until the stream knows where it starts (_open_stream).
                    box.waiters[waiter] = 0
        return box

    def _release(self, box: _Outbox) -> None:
        with self._lock:
            box.pins -= 1

    def _evict(self) -> None:
        """Forget idle outboxes; their records stay in the store. Call with self._lock held."""
        free = []  # (holds memory-only state, last use, user id) of boxes nobody uses now
        for uid, box in self._outboxes.items():
            with box.lock:
                if not box.pins and not box.waiters:
                    held = bool(box.partials) or box.unsaved is not None or self.media.has_user(uid)
                    free.append((held, box.touched, uid))
        free.sort()
        drop = [uid for held, _, uid in free if not held]
        if len(self._outboxes) - len(drop) >= MAX_USERS:  # still full: the least recently used tenth
            drop += [uid for held, _, uid in free if held][: max(1, len(free) // 10)]
        for uid in drop:
            del self._outboxes[uid]

    def _load_record(self, user_id: str, box: _Outbox) -> UserRecord:
        """The user's record, read from the store. Call with box.write_lock held (the caller
        may write it back). If the store cannot be read, a detached record that goes on from
        what this run knows (so ids stay in order for the open streams)."""
        with box.lock:
            unsaved = box.unsaved
            known = UserRecord(epoch=box.epoch, seq=box.seq, events=list(box.events), detached=True) \
                if box.loaded else None
        if unsaved is not None:
            return unsaved
        record = self.journal.load(user_id, known)
        delivered = None if box.loaded else self.journal.load_delivered(user_id)
        self._copy_numbering(box, record, delivered)
        return record

    @staticmethod
    def _copy_numbering(box: _Outbox, record: UserRecord, delivered: int | None = None) -> None:
        """Take the record's numbering, and of its events only those after the place of the
        open stream that is furthest behind: none when no stream is open (a stream that opens
        reads the record from the store, see _open_stream). Keeping every event of the record
        held each user's recent answers in memory, for every user seen (up to MAX_USERS): the
        soak's memory crept up for as long as rare users' records were still filling."""
        with box.lock:
            box.loaded = True
            box.epoch, box.seq = record.epoch, record.seq
            if delivered is not None:
                box.saved_delivered = min(delivered, record.seq)
                box.delivered = max(box.delivered, box.saved_delivered)
            if box.waiters:
                behind = min(box.delivered if place is None else place for place in box.waiters.values())
                box.events = tuple(e for e in record.events if e.seq > behind)
            else:
                box.events = ()

    def _write(self, user_id: str, items: list[tuple[dict, str | None]], answered: str | None = None,
               user_entry: dict | None = None, forget_question: str | None = None,
               report: dict | None = None) -> list[int]:
        """Number and keep events (payload, SSE name) and/or a history entry of the user's (or
        take away the user's entry with msg_id `forget_question`), and record `answered`: one
        store write. Then wake the user's open streams. Worker threads only. `report["question_added"]`
        says whether `user_entry` was added (not when one with its msg_id is there already)."""
        box = self._acquire(user_id)
        try:
            with box.write_lock:
                record = self._load_record(user_id, box)
                now = time.time()
                if user_entry is not None and not _has_question(record.history, user_entry.get("msg_id")):
                    record.history.append(user_entry)  # a retried POST adds it once
                    if report is not None:
                        report["question_added"] = True
                if forget_question is not None:
                    record.history = [e for e in record.history
                                      if not (e.get("role") == "user" and e.get("msg_id") == forget_question)]
                seqs = [record.add_event(payload, name, now).seq for payload, name in items]
                if answered is not None:
                    record.mark_answered(answered)
                with box.lock:
                    delivered = box.delivered
                dropped = record.trim(now, self.journal.history_size, OUTBOX_MAX, OUTBOX_TTL, delivered)
                for _ in range(dropped):
                    logger.warning(f"[web] outbox of {for_log(user_id)} full, an undelivered reply was dropped")
                saved = self.journal.save(user_id, record)
                self._copy_numbering(box, record)
                with box.lock:
                    box.unsaved = None if saved or record.detached else record
                with box.lock:
                    waiters = list(box.waiters)
            if items:
                self._wake(waiters)
            return seqs
        finally:
            self._release(box)

    def push(self, user_id: str, rtype: str, content: Any, extra: dict[str, Any] | None = None,
             event: str | None = None, reply_to: str | None = None) -> int:
        """Number, keep and send one event to the user's open streams. Thread-safe (not for the
        server's loop: it writes to the store).

        `extra` keys go beside type/content/timestamp/reply_to. An event with an SSE `event`
        name (the end of a partial answer) is not kept in the history."""
        return self._write(user_id, [(_payload(rtype, content, extra, reply_to), event)])[0]

    def _note_reply_sent(self, context: Context) -> None:
        """Not on send: send() holds the last reply until the handling ends (_finish), which
        writes it with the message's answered mark in one store write; already_answered reads
        that mark. Marking the inbox item here would call a message answered before its answer
        is stored, and a crash in between would lose the answer."""

    def already_answered(self, context: Context) -> bool:
        """True when the message of `context` was answered to the end (its final event is in
        the store): a message resumed after a crash is then not answered twice."""
        user_id, msg_id = context.get("receiver"), _msg_id(context)
        if not user_id or not msg_id:
            return False
        box = self._acquire(user_id)
        try:
            with box.write_lock:
                return self._load_record(user_id, box).is_answered(msg_id)
        finally:
            self._release(box)

    def _store_media(self, user_id: str, media: Media) -> str:
        # Media stay in memory only: after a restart the link answers 404 ("it may have expired").
        return f"/media/{url_part(user_id)}/{self.media.put(user_id, media)}"

    # ------------------------------------------------------------------ sending
    def send(self, reply: Reply, context: Context) -> None:
        user_id = context.get("receiver")
        if not user_id:
            raise ValueError("no receiver in the context")
        rtype = str(reply.type)
        content = reply.content
        extra: dict[str, Any] = {}
        if reply.type == ReplyType.IMAGE:
            stream = content
            if hasattr(stream, "seek"):
                stream.seek(0)
            data = stream.read() if hasattr(stream, "read") else bytes(stream)
            mime = _sniff_image(data)
            try:
                content = self._store_media(user_id, Media(data, None, mime, "image"))
                extra = {"url": content, "name": "image", "mime": mime}
            except MediaTooLarge as e:
                logger.warning(f"[web] image for {for_log(user_id)} not kept: {e}")
                megabytes = len(data) / (1024 * 1024)
                rtype = "INFO"  # said instead, in the image's place among the message's events
                content = (f"图片太大（{megabytes:.1f} MB），无法在这里显示。" if is_chinese(str(context.content))
                           else f"The image is too large to show here ({megabytes:.1f} MB).")
        elif reply.type in (ReplyType.FILE, ReplyType.VIDEO):
            path = str(content)
            if not os.path.isfile(path):
                raise FileNotFoundError(path)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            name = os.path.basename(path)
            # A string, as the original's `content` (which was the server's path): the link.
            content = self._store_media(user_id, Media(None, path, mime, name))
            extra = {"url": content, "name": name, "mime": mime}
        elif not isinstance(content, (str, int, float, bool, type(None))):
            content = str(content)
        if reply.type == ReplyType.TEXT:
            stream_id = self._take_partial(user_id, context)
            if stream_id is not None:
                extra = {"stream": stream_id}
        payload = _payload(rtype, content, extra, _msg_id(context))
        with self._handling_cv:
            handling = self._handling.get(id(context))
        if handling is None or handling.context is not context or handling.user_id != user_id:
            self._write(user_id, [(payload, None)])  # not from a handling (a plugin's thread, a busy reply)
            return
        with handling.lock:
            # Held until we know whether it ends the handling; the one held before goes now.
            earlier, handling.held, handling.held_since = handling.held, (payload, None), time.monotonic()
            if earlier is not None:
                self._write(user_id, [earlier])
        with self._handling_cv:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_held, name="web-held-flusher", daemon=True)
                self._flusher.start()
            self._handling_cv.notify()

    def _flush_held(self) -> None:
        """Sends the events held longer than HOLD_MAX as they are: a "please wait" a plugin sends
        before slow work is not kept until the work is done. One thread for the channel."""
        while True:
            with self._handling_cv:
                if self._stopped.is_set():
                    return
                now = time.monotonic()
                held = [h for h in self._handling.values() if h.held is not None]
                due = [h for h in held if now - h.held_since >= HOLD_MAX]
                if not due:
                    self._handling_cv.wait(min((HOLD_MAX - (now - h.held_since) for h in held), default=None))
                    continue
            for handling in due:
                with handling.lock:  # re-checked: the handling may have sent or ended meanwhile
                    if handling.held is None or time.monotonic() - handling.held_since < HOLD_MAX:
                        continue
                    item, handling.held = handling.held, None
                    try:
                        self._write(handling.user_id, [item])
                    except Exception:
                        logger.exception(f"[web] a reply to {for_log(handling.user_id)} could not be written")

    def _handle(self, context: Context) -> None:
        user_id = context.get("receiver") if context is not None else None
        if not user_id:
            super()._handle(context)
            return
        handling = _Handling(context, user_id, _msg_id(context))
        with self._handling_cv:
            self._handling[id(context)] = handling
        try:
            super()._handle(context)
        finally:
            with self._handling_cv:
                self._handling.pop(id(context), None)
            self._finish(handling)

    def _finish(self, handling: _Handling) -> None:
        """The end of a message's handling, in one store write: partial answers that got no
        final text are withdrawn, the last event goes out with `final: true` (an END event
        when none is held), and the message is recorded as answered."""
        user_id, msg_id = handling.user_id, handling.msg_id
        box = self._acquire(user_id)
        try:
            with box.lock:
                left = [sid for sid, p in box.partials.items() if p.owner is handling.context]
                for stream_id in left:
                    del box.partials[stream_id]
        finally:
            self._release(box)
        items = [(_payload("TEXT_PARTIAL", "", {"stream": sid, "done": True}, msg_id), PARTIAL_EVENT) for sid in left]
        with handling.lock:
            held, handling.held = handling.held, None
            if held is not None:
                payload, name = held
                payload["final"] = True
                items.append((payload, name))
            else:  # nothing sent, or what was sent went out already: the page still learns it is done
                items.append((_payload("END", "", {"final": True}, msg_id), END_EVENT))
            try:
                self._write(user_id, items, answered=msg_id)
            except Exception:
                logger.exception(f"[web] the end of a message of {for_log(user_id)} could not be written")

    # ------------------------------------------------------------------ partial answers
    def can_show_partial(self, context: Context) -> bool:
        return bool(context.get("receiver"))

    def show_partial(self, context: Context, stream_id: str, text: str) -> None:
        user_id = context.get("receiver")
        if not user_id:
            return
        box = self._acquire(user_id)
        try:
            with box.lock:
                partial = box.partials.get(stream_id)
                if partial is None:
                    partial = box.partials[stream_id] = _Partial(owner=context, reply_to=_msg_id(context))
                if not text.startswith(partial.text):
                    partial.generation += 1
                partial.text = text
                waiters = list(box.waiters)
        finally:
            self._release(box)
        self._wake(waiters)

    def _take_partial(self, user_id: str, context: Context) -> str | None:
        """The oldest answer this context is showing, which the TEXT being sent completes."""
        box = self._acquire(user_id)
        try:
            with box.lock:
                for stream_id, partial in box.partials.items():
                    if partial.owner is context:
                        del box.partials[stream_id]
                        return stream_id
        finally:
            self._release(box)
        return None

    # ------------------------------------------------------------------ auth
    def _password(self) -> str:
        return str(conf().get("web_password") or "")

    def _check_bearer(self, request: Request) -> Response | None:
        password = self._password()
        if not password:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not header_matches(given.strip(), password):
            return json_error(401, "password required or wrong", auth="password")
        return None

    def _make_token(self, user_id: str) -> str:
        return self._make_token_for(user_id, int(time.time()) + TOKEN_TTL)

    def _check_token(self, request: Request, user_id: str) -> Response | None:
        if not self._password():
            return None
        if self._check_bearer(request) is None:
            return None
        token = request.query_params.get("token", "")
        expires_text, _, _sig = token.partition(".")
        if expires_text.isdigit() and int(expires_text) >= time.time():
            expected = self._make_token_for(user_id, int(expires_text))
            if hmac.compare_digest(expected.encode(), token.encode()):
                return None
        return json_error(401, "stream token missing, wrong or expired", auth="token")

    def _make_token_for(self, user_id: str, expires: int) -> str:
        key = hmac.new(self._token_secret, unicodedata.normalize("NFC", self._password()).encode("utf-8", "surrogatepass"),
                       hashlib.sha256).digest()
        sig = hmac.new(key, f"{user_id}:{expires}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return f"{expires}.{base64.urlsafe_b64encode(sig[:18]).decode()}"

    # ------------------------------------------------------------------ routes
    async def _root(self, request: Request) -> Response:
        return RedirectResponse("/chat")

    async def _chat_page(self, request: Request) -> Response:
        return FileResponse(os.path.join(STATIC_DIR, "chat.html"), media_type="text/html; charset=utf-8",
                            headers=_PAGE_HEADERS)

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return json_error(404, "not found")
        path = os.path.join(STATIC_DIR, *name.split("/"))
        return FileResponse(path, media_type=STATIC_FILES[name], headers=_PAGE_HEADERS)

    async def _post_token(self, request: Request) -> Response:
        refused = self._check_bearer(request)
        if refused is not None:
            return refused
        body, error = await _json_body(request)
        if error is not None:
            return error
        try:
            user_id = parse_id(_or_default(body.get("user_id")), "user_id")
        except BadId as e:
            return json_error(400, str(e))
        if not self._password():
            return JSONResponse({"status": "success", "token": "", "expires_in": 0})
        return JSONResponse({"status": "success", "token": self._make_token(user_id), "expires_in": TOKEN_TTL})

    async def _post_message(self, request: Request) -> Response:
        refused = self._check_bearer(request)
        if refused is not None:
            return refused
        if self._closing or not self.dispatcher.accepting:
            return json_error(503, "the service is stopping; try again in a moment")
        body, error = await _json_body(request)
        if error is not None:
            return error
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            return _original_error("No message provided", "message must be non-empty text")
        if len(message) > MAX_MESSAGE_CHARS:
            return json_error(413, f"message longer than {MAX_MESSAGE_CHARS} characters")
        # A "\ud800" escape decodes to a lone surrogate, which nothing downstream can encode.
        # (Ids with one are refused instead, see ids.py: they name things and must stay exact.)
        message = safe_text(message)
        try:
            user_id = parse_id(_or_default(body.get("user_id")), "user_id")
            client_id = body.get("msg_id")
            client_id = None if client_id is None else parse_id(client_id, "msg_id")
        except BadId as e:
            return json_error(400, str(e))
        # A client id makes a retried POST (flaky network) count once; dedup is by msg_id.
        msg_id = f"{user_id}:{client_id}" if client_id else f"{self._run_id}-{next(self._ids)}"
        produced = await run_in_threadpool(self._take, user_id, message, msg_id, _source(request))
        if produced in (Produced.IGNORED, Produced.DUPLICATE):
            return JSONResponse({"status": "success", "message": "Message received", "msg_id": msg_id, "handled": False})
        if produced is Produced.NOT_STORED:
            return json_error(503, "the message could not be saved, so it was not taken; please send it again in a moment")
        if produced is Produced.STOPPING:
            return json_error(503, "the service is stopping; try again in a moment")
        if not produced:
            return json_error(503, "too many messages are waiting; please try again in a moment")
        return JSONResponse({"status": "success", "message": "Message received", "msg_id": msg_id})

    def _take(self, user_id: str, message: str, msg_id: str, source: str = "") -> Produced:
        """Compose and queue (stored first: see ChatChannel.produce). IGNORED when the rules
        (or a duplicate id) drop the message."""
        msg = WebMessage(msg_id, message, user_id)
        context = self._compose_context(ContextType.TEXT, message, msg=msg, isgroup=False)
        if context is None:
            return Produced.IGNORED
        if source:
            context["source"] = source  # where it came from: #auth counts guesses per source too
        # Before it is queued, so the question comes before its answer in the history; a
        # password given with #auth (or a key) is not kept there.
        added: dict = {}
        self._write(user_id, [], user_entry={"role": "user", "type": "TEXT", "content": mask_command(message),
                                             "timestamp": time.time(), "msg_id": msg_id}, report=added)
        produced = self.produce(context)
        if added and produced in (Produced.BUSY, Produced.NOT_STORED, Produced.STOPPING):
            # Not taken: the page says so and the user sends it again; the history shows only
            # questions the bot has. Only the entry this request added goes: a refused retry of
            # a message taken before leaves that message's question in place.
            self._write(user_id, [], forget_question=msg_id)
        return produced

    def _path_user(self, request: Request) -> tuple[str | None, Response | None]:
        try:
            return parse_id(request.path_params["user_id"], "user_id"), None
        except BadId as e:
            return None, json_error(400, str(e))

    async def _sse(self, request: Request) -> Response:
        user_id, refused = self._path_user(request)
        if refused is None:
            refused = self._check_token(request, user_id)
        if refused is not None:
            return refused
        if self._closing:
            return json_error(503, "the service is stopping")
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
        event = asyncio.Event()
        # The outbox keeps the waiter from here on; the stream's end takes it away. Loading the
        # record reads the store: not on the loop.
        box, after = await run_in_threadpool(self._open_stream, user_id, last, event)
        return StreamingResponse(
            self._stream(user_id, box, event, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _open_stream(self, user_id: str, last: str, event: asyncio.Event) -> tuple[_Outbox, int | None]:
        box = self._acquire(user_id, waiter=event)
        with box.write_lock:
            record = self._load_record(user_id, box)
            after = _after_seq(last, record)
            with box.lock:
                box.waiters[event] = after
            self._copy_numbering(box, record)  # now without what this stream will not write
        if after == 0 and last.strip():
            logger.info(f"[web] {for_log(user_id)} reconnected with an id of another epoch or none we know "
                        f"({for_log(last[:80])}): sending every event kept")
        return box, after

    async def _history(self, request: Request) -> Response:
        user_id, refused = self._path_user(request)
        if refused is None:
            refused = self._check_token(request, user_id)
        if refused is not None:
            return refused
        entries, last_id = await run_in_threadpool(self._history_snapshot, user_id)
        # The page connects its stream with last_event_id: what the history shows is not sent again.
        return JSONResponse({"status": "success", "user_id": user_id, "messages": entries, "last_event_id": last_id},
                            headers={"Cache-Control": "no-store"})

    def _history_snapshot(self, user_id: str) -> tuple[list[dict], str]:
        box = self._acquire(user_id)
        try:
            with box.write_lock:  # entries and their last id come from one version of the record
                record = self._load_record(user_id, box)
                entries = [dict(e) for e in record.history]
                # With no history kept, the page has shown nothing: let the stream send what is waiting.
                last_id = record.event_id(record.seq) if record.seq > 0 and self.journal.history_size > 0 else ""
        finally:
            self._release(box)
        return entries, last_id

    def _save_marks(self) -> None:
        """Saves what streams wrote to their connections (see _save_delivered), one write per
        user for a burst of deliveries: waits MARKS_DELAY after the first. One thread."""
        while True:
            first = self._marks.get()
            if first is None:
                return
            time.sleep(MARKS_DELAY)
            pending = dict([first])
            while True:
                try:
                    item = self._marks.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._marks.put(None)  # stop after this round
                    break
                pending[item[0]] = item[1]
            for user_id, box in pending.items():
                try:
                    self._save_delivered(user_id, box)
                except Exception:
                    logger.exception(f"[web] the delivery mark of {for_log(user_id)} could not be saved")

    def _save_delivered(self, user_id: str, box: _Outbox) -> None:
        """Remember in the store what was written to a connection, for a client that names no
        last id after a restart."""
        with box.write_lock:
            with box.lock:
                seq = box.delivered if box.delivered > box.saved_delivered else None
            if seq is not None and self.journal.save_delivered(user_id, seq):
                with box.lock:
                    box.saved_delivered = max(box.saved_delivered, seq)

    async def _stream(self, user_id: str, box: _Outbox, event: asyncio.Event, after: int | None):
        shown: dict[str, tuple[int, int]] = {}  # stream id -> (generation, length) written here
        try:
            yield "retry: 2000\n: connected\n\n"
            cursor = after
            while True:
                event.clear()
                with box.lock:
                    epoch = box.epoch
                    start = box.delivered if cursor is None else cursor
                    ready = [e for e in box.events if e.seq > start]  # bounded when written (UserRecord.trim)
                    newly_delivered = ready and ready[-1].seq > box.delivered
                    if newly_delivered:
                        box.delivered = ready[-1].seq
                    if ready:  # written below: the next copy of the record need not keep them for us
                        box.waiters[event] = ready[-1].seq
                    partials = _partial_updates(box, shown)
                    closing = self._closing
                if ready or partials:
                    if ready:
                        cursor = ready[-1].seq
                    # safe_text: one event that cannot be encoded must not end the stream (and with it
                    # every later reply of the user, already counted as delivered).
                    yield safe_text("".join(_sse_block(f"{epoch}-{e.seq}", e.name, e.text) for e in ready) +
                                    "".join(_sse_block(None, PARTIAL_EVENT, text) for text in partials))
                    if newly_delivered:
                        self._marks.put((user_id, box))  # saved by _save_marks, off the loop
                    continue
                if closing:
                    return
                try:
                    await asyncio.wait_for(event.wait(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            with box.lock:
                box.waiters.pop(event, None)
                if not box.waiters:  # the last page went: what it had not written is in the store
                    box.events = ()

    async def _media(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        media_id = request.path_params["media_id"]
        media = self.media.get(user_id, media_id)
        if media is None:
            return json_error(404, "no such file (it may have expired)")
        headers = {"Cache-Control": "private, max-age=600", "X-Content-Type-Options": "nosniff"}
        if media.path is not None:
            if not os.path.isfile(media.path):
                return json_error(404, "the file is gone")
            return FileResponse(media.path, media_type=media.mime, filename=media.name, headers=headers)
        return Response(media.data, media_type=media.mime, headers=headers)

    # ------------------------------------------------------------------ login QR of another channel
    # While a channel of this daemon (wx) waits for its QR to be scanned, the page shows the QR
    # (channel/login_qr.py). The QR logs in whoever scans it: behind the password when one is set,
    # never cached, never logged.
    async def _login_status(self, request: Request) -> Response:
        refused = self._check_bearer(request)
        if refused is not None:
            return refused
        waiting = [{"channel": qr.channel, "qr": qr.serial} for qr in LOGIN_QRS.waiting()]
        # `watch`: some channel here may show a QR later (a page of a daemon without one stops asking).
        return JSONResponse({"logins": waiting, "watch": bool(LOGIN_QRS.channels())}, headers=_NO_STORE)

    async def _login_qr(self, request: Request) -> Response:
        refused = self._check_bearer(request)
        if refused is not None:
            return refused
        qr = LOGIN_QRS.get(request.path_params["channel"])
        if qr is None:
            return json_error(404, "no login QR is waiting to be scanned")
        return Response(qr.png, media_type="image/png", headers={**_NO_STORE, "X-Login-Qr": str(qr.serial),
                                                                  "X-Content-Type-Options": "nosniff"})


_NO_STORE = {"Cache-Control": "no-store"}
# The page loads only its own scripts and styles; images may come from anywhere over http(s) (and
# from blob: URLs it makes itself: the login QR, fetched with the password header).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' http: https: data: blob:; "
                               "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _msg_id(context: Context | None) -> str | None:
    """The id of the message a context answers (None for a context made without one)."""
    msg = context.get("msg") if context is not None else None
    msg_id = getattr(msg, "msg_id", None)
    return str(msg_id) if msg_id not in (None, "") else None


def _payload(rtype: str, content: Any, extra: dict[str, Any] | None, reply_to: str | None) -> dict[str, Any]:
    # Made safe here: whatever a channel method or plugin sends, the stream can write it.
    return safe_data({"type": rtype, "content": content, "timestamp": time.time(), "reply_to": reply_to, **(extra or {})})


_EVENT_ID = re.compile(r"([0-9a-f]{1,32})-([0-9]{1,18})")


def _after_seq(last: str, record: UserRecord) -> int | None:
    """Where a stream starts, from the client's last event id: after that seq; None (no id:
    after what was written to some connection); 0 (every event kept) when the client's place
    cannot be known, since losing answers is worse than a repeat (the page skips what it showed):
    an id that is malformed, from another epoch (the record was lost or expired, or the id is not
    ours), or ahead of the record (the store was restored from a backup: its numbers are reused)."""
    text = last.strip()
    if not text:
        return None
    match = _EVENT_ID.fullmatch(text)
    if match is None or match.group(1) != record.epoch or int(match.group(2)) > record.seq:
        return 0
    return int(match.group(2))


def _sniff_image(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


async def _json_body(request: Request) -> tuple[dict, Response | None]:
    raw = await request.body()
    try:
        body = loads_limited(raw.decode("utf-8"))
    except JsonTooDeep as e:
        # Not a refusal the original made (it crashed): a plain 400.
        return {}, json_error(400, str(e))
    except (UnicodeDecodeError, ValueError):
        return {}, _original_error("Invalid JSON", "the body must be JSON text in UTF-8")
    if not isinstance(body, dict):
        return {}, _original_error("Invalid JSON", "the body must be a JSON object")
    return body, None


def _original_error(message: str, detail: str) -> Response:
    """A refusal the original also made: its HTTP status (200) and text, which front ends
    written for it may show or test, with what exactly is wrong in `detail`."""
    return JSONResponse({"status": "error", "message": message, "detail": detail})


def _source(request: Request) -> str:
    """The client's address as a key for counting guesses; an IPv6 client by its /64, which
    one machine usually has whole."""
    host = request.client.host if request.client else ""
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"web:{host}"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return f"web:{address.ipv4_mapped}"
        return f"web:{ipaddress.ip_network(f'{host}/64', strict=False)}"
    return f"web:{address}"


def _or_default(user_id: Any) -> Any:
    return DEFAULT_USER if user_id is None else user_id


def _sse_block(event_id: str | None, name: str | None, data: str) -> str:
    head = (f"id: {event_id}\n" if event_id else "") + (f"event: {name}\n" if name else "")
    return f"{head}data: {data}\n\n"


def _partial_updates(box: _Outbox, shown: dict[str, tuple[int, int]]) -> list[str]:
    """What one connection has not written yet of the answers growing in `box`, as the
    text to add at `offset` (0 and the whole text after a replacement). Updates `shown`."""
    updates = []
    for stream_id, partial in box.partials.items():
        generation, length = shown.get(stream_id, (-1, 0))
        if generation == partial.generation and length == len(partial.text):
            continue
        offset = length if generation == partial.generation else 0
        shown[stream_id] = (partial.generation, len(partial.text))
        updates.append(json.dumps({"type": "TEXT_PARTIAL", "stream": stream_id, "offset": offset,
                                   "delta": partial.text[offset:], "timestamp": time.time(),
                                   "reply_to": partial.reply_to}, ensure_ascii=False))
    for stream_id in [sid for sid in shown if sid not in box.partials]:
        del shown[stream_id]
    return updates
