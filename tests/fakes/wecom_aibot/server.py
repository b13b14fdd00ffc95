"""Loopback simulator of the WeCom AI bot long-connection server (reference/wecom-aibot.md §2, §5, §6),
written from the reference, not from any SDK.

`AibotSimulator(...).start()` serves WebSocket on `ws_url` and HTTP (media, response_url) on
`http_url`. Tests push user messages and events, then read what the user would see (`bubbles`,
`conversation`) and every frame and ack. Deadlines use the injected `clock`; `ack_delay`,
`media_delay` and `media_trickle` are real seconds because they exist to exercise client timeouts.

Choices where the reference is silent (also in records.py):
- a command before a successful subscribe -> `before_subscribe`: "error" (ack 853000 "not
  subscribed"), "ignore" (no ack) or "close" (TCP drop);
- a second good aibot_subscribe on a subscribed socket: ack 0 for the same bot, 853000 otherwise;
- a frame that is not a JSON object -> 47001 without req_id; unknown cmd -> 47001; no req_id or
  no cmd -> 40058 without req_id;
- a frame to a finished stream -> 846608; stream content over 20480 bytes -> `content_too_long_errcode`
  (45002); a second welcome on one req_id -> 846605; replies after the 24 h window -> 846604;
- rate limits count stream first frames, markdown/card/media replies, welcomes, proactive sends and
  response_url posts; refused messages do not count;
- upload: every size/count/completeness/md5 failure 40006, unknown or expired upload_id 40007;
- `refuse_connections` (an outage: WeCom unreachable while the client reconnects) -> every new
  WebSocket handshake is answered HTTP 503 and closed; counted in `refused_connections`;
- aibot_respond_update_msg: response_type and template_card.card_type required, task_id not compared.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.server import serve

from . import frames as F
from .chat import ChatLog, Conv, media_entry
from .media import HttpSide
from .outbox import Outbox
from .records import (
    BAD_FRAME,
    ERRORS,
    INVALID_CHATID,
    INVALID_CREDENTIALS,
    INVALID_REQ_ID,
    NOT_SUBSCRIBED,
    RATE_LIMITED,
    REQ_ID_EXPIRED,
    STREAM_EXPIRED,
    STREAM_FINISHED,
    SYSTEM_BUSY,
    Bubble,
    ConnectionRecord,
    NotConnected,
    Outcome,
    Pushed,
    fail,
    missing,
    ok,
)
from .replies import RESPOND_TYPES, SEND_TYPES, WELCOME_TYPES, _card, check_body
from .uploads import MediaStore

log = logging.getLogger(__name__)

POLL = 0.05  # how often a connection thread looks at its deadlines
REPLY_CMDS = {"aibot_respond_msg": "message", "aibot_respond_welcome_msg": "enter_chat",
              "aibot_respond_update_msg": "card"}
UPLOAD_CMDS = ("aibot_upload_media_init", "aibot_upload_media_chunk", "aibot_upload_media_finish")
EVENT_KINDS = {"enter_chat": "enter_chat", "template_card_event": "card", "feedback_event": "feedback"}


@dataclass
class _Req:
    """A server req_id: what may answer it, and until when."""

    kind: str  # message | enter_chat | card | feedback | event
    bot_id: str
    connection: int
    conv: Optional[Conv]
    pushed_at: float
    welcomed: bool = False


class _Live:
    """One client socket."""

    def __init__(self, ws, record: ConnectionRecord, now: float) -> None:
        self.ws = ws
        self.record = record
        self.number = record.number
        self.subscribed = False
        self.bot_id: Optional[str] = None
        self.last_frame_at = now
        self.drop_at: Optional[float] = None  # injected-clock deadline, set on takeover
        self.closing: Optional[str] = None  # close reason, once something decided to end it
        self.close_after_ack: Optional[str] = None
        self.cut: Optional[list] = None  # [cmd, frames left, process the last one]
        self.outbox = Outbox(ws, f"aibot-sim-out-{record.number}")


class AibotSimulator:
    def __init__(
        self,
        bots: dict[str, str],
        bot_name: str = "RobotA",
        clock: Callable[[], float] = time.monotonic,
        *,
        close_on_auth_failure: bool = False,
        before_subscribe: str = "error",
        ack_pings: bool = True,
        idle_timeout: Optional[float] = None,
        ack_delay: float = 0.0,
        no_ack_cmds: Iterable[str] = (),
        welcome_window: float = 5.0,
        card_update_window: float = 5.0,
        reply_window: float = 24 * 3600.0,
        stream_idle_limit: float = 360.0,
        stream_total_limit: float = 600.0,
        expire_silently: bool = False,
        content_too_long_errcode: int = 45002,
        rate_limit: Optional[tuple[int, float]] = (30, 60.0),
        rate_limit_hourly: Optional[tuple[int, float]] = (1000, 3600.0),
        rate_limit_errcode: int = RATE_LIMITED,
        reqids_survive_reconnect: bool = True,
        require_prior_message: bool = True,
        takeover_drop_after: float = 0.0,
        fail_concurrent_chunks: bool = False,
        media_url_ttl: float = 300.0,
        media_delay: float = 0.0,
        media_trickle: Optional[float] = None,
        aeskey_padding: str = "alternate",
        filename_style: str = "alternate",
        control_chars_in_json: bool = False,
        max_frame_bytes: int = 1 << 21,
        refuse_connections: bool = False,
    ) -> None:
        self.bots = dict(bots)
        self.bot_name = bot_name
        self.clock = clock
        # Knobs: plain attributes, so a test may change them while the simulator runs.
        self.close_on_auth_failure = close_on_auth_failure
        self.before_subscribe = before_subscribe
        self.ack_pings = ack_pings
        self.idle_timeout = idle_timeout
        self.ack_delay = ack_delay
        self.no_ack_cmds = set(no_ack_cmds)
        self.welcome_window = welcome_window
        self.card_update_window = card_update_window
        self.reply_window = reply_window
        self.stream_idle_limit = stream_idle_limit
        self.stream_total_limit = stream_total_limit
        self.expire_silently = expire_silently
        self.content_too_long_errcode = content_too_long_errcode
        self.rate_limit = rate_limit
        self.rate_limit_hourly = rate_limit_hourly
        self.rate_limit_errcode = rate_limit_errcode
        self.reqids_survive_reconnect = reqids_survive_reconnect
        self.require_prior_message = require_prior_message
        self.takeover_drop_after = takeover_drop_after
        self.fail_concurrent_chunks = fail_concurrent_chunks
        self.media_url_ttl = media_url_ttl
        self.media_delay = media_delay
        self.media_trickle = media_trickle
        self.aeskey_padding = aeskey_padding  # "alternate" | "keep" | "strip"
        self.filename_style = filename_style  # "alternate" | "rfc5987" | "plain"
        self.control_chars_in_json = control_chars_in_json
        self.max_frame_bytes = max_frame_bytes
        self.refuse_connections = refuse_connections

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._numbers = itertools.count(1)
        self._records: list[ConnectionRecord] = []
        self._open: list[_Live] = []
        self._live: dict[str, Optional[_Live]] = {}  # the connection callbacks go to, per bot
        self._reqs: dict[str, _Req] = {}
        self._known: dict[tuple[str, str], set] = {}  # (bot, "single"|"group") -> ids that messaged
        self._injected: list[list] = []  # [cmd, errcode, count, errmsg]
        self._frames: list[tuple] = []
        self._errors: list[tuple[int, dict]] = []
        self._replies: dict[str, list[dict]] = {}
        self._welcomes: dict[str, dict] = {}
        self._sent: list[dict] = []
        self._response_posts: list[dict] = []
        self._takeovers: list[dict] = []
        self._refused = 0
        self._chat = ChatLog()
        self._store = MediaStore()
        self._http = HttpSide(self)
        self._ws_server = None
        self.ws_url = ""
        self.http_url = ""

    # ============================================================================ lifecycle
    def start(self) -> "AibotSimulator":
        self.http_url = self._http.start()
        # Application pings only (§2.3): no WebSocket-level keepalive from the server.
        self._ws_server = serve(self._serve, "127.0.0.1", 0, ping_interval=None, compression=None,
                                max_size=self.max_frame_bytes, close_timeout=2, process_request=self._handshake)
        self.ws_url = f"ws://127.0.0.1:{self._ws_server.socket.getsockname()[1]}"
        threading.Thread(target=self._ws_server.serve_forever, name="aibot-sim-ws", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            live = list(self._open)
        for conn in live:
            self._drop(conn, "server_stopped", flush=None)
        if self._ws_server is not None:
            self._ws_server.shutdown()
            self._ws_server = None
        self._http.stop()

    def __enter__(self) -> "AibotSimulator":
        return self.start() if not self.ws_url else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ============================================================================ knobs as calls
    def fail_next(self, cmd: str, errcode: int, count: int = 1, errmsg: Optional[str] = None) -> None:
        """The next `count` frames of `cmd` get this error ack and are otherwise ignored."""
        with self._lock:
            self._injected.append([cmd, errcode, count, errmsg or ERRORS.get(errcode, "injected error")])

    def takeover(self, bot_id: str, drop_after: float = 0.0) -> int:
        """Act as a second client finishing its subscribe: the live connection gets
        disconnected_event and is dropped `drop_after` (clock) seconds later. Returns its number."""
        with self._lock:
            live = self._require_live(bot_id)
            self._kick(live, None, drop_after)
            self._live[bot_id] = None  # the phantom holds the bot until a real client subscribes
            return live.number

    def drop(self, bot_id: str, close_frame: bool = False, code: int = 1000) -> int:
        """End the live connection now: TCP drop without a close frame, or a close frame `code`."""
        with self._lock:
            live = self._require_live(bot_id)
        self._drop(live, "closed" if close_frame else "dropped", flush="due",
                   close_code=code if close_frame else None)
        return live.number

    def drop_after_frames(self, bot_id: str, n: int, cmd: str = "aibot_respond_msg", process: bool = True) -> None:
        """Drop TCP right after the n-th further `cmd` frame arrives; that frame is not acked
        (and, with process=False, not applied either)."""
        with self._lock:
            self._require_live(bot_id).cut = [cmd, n, process]

    def response_url(self, bot_id: str, userid: str, chatid: Optional[str] = None) -> str:
        """A fresh response_url for that chat, as WeCom puts in a callback-mode message (§3.5), for
        tests that play the callback side with the callback driver; POSTs to it show in that chat."""
        with self._lock:
            conv = (bot_id, "group", chatid) if chatid is not None else (bot_id, "single", userid)
            return self._http.add_response_code(bot_id, conv, F.new_req_id(), self.clock())

    def add_media(self, type: str, filename: str, data: bytes, bot_id: Optional[str] = None) -> str:  # noqa: A002
        """A media_id as if uploaded (valid 3 days; any bot when bot_id is None)."""
        with self._lock:
            return self._store.add(bot_id, type, filename, data, self.clock())

    # ============================================================================ views
    @property
    def refused_connections(self) -> int:
        """WebSocket handshakes turned away while `refuse_connections` was set."""
        with self._lock:
            return self._refused

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until predicate() is true (checked whenever the simulator's state changes)."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError("condition not met in time")

    def wait_subscribed(self, bot_id: str, timeout: float = 10.0, after: int = 0) -> int:
        """The number of the live subscribed connection for the bot (one numbered above `after`)."""
        def ready() -> bool:
            live = self._live.get(bot_id)
            return live is not None and live.closing is None and live.number > after

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"no subscribed connection for {bot_id} in {timeout}s")
            return self._live[bot_id].number

    def connection_count(self, bot_id: str) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.bot_id == bot_id and r.subscribed_at is not None)

    def live_connection(self, bot_id: str) -> Optional[int]:
        with self._lock:
            live = self._live.get(bot_id)
            return live.number if live is not None and live.closing is None else None

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._records]

    @property
    def takeovers(self) -> list[dict]:
        """{at, bot_id, kicked, by}: by is the new connection's number, None for sim.takeover()."""
        with self._lock:
            return [dict(t) for t in self._takeovers]

    def bubbles(self, req_id: str) -> list[Bubble]:
        with self._lock:
            return [copy.deepcopy(b) for b in self._chat.bubbles.get(req_id, [])]

    def wait_finished(self, req_id: str, timeout: float = 10.0, count: int = 1) -> list[Bubble]:
        def done() -> bool:
            return sum(b.finished for b in self._chat.bubbles.get(req_id, [])) >= count

        with self._cond:
            if not self._cond.wait_for(done, timeout):
                raise TimeoutError(f"{count} finished bubble(s) for {req_id} not seen in {timeout}s")
            return self.bubbles(req_id)

    def replies(self, req_id: str) -> list[dict]:
        """Every reply frame's body on that req_id, in order, with the acked "errcode" added (a body
        that is not an object comes as {"errcode", "raw_body"})."""
        with self._lock:
            out = []
            for entry in self._replies.get(req_id, []):
                body = entry["body"]
                shown = dict(body) if isinstance(body, dict) else {"raw_body": body}
                shown["errcode"] = entry["errcode"]
                out.append(copy.deepcopy(shown))
            return out

    def reply_log(self, req_id: str) -> list[dict]:
        """The same frames with context: {cmd, body, errcode, errmsg, at, connection}."""
        with self._lock:
            return copy.deepcopy(self._replies.get(req_id, []))

    def welcome(self, req_id: str) -> Optional[dict]:
        with self._lock:
            return copy.deepcopy(self._welcomes.get(req_id))

    @property
    def sent(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def response_posts(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._response_posts)

    @property
    def response_attempts(self) -> list[dict]:
        """Every response_url POST, refused ones too: {response_code, body, errcode}."""
        with self._lock:
            return copy.deepcopy(self._http.attempts)

    @property
    def downloads(self) -> list[tuple[str, int]]:
        """(path, HTTP status) of every media GET."""
        with self._lock:
            return list(self._http.fetches)

    def media(self, media_id: str) -> tuple[str, str, bytes]:
        with self._lock:
            m = self._store.media[media_id]
            return m.type, m.filename, m.data

    def conversation(self, userid: Optional[str] = None, chatid: Optional[str] = None,
                     bot_id: Optional[str] = None) -> list[tuple]:
        with self._lock:
            return self._chat.view(bot_id, userid, chatid)

    @property
    def frames(self) -> list[tuple]:
        with self._lock:
            return copy.deepcopy(self._frames)

    @property
    def errors(self) -> list[tuple[int, dict]]:
        with self._lock:
            return copy.deepcopy(self._errors)

    # ============================================================================ pushes
    def push_text(self, bot_id: str, userid: str, content: str, chatid: Optional[str] = None,
                  msgid: Optional[str] = None, quote: Optional[dict] = None) -> Pushed:
        if chatid is not None:
            content = f"@{self.bot_name} {content}"  # group text keeps the mention (§1.2)
        return self._push_message(bot_id, userid, chatid, msgid, "text", lambda now: {"content": content}, quote)

    def push_image(self, bot_id: str, userid: str, data: bytes, chatid: Optional[str] = None,
                   msgid: Optional[str] = None) -> Pushed:
        if chatid is not None:  # an @ + image in a group arrives as mixed (§1.3)
            return self.push_mixed(bot_id, userid, [("image", data)], chatid=chatid, msgid=msgid)
        return self._push_message(bot_id, userid, None, msgid, "image", lambda now: self._url(data, None, now))

    def push_mixed(self, bot_id: str, userid: str, items: list, chatid: Optional[str] = None,
                   msgid: Optional[str] = None) -> Pushed:
        def payload(now: float) -> dict:
            out = []
            for kind, value in items:
                if kind == "text":
                    out.append({"msgtype": "text", "text": {"content": value}})
                elif kind == "image":
                    out.append({"msgtype": "image", "image": self._url(value, None, now)})
                else:
                    raise ValueError(f"mixed items are text or image, not {kind!r}")
            if chatid is not None:
                mention = f"@{self.bot_name}"
                first_text = next((i for i in out if i["msgtype"] == "text"), None)
                if first_text is None:
                    out.insert(0, {"msgtype": "text", "text": {"content": mention}})
                else:
                    first_text["text"]["content"] = f"{mention} {first_text['text']['content']}"
            return {"msg_item": out}

        return self._push_message(bot_id, userid, chatid, msgid, "mixed", payload)

    def push_voice(self, bot_id: str, userid: str, transcript: str, msgid: Optional[str] = None) -> Pushed:
        return self._push_message(bot_id, userid, None, msgid, "voice", lambda now: {"content": transcript})

    def push_file(self, bot_id: str, userid: str, data: bytes, filename: str, msgid: Optional[str] = None) -> Pushed:
        return self._push_message(bot_id, userid, None, msgid, "file", lambda now: self._url(data, filename, now))

    def push_video(self, bot_id: str, userid: str, data: bytes, msgid: Optional[str] = None) -> Pushed:
        return self._push_message(bot_id, userid, None, msgid, "video", lambda now: self._url(data, None, now))

    def push_enter_chat(self, bot_id: str, userid: str) -> Pushed:
        return self.push_event(bot_id, userid, "enter_chat")

    def push_feedback(self, bot_id: str, userid: str, feedback_id: str, type: int = 1,  # noqa: A002
                      content: Optional[str] = None, reasons: Optional[list[int]] = None,
                      chatid: Optional[str] = None) -> Pushed:
        payload: dict = {"id": feedback_id, "type": type}
        if content is not None:
            payload["content"] = content
        if reasons is not None:
            payload["inaccurate_reason_list"] = list(reasons)
        return self.push_event(bot_id, userid, "feedback_event", payload, chatid=chatid)

    def push_card_event(self, bot_id: str, userid: str, event_key: str, task_id: str,
                        card_type: str = "button_interaction", selected_items: Optional[dict] = None,
                        chatid: Optional[str] = None) -> Pushed:
        payload: dict = {"card_type": card_type, "event_key": event_key, "task_id": task_id}
        if selected_items is not None:
            payload["selected_items"] = selected_items
        return self.push_event(bot_id, userid, "template_card_event", payload, chatid=chatid)

    def push_event(self, bot_id: str, userid: str, eventtype: str, payload: Optional[dict] = None,
                   chatid: Optional[str] = None, msgid: Optional[str] = None) -> Pushed:
        """Any aibot_event_callback. enter_chat req_ids take a welcome, template_card_event ones a
        card update (and carry a response_url), all others nothing."""
        kind = EVENT_KINDS.get(eventtype, "event")
        with self._lock:
            live, now = self._require_live(bot_id), self.clock()
            req_id, msgid = F.new_req_id(), msgid or F.new_msgid()
            conv = (bot_id, "group", chatid) if chatid is not None else (bot_id, "single", userid)
            url = self._http.add_response_code(bot_id, conv, req_id, now) if kind == "card" else None
            body = F.event_body(msgid=msgid, bot_id=bot_id, userid=userid, chatid=chatid,
                                eventtype=eventtype, payload=payload, response_url=url)
            return self._send_push(live, "aibot_event_callback", req_id, body, _Req(kind, bot_id, live.number, conv, now), url)

    def push_raw(self, bot_id: str, frame: Union[dict, str]) -> Pushed:
        """Send anything. A dict that looks like a callback registers its req_id like a real push."""
        with self._lock:
            live, now = self._require_live(bot_id), self.clock()
            body = frame.get("body") if isinstance(frame, dict) else None
            headers = frame.get("headers") if isinstance(frame, dict) else None
            req_id = headers.get("req_id") if isinstance(headers, dict) else None
            msgid = body.get("msgid") if isinstance(body, dict) else None
            url = body.get("response_url") if isinstance(body, dict) else None
            if isinstance(req_id, str) and isinstance(body, dict):
                self._register_raw(live, frame.get("cmd"), req_id, body, now)
            text = frame if isinstance(frame, str) else F.dumps(frame, self.control_chars_in_json)
            live.outbox.put(text)
            return Pushed(msgid or "", req_id or "", url, frame)

    # --- push plumbing (caller of the _ helpers holds the lock) --------------------------------------
    def _push_message(self, bot_id, userid, chatid, msgid, msgtype, payload, quote=None) -> Pushed:
        with self._lock:
            live, now = self._require_live(bot_id), self.clock()
            req_id, msgid = F.new_req_id(), msgid or F.new_msgid()
            conv = (bot_id, "group", chatid) if chatid is not None else (bot_id, "single", userid)
            self._known.setdefault((bot_id, conv[1]), set()).add(conv[2])
            url = self._http.add_response_code(bot_id, conv, req_id, now)
            body = F.message_body(msgid=msgid, bot_id=bot_id, userid=userid, chatid=chatid, response_url=url,
                                  msgtype=msgtype, payload=payload(now), quote=quote)
            return self._send_push(live, "aibot_msg_callback", req_id, body,
                                   _Req("message", bot_id, live.number, conv, now), url)

    def _send_push(self, live: _Live, cmd: str, req_id: str, body: dict, req: _Req, url) -> Pushed:
        # Registered before it is sent, so the fastest reply finds its req_id.
        self._reqs[req_id] = req
        frame = F.envelope(cmd, req_id, body)
        live.outbox.put(F.dumps(frame, self.control_chars_in_json))
        return Pushed(body["msgid"], req_id, url, frame)

    def _url(self, data: bytes, filename: Optional[str], now: float) -> dict:
        url, aeskey = self._http.add_download(data, filename, now)
        return {"url": url, "aeskey": aeskey}

    def _register_raw(self, live: _Live, cmd, req_id: str, body: dict, now: float) -> None:
        sender = body.get("from", {}).get("userid") if isinstance(body.get("from"), dict) else None
        chatid = body.get("chatid")
        conv = (live.bot_id, "group", chatid) if chatid else (live.bot_id, "single", sender)
        if cmd == "aibot_msg_callback":
            kind = "message"
            self._known.setdefault((live.bot_id, conv[1]), set()).add(conv[2])
        elif cmd == "aibot_event_callback":
            event = body.get("event") if isinstance(body.get("event"), dict) else {}
            kind = EVENT_KINDS.get(event.get("eventtype"), "event")
        else:
            return
        self._reqs[req_id] = _Req(kind, live.bot_id, live.number, conv, now)

    def _require_live(self, bot_id: str) -> _Live:
        live = self._live.get(bot_id)
        if live is None or live.closing is not None:
            raise NotConnected(f"no live subscribed connection for bot {bot_id!r}")
        return live

    def _kick(self, old: _Live, by: Optional[int], drop_after: float) -> None:
        """§2.9: disconnected_event to the old socket, then a TCP drop after `drop_after`."""
        now = self.clock()
        old.record.kicked_at = now
        old.drop_at = now + drop_after
        req_id = F.new_req_id()
        self._reqs[req_id] = _Req("event", old.bot_id, old.number, None, now)
        body = F.event_body(msgid=F.new_msgid(), bot_id=old.bot_id, userid=None, chatid=None,
                            eventtype="disconnected_event", payload=None)
        old.outbox.put(F.dumps(F.envelope("aibot_event_callback", req_id, body)))
        self._takeovers.append({"at": now, "bot_id": old.bot_id, "kicked": old.number, "by": by})
        self._cond.notify_all()

    # ============================================================================ connections
    def _handshake(self, connection, request):
        """Before the WebSocket upgrade: during a simulated outage, no new connection gets in."""
        with self._lock:
            if not self.refuse_connections:
                return None
            self._refused += 1
            self._cond.notify_all()
        return connection.respond(503, "Service Unavailable\n")

    def _serve(self, ws) -> None:
        with self._lock:
            now = self.clock()
            record = ConnectionRecord(next(self._numbers), None, now)
            live = _Live(ws, record, now)
            self._records.append(record)
            self._open.append(live)
            self._cond.notify_all()
        reason = "client_lost"
        try:
            while True:
                due = self._due_drop(live)
                if due:
                    self._drop(live, due, flush="due")
                try:
                    message = ws.recv(timeout=POLL)
                except TimeoutError:
                    continue
                except ConnectionClosedOK:
                    reason = "client_closed"
                    break
                except ConnectionClosed:
                    break
                self._on_message(live, message)
        except Exception:  # a bug here must not pass silently as a "client_lost"
            log.exception("aibot simulator connection %s failed", live.number)
            reason = "simulator_error"
        finally:
            with self._lock:
                live.closing = live.closing or reason
                record.closed_at = self.clock()
                record.close_reason = live.closing
                if live.bot_id and self._live.get(live.bot_id) is live:
                    self._live[live.bot_id] = None
                if live in self._open:
                    self._open.remove(live)
                self._cond.notify_all()
            live.outbox.close(None)

    def _due_drop(self, live: _Live) -> Optional[str]:
        with self._lock:
            if live.closing is not None:
                return None
            now = self.clock()
            if live.drop_at is not None and now >= live.drop_at:
                return "takeover"
            if self.idle_timeout is not None and now - live.last_frame_at >= self.idle_timeout:
                return "idle_timeout"
            return None

    def _drop(self, live: _Live, reason: str, flush: Optional[str], close_code: Optional[int] = None) -> None:
        with self._lock:
            if live.closing is not None:
                return
            live.closing = reason
            if live.bot_id and self._live.get(live.bot_id) is live:
                self._live[live.bot_id] = None  # pushes raise from now on
            self._cond.notify_all()
        live.outbox.close(flush)
        if close_code is not None:
            try:
                live.ws.close(close_code)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
            return
        try:
            # FIN without a WebSocket close frame: what the real server does (§2.9, §9.2).
            live.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ============================================================================ client frames
    def _on_message(self, live: _Live, message) -> None:
        after: Optional[str] = None
        with self._lock:
            if live.closing is not None:
                return  # read after the drop decision: a real server would not have seen it
            now = self.clock()
            live.last_frame_at = now
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            try:
                frame = json.loads(text) if isinstance(message, str) else None
            except ValueError:
                frame = None
            if not isinstance(frame, dict):
                self._frames.append((now, live.number, frame if frame is not None else text))
                outcome = fail(BAD_FRAME, "frame is not a JSON object")
                outcome.omit_req_id = True
                self._ack(live, None, None, outcome, send=True)
                return
            self._frames.append((now, live.number, copy.deepcopy(frame)))
            cmd = frame.get("cmd")
            headers = frame.get("headers")
            req_id = headers.get("req_id") if isinstance(headers, dict) else None
            if not isinstance(req_id, str) or not req_id or len(req_id.encode()) > 256:
                self._ack(live, cmd, None, missing("headers.req_id"), send=True)
                return
            if not isinstance(cmd, str):
                self._ack(live, None, req_id, missing("cmd"), send=True)
                return
            cut = False
            if live.cut and live.cut[0] == cmd:
                live.cut[1] -= 1
                if live.cut[1] <= 0:
                    cut, process = True, live.cut[2]
                    live.cut = None
            if cut and not process:
                after = "drop_after_frames"
            else:
                outcome = self._dispatch(live, cmd, req_id, frame.get("body"), now)
                if outcome is not None:
                    send = not cut and cmd not in self.no_ack_cmds and not (cmd == "ping" and not self.ack_pings)
                    self._ack(live, cmd, req_id, outcome, send)
                after = "drop_after_frames" if cut else live.close_after_ack
            self._cond.notify_all()
        if after:
            self._drop(live, after, flush="all" if after != "drop_after_frames" else "due")

    def _ack(self, live: _Live, cmd, req_id: Optional[str], outcome: Outcome, send: bool) -> None:
        frame = F.ack(None if outcome.omit_req_id else req_id, outcome.errcode, outcome.errmsg, outcome.body)
        if not send:
            if outcome.on_sent:
                outcome.on_sent()
            return
        if outcome.errcode != 0:
            self._errors.append((outcome.errcode, copy.deepcopy(frame)))
        live.outbox.put(F.dumps(frame), self.ack_delay, outcome.on_sent)

    def _dispatch(self, live: _Live, cmd: str, req_id: str, body, now: float) -> Optional[Outcome]:
        outcome = self._take_injected(cmd)
        if outcome is None:
            if cmd == "aibot_subscribe":
                outcome = self._subscribe(live, body, now)
            elif not live.subscribed:
                if self.before_subscribe == "ignore":
                    return None
                if self.before_subscribe == "close":
                    live.close_after_ack = "before_subscribe"
                    return None
                outcome = fail(NOT_SUBSCRIBED, "not subscribed, send aibot_subscribe first")
            elif cmd == "ping":
                outcome = ok()
            elif cmd in REPLY_CMDS:
                outcome = self._reply(live, cmd, req_id, body, now)
            elif cmd == "aibot_send_msg":
                outcome = self._send_msg(live, body, now)
            elif cmd in UPLOAD_CMDS:
                outcome = self._upload(live, cmd, body, now)
            else:
                outcome = fail(BAD_FRAME, f"unknown cmd {cmd!r}")
        if cmd in REPLY_CMDS:
            self._replies.setdefault(req_id, []).append(
                {"cmd": cmd, "body": copy.deepcopy(body), "errcode": outcome.errcode, "errmsg": outcome.errmsg,
                 "at": now, "connection": live.number})
        return outcome

    def _take_injected(self, cmd: str) -> Optional[Outcome]:
        for entry in self._injected:
            if entry[0] == cmd:
                entry[2] -= 1
                if entry[2] <= 0:
                    self._injected.remove(entry)
                return Outcome(entry[1], entry[3])
        return None

    def _subscribe(self, live: _Live, body, now: float) -> Outcome:
        body = body if isinstance(body, dict) else {}
        bot_id, secret = body.get("bot_id"), body.get("secret")
        good = isinstance(bot_id, str) and isinstance(secret, str) and self.bots.get(bot_id) == secret
        if live.subscribed:
            return ok() if good and bot_id == live.bot_id else fail(INVALID_CREDENTIALS, "socket already subscribed")
        if not good:
            if isinstance(bot_id, str) and live.record.bot_id is None:
                live.record.bot_id = bot_id  # shows who tried; connection_count only counts successes
            if self.close_on_auth_failure:
                live.close_after_ack = "auth_failure"
            return fail(INVALID_CREDENTIALS)
        live.subscribed, live.bot_id = True, bot_id
        live.record.bot_id, live.record.subscribed_at = bot_id, now
        old = self._live.get(bot_id)
        self._live[bot_id] = live  # callbacks follow the newest connection (§2.9)
        if old is not None and old is not live and old.closing is None:
            self._kick(old, live.number, self.takeover_drop_after)
        return ok()

    # --- replies to callbacks -----------------------------------------------------------------------
    def _limits(self) -> list:
        return [self.rate_limit, self.rate_limit_hourly]

    def _rate(self, conv: Conv, now: float) -> Optional[Outcome]:
        if not self._chat.allowed(conv, now, self._limits()):
            return Outcome(self.rate_limit_errcode, ERRORS.get(self.rate_limit_errcode, "rate limited"))
        self._chat.count(conv, now)
        return None

    def _check(self, live: _Live, body, allowed: set, now: float):
        error, media = check_body(body, allowed, lambda kind, mid: self._store.lookup(live.bot_id, kind, mid, now))
        if error is not None and error.errmsg.startswith("content size out of limit"):
            error.errcode = self.content_too_long_errcode
        return error, media

    def _reply(self, live: _Live, cmd: str, req_id: str, body, now: float) -> Outcome:
        req = self._reqs.get(req_id)
        if req is None or req.bot_id != live.bot_id or req.kind != REPLY_CMDS[cmd]:
            return fail(INVALID_REQ_ID)
        if not self.reqids_survive_reconnect and req.connection != live.number:
            return fail(INVALID_REQ_ID, "req_id of an earlier connection")
        if cmd == "aibot_respond_welcome_msg":
            return self._welcome(live, req, req_id, body, now)
        if cmd == "aibot_respond_update_msg":
            return self._card_update(req, body, now)
        if now - req.pushed_at > self.reply_window:
            return fail(REQ_ID_EXPIRED, "reply window of 24 h is over")
        error, media = self._check(live, body, RESPOND_TYPES, now)
        if error is not None:
            return error
        if body["msgtype"] in ("stream", "stream_with_template_card"):
            return self._stream(req, req_id, body, now)
        error = self._rate(req.conv, now)
        if error is not None:
            return error
        self._chat.show(req.conv, self._entry(body, media))
        return ok()

    def _welcome(self, live: _Live, req: _Req, req_id: str, body, now: float) -> Outcome:
        if now - req.pushed_at > self.welcome_window:
            return fail(REQ_ID_EXPIRED, f"welcome later than {self.welcome_window}s")
        if req.welcomed:
            return fail(INVALID_REQ_ID, "welcome already sent")
        error, _ = self._check(live, body, WELCOME_TYPES, now)
        if error is None:
            error = self._rate(req.conv, now)
        if error is not None:
            return error
        req.welcomed = True
        self._welcomes[req_id] = copy.deepcopy(body)
        if body["msgtype"] == "text":
            self._chat.show(req.conv, ("welcome", body["text"]["content"]))
        else:
            self._chat.show(req.conv, ("welcome_card", copy.deepcopy(body["template_card"])))
        return ok()

    def _card_update(self, req: _Req, body, now: float) -> Outcome:
        if now - req.pushed_at > self.card_update_window:
            return fail(REQ_ID_EXPIRED, f"card update later than {self.card_update_window}s")
        if not isinstance(body, dict) or body.get("response_type") != "update_template_card":
            return missing("body.response_type")
        error = _card(body, required=True)
        if error is not None:
            return error
        self._chat.show(req.conv, ("card_update", copy.deepcopy(body["template_card"])))
        return ok()

    def _stream(self, req: _Req, req_id: str, body: dict, now: float) -> Outcome:
        stream = body["stream"]
        bubble = self._chat.streams.get((req_id, stream["id"]))
        if bubble is None:
            error = self._rate(req.conv, now)  # a stream is one message, counted at its first frame
            if error is not None:
                return error
            feedback = stream.get("feedback")
            bubble = self._chat.new_bubble(req.conv, req_id, stream["id"], now,
                                           feedback["id"] if isinstance(feedback, dict) else None)
            if isinstance(body.get("template_card"), dict):
                self._chat.show(req.conv, ("template_card", copy.deepcopy(body["template_card"])))
        else:
            if bubble.finished:
                return fail(STREAM_FINISHED, "stream already finished")
            if now - bubble.updated_at > self.stream_idle_limit or now - bubble.created_at > self.stream_total_limit:
                bubble.expired = True
                return ok() if self.expire_silently else fail(STREAM_EXPIRED)
        content = stream.get("content", "")
        bubble.text = content  # a snapshot replaces, never appends (§2.6)
        bubble.frames.append(content)
        bubble.updated_at = now
        if isinstance(stream.get("msg_item"), list):
            bubble.msg_items.extend(copy.deepcopy(stream["msg_item"]))
        bubble.finished = bool(stream.get("finish"))
        return ok()

    @staticmethod
    def _entry(body: dict, media) -> tuple:
        if body["msgtype"] == "markdown":
            return ("markdown", body["markdown"]["content"])
        if body["msgtype"] == "template_card":
            return ("template_card", copy.deepcopy(body["template_card"]))
        return media_entry(media)

    # --- proactive send ---------------------------------------------------------------------------------
    def _send_msg(self, live: _Live, body, now: float) -> Outcome:
        if not isinstance(body, dict):
            return missing("body")
        chatid = body.get("chatid")
        if not isinstance(chatid, str) or not chatid:
            return missing("body.chatid")
        error, media = self._check(live, body, SEND_TYPES, now)
        if error is not None:
            return error
        conv = self._resolve_chat(live.bot_id, chatid, body.get("chat_type"))
        if conv is None:
            return fail(INVALID_CHATID, chatid)
        error = self._rate(conv, now)
        if error is not None:
            return error
        self._sent.append(copy.deepcopy(body))
        self._chat.show(conv, self._entry(body, media))
        return ok()

    def _resolve_chat(self, bot_id: str, chatid: str, chat_type) -> Optional[Conv]:
        """A chatid is a group that messaged the bot, or a userid that did in single chat."""
        kinds = {1: ("single",), 2: ("group",)}.get(chat_type, ("group", "single"))
        for kind in kinds:
            if chatid in self._known.get((bot_id, kind), ()):
                return (bot_id, kind, chatid)
        if self.require_prior_message:
            return None
        return (bot_id, "group" if chat_type == 2 else "single", chatid)

    # --- upload ---------------------------------------------------------------------------------------------
    def _upload(self, live: _Live, cmd: str, body, now: float) -> Outcome:
        if not isinstance(body, dict):
            return missing("body")
        if cmd == "aibot_upload_media_init":
            return self._store.init(live.bot_id, body, now)
        upload, error = self._store.session(live.bot_id, body, now)
        if error is not None:
            return error
        if cmd == "aibot_upload_media_finish":
            return self._store.finish(body["upload_id"], upload, now)
        if self.fail_concurrent_chunks and upload.pending_acks > 0:
            return fail(SYSTEM_BUSY, "concurrent chunks")
        outcome = self._store.chunk(upload, body)
        if outcome.errcode == 0:
            upload.pending_acks += 1

            def sent() -> None:
                with self._lock:
                    upload.pending_acks -= 1

            outcome.on_sent = sent
        return outcome
