"""Loopback simulator of api.weixin.qq.com (Official Account) and qyapi.weixin.qq.com (WeCom app and
customer service) under one base URL, written from reference/channel-protocols.md §1.7, §1.8, §2.4,
§2.6, §3.1 and §3.3, never from product code.

    sim = WeChatPlatformSimulator(oa_apps={"wxAPP": "SECRET"},
                                  wecom_apps={"wwCORP": {"APPSECRET": 1000002}},
                                  kf_accounts={"wwCORP": ["wkKF"]}).start()
    sim.base_url   # http://127.0.0.1:<port>; every API is under /cgi-bin/ (sim.api_base)

Which platform a call belongs to follows from its token: an OA token on a WeCom-only API (or the
reverse) is 40014, as it would be on the other host. Tests read `calls()` (every request, in
order, with its errcode), `shown(user)` (what that user would see, in order, from every send API
and from passive replies a linked CallbackSender saw) and steer the server with `inject` /
`fail_next`, `expire_tokens`, `revoke_tokens`, `touch`, the kf_* helpers and the knobs (plain
attributes, changeable while running). Time comes from `clock` (unix seconds; a FakeClock lets a
test jump 48 h); injected delays are real seconds because they exist to exercise client timeouts.
"""
from __future__ import annotations

import collections
import copy
import itertools
import json
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import parse_qs, quote, urlsplit

from . import kf as kf_items
from . import kf_api, media_api, oa_api, token_api, wecom_api
from .errors import CUSTOMER_WINDOW, INVALID_TOKEN, QUOTA_REACHED, REQUIRE_GET, REQUIRE_POST, errmsg
from .kf import ORIGIN_CUSTOMER, ORIGIN_SERVICER, ORIGIN_SYSTEM, KfStore
from .media import Media, MediaStore, parse_multipart
from .records import Call, Fault, Shown
from .routes import Answer, Binary, Req, Route
from .tokens import TokenBook

ROUTES: dict[str, Route] = {**token_api.ROUTES, **media_api.ROUTES, **oa_api.ROUTES, **wecom_api.ROUTES,
                            **kf_api.ROUTES}
MAX_BODY = 32 * 1024 * 1024  # above the largest upload (20 MB file) plus multipart overhead
RECORDED_RAW = 4096  # bytes of a non-JSON, non-multipart body kept in a Call


