"""A small, real Coze v3 chat API server on 127.0.0.1, scripted by tests.

Speaks what the Coze bot uses:

* ``POST /v3/chat[?conversation_id=ID]`` with ``Authorization: Bearer <token>`` and a body
  ``{bot_id, user_id, stream, auto_save_history, additional_messages}``;
  streamed: SSE events ``conversation.chat.created``, ``conversation.chat.in_progress``,
  ``conversation.message.delta`` ..., ``conversation.message.completed`` (the answer, then a
  ``follow_up`` suggestion), ``conversation.chat.completed``, ``done``;
  not streamed: ``{"code": 0, "msg": "", "data": <chat in_progress>}``;
* ``GET /v3/chat/retrieve?conversation_id&chat_id``: the chat, ``completed`` from the first
  retrieve on (``in_progress`` polls first when ``polls_before_done`` is set);
* ``GET /v3/chat/message/list?conversation_id&chat_id``: ``{"code": 0, "data": [messages]}``;
* ``GET /files/<name>``: a file linked from an answer (a 1x1 PNG for ``.png``), no token.

Errors have Coze's shape ``{"code", "msg", "detail": {"logid"}}``: a wrong token gets HTTP
401 with code 4100; an unknown ``bot_id`` code 4200 naming ``bot_id``; an unknown
``conversation_id`` code 4200 naming the conversation.

Conversations are kept per id (``.conversations``: id -> {"user_id", "turns"}); the default
answer is ``echo: <query> (turn N)`` where N counts the user messages of that conversation,
so a test sees whether the conversation continued. ``forget_conversations()`` makes the
server lose them (a conversation Coze no longer knows). Scripts for the next chat:
``push_answer(text)``, ``push_error(code, msg, status=200)``, ``push_chat_failed(code, msg)``,
``push_broken_stream(text)`` (part of the answer, then the connection drops).
"""
from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "pat_test"
DEFAULT_BOT = "7400000000000000001"
# A 1x1 PNG, what GET /files/<name>.png serves (images linked from an answer).
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def coze_error(code: int, msg: str) -> dict:
    return {"code": code, "msg": msg, "detail": {"logid": "20261206000000SIM"}}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class _Action:
    kind: str  # answer | error | failed | broken
    text: str = ""
    code: int = 0
    msg: str = ""
    status: int = 200
    more: tuple = ()  # further answer messages of the same chat (a bot whose workflow answers twice)


class CozeServer:
    def __init__(self, tokens=(DEFAULT_TOKEN,), bot_ids=(DEFAULT_BOT,)) -> None:
        self.tokens = set(tokens)
        self.bot_ids = {str(b) for b in bot_ids}
        self.conversations: dict[str, dict] = {}
        self.chats: dict[str, dict] = {}
        self.polls_before_done = 0
        self.chunk_size = 4
        self.requests: list[Recorded] = []
        self._ids = itertools.count(7_450_000_000_000_000_001)
        self._script: deque[_Action] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> "CozeServer":
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

    def __enter__(self) -> "CozeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What ``coze_api_base`` should be."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- scripting
    def push_answer(self, text: str) -> None:
        self._push(_Action("answer", text=text))

    def push_answers(self, first: str, *more: str) -> None:
        """One chat answered with several ``type: answer`` messages."""
        self._push(_Action("answer", text=first, more=tuple(more)))

    def push_error(self, code: int, msg: str, status: int = 200) -> None:
        self._push(_Action("error", code=code, msg=msg, status=status))

    def push_chat_failed(self, code: int, msg: str) -> None:
        self._push(_Action("failed", code=code, msg=msg))

    def push_broken_stream(self, text: str) -> None:
        self._push(_Action("broken", text=text))

    def forget_conversations(self) -> None:
        with self._lock:
            self.conversations.clear()

    def _push(self, action: _Action) -> None:
        with self._lock:
            self._script.append(action)

    def _next(self) -> _Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v3/chat"]

    def _new_id(self) -> str:
        with self._lock:
            return str(next(self._ids))


