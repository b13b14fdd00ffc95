"""Loopback simulator of the Feishu OpenAPI (reference/channel-protocols.md §4.4, §4.6, §4.7),
written from the reference, never from product code.

    sim = FeishuSimulator(app_id, app_secret).start()
    sim.base_url                  # http://127.0.0.1:<port>  (feishu_api_base)

Routes: tenant token, bot/v3/info, message create / reply / PATCH (card update), image and file
upload, resource download, group info (`chat_names`), and the long connection's endpoint with a WebSocket server that speaks
lark's protobuf frames (ws_server.py). Tests read `calls()`, `sent()` (every message as the chat
would show it, with the updates of a card), steer with `fail_next`, `revoke_tokens`,
`add_resource`, and push events over the long connection with `push_event`.
"""
from __future__ import annotations

import json
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from tests.fakes.wechat_platform.media import parse_multipart

INVALID_TOKEN = 99991663
MISSING_TOKEN = 99991661
MESSAGE_NOT_FOUND = 230001
NOT_A_CARD = 230099
UUID_WINDOW = 3600.0


@dataclass
class Call:
    method: str
    route: str  # token, bot_info, create, reply, patch, image, file, resource, ws_endpoint
    path: str
    query: dict
    body: Any  # parsed JSON, multipart fields {name: (filename, bytes)}, or None
    code: int
    at: float


@dataclass
class Sent:
    message_id: str
    via: str  # "create" or "reply"
    target: str  # create: the receive_id; reply: the message replied to
    receive_id_type: str
    msg_type: str
    content: dict
    uuid: str
    at: float
    updates: list = field(default_factory=list)  # (time, content) of each PATCH, in order

    @property
    def text(self) -> str:
        """What the chat shows now: a text's text, a card's markdown (after its updates)."""
        content = self.updates[-1][1] if self.updates else self.content
        if self.msg_type == "text":
            return str(content.get("text", ""))
        if self.msg_type == "interactive":
            return "".join(str(e.get("content", "")) for e in content.get("elements", []) if e.get("tag") == "markdown")
        return ""


@dataclass
class _Fault:
    route: str
    code: int
    msg: str
    status: int