class WeChatPlatformSimulator:
    def __init__(
        self,
        oa_apps: Optional[Mapping[str, str]] = None,
        wecom_apps: Optional[Mapping[str, Mapping[str, int]]] = None,
        kf_accounts: Optional[Mapping[str, Iterable[str]]] = None,
        clock: Callable[[], float] = time.time,
        *,
        token_ttl: float = 7200.0,
        oa_uncertified: Iterable[str] = (),
        wecom_members: Optional[Mapping[str, Iterable[str]]] = None,
        require_interaction: bool = True,
        daily_quota: Optional[int] = None,
        member_limits: Iterable[tuple[int, float]] = ((30, 60.0), (1000, 3600.0)),
    ) -> None:
        """oa_apps: appid -> secret. wecom_apps: corpid -> {corpsecret: agentid}. kf_accounts:
        corpid -> open_kfids (kf_message adds more on the fly). wecom_members: corpid -> userids
        (None: every userid is a member). require_interaction: OA custom/send needs a `touch` within
        48 h. daily_quota: calls per account per API before 45009, reset by clear_quota.
        member_limits: (count, seconds) windows of WeCom message/send per member per app."""
        self.oa_apps = dict(oa_apps or {})
        self.wecom_apps = {corp: dict(apps) for corp, apps in (wecom_apps or {}).items()}
        self.clock = clock
        self.token_ttl = token_ttl
        self.oa_uncertified = set(oa_uncertified)
        self.wecom_members = ({corp: set(users) for corp, users in wecom_members.items()}
                              if wecom_members is not None else None)
        self.require_interaction = require_interaction
        self.daily_quota = daily_quota
        self.member_limits = list(member_limits)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tokens = TokenBook()
        self._media = MediaStore()
        self._kf = KfStore()
        for corp, kfids in (kf_accounts or {}).items():
            for open_kfid in kfids:
                self._kf.add_account(corp, open_kfid)
        self._faults: list[Fault] = []
        self._calls: list[Call] = []
        self._shown: list[Shown] = []
        self._seq = itertools.count(1)
        self._interactions: dict[tuple[str, str], float] = {}
        self._quota: collections.Counter = collections.Counter()
        self._member_sends: dict[tuple, collections.deque] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: Optional[_Server] = None
        self.base_url = ""

    # ================================================================================ lifecycle
    def start(self) -> "WeChatPlatformSimulator":
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._httpd = _Server(self)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll keeps stop() quick (the default is 0.5 s).
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="wechat-platform-sim",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in an injected delay
        httpd.shutdown()
        with self._lock:
            open_sockets = list(self._connections)
        for sock in open_sockets:  # idle keep-alive connections would keep their threads blocked
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()

    def __enter__(self) -> "WeChatPlatformSimulator":
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_base(self) -> str:
        """What wechatpy's API_BASE_URL wants (trailing /cgi-bin/)."""
        return f"{self.base_url}/cgi-bin/"

    # ================================================================================ steering
    def inject(self, api: str, *, errcode: Optional[int] = None, status: Optional[int] = None,
               delay: float = 0.0, drop: bool = False, count: int = 1, errmsg: Optional[str] = None) -> None:
        """Queue a Fault for the next `count` calls of `api` (path after /cgi-bin/, "*" = any).
        Faults are used in the order queued; see records.Fault for what each field does."""
        with self._lock:
            self._faults.append(Fault(api, count, errcode, errmsg, status, delay, drop))

    def fail_next(self, api: str, errcode: int, count: int = 1) -> None:
        self.inject(api, errcode=errcode, count=count)

    def expire_tokens(self, account: Optional[str] = None) -> int:
        """The live tokens (of one appid/corpid, or all) expire now: 42001 until a new one is fetched."""
        with self._lock:
            return self._tokens.expire(self.clock(), account)

    def revoke_tokens(self, account: Optional[str] = None) -> int:
        """The live tokens answer 40001 from now on, as after a secret reset."""
        with self._lock:
            return self._tokens.revoke(account)

    def touch(self, account: str, user: str, at: Optional[float] = None) -> None:
        """The user interacted with the account (sent a message, clicked): opens the 48 h window."""
        with self._lock:
            self._interactions[(account, user)] = self.clock() if at is None else at

    def add_media(self, account: str, kind: str, data: bytes, filename: Optional[str] = None) -> str:
        """A temporary media_id as if a user sent this file (for MediaId in callbacks, kf images)."""
        with self._lock:
            return self._media.add(account, kind, data, filename, self.clock()).media_id

    def media(self, media_id: str) -> Optional[Media]:
        """Any media ever stored, even expired or deleted (check .deleted / .permanent)."""
        with self._lock:
            return copy.copy(self._media.peek(media_id))

    # --- customer service --------------------------------------------------------------------
    def kf_account(self, corpid: str, open_kfid: str) -> None:
        with self._lock:
            self._kf.add_account(corpid, open_kfid)

    def kf_message(self, corpid: str, open_kfid: str, external_userid: str, content: Optional[str] = None, *,
                   msgtype: str = "text", payload: Optional[dict] = None, origin: int = ORIGIN_CUSTOMER,
                   servicer_userid: Optional[str] = None, send_time: Optional[float] = None,
                   msgid: Optional[str] = None) -> dict:
        """Store a message for sync_msg: by default a customer's text (origin 3). For a servicer's
        message pass origin=5 and servicer_userid; for media, msgtype and payload={"media_id": ...}."""
        if content is not None:
            msgtype, payload = "text", {"content": content}
        if payload is None:
            raise ValueError("give content or payload")
        return self._kf_store(corpid, open_kfid, kf_items.item(
            open_kfid, msgtype, payload, origin=origin, send_time=self._send_time(send_time),
            msgid=msgid or secrets.token_urlsafe(24), external_userid=external_userid,
            servicer_userid=servicer_userid if origin == ORIGIN_SERVICER else None))

    def kf_event(self, corpid: str, open_kfid: str, event_type: str, external_userid: Optional[str] = None,
                 *, send_time: Optional[float] = None, msgid: Optional[str] = None, **fields: Any) -> dict:
        """Store a system event (origin 4), e.g. enter_session with welcome_code=..."""
        event = {"event_type": event_type, "open_kfid": open_kfid}
        if external_userid is not None:
            event["external_userid"] = external_userid
        event.update(fields)
        return self._kf_store(corpid, open_kfid, kf_items.item(
            open_kfid, "event", event, origin=ORIGIN_SYSTEM, send_time=self._send_time(send_time),
            msgid=msgid or secrets.token_urlsafe(24)))

    def kf_sync_token(self, corpid: str, open_kfid: str) -> str:
        """The Token a kf_msg_or_event callback carries (good for 10 minutes)."""
        with self._lock:
            return self._kf.issue_token(corpid, open_kfid, self.clock())

    def _send_time(self, send_time: Optional[float]) -> int:
        return int(self.clock() if send_time is None else send_time)

    def _kf_store(self, corpid: str, open_kfid: str, entry: dict) -> dict:
        with self._lock:
            self._kf.push(corpid, open_kfid, entry)
            self._cond.notify_all()
            return copy.deepcopy(entry)

    # --- passive replies seen by a linked sender ------------------------------------------------
    def show_passive(self, account: str, user: str, msgtype: str, text: Optional[str] = None,
                     media_id: Optional[str] = None, body: Optional[dict] = None) -> None:
        """Record a passive reply the user saw (CallbackSender calls this when linked)."""
        with self._lock:
            media = self._media.get(account, media_id, self.clock()) if media_id else None
            self._show(Shown(user, account, "passive", msgtype, text, media_id,
                             media.data if media else None, self.clock(), body=dict(body or {})))

    # ================================================================================ views
    def calls(self, api: Optional[str] = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if api is None or c.api == api]

    def shown(self, user: Optional[str] = None) -> list[Shown]:
        """What users saw, in order; one user's when `user` is given."""
        with self._lock:
            return [s for s in self._shown if user is None or s.user == user]

    def texts(self, user: str) -> list[str]:
        return [s.text for s in self.shown(user) if s.text is not None]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until predicate() holds; it is re-checked whenever a call is answered."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met within {timeout}s")

    def wait_shown(self, user: str, count: int = 1, timeout: float = 10.0) -> list[Shown]:
        self.wait(lambda: len(self.shown(user)) >= count, timeout)
        return self.shown(user)

    # ================================================================================ rules used by handlers
    def _show(self, shown: Shown) -> None:
        self._shown.append(shown)
        self._cond.notify_all()

    def _window_open(self, account: str, user: str, now: float) -> bool:
        last = self._interactions.get((account, user))
        return last is not None and now - last <= CUSTOMER_WINDOW

    def _member_rate_ok(self, corpid: str, agentid: Optional[int], user: str, now: float) -> bool:
        if not self.member_limits:
            return True
        sent = self._member_sends.setdefault((corpid, agentid, user), collections.deque())
        longest = max(seconds for _, seconds in self.member_limits)
        while sent and now - sent[0] >= longest:
            sent.popleft()
        for count, seconds in self.member_limits:
            if sum(1 for t in sent if now - t < seconds) >= count:
                return False
        sent.append(now)
        return True

    def _clear_quota(self, account: str) -> None:
        for key in [k for k in self._quota if k[0] == account]:
            del self._quota[key]

    # ================================================================================ HTTP
    def _take_fault(self, api: str) -> Optional[Fault]:
        with self._lock:
            for fault in self._faults:
                if fault.api in (api, "*"):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, api: str, method: str, query: dict, raw: bytes, content_type: str, status: int,
                errcode: Optional[int], account: Optional[str] = None, injected: bool = False,
                note: str = "") -> None:
        with self._lock:
            self._calls.append(Call(next(self._seq), self.clock(), api, method, query,
                                    _summary(raw, content_type), status, errcode, account, injected, note))
            self._cond.notify_all()

    def _process(self, req: Req) -> Any:
        """Answer or Binary for one request (the caller holds the lock)."""
        route = ROUTES.get(req.api)
        if route is None:
            return Answer(status=404)
        if req.method != route.method:
            return Answer(REQUIRE_GET if route.method == "GET" else REQUIRE_POST)
        if route.auth is not None:
            code, grant = self._tokens.check(req.query.get("access_token"), req.now)
            if code:
                return Answer(code)
            if route.auth != "any" and grant.kind != route.auth:
                return Answer(INVALID_TOKEN, f"a {grant.kind} token on a {route.auth} API")
            req.grant = grant
            if route.metered and self.daily_quota is not None:
                key = (grant.account, req.api)
                if self._quota[key] >= self.daily_quota:
                    return Answer(QUOTA_REACHED)
                self._quota[key] += 1
        return route.handler(self, req)

    def _serve(self, h: "_Handler") -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        api = url.path[len("/cgi-bin/"):].strip("/") if url.path.startswith("/cgi-bin/") else url.path
        content_type = h.headers.get("Content-Type", "")
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._record(api, h.command, query, b"", content_type, 413, None, note=f"Content-Length {length}")
            h.reply(413, b"request entity too large", "text/plain", close=True)
            return
        raw = h.rfile.read(length) if length else b""
        fault = self._take_fault(api)
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.answers:
            self._answer_fault(h, fault, api, query, raw, content_type)
            return
        with self._lock:
            req = Req(api, h.command, query, raw, content_type, self.clock())
            answer = self._process(req)
            account = req.grant.account if req.grant else None
            if isinstance(answer, Binary):
                self._record(api, h.command, query, raw, content_type, 200, None, account)
            else:
                self._record(api, h.command, query, raw, content_type, answer.status,
                             answer.errcode if answer.status == 200 else None, account, note=answer.note)
        if isinstance(answer, Binary):
            name = answer.filename or "media"
            # http.server writes headers as latin-1: a non-ASCII name goes in RFC 5987 form.
            disposition = (f'attachment; filename="{name}"' if name.isascii()
                           else f"attachment; filename*=UTF-8''{quote(name, safe='')}")
            h.reply(200, answer.data, answer.content_type, extra=(("Content-Disposition", disposition),))
        elif answer.status != 200:
            h.reply(answer.status, b"not found", "text/plain")
        else:
            h.reply_json(answer.payload())

    def _answer_fault(self, h: "_Handler", fault: Fault, api: str, query: dict, raw: bytes, ctype: str) -> None:
        if fault.drop:
            self._record(api, h.command, query, raw, ctype, 0, None, injected=True, note="dropped")
            h.drop()
        elif fault.status is not None:
            self._record(api, h.command, query, raw, ctype, fault.status, None, injected=True)
            h.reply(fault.status, f"<html><body><h1>{fault.status}</h1></body></html>".encode(), "text/html")
        else:
            self._record(api, h.command, query, raw, ctype, 200, fault.errcode, injected=True)
            h.reply_json({"errcode": fault.errcode, "errmsg": fault.errmsg or errmsg(fault.errcode)})


def _summary(raw: bytes, content_type: str) -> Any:
    """What a Call keeps of a body: JSON parsed, multipart as part sizes, anything else its start."""
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass
    parts = parse_multipart(content_type, raw)
    if parts is not None:
        return {"parts": {name: {"filename": p.filename, "content_type": p.content_type, "size": len(p.data)}
                          for name, p in parts.items()}}
    return raw[:RECORDED_RAW]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, sim: WeChatPlatformSimulator) -> None:
        self.sim = sim
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (or stop() closing sockets) is normal here; anything else deserves a trace.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "WeChatPlatformSim/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # tests read calls() instead

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this the body waits for the client's
        # delayed ACK (~40 ms a call).
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server.sim._lock:
            self.server.sim._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sim._lock:
                self.server.sim._connections.discard(self.connection)

    def do_GET(self) -> None:
        self.server.sim._serve(self)

    def do_POST(self) -> None:
        self.server.sim._serve(self)

    def reply(self, status: int, payload: bytes, content_type: str, extra: tuple = (), close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def reply_json(self, payload: dict) -> None:
        # ensure_ascii=False: the platform answers UTF-8 text, not \u escapes.
        self.reply(200, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
