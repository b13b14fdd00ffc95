"""A fake LinkAI client service on 127.0.0.1, speaking what the ``linkai`` SDK speaks.

JSON objects, one per line (``\\r\\n``), over TCP. The client sends
``{"type": "LOGIN", "data": {"apiKey", "clientType", "clientId"?}}``; the server answers
``{"type": "LOGIN", "code": 200, "data": {"clientId"}}`` for a key in ``api_keys``, else
``code`` 401 with a ``message`` and closes the connection. After a login the client sends
LOCAL_CONFIG (its settings), CHANNEL_STATUS and HEARTBEAT packets; the server sends
``{"type": "CONFIG", "data": {...}}`` and
``{"type": "PUSH", "data": {"sessionId", "msgContent", "inGroup"}}``.

Tests script it: ``push_config``, ``push_message``, ``send_raw`` (anything, for broken
input), ``drop`` (close every connection), ``answer_logins = False`` (take the connection,
never answer the login). ``received`` records every message from clients
(connection number, message); ``wait_for`` waits for one.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Callable

DEFAULT_KEY = "lk-test"


class LinkAIServer:
    def __init__(self, api_keys: set[str] | None = None, client_id: str = "client-test-1") -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.client_id = client_id
        self.answer_logins = True
        self.login_code = 200  # what a login with a good key is answered with (500: the server's own trouble)
        self.close_after_login = False  # log in, then close the connection at once
        self.received: list[tuple[int, dict]] = []
        self.logins_answered = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.host = "127.0.0.1"
        self._lock = threading.Condition()
        self._connections: dict[int, socket.socket] = {}  # logged-in connections
        self._all: dict[int, socket.socket] = {}
        self._next = 0
        self._closed = False

    # --- lifecycle
    def start(self) -> "LinkAIServer":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        self.drop()

    def __enter__(self) -> "LinkAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- what tests do
    def push_config(self, config: dict) -> None:
        self._send_to_logged_in({"type": "CONFIG", "data": config})

    def push_message(self, session_id: Any, content: Any, in_group: bool = False) -> None:
        self._send_to_logged_in({"type": "PUSH", "data": {"sessionId": session_id, "msgContent": content, "inGroup": in_group}})

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            targets = list(self._connections.values())
        for conn in targets:
            conn.sendall(data)

    def drop(self) -> None:
        """Close every connection, as a server restart or a network cut does."""
        with self._lock:
            targets = list(self._all.values())
            self._connections.clear()
            self._all.clear()
        for conn in targets:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def messages(self, msg_type: str) -> list[dict]:
        with self._lock:
            return [m for _, m in self.received if m.get("type") == msg_type]

    def wait_for(self, msg_type: str, predicate: Callable[[dict], bool] = lambda m: True,
                 timeout: float = 15.0, count: int = 1) -> list[dict]:
        """The first `count` messages of `msg_type` that match, once that many came."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for _, m in self.received if m.get("type") == msg_type and predicate(m)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {count} {msg_type} message(s) within {timeout} s; got {self.received!r}")
                self._lock.wait(remaining)

    # --- the server
    def _send_to_logged_in(self, message: dict) -> None:
        with self._lock:
            targets = list(self._connections.values())
        if not targets:
            raise AssertionError("no client is logged in")
        line = (json.dumps(message, ensure_ascii=False) + "\r\n").encode("utf-8")
        for conn in targets:
            conn.sendall(line)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._next += 1
                number = self._next
                self._all[number] = conn
            threading.Thread(target=self._serve, args=(number, conn), daemon=True).start()

    def _serve(self, number: int, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        if not self._handle(number, conn, json.loads(line)):
                            return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.pop(number, None)
                self._all.pop(number, None)
                self._lock.notify_all()
            conn.close()

    def _handle(self, number: int, conn: socket.socket, message: dict) -> bool:
        with self._lock:
            self.received.append((number, message))
            self._lock.notify_all()
        if message.get("type") != "LOGIN" or not self.answer_logins:
            return True
        key = (message.get("data") or {}).get("apiKey")
        if key not in self.api_keys:
            conn.sendall(b'{"type": "LOGIN", "code": 401, "message": "invalid api key"}\r\n')
            return False
        if self.login_code != 200:
            conn.sendall((json.dumps({"type": "LOGIN", "code": self.login_code, "message": "try later"}) + "\r\n").encode("utf-8"))
            return False
        answer = {"type": "LOGIN", "code": 200, "data": {"clientId": self.client_id}}
        conn.sendall((json.dumps(answer) + "\r\n").encode("utf-8"))
        if self.close_after_login:
            return False
        with self._lock:
            self._connections[number] = conn
            self.logins_answered += 1
            self._lock.notify_all()
        return True
