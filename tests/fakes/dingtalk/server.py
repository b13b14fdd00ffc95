"""Loopback simulator of DingTalk for a Stream-mode robot (reference/channel-protocols.md §5.7),
written from the reference, not from any SDK.

`DingTalkSimulator({client_id: secret}).start()` serves the OpenAPI (and the old API under
`/oapi`) on `http_url` and the Stream WebSocket on `ws_endpoint`. Tests push robot messages
(`push_text`, `push_picture`, ...) on the live Stream connection, then read what the user
would see (`deliveries`) and every ack, request and card update.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Callable, Optional

from . import payloads as P
from .http_api import Handler
from .stream_server import Connection, StreamServer


@dataclass
class Pushed:
    msg_id: str
    message_id: str  # the Stream frame's messageId, which the ack names
    data: dict
    connection: int


class DingTalkSimulator:
    def __init__(self, apps: dict[str, str], *, ticket_ttl: float = 90.0, token_ttl: int = 7200) -> None:
        self.apps = dict(apps)
        self.ticket_ttl = ticket_ttl
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.refuse_connections = False
        # Client ids whose sockets the server closes right after the handshake (accepts, then drops).
        self.close_at_once: set[str] = set()
        # openSpaceId ending -> how many card finalizes (`isFinalize`) to refuse with 500.
        self.finalize_failures: dict[str, int] = {}
        # records
        self.tickets: dict[str, dict] = {}
        self.tokens: dict[str, float] = {}
        self.token_calls = 0
        self.token_calls_by_app: dict[str, int] = {}
        self.gateway_calls: list[dict] = []
        self.requests: list[dict] = []
        self.acks: dict[str, list[dict]] = {}
        self.pings: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.webhook_posts: list[dict] = []
        self.robot_sends: list[dict] = []
        self.files: dict[str, bytes] = {}
        self.file_fetches: list[str] = []
        self.uploads: dict[str, dict] = {}
        self.cards: dict[str, dict] = {}
        self.errors: list = []
        self._failures: list[list] = []  # [path, status, body, count]
        self.stream = StreamServer(self)
        self._http: Optional[ThreadingHTTPServer] = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DingTalkSimulator":
        handler = type("BoundHandler", (Handler,), {"sim": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, args=(0.05,), name="dingtalk-sim-http", daemon=True).start()
        self.stream.start()
        return self

    def stop(self) -> None:
        self.stream.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> "DingTalkSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def oapi_url(self) -> str:
        return self.http_url + "/oapi"

    @property
    def ws_endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.stream.port}/connect"

    # ------------------------------------------------------------------ injection
    def fail_finalize(self, target: str, count: int = 1) -> None:
        """Refuse (500) the next `count` finalizing updates of cards delivered to `target` (a staff
        id or a group's conversation id)."""
        with self.lock:
            self.finalize_failures["." + target] = count

    def fail_next(self, path: str, status: int = 500, body: Optional[dict] = None, count: int = 1) -> None:
        """The next `count` requests to `path` get `status` and `body`."""
        with self.lock:
            self._failures.append([path, status, body or {"code": "ServiceUnavailable", "message": "injected"}, count])

    def _take_failure(self, path: str):
        with self.lock:
            for item in self._failures:
                if item[0] == path and item[3] > 0:
                    item[3] -= 1
                    return item[1], item[2]
        return None

    def _token_valid(self, token: str) -> bool:
        with self.lock:
            return bool(token) and self.tokens.get(token, 0) > time.monotonic()

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def add_file(self, data: bytes) -> str:
        """A file a user sent: returns its downloadCode."""
        code = "dl-" + uuid.uuid4().hex
        with self.lock:
            self.files[code] = data
        return code

    # ------------------------------------------------------------------ the connection
    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"simulator: timed out waiting for {what}")
                self.changed.wait(min(left, 0.1))

    def connections(self, client_id: Optional[str] = None) -> list[Connection]:
        with self.lock:
            return [c for c in self.stream.connections if client_id is None or c.client_id == client_id]

    def wait_connected(self, client_id: str, count: int = 1, timeout: float = 10.0) -> Connection:
        def ready():
            live = self.stream.live(client_id)
            return live if live is not None and len(self.connections(client_id)) >= count else None
        return self.wait(ready, timeout, f"connection {count} of {client_id}")

    def _live(self, client_id: str) -> Connection:
        conn = self.wait_connected(client_id)
        return conn

    def drop(self, client_id: str) -> None:
        """Cut the live socket without a close frame (a network failure)."""
        self.stream.close(self._live(client_id), abrupt=True)

    def disconnect(self, client_id: str, grace: float = 0.5) -> None:
        """DingTalk's SYSTEM disconnect, then the socket closed after `grace` seconds."""
        self.stream.disconnect(self._live(client_id), grace)

    def ping(self, client_id: str) -> str:
        return self.stream.ping(self._live(client_id))

    def ping_echoed(self, message_id: str) -> bool:
        with self.lock:
            ping = self.pings.get(message_id) or {}
            return ping.get("echo") is not None and ping.get("echo") == ping.get("opaque")

    # ------------------------------------------------------------------ pushing messages
    def session_webhook(self, conversation: str, ttl_ms: int = 90 * 60 * 1000) -> tuple[str, int]:
        token = uuid.uuid4().hex
        expires = P.now_ms() + ttl_ms
        with self.lock:
            self.sessions[token] = {"conversation": conversation, "expires_ms": expires}
        return f"{self.http_url}/robot/sendBySession?session={token}", expires

    def push(self, client_id: str, msgtype: str, body: dict, sender: str, *, group: Optional[str] = None,
             msg_id: Optional[str] = None, webhook_ttl_ms: int = 90 * 60 * 1000, at_bot: bool = True,
             group_title: str = "") -> Pushed:
        conversation = group or "cid-p2p-" + sender
        webhook, expires = self.session_webhook(conversation, webhook_ttl_ms)
        data = P.robot_message(client_id, sender, msgtype, body, group=group, msg_id=msg_id, webhook=webhook,
                               webhook_expires_ms=expires, at_bot=at_bot, group_title=group_title)
        return self.push_data(client_id, data)

    def push_data(self, client_id: str, data) -> Pushed:
        conn = self._live(client_id)
        frame = P.callback_frame(data, client_id, conn.connection_id)
        self.stream.send(conn, frame)
        msg_id = data.get("msgId", "") if isinstance(data, dict) else ""
        return Pushed(msg_id, frame["headers"]["messageId"], data if isinstance(data, dict) else {}, conn.number)

    def push_raw(self, client_id: str, text: str) -> None:
        """Send `text` as it is on the live socket (a malformed frame)."""
        self.stream.send(self._live(client_id), text)

    def push_text(self, client_id: str, sender: str, content: str, *, group: Optional[str] = None, **kw) -> Pushed:
        return self.push(client_id, "text", P.text_body(content, at_prefix=bool(group)), sender, group=group, **kw)

    def push_picture(self, client_id: str, sender: str, data: bytes, **kw) -> Pushed:
        return self.push(client_id, "picture", P.picture_body(self.add_file(data)), sender, **kw)

    def push_audio(self, client_id: str, sender: str, recognition: str, **kw) -> Pushed:
        return self.push(client_id, "audio", P.audio_body(recognition), sender, **kw)

    # ------------------------------------------------------------------ reading
    def ack(self, message_id: str) -> Optional[dict]:
        with self.lock:
            acks = self.acks.get(message_id) or []
            return acks[0] if acks else None

    def wait_ack(self, message_id: str, timeout: float = 10.0) -> dict:
        return self.wait(lambda: self.ack(message_id), timeout, f"the ack of {message_id}")

    def deliveries(self, conversation: Optional[str] = None, sender: Optional[str] = None) -> list[dict]:
        """What reached users, in order: accepted webhook posts, robot sends, cards (with their
        last content). Each: {"via", "conversation", "msgtype", "text", "at", ...}."""
        out = []
        with self.lock:
            for post in self.webhook_posts:
                if not post["accepted"]:
                    continue
                body = post["json"]
                kind = body.get("msgtype")
                text = (body.get(kind) or {}).get("content") or (body.get(kind) or {}).get("text")
                out.append({"via": "webhook", "conversation": post["conversation"], "msgtype": kind, "text": text,
                            "at": (body.get("at") or {}).get("atUserIds") or []})
            for send in self.robot_sends:
                body = send["json"]
                conv = body.get("openConversationId") or "cid-p2p-" + (body.get("userIds") or [""])[0]
                out.append({"via": "robot", "conversation": conv, "msgtype": body["msgKey"],
                            "text": send["param"].get("content", send["param"].get("text")), "param": send["param"],
                            "at": []})
            for track, card in self.cards.items():
                space = card["create"].get("openSpaceId", "")
                kind, _, target = space.rpartition("//")[2].partition(".")
                conv = target if kind == "IM_GROUP" else "cid-p2p-" + target
                last = card["updates"][-1]["content"] if card["updates"] else None
                out.append({"via": "card", "conversation": conv, "msgtype": "card", "text": last, "card": track,
                            "at": list(((card["create"].get("imGroupOpenDeliverModel") or {}).get("atUserIds") or {}))})
        if sender is not None:
            conversation = "cid-p2p-" + sender
        return [d for d in out if conversation is None or d["conversation"] == conversation]

    def texts(self, conversation: Optional[str] = None, sender: Optional[str] = None) -> list[str]:
        return [d["text"] for d in self.deliveries(conversation, sender) if d["text"] is not None]


