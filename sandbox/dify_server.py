"""A real HTTP server on 127.0.0.1 that speaks the Dify Service API (see
`reference/dify-service-api.md`): blocking and streaming chat, agent, chatflow, workflow and completion
apps, errors, uploads, speech, conversations. Stdlib only, so the offline demo needs nothing extra.

Each test scripts it: every `push_*` queues ONE response for the next app call (/chat-messages,
/completion-messages, /workflows/run). A scripted response is consumed only by a call that passes
authentication and validation, because a real server answers those failures before running the app:
a client that retries after a 404 "Conversation Not Exists." gets the scripted answer on its retry.
With nothing queued the server echoes: "echo: <query>".

    with DifyServer(api_key="app-test", mode="chat") as server:
        server.push_answer("hello")
        requests.post(server.base_url + "/chat-messages", ...)

Streams use chunked transfer encoding (as Dify behind gunicorn/nginx does), so a scripted "CUT" is seen
by the client as a broken stream, not as a normal end.
"""
from __future__ import annotations

import argparse
import collections
import email.parser
import email.policy
import json
import mimetypes
import random
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

APP_MODES = ("chat", "agent-chat", "advanced-chat", "workflow", "completion")
CHAT_MODES = ("chat", "agent-chat", "advanced-chat")

# Dify's limits (api/configs): images 10 MB, audio 30 MB in code.
IMAGE_SIZE_LIMIT = 10 * 1024 * 1024
AUDIO_SIZE_LIMIT = 30 * 1024 * 1024
# Anything bigger is refused before the body is read, so a hostile client cannot fill memory.
MAX_BODY = 64 * 1024 * 1024

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "svg")
AUDIO_MIMETYPES = tuple(f"audio/{t}" for t in ("mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "amr"))
FILE_TYPES = ("image", "document", "audio", "video", "custom")

# Dify's end user when an endpoint allows `user` to be missing (e.g. DoW's /audio-to-text call).
DEFAULT_USER = "DEFAULT-USER"

INVALID_JSON = "Invalid JSON payload received or JSON payload is empty."
NOT_FOUND_URL = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)

SANDBOX_ANSWER = (
    "【离线沙盒】这是本地模拟的 Dify，没有连接任何模型。本会话第 {turn} 轮，你说：{query}\n"
    "[Offline sandbox] This is a local Dify simulator; no model is connected. "
    "Turn {turn} of this conversation, you said: {query}"
)

# One silent MPEG-1 Layer III frame (128 kbit/s, 44.1 kHz) behind an ID3 tag: small, but a real mp3
# that audio tools accept, so voice code paths can run end to end offline.
_SILENT_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 413
DEFAULT_TTS_AUDIO = b"ID3\x03\x00\x00\x00\x00\x00\x00" + _SILENT_FRAME * 4

_UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class ApiError(Exception):
    """An error answered as Dify does: `{"code", "message", "status"}` (+ `params` for parser errors)."""

    def __init__(self, status: int, code: str, message: str, params: str | None = None,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.params = params
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.params is not None:
            body["params"] = self.params
        return body


def _invalid(message: str, params: str | None = None) -> ApiError:
    return ApiError(400, "invalid_param", message, params)


@dataclass
class _Script:
    """One queued response. `kind` is answer | events | error | hang | disconnect | workflow."""

    kind: str
    text: str = ""
    chunk_size: int = 4
    latency: float = 0.0
    chunk_delay: float = 0.0
    events: list[Any] = field(default_factory=list)
    delay: float = 0.0
    status: int = 0
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    workflow_status: str = "succeeded"
    error: str | None = None


CUT = "CUT"
PING = "ping"


@dataclass
class _Sleep:
    seconds: float


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    json_ok: bool = False
    form: dict[str, str] | None = None
    files: dict[str, dict[str, Any]] | None = None
    file_parts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "headers": self.headers, "json": self.json,
            "form": self.form, "files": self.files, "query": self.query, "body": self.body,
        }

    def json_body(self, *, empty_ok: bool = False) -> dict[str, Any]:
        if empty_ok and not self.body.strip():
            return {}
        if not self.json_ok or not isinstance(self.json, dict):
            raise ApiError(400, "bad_request", INVALID_JSON)
        return self.json


@dataclass
class _Call:
    """Ids and timestamps of one app call, shared by every event of its response."""

    mode: str
    user: str
    query: str
    conversation_id: str = ""
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    workflow_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: int = field(default_factory=lambda: int(time.time()))
    inputs: dict[str, Any] = field(default_factory=dict)


def _chunks(text: str, size: int) -> list[str]:
    if not text:
        return []
    if size <= 0:
        return [text]
    return [text[i:i + size] for i in range(0, len(text), size)]


def _usage(prompt: str, answer: str, latency: float) -> dict[str, Any]:
    # Token counts are rough (one per character) but consistent; prices are decimal strings as in Dify.
    p, c = len(prompt), len(answer)
    prompt_price = p * 0.001 * 0.001
    completion_price = c * 0.002 * 0.001
    return {
        "prompt_tokens": p, "prompt_unit_price": "0.001", "prompt_price_unit": "0.001",
        "prompt_price": f"{prompt_price:.7f}",
        "completion_tokens": c, "completion_unit_price": "0.002", "completion_price_unit": "0.001",
        "completion_price": f"{completion_price:.7f}",
        "total_tokens": p + c, "total_price": f"{prompt_price + completion_price:.7f}",
        "currency": "USD", "latency": round(latency, 4),
    }


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, dict[str, Any]]]:
    """Split a multipart/form-data body into (field name, part) pairs, binary-safe.

    A part is {"filename" (None for a plain field), "content_type", "content" (bytes)}."""
    header = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    # A delimiter is CRLF + "--" + boundary; the first one has no CRLF before it, so add one.
    parts = (b"\r\n" + body).split(b"\r\n--" + str(boundary).encode("latin-1"))
    result = []
    for chunk in parts[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        line_end = chunk.find(b"\r\n")
        if line_end < 0:
            raise ValueError("malformed multipart delimiter")
        chunk = chunk[line_end + 2:]  # skip transport padding after the delimiter
        if chunk.startswith(b"\r\n"):
            head, content = b"", chunk[2:]
        else:
            head, sep, content = chunk.partition(b"\r\n\r\n")
            if not sep:
                raise ValueError("malformed multipart headers")
        headers = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
            head.decode("utf-8", "replace") + "\r\n\r\n"
        )
        name = headers.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = headers.get_filename()
        raw_type = headers.get("content-type")
        result.append((str(name), {
            "filename": filename,
            "content_type": str(raw_type).strip() if raw_type is not None else "",
            "content": content,
        }))
    return result


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Tests open 50+ streams at once; the default backlog of 5 would refuse some connections.
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dify: "DifyServer") -> None:
        self.dify = dify
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away (or stop() shutting sockets) is normal here; anything else is a bug worth a trace.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DifySandbox/1.0"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and the terminal demo share the console

    def setup(self) -> None:
        super().setup()
        # As nginx in front of Dify does: without it the small last chunk of a stream waits
        # for the client's delayed ACK (~40 ms) on a kept-alive connection.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.dify._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.dify._track(self.connection, False)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by the stdlib for malformed request lines and unknown methods: answer in Dify's error shape.
        self.close_connection = True
        names = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 414: "request_uri_too_long",
                 431: "request_header_fields_too_large", 501: "not_implemented", 505: "http_version_not_supported"}
        self._send_json(code, {"code": names.get(code, "bad_request"), "message": message or "", "status": code})

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        dify = self.server.dify
        self._headers_sent = False
        try:
            req = self._read_request()
        except ApiError as e:
            self.close_connection = True
            self._send_error(e)
            return
        dify._record(req)
        try:
            dify._handle(self, req)
        except ApiError as e:
            self._send_error(e)
        except OSError:
            self.close_connection = True
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            if not self._headers_sent:
                self._send_error(ApiError(500, "internal_server_error", "Internal Server Error, please contact support."))

    def _read_request(self) -> _Request:
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = _Request(self.command, split.path, dict(parse_qsl(split.query, keep_blank_values=True)), headers, b"")
        req.body = self._read_body(headers)
        ctype = headers.get("content-type", "")
        base_type = ctype.split(";")[0].strip().lower()
        if base_type == "multipart/form-data":
            try:
                parts = _parse_multipart(req.body, ctype)
            except ValueError:
                raise ApiError(400, "bad_request", "The browser (or proxy) sent a request that this server could not understand.")
            req.file_parts = [(n, p) for n, p in parts if p["filename"] is not None]
            req.files = {n: p for n, p in req.file_parts}
            req.form = {n: p["content"].decode("utf-8", "replace") for n, p in parts if p["filename"] is None}
        elif base_type == "application/x-www-form-urlencoded":
            req.form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        elif req.body.strip():
            try:
                req.json, req.json_ok = json.loads(req.body), True
            except ValueError:
                pass
        return req

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            data = bytearray()
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise ApiError(400, "bad_request", "malformed chunked body")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                if len(data) + size > MAX_BODY:
                    raise ApiError(413, "file_too_large", "File size exceeded.")
                data += self.rfile.read(size)
                self.rfile.readline(3)
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise ApiError(400, "bad_request", "bad Content-Length")
        if length > MAX_BODY:
            raise ApiError(413, "file_too_large", "File size exceeded.")
        return self.rfile.read(length) if length > 0 else b""

    def _send_error(self, e: ApiError) -> None:
        self._send_json(e.status, e.body(), e.headers)

    def _send_json(self, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = _json_bytes(obj)
        self._send_bytes(status, body, "application/json", headers)

    def _send_bytes(self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self._headers_sent = True
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def _send_stream(self, items: Iterable[Any]) -> None:
        """Send an SSE body, one chunk per block, flushed at once so clients see each block as it comes."""
        # A stream that ends with its terminating chunk leaves the connection open for the
        # client's next request, as Dify behind gunicorn/nginx does; one cut short closes it.
        stop = self.server.dify._stop_event
        self.send_response(200)
        self._headers_sent = True
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for item in items:
            if isinstance(item, _Sleep):
                if stop.wait(item.seconds):
                    self.close_connection = True
                    return  # stopping: leave the stream unterminated rather than block stop()
                continue
            if item == CUT:
                self._cut()
                return
            if isinstance(item, bytes):
                block = item
            else:
                block = b"event: ping\n\n" if item == PING else b"data: " + _dumps_line(item) + b"\n\n"
            if not block:
                continue  # a zero-size chunk would end the stream
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        # FIN without the terminating chunk: the client reads every block sent so far, then a broken stream.
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _dumps_line(obj: Any) -> bytes:
    return _json_bytes(obj, separators=(",", ":"))


def _json_bytes(obj: Any, **options: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, **options).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a test's "\ud800"): sent as its JSON escape, as a Python server
        # with the default ensure_ascii does; the client then decodes a lone surrogate.
        return json.dumps(obj, **options).encode("ascii")


_Route = tuple[str, "re.Pattern[str]", str, bool]  # method, path, handler name, needs auth


def _route(method: str, pattern: str, name: str, auth: bool = True) -> _Route:
    return (method, re.compile(pattern), name, auth)


_ROUTES: list[_Route] = [
    _route("GET", r"/v1/?", "welcome", auth=False),
    _route("POST", r"/v1/chat-messages", "chat_messages"),
    _route("POST", r"/v1/chat-messages/(?P<task_id>[^/]+)/stop", "stop_chat"),
    _route("POST", r"/v1/completion-messages", "completion_messages"),
    _route("POST", r"/v1/completion-messages/(?P<task_id>[^/]+)/stop", "stop_completion"),
    _route("POST", r"/v1/workflows/run", "workflow_run"),
    _route("GET", r"/v1/workflows/run/(?P<run_id>[^/]+)", "workflow_run_detail"),
    _route("POST", r"/v1/workflows/tasks/(?P<task_id>[^/]+)/stop", "stop_workflow"),
    _route("POST", r"/v1/files/upload", "upload"),
    _route("POST", r"/v1/audio-to-text", "audio_to_text"),
    _route("POST", r"/v1/text-to-audio", "text_to_audio"),
    _route("GET", r"/v1/conversations", "list_conversations"),
    _route("DELETE", rf"/v1/conversations/(?P<cid>{_UUID_RE})", "delete_conversation"),
    _route("POST", rf"/v1/conversations/(?P<cid>{_UUID_RE})/name", "rename_conversation"),
    _route("GET", r"/v1/messages", "list_messages"),
    _route("POST", r"/v1/messages/(?P<mid>[^/]+)/feedbacks", "feedback"),
    _route("GET", r"/v1/messages/(?P<mid>[^/]+)/suggested", "suggested"),
    _route("GET", r"/v1/parameters", "parameters"),
    _route("GET", r"/v1/info", "info"),
    _route("GET", r"/v1/meta", "meta"),
]


class DifyServer:
    """A scripted Dify Service API server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, api_key: str = "app-test", mode: str = "chat", *, host: str = "127.0.0.1", port: int = 0) -> None:
        if mode not in APP_MODES:
            raise ValueError(f"mode must be one of {APP_MODES}, not {mode!r}")
        self.api_key = api_key
        self.mode = mode
        self.host = host
        self.port = port
        self.stt_text = "transcribed text"
        self.tts_audio = DEFAULT_TTS_AUDIO
        # The app's feature switches in the Dify console; off gives Dify's 400.
        self.stt_enabled = True
        self.tts_enabled = True
        # A misbehaving server that answers text-to-audio with 200 and a JSON body.
        self.tts_json_200 = False
        self.answers_for_sandbox = False
        self.requests: list[dict[str, Any]] = []
        self.conversations: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        # Additions: every answered chat/completion call, workflow runs, and stop calls, for assertions.
        self.messages: list[dict[str, Any]] = []
        self.workflow_runs: dict[str, dict[str, Any]] = {}
        self.stopped_tasks: list[str] = []
        self._conversation_meta: dict[str, dict[str, Any]] = {}
        self._stopped: set[str] = set()
        self._static: dict[str, tuple[bytes, str]] = {}
        self._scripts: collections.deque[_Script] = collections.deque()
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._connections: set[socket.socket] = set()
        self._accepted = 0
        # set_chaos(): random latency and errors for calls nothing was scripted for.
        self._chaos_latency = 0.0
        self._chaos_error_rate = 0.0
        self._chaos_random = random.Random()
        self.chaos_errors = 0  # errors answered because of set_chaos
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> "DifyServer":
        if self._httpd is not None:
            raise RuntimeError("DifyServer already started")
        self._stop_event.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        # A short poll interval keeps stop() fast (shutdown() waits for the loop to notice).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="dify-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop_event.set()  # wakes handlers sleeping in hang / latency / delays
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections would otherwise keep their threads blocked
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "DifyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("DifyServer not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.host_url + "/v1"

    # -- scripting ----------------------------------------------------------------------------------------

    def push_answer(self, text: str, *, chunk_size: int = 4, latency: float = 0.0, chunk_delay: float = 0.0) -> None:
        """Answer `text`; `latency` seconds before the first byte, `chunk_delay` between streamed chunks."""
        self._push(_Script("answer", text=text, chunk_size=chunk_size, latency=latency, chunk_delay=chunk_delay))

    def push_events(self, events: list[Any], *, delay: float = 0.0) -> None:
        """Streaming only: send exactly these blocks (dict, "ping" or "CUT"), `delay` seconds apart.
        A number in the list is a pause of that many seconds at that point; bytes are sent as
        they are (a broken or hostile stream: invalid SSE, bad UTF-8, a block that is no event)."""
        for item in events:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and item >= 0:
                continue
            if not (isinstance(item, (dict, bytes)) or item in (PING, CUT)):
                raise ValueError(f"an event is a dict, bytes, 'ping', 'CUT' or a pause in seconds, not {item!r}")
        self._push(_Script("events", events=[dict(e) if isinstance(e, dict) else e for e in events], delay=delay))

    def push_error(self, status: int, code: str, message: str) -> None:
        self._push(_Script("error", status=status, code=code, message=message))

    def push_hang(self, seconds: float) -> None:
        """Accept the request, send nothing for `seconds`, then close the connection."""
        self._push(_Script("hang", seconds=seconds))

    def push_disconnect(self) -> None:
        """Close the connection without any response."""
        self._push(_Script("disconnect"))

    def push_workflow(self, outputs: dict[str, Any], *, status: str = "succeeded", error: str | None = None) -> None:
        """A workflow result; for a chatflow app, `outputs["answer"]` (or `["text"]`) is the answer and a failed
        run answers as Dify does (blocking: 400 "Run failed: ..."; streaming: workflow_finished then error)."""
        self._push(_Script("workflow", outputs=dict(outputs), workflow_status=status, error=error))

    def set_chaos(self, latency: float = 0.0, error_rate: float = 0.0, seed: int | None = None) -> None:
        """Make unscripted app calls unreliable, as a busy real Dify is: each waits a random
        0..`latency` seconds before its first byte, and fails with a 500 with probability
        `error_rate`. A seed makes the sequence of draws repeatable. `set_chaos()` turns it off."""
        if latency < 0 or not 0.0 <= error_rate <= 1.0:
            raise ValueError("latency must be >= 0 and error_rate within 0..1")
        with self._lock:
            self._chaos_latency = float(latency)
            self._chaos_error_rate = float(error_rate)
            self._chaos_random = random.Random(seed)

    def _take_script(self) -> tuple[_Script | None, float]:
        """The next script (None: answer normally) and a chaos delay to add before the answer."""
        script = self._pop()
        if script is not None and script.kind == "delay":
            return None, script.latency
        return script, 0.0

    def _chaos(self) -> _Script | None:
        """The unreliability drawn for one unscripted call: an error, a delay, or nothing."""
        with self._lock:
            if not self._chaos_latency and not self._chaos_error_rate:
                return None
            fail = self._chaos_random.random() < self._chaos_error_rate
            delay = self._chaos_random.uniform(0.0, self._chaos_latency)
            if fail:
                self.chaos_errors += 1
        if fail:
            return _Script("error", status=500, code="internal_server_error",
                           message="Internal Server Error, please contact support.")
        return _Script("delay", latency=delay) if delay else None

    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._scripts)

    def _push(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    def _pop(self) -> _Script | None:
        with self._lock:
            if self._scripts:
                return self._scripts.popleft()
        return self._chaos()

    # -- state helpers ------------------------------------------------------------------------------------

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    def forget_conversation(self, conversation_id: str) -> None:
        with self._lock:
            self.conversations.pop(conversation_id, None)
            self._conversation_meta.pop(conversation_id, None)

    def add_file(self, path: str, content: bytes, content_type: str) -> None:
        """Serve GET <host_url><path> (host root, no auth), e.g. "/files/tools/x.png"; the query string is ignored."""
        path = urlsplit(path).path
        if not path.startswith("/"):
            path = "/" + path
        with self._lock:
            self._static[path] = (bytes(content), content_type)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (a client that keeps its connection alive opens one)."""
        with self._lock:
            return self._accepted

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self._accepted += 1
            else:
                self._connections.discard(conn)

    def _record(self, req: _Request) -> None:
        with self._lock:
            self.requests.append(req.record())

    def _task_stopped(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._stopped

    # -- request handling ---------------------------------------------------------------------------------

    def _handle(self, h: _Handler, req: _Request) -> None:
        if req.method == "GET":
            with self._lock:
                static = self._static.get(req.path) or self._static.get(unquote(req.path))
            if static is not None:
                h._send_bytes(200, static[0], static[1])
                return
        path_matched = False
        for method, pattern, name, auth in _ROUTES:
            m = pattern.fullmatch(req.path)
            if not m:
                continue
            path_matched = True
            if method != req.method:
                continue
            if auth:
                self._authenticate(req)
            getattr(self, "_ep_" + name.replace("-", "_"))(h, req, **m.groupdict())
            return
        if path_matched:
            raise ApiError(405, "method_not_allowed", "The method is not allowed for the requested URL.")
        raise ApiError(404, "not_found", NOT_FOUND_URL)

    def _authenticate(self, req: _Request) -> None:
        # Same checks and messages as Dify's validate_and_get_api_token.
        auth = req.headers.get("authorization")
        if auth is None or " " not in auth:
            raise ApiError(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")
        scheme, token = auth.split(None, 1)
        if scheme.lower() != "bearer":
            raise ApiError(401, "unauthorized", "Authorization scheme must be 'Bearer'")
        if token.strip() != self.api_key:
            raise ApiError(401, "unauthorized", "Access token is invalid",
                           headers=[("WWW-Authenticate", 'Bearer realm="api"')])

    @staticmethod
    def _user(value: Any, *, required: bool) -> str:
        if isinstance(value, str) and value:
            return value
        if required:
            raise _invalid("Arg user must be provided.")
        return DEFAULT_USER

    @staticmethod
    def _inputs(body: dict[str, Any]) -> dict[str, Any]:
        if "inputs" not in body or body["inputs"] is None:
            raise _invalid("Missing required parameter in the JSON body", "inputs")
        if not isinstance(body["inputs"], dict):
            raise _invalid("inputs must be an object", "inputs")
        return body["inputs"]

    @staticmethod
    def _streaming(body: dict[str, Any]) -> bool:
        mode = body.get("response_mode")
        if mode in (None, "blocking"):
            return False
        if mode == "streaming":
            return True
        raise _invalid(f"The value '{mode}' is not a valid choice for 'response_mode'.", "response_mode")

    def _check_files(self, files: Any, user: str) -> list[dict[str, Any]]:
        if files is None:
            return []
        if not isinstance(files, list):
            raise _invalid("files must be a list", "files")
        with self._lock:
            for item in files:
                if not isinstance(item, dict):
                    raise _invalid(f"Invalid file: {item!r}", "files")
                if item.get("type") not in FILE_TYPES:
                    raise _invalid(f"Invalid file type: {item.get('type')!r}", "files")
                method = item.get("transfer_method")
                if method == "local_file":
                    upload = self.uploads.get(item.get("upload_file_id"))
                    # Uploads are scoped to the end user who made them.
                    if upload is None or upload["user"] != user:
                        raise _invalid(f"Invalid upload file id {item.get('upload_file_id')!r}", "files")
                elif method == "remote_url":
                    if not isinstance(item.get("url"), str) or not item["url"]:
                        raise _invalid("url is required for remote_url files", "files")
                else:
                    raise _invalid(f"Invalid transfer method: {method!r}", "files")
        return [dict(f) for f in files]

    def _answer_text(self, query: str, turn: int) -> str:
        if self.answers_for_sandbox:
            return SANDBOX_ANSWER.format(turn=turn, query=query)
        return f"echo: {query}"

    @staticmethod
    def _wait(h: _Handler, seconds: float) -> bool:
        """Sleep unless stopping; True when the server is stopping."""
        if seconds > 0 and h.server.dify._stop_event.wait(seconds):
            h.close_connection = True
            return True
        return False

    def _failure(self, h: _Handler, script: _Script | None) -> bool:
        """Apply an error / hang / disconnect script. True when it answered the request."""
        if script is None:
            return False
        if script.kind == "error":
            h._send_json(script.status, {"code": script.code, "message": script.message, "status": script.status})
            return True
        if script.kind == "hang":
            h.close_connection = True
            self._wait(h, script.seconds)
            h._cut()
            return True
        if script.kind == "disconnect":
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        return False

    # -- /chat-messages -----------------------------------------------------------------------------------

    def _ep_chat_messages(self, h: _Handler, req: _Request) -> None:
        body = req.json_body()
        user = self._user(body.get("user"), required=True)
        mode = self.mode
        if mode not in CHAT_MODES:
            raise ApiError(400, "not_chat_app", "Please check if your app mode matches the right API route.")
        query = body.get("query")
        if not isinstance(query, str) or not query:
            raise _invalid("query is required", "query")
        inputs = self._inputs(body)
        streaming = self._streaming(body)
        if mode == "agent-chat" and not streaming:
            raise _invalid("Agent Chat App does not support blocking mode")
        conversation_id = body.get("conversation_id") or ""
        if not isinstance(conversation_id, str):
            raise _invalid("conversation_id must be a string", "conversation_id")
        with self._lock:
            if conversation_id:
                conversation = self.conversations.get(conversation_id)
                if conversation is None or conversation["user"] != user:
                    raise ApiError(404, "not_found", "Conversation Not Exists.")
        files = self._check_files(body.get("files"), user)

        script, delay = self._take_script()
        if self._failure(h, script):
            return
        if script is not None and script.kind == "events" and not streaming:
            raise _invalid("sandbox: events scripted for a streaming request")
        if script is not None and script.kind == "workflow" and mode != "advanced-chat":
            raise _invalid(f"sandbox: workflow scripted for a {mode} app")

        call = _Call(mode=mode, user=user, query=query)
        with self._lock:
            if not conversation_id or conversation_id not in self.conversations:
                # A new conversation keeps the inputs of its first request; later inputs are ignored (§2.1).
                conversation_id = str(uuid.uuid4())
                self.conversations[conversation_id] = {"user": user, "inputs": dict(inputs), "turns": []}
                name = query[:20] if body.get("auto_generate_name", True) is not False else "New conversation"
                self._conversation_meta[conversation_id] = {"name": name, "created_at": call.created_at}
            conversation = self.conversations[conversation_id]
            call.conversation_id = conversation_id
            call.inputs = conversation["inputs"]
            turn = len(conversation["turns"]) + 1
            if script is None:
                answer = self._answer_text(query, turn)
            elif script.kind == "answer":
                answer = script.text
            elif script.kind == "workflow":
                answer = _workflow_answer(script)
            else:
                answer = _answer_from_events(script.events)
            conversation["turns"].append((query, answer))
            self._conversation_meta[conversation_id]["updated_at"] = call.created_at
            self.messages.append({
                "id": call.message_id, "conversation_id": conversation_id, "user": user, "query": query,
                "inputs": dict(call.inputs), "files": files, "answer": answer, "created_at": call.created_at,
            })

        chunk_size = script.chunk_size if script is not None and script.kind == "answer" else 4
        chunk_delay = script.chunk_delay if script is not None and script.kind == "answer" else 0.0
        latency = delay + (script.latency if script is not None and script.kind == "answer" else 0.0)
        if self._wait(h, latency):
            return
        failed = script is not None and script.kind == "workflow" and script.workflow_status == "failed"
        if not streaming:
            if failed:
                raise _invalid(f"Run failed: {script.error}")
            h._send_json(200, {
                "event": "message", "task_id": call.task_id, "id": call.message_id, "message_id": call.message_id,
                "conversation_id": conversation_id, "mode": mode, "answer": answer,
                "metadata": {"usage": _usage(query, answer, latency + 0.01), "retriever_resources": []},
                "created_at": call.created_at,
            })
            return
        if script is not None and script.kind == "events":
            h._send_stream(self._scripted_stream(script, lambda ev: _chat_envelope(ev, call)))
            return
        outputs = script.outputs if script is not None and script.kind == "workflow" else None
        h._send_stream(self._chat_stream(call, answer, chunk_size, chunk_delay, outputs,
                                         script.error if failed and script else None, failed))

    def _scripted_stream(self, script: _Script, fill: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[Any]:
        for i, item in enumerate(script.events):
            if i and script.delay > 0:
                yield _Sleep(script.delay)
            if isinstance(item, (int, float)):
                yield _Sleep(float(item))
            else:
                yield fill(item) if isinstance(item, dict) else item

    def _chat_stream(self, call: _Call, answer: str, chunk_size: int, chunk_delay: float,
                     outputs: dict[str, Any] | None, error: str | None, failed: bool) -> Iterator[Any]:
        mode = call.mode

        def ev(name: str, **own: Any) -> dict[str, Any]:
            event = {"event": name, "conversation_id": call.conversation_id, "message_id": call.message_id,
                     "created_at": call.created_at, "task_id": call.task_id}
            event.update(own)
            return event

        def wf(name: str, data: dict[str, Any]) -> dict[str, Any]:
            return ev(name, workflow_run_id=call.run_id, data=data)

        node_exec = str(uuid.uuid4())
        if mode != "chat":
            yield PING  # clients must skip keep-alive blocks; make sure they meet one
        if mode == "advanced-chat":
            yield wf("workflow_started", _wf_started_data(call))
            yield wf("node_started", _node_data(call, node_exec, "answer", "Answer"))
        if mode == "agent-chat":
            yield ev("agent_thought", id=str(uuid.uuid4()), position=1, thought="", observation="", tool="",
                     tool_labels={}, tool_input="", message_files=[])
        name = "agent_message" if mode == "agent-chat" else "message"
        stopped = False
        for i, piece in enumerate([] if failed else _chunks(answer, chunk_size)):
            if i and chunk_delay > 0:
                yield _Sleep(chunk_delay)
            if self._task_stopped(call.task_id):
                stopped = True
                break
            own: dict[str, Any] = {"id": call.message_id, "answer": piece}
            if mode == "advanced-chat":
                own["from_variable_selector"] = ["answer", "answer"]
            yield ev(name, **own)
        if mode == "advanced-chat":
            status = "failed" if failed else "stopped" if stopped else "succeeded"
            outs = outputs if outputs is not None else {"answer": answer}
            yield wf("node_finished", _node_data(call, node_exec, "answer", "Answer", status=status, outputs=outs, error=error))
            yield wf("workflow_finished", _wf_finished_data(call, status, outs, error))
            if failed:
                yield {"event": "error", "conversation_id": call.conversation_id, "message_id": call.message_id,
                       "created_at": call.created_at, "code": "invalid_param", "status": 400,
                       "message": f"Run failed: {error}"}
                return
        yield ev("message_end", id=call.message_id,
                 metadata={"usage": _usage(call.query, answer, 0.01), "retriever_resources": []}, files=None)

    # -- /completion-messages -----------------------------------------------------------------------------

    def _ep_completion_messages(self, h: _Handler, req: _Request) -> None:
        body = req.json_body()
        user = self._user(body.get("user"), required=True)
        if self.mode != "completion":
            raise ApiError(400, "app_unavailable", "App unavailable, please check your app configurations.")
        inputs = self._inputs(body)
        query = body.get("query") or ""
        if not isinstance(query, str):
            raise _invalid("query must be a string", "query")
        streaming = self._streaming(body)
        files = self._check_files(body.get("files"), user)
        script, delay = self._take_script()
        if self._failure(h, script):
            return
        if script is not None and script.kind == "events" and not streaming:
            raise _invalid("sandbox: events scripted for a streaming request")
        if script is not None and script.kind == "workflow":
            raise _invalid("sandbox: workflow scripted for a completion app")
        prompt = str(inputs.get("query") or query)
        call = _Call(mode="completion", user=user, query=prompt, inputs=dict(inputs))
        if script is None:
            answer = self._answer_text(prompt, 1)
        elif script.kind == "answer":
            answer = script.text
        else:
            answer = _answer_from_events(script.events)
        with self._lock:
            self.messages.append({
                "id": call.message_id, "conversation_id": None, "user": user, "query": prompt,
                "inputs": dict(inputs), "files": files, "answer": answer, "created_at": call.created_at,
            })
        is_answer = script is not None and script.kind == "answer"
        if self._wait(h, delay + (script.latency if is_answer else 0.0)):
            return
        if not streaming:
            h._send_json(200, {
                "event": "message", "task_id": call.task_id, "id": call.message_id, "message_id": call.message_id,
                "mode": "completion", "answer": answer,
                "metadata": {"usage": _usage(prompt, answer, 0.01), "retriever_resources": []},
                "created_at": call.created_at,
            })
            return
        if script is not None and script.kind == "events":
            h._send_stream(self._scripted_stream(script, lambda ev: _completion_envelope(ev, call)))
            return
        h._send_stream(self._completion_stream(call, answer, script.chunk_size if is_answer else 4,
                                               script.chunk_delay if is_answer else 0.0))

    def _completion_stream(self, call: _Call, answer: str, chunk_size: int, chunk_delay: float) -> Iterator[Any]:
        def ev(name: str, **own: Any) -> dict[str, Any]:
            event = {"event": name, "message_id": call.message_id, "created_at": call.created_at, "task_id": call.task_id}
            event.update(own)
            return event

        for i, piece in enumerate(_chunks(answer, chunk_size)):
            if i and chunk_delay > 0:
                yield _Sleep(chunk_delay)
            if self._task_stopped(call.task_id):
                break
            yield ev("message", id=call.message_id, answer=piece)
        yield ev("message_end", id=call.message_id,
                 metadata={"usage": _usage(call.query, answer, 0.01), "retriever_resources": []}, files=None)

    # -- /workflows/run -----------------------------------------------------------------------------------

    def _ep_workflow_run(self, h: _Handler, req: _Request) -> None:
        body = req.json_body()
        user = self._user(body.get("user"), required=True)
        if self.mode != "workflow":
            raise ApiError(400, "not_workflow_app", "Please check if your app mode matches the right API route.")
        inputs = self._inputs(body)
        streaming = self._streaming(body)
        self._check_files(body.get("files"), user)
        script, delay = self._take_script()
        if self._failure(h, script):
            return
        if script is not None and script.kind == "events" and not streaming:
            raise _invalid("sandbox: events scripted for a streaming request")
        query = str(inputs.get("query", ""))
        call = _Call(mode="workflow", user=user, query=query, inputs=dict(inputs))
        status, error = "succeeded", None
        if script is None:
            outputs: dict[str, Any] = {"text": self._answer_text(query, 1)}
        elif script.kind == "answer":
            outputs = {"text": script.text}
        elif script.kind == "workflow":
            outputs, status, error = script.outputs, script.workflow_status, script.error
        else:
            outputs = {"text": _answer_from_events(script.events)}
        with self._lock:
            self.workflow_runs[call.run_id] = {
                "id": call.run_id, "workflow_id": call.workflow_id, "user": user, "inputs": dict(inputs),
                "status": status, "outputs": outputs, "error": error, "created_at": call.created_at,
            }
        is_answer = script is not None and script.kind == "answer"
        if self._wait(h, delay + (script.latency if is_answer else 0.0)):
            return
        if not streaming:
            data = _wf_finished_data(call, status, outputs, error)
            h._send_json(200, {"task_id": call.task_id, "workflow_run_id": call.run_id, "data": {
                k: data[k] for k in ("id", "workflow_id", "status", "outputs", "error", "elapsed_time",
                                     "total_tokens", "total_steps", "created_at", "finished_at")}})
            return
        if script is not None and script.kind == "events":
            h._send_stream(self._scripted_stream(script, lambda ev: _workflow_envelope(ev, call)))
            return
        h._send_stream(self._workflow_stream(call, outputs, status, error, script.chunk_size if is_answer else 4,
                                             script.chunk_delay if is_answer else 0.0))

    def _workflow_stream(self, call: _Call, outputs: dict[str, Any], status: str, error: str | None,
                         chunk_size: int, chunk_delay: float) -> Iterator[Any]:
        def wf(name: str, data: dict[str, Any]) -> dict[str, Any]:
            return {"event": name, "workflow_run_id": call.run_id, "task_id": call.task_id, "data": data}

        node_exec = str(uuid.uuid4())
        yield PING  # newer workflow streams begin with one
        yield wf("workflow_started", _wf_started_data(call))
        yield wf("node_started", _node_data(call, node_exec, "llm", "LLM"))
        text = outputs.get("text") if status == "succeeded" else None
        for i, piece in enumerate(_chunks(text, chunk_size) if isinstance(text, str) else []):
            if i and chunk_delay > 0:
                yield _Sleep(chunk_delay)
            if self._task_stopped(call.task_id):
                status = "stopped"
                break
            yield wf("text_chunk", {"text": piece, "from_variable_selector": ["llm", "text"]})
        yield wf("node_finished", _node_data(call, node_exec, "llm", "LLM", status=status, outputs=outputs, error=error))
        # A failed workflow ends here: unlike chatflow, no `error` event follows (§3.2).
        yield wf("workflow_finished", _wf_finished_data(call, status, outputs, error))

    def _ep_workflow_run_detail(self, h: _Handler, req: _Request, run_id: str) -> None:
        with self._lock:
            run = self.workflow_runs.get(run_id)
        if run is None:
            raise ApiError(404, "not_found", "Workflow run not found.")
        h._send_json(200, {
            "id": run["id"], "workflow_id": run["workflow_id"], "status": run["status"],
            "inputs": json.dumps(run["inputs"], ensure_ascii=False), "outputs": run["outputs"], "error": run["error"],
            "total_steps": 3, "total_tokens": 0, "created_at": run["created_at"], "finished_at": run["created_at"],
            "elapsed_time": 0.01,
        })

    # -- stop ---------------------------------------------------------------------------------------------

    def _stop_task(self, h: _Handler, req: _Request, task_id: str) -> None:
        self._user(req.json_body().get("user"), required=True)
        with self._lock:
            self._stopped.add(task_id)
            self.stopped_tasks.append(task_id)
        h._send_json(200, {"result": "success"})  # even for unknown or finished tasks, as Dify does

    def _ep_stop_chat(self, h: _Handler, req: _Request, task_id: str) -> None:
        if self.mode not in CHAT_MODES:
            raise ApiError(400, "not_chat_app", "Please check if your app mode matches the right API route.")
        self._stop_task(h, req, task_id)

    def _ep_stop_completion(self, h: _Handler, req: _Request, task_id: str) -> None:
        if self.mode != "completion":
            raise ApiError(400, "app_unavailable", "App unavailable, please check your app configurations.")
        self._stop_task(h, req, task_id)

    def _ep_stop_workflow(self, h: _Handler, req: _Request, task_id: str) -> None:
        if self.mode != "workflow":
            raise ApiError(400, "not_workflow_app", "Please check if your app mode matches the right API route.")
        self._stop_task(h, req, task_id)

    # -- files and audio ----------------------------------------------------------------------------------

    def _ep_upload(self, h: _Handler, req: _Request) -> None:
        user = self._user((req.form or {}).get("user"), required=False)
        parts = [p for n, p in req.file_parts if n == "file"]
        if not parts:
            raise ApiError(400, "no_file_uploaded", "Please upload your file.")
        if len(req.file_parts) > 1:
            raise ApiError(400, "too_many_files", "Only one file is allowed.")
        part = parts[0]
        name = part["filename"] or ""
        if not name:
            raise ApiError(400, "filename_not_exists_error", "The specified filename does not exist.")
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension not in IMAGE_EXTENSIONS:
            raise ApiError(415, "unsupported_file_type", "File type not allowed.")
        size = len(part["content"])
        if size > IMAGE_SIZE_LIMIT:
            raise ApiError(413, "file_too_large", f"File size exceeded. image file size limit is {IMAGE_SIZE_LIMIT // (1024 * 1024)}MB")
        mime_type = part["content_type"].split(";")[0].strip() or mimetypes.guess_type(name)[0] or "application/octet-stream"
        file_id = str(uuid.uuid4())
        created_at = int(time.time())
        with self._lock:
            self.uploads[file_id] = {"name": name, "size": size, "mime_type": mime_type, "user": user,
                                     "content": part["content"]}
        h._send_json(201, {"id": file_id, "name": name, "size": size, "extension": extension, "mime_type": mime_type,
                           "created_by": str(uuid.uuid5(uuid.NAMESPACE_OID, user)), "created_at": created_at})

    def _ep_audio_to_text(self, h: _Handler, req: _Request) -> None:
        if not self.stt_enabled:  # Dify checks the feature before looking at the file
            raise _invalid("Speech to text is not enabled")
        self._user((req.form or {}).get("user"), required=False)  # DoW sends none; Dify then uses a default user
        parts = [p for n, p in req.file_parts if n == "file"]
        if not parts:
            raise ApiError(400, "no_audio_uploaded", "Please upload your audio.")
        part = parts[0]
        if part["content_type"].split(";")[0].strip().lower() not in AUDIO_MIMETYPES:
            raise ApiError(415, "unsupported_audio_type", "Audio type not allowed.")
        if len(part["content"]) > AUDIO_SIZE_LIMIT:
            raise ApiError(413, "audio_too_large", "Audio size exceeded.")
        h._send_json(200, {"text": self.stt_text})

    def _ep_text_to_audio(self, h: _Handler, req: _Request) -> None:
        if not self.tts_enabled:
            raise _invalid("TTS is not enabled")
        if self.tts_json_200:
            h._send_json(200, {"result": "success"})
            return
        body = req.json_body()
        self._user(body.get("user"), required=False)
        message_id, text = body.get("message_id"), body.get("text")
        if message_id:  # message_id wins over text
            with self._lock:
                if not any(m["id"] == message_id for m in self.messages):
                    raise ApiError(404, "not_found", "Message Not Exists.")
        elif not (isinstance(text, str) and text.strip()):
            raise _invalid("Text is required")
        h._send_bytes(200, self.tts_audio, "audio/mpeg")

    # -- conversations and messages -----------------------------------------------------------------------

    def _require_chat_mode(self) -> None:
        if self.mode not in CHAT_MODES:
            raise ApiError(400, "not_chat_app", "Please check if your app mode matches the right API route.")

    def _conversation_item(self, cid: str) -> dict[str, Any]:
        conversation, meta = self.conversations[cid], self._conversation_meta.get(cid, {})
        created = meta.get("created_at", 0)
        return {"id": cid, "name": meta.get("name", ""), "inputs": conversation["inputs"], "status": "normal",
                "introduction": "", "created_at": created, "updated_at": meta.get("updated_at", created)}

    def _owned(self, cid: str, user: str) -> dict[str, Any]:
        conversation = self.conversations.get(cid)
        if conversation is None or conversation["user"] != user:
            raise ApiError(404, "not_found", "Conversation Not Exists.")
        return conversation

    @staticmethod
    def _limit(value: str | None, default: int = 20) -> int:
        try:
            limit = int(value) if value not in (None, "") else default
        except ValueError:
            raise _invalid("limit must be an integer", "limit")
        if not 1 <= limit <= 100:
            raise _invalid("limit must be between 1 and 100", "limit")
        return limit

    def _ep_list_conversations(self, h: _Handler, req: _Request) -> None:
        self._require_chat_mode()
        user = self._user(req.query.get("user"), required=False)
        limit = self._limit(req.query.get("limit"))
        sort_by = req.query.get("sort_by") or "-updated_at"
        if sort_by.lstrip("-") not in ("created_at", "updated_at"):
            raise _invalid(f"The value '{sort_by}' is not a valid choice for 'sort_by'.", "sort_by")
        with self._lock:
            items = [self._conversation_item(cid) for cid, c in self.conversations.items() if c["user"] == user]
        key = sort_by.lstrip("-")
        # Python's sort is stable and conversations were created in order: ties keep creation order.
        items.sort(key=lambda c: c[key], reverse=sort_by.startswith("-"))
        last_id = req.query.get("last_id")
        if last_id:
            ids = [c["id"] for c in items]
            if last_id not in ids:
                raise ApiError(404, "not_found", "Last Conversation Not Exists.")
            items = items[ids.index(last_id) + 1:]
        h._send_json(200, {"limit": limit, "has_more": len(items) > limit, "data": items[:limit]})

    def _ep_delete_conversation(self, h: _Handler, req: _Request, cid: str) -> None:
        self._require_chat_mode()
        user = self._user(req.json_body(empty_ok=True).get("user"), required=False)
        with self._lock:
            self._owned(cid, user)
            self.forget_conversation(cid)
        h._send_bytes(204, b"", "")

    def _ep_rename_conversation(self, h: _Handler, req: _Request, cid: str) -> None:
        self._require_chat_mode()
        body = req.json_body()
        user = self._user(body.get("user"), required=False)
        name = body.get("name")
        with self._lock:
            self._owned(cid, user)
            if body.get("auto_generate"):
                name = self.conversations[cid]["turns"][0][0][:20] if self.conversations[cid]["turns"] else "New conversation"
            elif not isinstance(name, str) or not name.strip():
                raise _invalid("name is required when auto_generate is false", "name")
            self._conversation_meta.setdefault(cid, {})["name"] = name
            item = self._conversation_item(cid)
        h._send_json(200, item)

    def _ep_list_messages(self, h: _Handler, req: _Request) -> None:
        self._require_chat_mode()
        user = self._user(req.query.get("user"), required=False)
        cid = req.query.get("conversation_id") or ""
        limit = self._limit(req.query.get("limit"))
        with self._lock:
            self._owned(cid, user)
            messages = [m for m in self.messages if m["conversation_id"] == cid]
        first_id = req.query.get("first_id")
        if first_id:
            ids = [m["id"] for m in messages]
            if first_id not in ids:
                raise ApiError(404, "not_found", "First Message Not Exists.")
            messages = messages[:ids.index(first_id)]
        page = messages[-limit:]
        h._send_json(200, {"limit": limit, "has_more": len(messages) > limit, "data": [{
            "id": m["id"], "conversation_id": cid, "inputs": m["inputs"], "query": m["query"], "answer": m["answer"],
            "message_files": [], "feedback": None, "retriever_resources": [], "agent_thoughts": [],
            "created_at": m["created_at"],
        } for m in page]})

    def _ep_feedback(self, h: _Handler, req: _Request, mid: str) -> None:
        body = req.json_body()
        self._user(body.get("user"), required=False)
        if body.get("rating") not in ("like", "dislike", None):
            raise _invalid("rating must be like, dislike or null", "rating")
        h._send_json(200, {"result": "success"})

    def _ep_suggested(self, h: _Handler, req: _Request, mid: str) -> None:
        h._send_json(200, {"result": "success", "data": []})

    # -- app info -----------------------------------------------------------------------------------------

    def _ep_welcome(self, h: _Handler, req: _Request) -> None:
        h._send_json(200, {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": "1.0.0"})

    def _ep_parameters(self, h: _Handler, req: _Request) -> None:
        form = []
        if self.mode in ("workflow", "completion"):
            form = [{"paragraph": {"label": "query", "variable": "query", "required": False, "default": ""}}]
        h._send_json(200, {
            "opening_statement": "", "suggested_questions": [],
            "suggested_questions_after_answer": {"enabled": False},
            "speech_to_text": {"enabled": True}, "text_to_speech": {"enabled": True, "voice": "", "language": ""},
            "retriever_resource": {"enabled": False}, "annotation_reply": {"enabled": False},
            "more_like_this": {"enabled": False}, "user_input_form": form,
            "sensitive_word_avoidance": {"enabled": False, "type": "", "configs": []},
            "file_upload": {"image": {"enabled": True, "number_limits": 3, "detail": "high",
                                      "transfer_methods": ["remote_url", "local_file"]}},
            "system_parameters": {"file_size_limit": 15, "image_file_size_limit": 10,
                                  "audio_file_size_limit": 50, "video_file_size_limit": 100},
        })

    def _ep_info(self, h: _Handler, req: _Request) -> None:
        h._send_json(200, {"name": f"Dify sandbox ({self.mode})", "description": "Local Dify simulator, offline",
                           "tags": [], "mode": self.mode, "author_name": "sandbox"})

    def _ep_meta(self, h: _Handler, req: _Request) -> None:
        h._send_json(200, {"tool_icons": {}})


# -- event builders ---------------------------------------------------------------------------------------

def _chat_envelope(event: dict[str, Any], call: _Call) -> dict[str, Any]:
    name = event.get("event")
    out: dict[str, Any] = {"event": name, "conversation_id": call.conversation_id, "message_id": call.message_id,
                           "created_at": call.created_at}
    if name != "error":  # error events carry only code / status / message besides the envelope (§2.4)
        out["task_id"] = call.task_id
    if name in ("message", "agent_message", "message_end"):
        out["id"] = call.message_id
    elif name == "agent_thought":
        out["id"] = str(uuid.uuid4())
    if name in ("workflow_started", "node_started", "node_finished", "workflow_finished"):
        out["workflow_run_id"] = call.run_id
    out.update(event)
    return out


def _completion_envelope(event: dict[str, Any], call: _Call) -> dict[str, Any]:
    name = event.get("event")
    out: dict[str, Any] = {"event": name, "message_id": call.message_id, "created_at": call.created_at}
    if name != "error":
        out["task_id"] = call.task_id
    if name in ("message", "message_end"):
        out["id"] = call.message_id
    out.update(event)
    return out


def _workflow_envelope(event: dict[str, Any], call: _Call) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event.get("event"), "workflow_run_id": call.run_id}
    if event.get("event") != "error":
        out["task_id"] = call.task_id
    out.update(event)
    return out


def _answer_from_events(events: list[Any]) -> str:
    """The answer a client should assemble from scripted events (what is recorded as the turn)."""
    answer = ""
    for item in events:
        if item == CUT:
            break
        if not isinstance(item, dict):
            continue
        name = item.get("event")
        if name in ("message", "agent_message"):
            answer += str(item.get("answer", ""))
        elif name == "message_replace":
            answer = str(item.get("answer", ""))
        elif name == "text_chunk":
            answer += str((item.get("data") or {}).get("text", ""))
    return answer


def _workflow_answer(script: _Script) -> str:
    if script.workflow_status == "failed":
        return ""
    for key in ("answer", "text"):
        if isinstance(script.outputs.get(key), str):
            return script.outputs[key]
    return json.dumps(script.outputs, ensure_ascii=False)


def _wf_started_data(call: _Call) -> dict[str, Any]:
    inputs = dict(call.inputs)
    if call.mode == "advanced-chat":
        inputs.update({"sys.query": call.query, "sys.user_id": call.user, "sys.conversation_id": call.conversation_id})
    return {"id": call.run_id, "workflow_id": call.workflow_id, "sequence_number": 1, "inputs": inputs,
            "created_at": call.created_at}


def _node_data(call: _Call, exec_id: str, node_type: str, title: str, *, status: str | None = None,
               outputs: dict[str, Any] | None = None, error: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": exec_id, "node_id": f"{node_type}-node", "node_type": node_type, "title": title, "index": 2,
        "predecessor_node_id": "start", "inputs": {}, "created_at": call.created_at, "extras": {},
        "iteration_id": None, "loop_id": None,
    }
    if status is not None:
        data.update({
            "process_data": None, "outputs": outputs, "status": status, "error": error, "elapsed_time": 0.01,
            "execution_metadata": {"total_tokens": 0, "total_price": "0", "currency": "USD"},
            "finished_at": call.created_at, "files": [],
        })
    return data


def _wf_finished_data(call: _Call, status: str, outputs: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    return {
        "id": call.run_id, "workflow_id": call.workflow_id, "status": status, "outputs": outputs, "error": error,
        "elapsed_time": 0.01, "total_tokens": 0, "total_steps": 3,
        "created_by": {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, call.user)), "user": call.user},
        "created_at": call.created_at, "finished_at": call.created_at, "exceptions_count": 0, "files": [],
    }


def main(argv: list[str] | None = None) -> None:
    """Run the simulator on its own, e.g. to point a real config (dify_api_base) at it."""
    parser = argparse.ArgumentParser(description="Local Dify Service API simulator (offline).")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--mode", choices=APP_MODES, default="chat")
    parser.add_argument("--api-key", default="app-sandbox")
    args = parser.parse_args(argv)
    server = DifyServer(api_key=args.api_key, mode=args.mode, port=args.port).start()
    server.answers_for_sandbox = True
    print(f"Dify sandbox ({args.mode}) at {server.base_url}, key {args.api_key}; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
