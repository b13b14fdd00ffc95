"""A small, real Anthropic Messages API server on 127.0.0.1, scripted by tests.

Speaks ``POST /v1/messages`` as Anthropic does:

* auth by the ``x-api-key`` header, or ``Authorization: Bearer`` which anthropic 2.x
  sends for an API key (``api_keys``, default ``{"sk-ant-test"}``); a wrong key gets 401 ``{"type": "error", "error": {"type": "authentication_error", ...}}``;
* ``models``: other models get 404 ``not_found_error`` (``model: NAME``);
* the request is checked like the real API does: ``max_tokens`` present, ``messages``
  non-empty, starting with ``user``, roles alternating, no ``system`` role inside
  (that goes in the top-level ``system``), else 400 ``invalid_request_error``;
* ``"stream": true``: server-sent events ``message_start``, ``content_block_start``,
  ``ping``, ``content_block_delta`` (``text_delta``) ..., ``content_block_stop``,
  ``message_delta`` (stop_reason, usage), ``message_stop``; else one JSON message.

Without a script the answer is ``echo: <last user text> (turns: <number of messages>)``,
so a test sees the history that was sent. Scripts apply to the next request that passes
the key check: ``push_answer(text)``, ``push_error(status, etype=None, message=None)``,
``push_broken_stream(text)`` (part of the answer, then the connection drops mid-chunk),
``push_stream_error(text, etype)`` (part of the answer, then an ``error`` event),
``push_trickle(piece, every)`` (a stream that never ends).
``.requests`` records every request (path, headers, json).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_KEY = "sk-ant-test"

_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def anthropic_error(status: int, etype: str | None = None, message: str | None = None) -> dict:
    default_type, default_message = _ERRORS.get(status, ("api_error", f"HTTP {status}"))
    return {"type": "error", "error": {"type": etype or default_type, "message": message or default_message},
            "request_id": "req_sim"}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    json: Any

    @property
    def messages(self) -> list[dict]:
        return (self.json or {}).get("messages") or []


@dataclass
class _Action:
    kind: str  # answer | error | broken | stream_error
    text: str = ""
    status: int = 200
    body: Any = None


class AnthropicServer:
    def __init__(self, api_keys=(DEFAULT_KEY,), models: list[str] | None = None) -> None:
        self.api_keys = set(api_keys)
        self.models = set(models) if models else None
        self.chunk_size = 4
        self.requests: list[Recorded] = []
        self._script: deque[_Action] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> "AnthropicServer":
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "AnthropicServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What ``claude_api_base`` should be (the SDK adds ``/v1/messages``)."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- scripting
    def push_answer(self, text: str) -> None:
        self._push(_Action("answer", text=text))

    def push_error(self, status: int, etype: str | None = None, message: str | None = None) -> None:
        self._push(_Action("error", status=status, body=anthropic_error(status, etype, message)))

    def push_broken_stream(self, text: str) -> None:
        self._push(_Action("broken", text=text))

    def push_trickle(self, piece: str = ".", every: float = 0.2) -> None:
        """A stream that never ends: one delta with ``piece`` every ``every`` seconds until the
        client goes away or the server stops (a per-read timeout never fires)."""
        self._push(_Action("trickle", text=piece, body=every))

    def push_silence(self) -> None:
        """Take the request in and never answer (until the client goes away or the server stops)."""
        self._push(_Action("silent"))

    def push_slow_body(self, text: str, every: float = 0.2) -> None:
        """A non-streamed answer whose JSON body comes one byte every ``every`` seconds."""
        self._push(_Action("slow_body", text=text, body=every))

    def push_stream_error(self, text: str, etype: str = "overloaded_error") -> None:
        self._push(_Action("stream_error", text=text, body=anthropic_error(529, etype)))

    def _push(self, action: _Action) -> None:
        with self._lock:
            self._script.append(action)

    def _next(self) -> _Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/messages"]


def _check_request(body: Any) -> str | None:
    """Why the real API would reject this body (400), or None."""
    if not isinstance(body, dict):
        return "request body is not valid JSON"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    expected = "user"
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if role != expected:
            return "messages: roles must alternate between \"user\" and \"assistant\", starting with \"user\""
        expected = "assistant" if role == "user" else "user"
    if "system" in body and not isinstance(body["system"], (str, list)):
        return "system: Input should be a valid string"
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class _Handler(BaseHTTPRequestHandler):
    server_owner: AnthropicServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass
        self.close_connection = True

    def _post(self) -> None:
        owner = self.server_owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        with owner._lock:
            owner.requests.append(Recorded(path, {k.lower(): v for k, v in self.headers.items()}, body))
        if path != "/v1/messages":
            self._json(404, anthropic_error(404, message=f"Not found: {path}"))
            return
        auth = self.headers.get("Authorization", "")
        key = self.headers.get("x-api-key") or (auth[len("Bearer "):] if auth.startswith("Bearer ") else "")
        if owner.api_keys and key not in owner.api_keys:
            self._json(401, anthropic_error(401))
            return
        action = owner._next()
        if action is not None and action.kind == "error":
            self._json(action.status, action.body)
            return
        if action is not None and action.kind == "silent":
            while owner._httpd is not None and not self._client_gone():
                time.sleep(0.05)
            return
        problem = _check_request(body)
        if problem:
            self._json(400, anthropic_error(400, message=problem))
            return
        model = body.get("model")
        if owner.models is not None and model not in owner.models:
            self._json(404, anthropic_error(404, message=f"model: {model}"))
            return
        messages = body["messages"]
        text = action.text if action is not None else f"echo: {_text_of(messages[-1].get('content'))} (turns: {len(messages)})"
        if action is not None and action.kind == "trickle":
            self._trickle(action, model)
        elif action is not None and action.kind in ("broken", "stream_error"):
            self._stream(text, model, action)
        elif body.get("stream"):
            self._stream(text, model, None)
        else:
            self._json(200, {
                "id": "msg_sim", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": max(1, len(text) // 4)},
            }, every=action.body if action is not None and action.kind == "slow_body" else None)

    def _client_gone(self) -> bool:
        import select

        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

    def _json(self, status: int, payload: Any, every: float | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_sim")
        self.send_header("Connection", "close")
        self.end_headers()
        if every is None:
            self.wfile.write(data)
            return
        for i in range(len(data)):
            if self.server_owner._httpd is None:
                return
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(every)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _event(self, name: str, payload: dict) -> None:
        self._chunk(f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8"))

    def _trickle(self, action: _Action, model: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self._event("message_start", {"type": "message_start", "message": {
            "id": "msg_sim", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})
        while self.server_owner._httpd is not None:
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": action.text}})
            time.sleep(action.body)

    def _stream(self, text: str, model: Any, action: _Action | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self._event("message_start", {"type": "message_start", "message": {
            "id": "msg_sim", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        self._event("ping", {"type": "ping"})
        size = max(1, self.server_owner.chunk_size)
        for start in range(0, len(text), size):
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": text[start:start + size]}})
        if action is not None and action.kind == "broken":
            # Half a chunk, then the connection closes: the chunked body ends too early.
            self.wfile.write(b"40\r\nevent: content_block_delta\ndata: {\"ty")
            self.wfile.flush()
            return
        if action is not None and action.kind == "stream_error":
            self._event("error", action.body)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": max(1, len(text) // 4)}})
        self._event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
