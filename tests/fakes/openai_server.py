"""A small, real OpenAI-compatible HTTP server on 127.0.0.1, scripted by tests.

Speaks:

* ``POST /v1/chat/completions``: a streamed answer (server-sent events,
  chunked, ending with ``data: [DONE]``) when the request asks for
  ``"stream": true``, else one JSON answer. With ``stream=False`` the server
  ignores the flag and always answers JSON, as some local servers do;
* ``POST /v1/images/generations``: ``{"created", "data": [{"url"}]}``;
* Azure's ``POST /openai/deployments/{name}/chat/completions?api-version=...``
  and ``.../images/generations`` with the ``api-key`` header.

It can also act as an HTTP forward proxy: a request whose target is an
absolute URL (``POST http://host/v1/...``, as clients send to a proxy) is
answered as if it had reached the API, and recorded with ``proxied=True``.

Without a script every chat request gets the default answer
``echo: <last user message> (messages: <number of messages received>)``, so
a test can see the history that was sent. Scripts apply to the next request
that passes the key check, in order:

* ``push_answer(text, usage=None)``;
* ``push_error(status, body=None)`` (``body`` a dict sent as JSON or a
  string sent as is; by default OpenAI's error shape for that status);
* ``push_hang(seconds)``: send nothing for that long, then the default answer;
* ``push_broken_stream(text)``: stream ``text``, then drop the connection
  in the middle of the chunked body (no ``[DONE]``).

Keys: ``api_keys`` (default ``{"sk-test"}``); a request without one of them
gets 401 with OpenAI's body ``{"error": {"message", "type", "code"}}``. An
empty set turns the check off. ``models``: when set, other models get 404
``model_not_found``. ``.requests`` records every request (method, path,
query, headers, json, proxied).

``vendor``: one of ``VENDORS`` (deepseek, moonshot, zhipu, qwen, minimax,
modelscope, gemini, xunfei, qianfan) makes the server behave as that vendor's
OpenAI-compatible API does where it differs from OpenAI's: its path prefix
(``base_url`` includes it; other paths get 404), the request fields it refuses
(400 in its own error shape), its way of saying "wrong key", "unknown model" and
"no balance" (status and body, some inside an HTTP 200 answer), and the extra
fields of its answers. ``push_vendor_error("quota")`` scripts the last one.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_KEY = "sk-test"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    proxied: bool = False
    deployment: str | None = None

    @property
    def messages(self) -> list[dict]:
        return (self.json or {}).get("messages") or []


@dataclass
class _Action:
    kind: str  # answer | error | hang | broken | trickle
    text: str = ""
    status: int = 200
    body: Any = None
    seconds: float = 0.0
    usage: dict | None = None
    extra: dict = field(default_factory=dict)


_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def openai_error(status: int, message: str | None = None, etype: str | None = None, code: str | None = None) -> dict:
    default_type, default_code, default_message = _ERRORS.get(status, ("invalid_request_error", None, f"HTTP {status}"))
    return {"error": {"message": message or default_message, "type": etype or default_type, "param": None, "code": code if code is not None else default_code}}



@dataclass(frozen=True)
class Vendor:
    """How one vendor's compatible API differs from OpenAI's (what the simulator imitates)."""

    prefix: str  # the path before /chat/completions
    # kind ("auth", "model", "param", "quota") -> (HTTP status, body)
    errors: dict
    rejects: tuple[str, ...] = ()  # request fields answered with errors["param"]
    # The interval temperature and top_p must be in, as written in the vendor's docs:
    # "[0,1]", "(0,1)" or "(0,1]"; outside it: errors["param"]
    sampling: str | None = None
    answer_extra: dict = field(default_factory=dict)  # merged into every answer and chunk
    think: bool = False  # the answer starts with the model's <think>...</think>


def _gemini_error(status: int, state: str, message: str, reason: str | None = None) -> list:
    error = {"code": status, "message": message, "status": state}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]
    return [{"error": error}]


VENDORS: dict[str, Vendor] = {
    "deepseek": Vendor(
        prefix="/v1",
        errors={
            "auth": (401, {"error": {"message": "Authentication Fails, Your api key: ****test is invalid", "type": "authentication_error", "param": None, "code": "invalid_request_error"}}),
            "model": (400, {"error": {"message": "Model Not Exist", "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}}),
            "param": (400, {"error": {"message": "logprobs is not supported", "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}}),
            "quota": (402, {"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": None, "code": "invalid_request_error"}}),
        },
        rejects=("logprobs", "top_logprobs"),
    ),
    "moonshot": Vendor(
        prefix="/v1",
        errors={
            "auth": (401, {"error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}}),
            "model": (404, {"error": {"message": "Not found the model or Permission denied", "type": "resource_not_found_error"}}),
            "param": (400, {"error": {"message": "temperature must be in [0, 1]", "type": "invalid_request_error"}}),
            "quota": (429, {"error": {"message": "Your account is suspended, please check your plan and billing details", "type": "exceeded_current_quota_error"}}),
        },
        sampling="[0,1]",
    ),
    "zhipu": Vendor(
        prefix="/api/paas/v4",
        errors={
            "auth": (401, {"error": {"code": "1000", "message": "身份验证失败。"}}),
            "model": (400, {"error": {"code": "1211", "message": "模型不存在，请检查模型代码。"}}),
            "param": (400, {"error": {"code": "1214", "message": "frequency_penalty 参数非法。请检查文档。"}}),
            "quota": (429, {"error": {"code": "1113", "message": "您的账户已欠费，请充值后重试。"}}),
        },
        rejects=("frequency_penalty", "presence_penalty"),
        sampling="(0,1)",
    ),
    "qwen": Vendor(
        prefix="/compatible-mode/v1",
        errors={
            "auth": (401, {"error": {"message": "Incorrect API key provided. ", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}, "request_id": "sim"}),
            "model": (404, {"error": {"message": "The model `x` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": None, "code": "model_not_found"}, "request_id": "sim"}),
            "param": (400, {"error": {"message": "<400> InternalError.Algo.InvalidParameter", "type": "invalid_request_error", "param": None, "code": "invalid_parameter_error"}}),
            "quota": (400, {"error": {"message": "Access denied, please make sure your account is in good standing.", "type": "Arrearage", "param": None, "code": "Arrearage"}, "request_id": "sim"}),
        },
    ),
    "minimax": Vendor(
        prefix="/v1",
        # MiniMax reports these with HTTP 200 and a base_resp.
        errors={
            "auth": (200, {"id": "", "choices": None, "base_resp": {"status_code": 1004, "status_msg": "login fail: Please carry the API secret key in the 'Authorization' field of the request header"}}),
            "model": (200, {"id": "", "choices": None, "base_resp": {"status_code": 2013, "status_msg": "invalid params, unknown model 'x'"}}),
            "param": (200, {"id": "", "choices": None, "base_resp": {"status_code": 2013, "status_msg": "invalid params, temperature must be in (0, 1]"}}),
            "quota": (200, {"id": "", "choices": None, "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}),
        },
        rejects=("frequency_penalty", "presence_penalty"),
        sampling="(0,1]",
        answer_extra={"base_resp": {"status_code": 0, "status_msg": ""}},
        think=True,
    ),
    "modelscope": Vendor(
        prefix="/v1",
        errors={
            "auth": (401, {"errors": {"message": "Invalid API key or not authorized."}, "request_id": "sim"}),
            "model": (400, {"errors": {"message": "Model not found or not supported for API-Inference."}, "request_id": "sim"}),
            "param": (400, {"errors": {"message": "Invalid parameter: temperature"}, "request_id": "sim"}),
            "quota": (429, {"errors": {"message": "You have exceeded today's quota for API-Inference."}, "request_id": "sim"}),
        },
        sampling="[0,1]",
    ),
    "gemini": Vendor(
        prefix="/v1beta/openai",
        errors={
            "auth": (400, _gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")),
            "model": (404, _gemini_error(404, "NOT_FOUND", "models/x is not found for API version v1main, or is not supported for generateContent.")),
            "param": (400, _gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"frequency_penalty\": Cannot find field.")),
            "quota": (429, _gemini_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.")),
        },
        rejects=("frequency_penalty", "presence_penalty"),
    ),
    "xunfei": Vendor(
        prefix="/v1",
        errors={
            "auth": (401, {"message": "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"}),
            "model": (200, {"code": 10404, "message": "domain not found or not authorized", "sid": "sim"}),
            "param": (200, {"code": 10005, "message": "frequency_penalty is not a valid parameter", "sid": "sim"}),
            "quota": (200, {"code": 11200, "message": "AppIdNoAuthError:(11200)auth no license", "sid": "sim"}),
        },
        rejects=("frequency_penalty", "presence_penalty"),
        answer_extra={"code": 0, "message": "Success", "sid": "sim"},
    ),
    # LinkAI's chat API reports errors in OpenAI's shape.
    "linkai": Vendor(
        prefix="/v1",
        errors={
            "auth": (401, openai_error(401, "Invalid API key", "invalid_request_error", "invalid_api_key")),
            "model": (404, openai_error(404, "The model does not exist", "invalid_request_error", "model_not_found")),
            "param": (400, openai_error(400)),
            "quota": (429, openai_error(429, "You have insufficient credits.", "insufficient_quota", "insufficient_quota")),
        },
    ),
    "qianfan": Vendor(
        prefix="/v2",
        errors={
            "auth": (401, {"error": {"code": "invalid_iam_token", "message": "IAM Certification failed", "type": "invalid_request_error"}, "id": "sim"}),
            "model": (400, {"error": {"code": "invalid_model", "message": "model not found, please check the model name", "type": "invalid_request_error"}, "id": "sim"}),
            "param": (400, {"error": {"code": "invalid_argument", "message": "system message is not allowed", "type": "invalid_request_error"}, "id": "sim"}),
            "quota": (400, {"error": {"code": "insufficient_quota", "message": "you have no quota left", "type": "invalid_request_error"}, "id": "sim"}),
        },
    ),
}

class OpenAIServer:
    def __init__(self, api_keys: tuple[str, ...] | set[str] = (DEFAULT_KEY,), stream: bool = True, models: list[str] | None = None,
                 vendor: str | None = None):
        self.vendor = VENDORS[vendor] if vendor else None
        self.api_keys = set(api_keys)
        self.stream = stream
        self.models = set(models) if models else None
        self.chunk_size = 3  # characters per streamed delta
        self.requests: list[RecordedRequest] = []
        self._script: deque[_Action] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._images = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "OpenAIServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        """The server's root (an Azure resource endpoint, or a proxy address)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``open_ai_api_base`` (or the vendor's base setting) should be."""
        return self.root_url + (self.vendor.prefix if self.vendor else "/v1")

    # -- scripting
    def push_answer(self, text: str, usage: dict | None = None) -> None:
        self._push(_Action("answer", text=text, usage=usage))

    def push_error(self, status: int, body: Any = None) -> None:
        self._push(_Action("error", status=status, body=body if body is not None else openai_error(status)))

    def push_hang(self, seconds: float) -> None:
        self._push(_Action("hang", seconds=seconds))

    def push_trickle(self, piece: str = ".", every: float = 0.5) -> None:
        """A stream that never ends: one delta with ``piece`` every ``every`` seconds until
        the client goes away or the server stops (per-read timeouts never fire)."""
        self._push(_Action("trickle", text=piece, seconds=every))

    def push_vendor_error(self, kind: str) -> None:
        """The vendor's own answer for ``kind`` ("auth", "model", "param", "quota")."""
        assert self.vendor is not None, "push_vendor_error needs a vendor"
        status, body = self.vendor.errors[kind]
        self._push(_Action("error", status=status, body=body))

    def push_broken_stream(self, text: str) -> None:
        self._push(_Action("broken", text=text))

    def _push(self, action: _Action) -> None:
        with self._lock:
            self._script.append(action)

    def _next_action(self) -> _Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    # -- records
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def image_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/images/generations")]

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_image_url(self) -> str:
        with self._lock:
            self._images += 1
            return f"{self.root_url}/images/{self._images}.png"


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._send_json(404, openai_error(404, f"Invalid URL (GET {self.path})", code=""))

    def do_POST(self) -> None:
        try:
            self._handle_post()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client gave up (timeouts); nothing to answer
        self.close_connection = True

    # -- routing
    def _handle_post(self) -> None:
        server = self.owner
        proxied = self.path.startswith(("http://", "https://"))
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = None
        azure = path.startswith("/openai/deployments/")
        deployment = path.split("/")[3] if azure and len(path.split("/")) > 3 else None
        record = RecordedRequest("POST", path, query, {k.lower(): v for k, v in self.headers.items()}, body, proxied, deployment)
        server._record(record)

        if azure:
            key = self.headers.get("api-key", "")
        else:
            auth = self.headers.get("Authorization", "")
            key = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if server.vendor is not None:
            self._as_vendor(server.vendor, path, key, body)
            return
        if server.api_keys and key not in server.api_keys:
            if azure:
                body401 = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}
            else:
                shown = (key[:3] + "*" * 5 + key[-4:]) if len(key) > 8 else key
                body401 = openai_error(401, f"Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys.")
            self._send_json(401, body401)
            return

        operation = None
        if path in ("/v1/chat/completions", "/chat/completions") or (azure and path.endswith("/chat/completions")):
            operation = "chat"
        elif path in ("/v1/images/generations", "/images/generations") or (azure and path.endswith("/images/generations")):
            operation = "image"
        if operation is None:
            self._send_json(404, openai_error(404, f"Invalid URL (POST {path})", code=""))
            return
        if azure and "api-version" not in query:
            self._send_json(404, {"error": {"code": "404", "message": "Resource not found"}})
            return
        if not isinstance(body, dict):
            self._send_json(400, openai_error(400, "We could not parse the JSON body of your request."))
            return

        action = server._next_action()
        if action is not None and action.kind == "error":
            self._send_raw(action.status, action.body)
            return
        if action is not None and action.kind == "hang":
            deadline = time.monotonic() + action.seconds
            while time.monotonic() < deadline and not server._stopping.is_set():
                time.sleep(0.02)
            action = None
        model = body.get("model")
        if action is None and not azure and server.models is not None and operation == "chat" and model not in server.models:
            self._send_json(404, openai_error(404, f"The model `{model}` does not exist or you do not have access to it."))
            return

        if operation == "image":
            item = {"url": server._next_image_url()}
            if body.get("model") == "dall-e-3":
                item["revised_prompt"] = "A detailed picture of " + str(body.get("prompt"))
            self._send_json(200, {"created": int(time.time()), "data": [item]})
            return

        if action is not None and action.kind == "trickle":
            self._trickle(action, model)
            return
        text = action.text if action is not None else self._echo(body)
        usage = action.usage if action is not None else None
        if action is not None and action.kind == "broken":
            self._stream(text, model, usage, broken=True)
        elif body.get("stream") and server.stream:
            self._stream(text, model, usage)
        else:
            self._send_json(200, self._completion(text, model, usage))

    def _as_vendor(self, vendor: Vendor, path: str, key: str, body: Any) -> None:
        server = self.owner
        if path != vendor.prefix + "/chat/completions":
            self._send_json(404, {"error": {"message": f"no route for {path}"}})
            return
        if server.api_keys and key not in server.api_keys:
            self._send_raw(*vendor.errors["auth"])
            return
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "body is not JSON"}})
            return
        action = server._next_action()
        if action is not None and action.kind == "error":
            self._send_raw(action.status, action.body)
            return
        model = body.get("model")
        if server.models is not None and model not in server.models:
            self._send_raw(*vendor.errors["model"])
            return
        if any(name in body for name in vendor.rejects) or not self._sampling_ok(vendor, body):
            self._send_raw(*vendor.errors["param"])
            return
        text = action.text if action is not None and action.kind == "answer" else self._echo(body)
        usage = action.usage if action is not None else None
        if vendor.think:
            text = "<think>The user wants an answer.</think>\n\n" + text
        if action is not None and action.kind == "broken":
            self._stream(text, model, usage, broken=True)
        elif body.get("stream") and server.stream:
            self._stream(text, model, usage, extra=vendor.answer_extra)
        else:
            self._send_json(200, {**self._completion(text, model, usage), **vendor.answer_extra})

    @staticmethod
    def _sampling_ok(vendor: Vendor, body: dict) -> bool:
        if vendor.sampling is None:
            return True
        interval = vendor.sampling
        low, high = (float(x) for x in interval[1:-1].split(","))
        for name in ("temperature", "top_p"):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, (int, float)):
                return False
            above = value > low if interval[0] == "(" else value >= low
            below = value < high if interval[-1] == ")" else value <= high
            if not (above and below):
                return False
        return True

    @staticmethod
    def _echo(body: dict) -> str:
        messages = body.get("messages") or []
        last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
        content = last.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return f"echo: {content} (messages: {len(messages)})"

    @staticmethod
    def _completion(text: str, model: Any, usage: dict | None) -> dict:
        return {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4), "total_tokens": 10 + max(1, len(text) // 4)},
        }

    # -- writing
    def _send_json(self, status: int, payload: Any) -> None:
        self._send_raw(status, payload)

    def _send_raw(self, status: int, payload: Any) -> None:
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            ctype = "application/json"
        else:
            data = str(payload).encode("utf-8")
            ctype = "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        if not text.isascii() and not isinstance(payload, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (a test's "\ud800"): sent as its JSON escape
                text = json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode("utf-8"))

    def _trickle(self, action: _Action, model: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        while True:
            self._event({**base, "choices": [{"index": 0, "delta": {"content": action.text}, "finish_reason": None}]})
            if self.owner._stopping.wait(action.seconds):
                return

    def _stream(self, text: str, model: Any, usage: dict | None, broken: bool = False, extra: dict | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()), "model": model, **(extra or {})}
        self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        size = max(1, self.owner.chunk_size)
        for start in range(0, len(text), size):
            piece = text[start:start + size]
            self._event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        if broken:
            # Half a chunk, then the connection closes: the client sees the
            # chunked body end too early.
            self.wfile.write(b"40\r\ndata: {\"choi")
            self.wfile.flush()
            return
        final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if usage:
            final["usage"] = usage
        self._event(final)
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