class FeishuSimulator:
    def __init__(self, app_id: str = "cli_simulated0001", app_secret: str = "sim-secret", *,
                 bot_open_id: str = "ou_bot0000000000000000000000000001", bot_name: str = "SimBot",
                 token_ttl: int = 7200, bot_info: bool = True) -> None:
        self.app_id, self.app_secret = app_id, app_secret
        self.bot_open_id, self.bot_name = bot_open_id, bot_name
        self.token_ttl = token_ttl
        self.bot_info = bot_info  # False: bot/v3/info refuses (the channel falls back to feishu_bot_name)
        self._tokens: dict[str, float] = {}
        self._calls: list[Call] = []
        self._sent: dict[str, Sent] = {}
        self._uuids: dict[str, tuple[str, float]] = {}
        self._faults: list[_Fault] = []
        self._delays: list[tuple[str, float]] = []  # (route, seconds) of calls to answer late
        self.chat_names: dict[str, str] = {}  # chat id -> group name (im/v1/chats)
        self.resources: dict[tuple[str, str], bytes] = {}
        self.images: dict[str, bytes] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        self._cond = threading.Condition()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self.ws = None  # ws_server.LongConnectionServer once the endpoint is asked for

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FeishuSimulator":
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes; without this the body waits for the
                # client's delayed ACK (~40 ms a call).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                simulator._dispatch(self, "GET")

            def do_POST(self) -> None:
                simulator._dispatch(self, "POST")

            def do_PATCH(self) -> None:
                simulator._dispatch(self, "PATCH")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="feishu-sim",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.ws is not None:
            self.ws.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "FeishuSimulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ------------------------------------------------------------------ steering
    def fail_next(self, route: str, code: int, msg: str = "injected", *, status: int = 400, times: int = 1) -> None:
        with self._cond:
            self._faults.extend(_Fault(route, code, msg, status) for _ in range(times))

    def delay_next(self, route: str, seconds: float, times: int = 1) -> None:
        """The next call(s) of `route` are answered `seconds` late (a slow platform)."""
        with self._cond:
            self._delays.extend((route, seconds) for _ in range(times))

    def lose_answer_next(self, route: str, times: int = 1) -> None:
        """The next call of `route` takes effect, but its answer is lost on the way back (a 502
        from a gateway): the client cannot tell it arrived."""
        with self._cond:
            self._faults.extend(_Fault(route, 0, "lost", 502) for _ in range(times))

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (99991663)."""
        with self._cond:
            self._tokens.clear()

    def add_resource(self, message_id: str, key: str, data: bytes) -> None:
        with self._cond:
            self.resources[(message_id, key)] = data

    # ------------------------------------------------------------------ reading
    def calls(self, route: str | None = None) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if route is None or c.route == route]

    def sent(self, target: str | None = None) -> list[Sent]:
        """Messages sent (create to `target`, or reply to the message `target`), in order."""
        with self._cond:
            return [s for s in self._sent.values() if target is None or s.target == target]

    def texts(self, target: str | None = None) -> list[str]:
        return [s.text for s in self.sent(target)]

    def wait(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                with_lock = predicate()
                if with_lock:
                    return with_lock
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s; calls: "
                                       f"{[(c.route, c.code) for c in self._calls[-10:]]}")
                self._cond.wait(min(remaining, 0.1))

    # ------------------------------------------------------------------ HTTP
    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        content_type = h.headers.get("Content-Type", "")
        body: Any = None
        multipart = parse_multipart(content_type, raw)
        if multipart is not None:
            body = {name: (p.filename, p.data) for name, p in multipart.items()}
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        route, args = _route(method, parts.path)
        with self._cond:
            delay = next((d for d in self._delays if d[0] == route), None)
            if delay is not None:
                self._delays.remove(delay)
        if delay is not None:
            time.sleep(delay[1])
        status, answer = 404, {"code": 404, "msg": "not found"}
        if route is not None:
            status, answer = self._answer(route, args, query, body, h.headers.get("Authorization", ""))
        with self._cond:
            self._calls.append(Call(method, route or "unknown", parts.path, query, body,
                                    int(answer.get("code", 0)) if isinstance(answer, dict) else 0, time.time()))
            self._cond.notify_all()
        if isinstance(answer, bytes):
            payload, kind = answer, "application/octet-stream"
        else:
            payload, kind = json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _fault(self, route: str) -> Optional[_Fault]:
        with self._cond:
            for n, fault in enumerate(self._faults):
                if fault.route == route:
                    return self._faults.pop(n)
        return None

    def _answer(self, route: str, args: tuple, query: dict, body: Any, authorization: str) -> tuple[int, Any]:
        if route == "token":
            fault = self._fault(route)
            return (fault.status, {"code": fault.code, "msg": fault.msg}) if fault else self._issue_token(body)
        if route == "ws_endpoint":
            fault = self._fault(route)  # e.g. 1000040350, too many connections: lark takes it as final
            return (fault.status, {"code": fault.code, "msg": fault.msg}) if fault else self._ws_endpoint(body)
        token = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
        if not token:
            return 400, {"code": MISSING_TOKEN, "msg": "Missing access token for authorization"}
        with self._cond:
            expiry = self._tokens.get(token)
        if expiry is None or expiry < time.time():
            return 400, {"code": INVALID_TOKEN, "msg": "Invalid access token for authorization"}
        # Injected faults answer authenticated calls, as the platform's own errors would.
        fault = self._fault(route)
        if fault is not None and fault.msg == "lost":
            self._answer_now(route, args, query, body)
            return fault.status, b"<html>502 Bad Gateway</html>"
        if fault is not None:
            return fault.status, {"code": fault.code, "msg": fault.msg}
        return self._answer_now(route, args, query, body)

    def _answer_now(self, route: str, args: tuple, query: dict, body: Any) -> tuple[int, Any]:
        if route == "bot_info":
            if not self.bot_info:
                return 400, {"code": 99991672, "msg": "Access denied"}
            return 200, {"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": self.bot_name,
                                                         "avatar_url": "", "ip_white_list": [],
                                                         "open_id": self.bot_open_id}}
        if route in ("create", "reply"):
            return self._send_message(route, args, query, body)
        if route == "patch":
            return self._patch(args[0], body)
        if route == "image":
            return self._upload_image(body)
        if route == "file":
            return self._upload_file(body)
        if route == "chat":
            name = self.chat_names.get(args[0])
            if name is None:
                return 400, {"code": 232011, "msg": "chat not found or the bot is not in it"}
            return 200, {"code": 0, "msg": "success", "data": {"name": name, "chat_mode": "group", "owner_id": ""}}
        if route == "resource":
            data = self.resources.get((args[0], args[1]))
            if data is None:
                return 400, {"code": 234003, "msg": "File not in msg."}
            return 200, data
        return 404, {"code": 404, "msg": "not found"}

    def _issue_token(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return 400, {"code": 10014, "msg": "app secret invalid"}
        token = "t-" + secrets.token_hex(16)
        with self._cond:
            self._tokens[token] = time.time() + self.token_ttl
        return 200, {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.token_ttl}

    def _send_message(self, route: str, args: tuple, query: dict, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("content"), str) or not body.get("msg_type"):
            return 400, {"code": 230001, "msg": "invalid message content"}
        try:
            content = json.loads(body["content"])
        except ValueError:
            return 400, {"code": 230001, "msg": "content is not JSON"}
        if route == "create":
            target, id_type = str(body.get("receive_id") or ""), str(query.get("receive_id_type") or "")
            if id_type not in ("open_id", "union_id", "user_id", "email", "chat_id") or not target:
                return 400, {"code": 99992402, "msg": "field validation failed: receive_id_type"}
        else:
            target, id_type = args[0], ""
        uuid = str(body.get("uuid") or "")
        now = time.time()
        with self._cond:
            if uuid and uuid in self._uuids and now - self._uuids[uuid][1] < UUID_WINDOW:
                message_id = self._uuids[uuid][0]  # the platform's dedup: the same message again
            else:
                message_id = "om_" + secrets.token_hex(16)
                self._sent[message_id] = Sent(message_id, route, target, id_type, str(body["msg_type"]), content,
                                              uuid, now)
                if uuid:
                    self._uuids[uuid] = (message_id, now)
        return 200, {"code": 0, "msg": "success", "data": {"message_id": message_id, "msg_type": body["msg_type"],
                                                           "chat_id": target if id_type == "chat_id" else ""}}

    def _patch(self, message_id: str, body: Any) -> tuple[int, dict]:
        with self._cond:
            sent = self._sent.get(message_id)
            if sent is None:
                return 400, {"code": MESSAGE_NOT_FOUND, "msg": "message not found"}
            if sent.msg_type != "interactive":
                return 400, {"code": NOT_A_CARD, "msg": "only cards can be updated"}
            try:
                content = json.loads(body["content"])
            except (TypeError, KeyError, ValueError):
                return 400, {"code": 230001, "msg": "invalid card content"}
            sent.updates.append((time.time(), content))
        return 200, {"code": 0, "msg": "success"}

    def _upload_image(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or "image" not in body or body.get("image_type", (None, b""))[1] != b"message":
            return 400, {"code": 234001, "msg": "Invalid request param."}
        key = "img_v3_" + secrets.token_hex(8)
        with self._cond:
            self.images[key] = body["image"][1]
        return 200, {"code": 0, "msg": "success", "data": {"image_key": key}}

    def _upload_file(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or "file" not in body or "file_type" not in body or "file_name" not in body:
            return 400, {"code": 234001, "msg": "Invalid request param."}
        key = "file_v3_" + secrets.token_hex(8)
        with self._cond:
            self.files[key] = (body["file_name"][1].decode("utf-8"), body["file"][1])
        return 200, {"code": 0, "msg": "success", "data": {"file_key": key}}

    def _ws_endpoint(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return 200, {"code": 403, "msg": "app id or secret invalid"}
        from .ws_server import LongConnectionServer

        with self._cond:
            if self.ws is None:
                self.ws = LongConnectionServer(self).start()
        return 200, {"code": 0, "msg": "ok", "data": {
            "URL": f"ws://127.0.0.1:{self.ws.port}/ws?device_id={secrets.token_hex(4)}&service_id=7",
            "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 30}}}

    # ------------------------------------------------------------------ long connection
    def push_event(self, payload: dict, timeout: float = 5.0) -> dict:
        """Push an event envelope over the long connection; the client's answer (its payload JSON)."""
        if self.ws is None:
            raise RuntimeError("no client asked for the long connection's endpoint")
        return self.ws.push(payload, timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client hanging up is normal here
        super().handle_error(request, client_address)


_ROUTES = [
    ("POST", re.compile(r"^/open-apis/auth/v3/tenant_access_token/internal/?$"), "token"),
    ("GET", re.compile(r"^/open-apis/bot/v3/info/?$"), "bot_info"),
    ("POST", re.compile(r"^/open-apis/im/v1/messages/?$"), "create"),
    ("POST", re.compile(r"^/open-apis/im/v1/messages/([^/]+)/reply/?$"), "reply"),
    ("PATCH", re.compile(r"^/open-apis/im/v1/messages/([^/]+)/?$"), "patch"),
    ("POST", re.compile(r"^/open-apis/im/v1/images/?$"), "image"),
    ("GET", re.compile(r"^/open-apis/im/v1/chats/([^/]+)/?$"), "chat"),
    ("POST", re.compile(r"^/open-apis/im/v1/files/?$"), "file"),
    ("GET", re.compile(r"^/open-apis/im/v1/messages/([^/]+)/resources/([^/]+)/?$"), "resource"),
    ("POST", re.compile(r"^/callback/ws/endpoint/?$"), "ws_endpoint"),
]


def _route(method: str, path: str) -> tuple[Optional[str], tuple]:
    for m, pattern, name in _ROUTES:
        match = pattern.match(path)
        if m == method and match:
            return name, match.groups()
    return None, ()
