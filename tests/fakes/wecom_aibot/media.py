"""The HTTP side of the simulator: the media host behind callback `url`s (reference §2.4, §4.2) and
the `response_url` endpoint (§3.5), on one ThreadingHTTPServer.

Routes:
  GET  /media/<token>                                  encrypted download; 404 unknown, 403 expired
  POST /cgi-bin/aibot/response?response_code=<code>    once per code within 1 h; always HTTP 200
                                                       with {"errcode", "errmsg"}

response_url answers (the success shape is assumed by the reference, the errors are choices):
  0 ok | 846605 unknown or already used code | 846604 code older than 1 h | 47001 body not a JSON
  object | 40058 missing field | 40008 msgtype other than markdown/template_card, or a template_card
  in a group chat | 45002 markdown over 20480 bytes | 45009 rate limit. A refused POST does not use
  the code up.
"""
from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qs, quote, urlparse

from .crypto import encrypt_media, new_aeskey
from .records import (
    BAD_FRAME,
    INVALID_MSGTYPE,
    INVALID_REQ_ID,
    RATE_LIMITED,
    REQ_ID_EXPIRED,
    fail,
    ok,
)
from .replies import RESPONSE_URL_TYPES, check_body

if TYPE_CHECKING:
    from .server import AibotSimulator

RESPONSE_PATH = "/cgi-bin/aibot/response"
RESPONSE_URL_TTL = 3600
MAX_POST_BYTES = 1 << 20


@dataclass
class Download:
    blob: bytes  # already encrypted
    filename: Optional[str]
    disposition: Optional[str]  # "rfc5987" | "plain" | None
    created_at: float


@dataclass
class ResponseCode:
    bot_id: str
    conv: tuple
    req_id: str
    created_at: float
    used: bool = False


class HttpSide:
    def __init__(self, sim: "AibotSimulator") -> None:
        self.sim = sim
        self.downloads: dict[str, Download] = {}
        self.codes: dict[str, ResponseCode] = {}
        self.fetches: list[tuple[str, int]] = []  # (path, status) of every GET
        self.attempts: list[dict] = []  # every response_url POST: code, body, errcode
        self._aeskeys = 0
        self._files = 0
        self.url = ""
        self._server: Optional[ThreadingHTTPServer] = None

    # --- registration (caller holds sim's lock) --------------------------------------------------
    def add_download(self, data: bytes, filename: Optional[str], now: float) -> tuple[str, str]:
        """(url, aeskey) for one pushed image/file/video; every URL gets its own key."""
        self._aeskeys += 1
        style = self.sim.aeskey_padding
        strip = style == "strip" or (style == "alternate" and self._aeskeys % 2 == 0)
        key, aeskey = new_aeskey(strip)
        disposition = None
        if filename is not None:
            self._files += 1
            style = self.sim.filename_style
            disposition = style if style != "alternate" else ("rfc5987" if self._files % 2 else "plain")
        token = secrets.token_urlsafe(18)
        self.downloads[token] = Download(encrypt_media(key, data), filename, disposition, now)
        return f"{self.url}/media/{token}", aeskey

    def add_response_code(self, bot_id: str, conv: tuple, req_id: str, now: float) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = ResponseCode(bot_id, conv, req_id, now)
        return f"{self.url}{RESPONSE_PATH}?response_code={code}"

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        side = self

        class Handler(_Handler):
            http = side

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll keeps stop() quick (the default is 0.5 s).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="aibot-sim-http",
                         daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- response_url ------------------------------------------------------------------------------
    def response_post(self, code: str, raw: bytes) -> dict:
        sim = self.sim
        with sim._lock:
            now = sim.clock()
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = None
            outcome = self._check_post(code, body, now)
            self.attempts.append({"response_code": code, "body": body if body is not None else raw,
                                  "errcode": outcome.errcode})
            sim._cond.notify_all()
            return {"errcode": outcome.errcode, "errmsg": outcome.errmsg}

    def _check_post(self, code: str, body, now: float):
        sim = self.sim
        entry = self.codes.get(code)
        if entry is None or entry.used:
            return fail(INVALID_REQ_ID, "response_code unknown or already used")
        if now - entry.created_at > RESPONSE_URL_TTL:
            return fail(REQ_ID_EXPIRED, "response_code expired")
        if not isinstance(body, dict):
            return fail(BAD_FRAME, "body is not a JSON object")
        error, _ = check_body(body, RESPONSE_URL_TYPES, lambda kind, media_id: (None, None))
        if error is not None:
            return error
        if body["msgtype"] == "template_card" and entry.conv[1] == "group":
            return fail(INVALID_MSGTYPE, "template_card only in single chats")
        if not sim._chat.allowed(entry.conv, now, sim._limits()):
            return fail(RATE_LIMITED)
        entry.used = True
        sim._chat.count(entry.conv, now)
        sim._response_posts.append(copy.deepcopy(body))
        if body["msgtype"] == "markdown":
            sim._chat.show(entry.conv, ("markdown", body["markdown"]["content"]))
        else:
            sim._chat.show(entry.conv, ("template_card", copy.deepcopy(body["template_card"])))
        return ok()


class _Handler(BaseHTTPRequestHandler):
    http: HttpSide
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # tests read .fetches / .attempts instead of stderr noise

    def _reply(self, status: int, payload: bytes, content_type: str, extra: tuple = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        sim = self.http.sim
        path = urlparse(self.path).path
        token = path[len("/media/"):] if path.startswith("/media/") else None
        with sim._lock:
            item = self.http.downloads.get(token) if token else None
            if item is None:
                status = 404
            elif sim.clock() - item.created_at > sim.media_url_ttl:
                status = 403  # as a signed COS URL past its q-sign-time
            else:
                status = 200
            self.http.fetches.append((path, status))
            delay, trickle = sim.media_delay, sim.media_trickle
        if status != 200:
            self._reply(status, b"<Error><Code>AccessDenied</Code></Error>" if status == 403 else b"not found",
                        "application/xml" if status == 403 else "text/plain")
            return
        if delay:
            time.sleep(delay)
        headers = []
        if item.disposition == "rfc5987":
            headers.append(("Content-Disposition", f"attachment; filename*=UTF-8''{quote(item.filename, safe='')}"))
        elif item.disposition == "plain":
            # Raw UTF-8 bytes in the header, as many servers send them; http.server writes latin-1,
            # so smuggle the bytes through it. Clients must re-decode non-ASCII names.
            raw = item.filename.encode("utf-8").decode("latin-1")
            headers.append(("Content-Disposition", f'attachment; filename="{raw}"'))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(item.blob)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        try:
            if not trickle:
                self.wfile.write(item.blob)
                return
            step = max(1, int(trickle / 20))  # ~20 writes a second at `trickle` bytes/s
            for start in range(0, len(item.blob), step):
                self.wfile.write(item.blob[start:start + step])
                self.wfile.flush()
                time.sleep(step / trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_POST(self) -> None:
        url = urlparse(self.path)
        if url.path != RESPONSE_PATH:
            self._reply(404, b"not found", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_POST_BYTES:
            self._reply(413, b"too large", "text/plain")
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        code = (parse_qs(url.query).get("response_code") or [""])[0]
        answer = self.http.response_post(code, raw)
        self._reply(200, json.dumps(answer).encode(), "application/json")