class _Handler(BaseHTTPRequestHandler):
    server_owner: CozeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._guard(self._handle)

    def do_POST(self) -> None:
        self._guard(self._handle)

    def _guard(self, handler) -> None:
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass
        self.close_connection = True

    def _handle(self) -> None:
        owner = self.server_owner
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = None
        with owner._lock:
            owner.requests.append(Recorded(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body))
        if parts.path.startswith("/files/") and self.command == "GET":
            self._file(parts.path)  # a CDN link of an answer: no token
            return
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if owner.tokens and token not in owner.tokens:
            self._json(401, coze_error(4100, "authentication is invalid"))
            return
        if parts.path == "/v3/chat" and self.command == "POST":
            self._chat(query, body)
        elif parts.path == "/v3/chat/retrieve":
            self._retrieve(query)
        elif parts.path == "/v3/chat/message/list" and self.command == "GET":
            self._message_list(query)
        else:
            self._json(404, coze_error(4000, f"The requested API endpoint {self.command} {parts.path} does not exist."))

    # -- POST /v3/chat
    def _chat(self, query: dict, body: Any) -> None:
        owner = self.server_owner
        if not isinstance(body, dict) or not body.get("user_id") or not isinstance(body.get("additional_messages"), list):
            self._json(200, coze_error(4000, "The request parameters are invalid: bot_id, user_id and additional_messages are required."))
            return
        action = owner._next()
        if action is not None and action.kind == "error":
            self._json(action.status, coze_error(action.code, action.msg))
            return
        bot_id = str(body.get("bot_id") or "")
        if bot_id not in owner.bot_ids:
            self._json(200, coze_error(4200, f"Requested resource bot_id={bot_id} does not exist. Ensure the bot is published as an API."))
            return
        conversation_id = query.get("conversation_id") or ""
        with owner._lock:
            if conversation_id and conversation_id not in owner.conversations:
                missing = True
            else:
                missing = False
        if missing:
            self._json(200, coze_error(4200, f"Requested resource conversation_id={conversation_id} does not exist."))
            return
        if not conversation_id:
            conversation_id = owner._new_id()
            with owner._lock:
                owner.conversations[conversation_id] = {"user_id": body["user_id"], "turns": []}
        question = next((m.get("content") for m in reversed(body["additional_messages"])
                         if isinstance(m, dict) and m.get("role") == "user"), "")
        with owner._lock:
            conversation = owner.conversations[conversation_id]
            conversation["turns"].append(("user", question))
            turn = sum(1 for role, _ in conversation["turns"] if role == "user")
        text = action.text if action is not None and action.text else f"echo: {question} (turn {turn})"
        chat_id = owner._new_id()
        chat = {"id": chat_id, "conversation_id": conversation_id, "bot_id": bot_id, "created_at": int(time.time()),
                "status": "in_progress", "last_error": {"code": 0, "msg": ""}}
        failed = action is not None and action.kind == "failed"
        with owner._lock:
            owner.chats[chat_id] = {"chat": chat, "answer": text, "more": action.more if action is not None else (), "polls": 0,
                                    "failed": (action.code, action.msg) if failed else None}
            if not failed and not (action is not None and action.kind == "broken"):
                conversation["turns"].append(("assistant", text))
        if body.get("stream"):
            self._stream(chat, text, action)
        else:
            self._json(200, {"code": 0, "msg": "", "data": chat})

    def _stream(self, chat: dict, text: str, action: _Action | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self._event("conversation.chat.created", {**chat, "status": "created"})
        self._event("conversation.chat.in_progress", chat)
        if action is not None and action.kind == "failed":
            self._event("conversation.chat.failed", {**chat, "status": "failed", "last_error": {"code": action.code, "msg": action.msg}})
            self._event("done", "[DONE]")
            self._end()
            return
        size = max(1, self.server_owner.chunk_size)
        for number, answer in enumerate((text,) + (action.more if action is not None else ())):
            message = {"id": self.server_owner._new_id(), "conversation_id": chat["conversation_id"], "bot_id": chat["bot_id"],
                       "chat_id": chat["id"], "role": "assistant", "type": "answer", "content_type": "text"}
            for start in range(0, len(answer), size):
                self._event("conversation.message.delta", {**message, "content": answer[start:start + size]})
            if number == 0 and action is not None and action.kind == "broken":
                self.wfile.write(b"40\r\nevent:conversation.message.delta\ndata:{\"id\"")
                self.wfile.flush()
                return
            self._event("conversation.message.completed", {**message, "content": answer})
        self._event("conversation.message.completed", {**message, "type": "follow_up", "content": "Anything else?"})
        usage = {"token_count": 20, "output_count": 10, "input_count": 10}
        self._event("conversation.chat.completed", {**chat, "status": "completed", "completed_at": int(time.time()), "usage": usage})
        self._event("done", "[DONE]")
        self._end()

    # -- polling
    def _stored_chat(self, query: dict) -> dict | None:
        owner = self.server_owner
        with owner._lock:
            record = owner.chats.get(query.get("chat_id", ""))
        if record is None or record["chat"]["conversation_id"] != query.get("conversation_id"):
            self._json(200, coze_error(4200, f"Requested resource chat_id={query.get('chat_id')} does not exist."))
            return None
        return record

    def _retrieve(self, query: dict) -> None:
        record = self._stored_chat(query)
        if record is None:
            return
        with self.server_owner._lock:
            record["polls"] += 1
            chat = dict(record["chat"])
            if record["polls"] > self.server_owner.polls_before_done:
                if record["failed"]:
                    chat.update(status="failed", last_error={"code": record["failed"][0], "msg": record["failed"][1]})
                else:
                    chat.update(status="completed", usage={"token_count": 20, "output_count": 10, "input_count": 10})
        self._json(200, {"code": 0, "msg": "", "data": chat})

    def _message_list(self, query: dict) -> None:
        record = self._stored_chat(query)
        if record is None:
            return
        chat = record["chat"]
        base = {"conversation_id": chat["conversation_id"], "bot_id": chat["bot_id"], "chat_id": chat["id"],
                "role": "assistant", "content_type": "text"}
        messages = [
            {**base, "id": self.server_owner._new_id(), "type": "verbose", "content": json.dumps({"msg_type": "generate_answer_finish"})},
            {**base, "id": self.server_owner._new_id(), "type": "answer", "content": record["answer"]},
        ] + [{**base, "id": self.server_owner._new_id(), "type": "answer", "content": more} for more in record["more"]] + [
            {**base, "id": self.server_owner._new_id(), "type": "follow_up", "content": "Anything else?"},
        ]
        self._json(200, {"code": 0, "msg": "", "data": messages})

    def _file(self, path: str) -> None:
        if path.endswith(".png"):
            data, ctype = PNG_1X1, "image/png"
        else:
            data, ctype = f"contents of {path}".encode("utf-8"), "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    # -- writing
    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _event(self, name: str, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self._chunk(f"event:{name}\ndata:{data}\n\n".encode("utf-8"))

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
