"""A small, real HTTP server on 127.0.0.1 speaking Baidu's general translation API.

``POST /api/trans/vip/translate`` (form-encoded or query string) with ``q``, ``from``, ``to``,
``appid``, ``salt``, ``sign``. The sign is checked as Baidu does (``md5(appid + q + salt +
key)``); a wrong one gets ``{"error_code": "54001", "error_msg": "Invalid Sign"}``, an unknown
appid ``52003``. A good request gets one ``trans_result`` item per line of ``q`` with
``dst = "<to>:<src>"``. ``push_error(code)`` makes the next request fail with that code;
``requests`` records every request's form.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class BaiduTranslateServer:
    def __init__(self, appid: str = "2015063000000001", key: str = "12345678") -> None:
        self.appid = appid
        self.key = key
        self.requests: list[dict[str, str]] = []
        self._errors: deque[str] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def push_error(self, code: str) -> None:
        with self._lock:
            self._errors.append(code)

    def answer(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(form)
            scripted = self._errors.popleft() if self._errors else None
        if scripted:
            return {"error_code": scripted, "error_msg": f"scripted error {scripted}"}
        if form.get("appid") != self.appid:
            return {"error_code": "52003", "error_msg": "UNAUTHORIZED USER"}
        expected = hashlib.md5((self.appid + form.get("q", "") + form.get("salt", "") + self.key).encode()).hexdigest()
        if form.get("sign") != expected:
            return {"error_code": "54001", "error_msg": "Invalid Sign"}
        lines = form.get("q", "").split("\n")
        to = form.get("to", "")
        return {
            "from": form.get("from") if form.get("from") != "auto" else "zh",
            "to": to,
            "trans_result": [{"src": line, "dst": f"{to}:{line}"} for line in lines],
        }

    def __enter__(self) -> "BaiduTranslateServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/api/trans/vip/translate":
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                fields = {**parse_qs(parts.query), **parse_qs(body)}
                form = {k: v[0] for k, v in fields.items()}
                data = json.dumps(server.answer(form), ensure_ascii=False).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
