"""Loopback websocket simulators for the iFlytek (xunfei) dictation / synthesis APIs and the
Microsoft Edge read-aloud service that edge-tts speaks, on one ``websockets`` server.

* ``/v2/iat`` and ``/v2/tts``: the handshake URL's ``authorization`` is recomputed from the API
  secret (HMAC-SHA256 over host, date and request line) and a wrong one is refused with HTTP 401
  as iFlytek does; dictation checks the frames carry real 16 kHz PCM and answers ``transcript``
  in two result frames, the second a "dynamic correction" (``pgs: rpl``) of the first; synthesis
  answers a small MP3 in two frames.
* ``/edge/v1``: checks the TrustedClientToken and Sec-MS-GEC query parameters, reads the
  ``speech.config`` and SSML messages and answers ``turn.start``, audio frames and ``turn.end``.

``fail`` injects a failure per kind (``"xunfei_asr"``, ``"xunfei_tts"``, ``"edge"``):
``"server_error"`` (HTTP 500 at the handshake) or ``"error_frame"`` (a frame with a non-zero
``code``; for edge, a frame with an unknown path).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import serve

from tests.fakes.speech_cn import MP3


class SpeechWsServer:
    def __init__(self, transcript: str = "明天会下雨吗") -> None:
        self.transcript = transcript
        self.app_id, self.api_key, self.api_secret = "xf-app-id", "xf-api-key-123", "xf-api-secret-456"
        self.fail: dict[str, str] = {}
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = None

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1]

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["kind"] == kind]

    @staticmethod
    def _kind(path: str) -> str:
        return {"/v2/iat": "xunfei_asr", "/v2/tts": "xunfei_tts", "/edge/v1": "edge"}.get(path, "")

    def _refuse(self, status: int, text: str) -> Response:
        return Response(status, "refused", Headers([("Content-Type", "application/json")]),
                        json.dumps({"message": text}).encode())

    def _check_handshake(self, connection, request) -> Response | None:
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind = self._kind(parts.path)
        with self._lock:
            self.records.append({"kind": kind, "query": query, "frames": []})
        if not kind:
            return self._refuse(404, "no such path")
        if self.fail.get(kind) == "server_error":
            return self._refuse(500, "internal error")
        if kind == "edge":
            if query.get("TrustedClientToken") != "6A5AA1D4EAFF4E9FB37E23D68491D6F4" or len(query.get("Sec-MS-GEC", "")) < 64:
                return self._refuse(403, "forbidden")
            return None
        # iFlytek's check, written from its documentation (not the product's code): the
        # authorization is base64 of api_key="..", algorithm="hmac-sha256", headers="host date
        # request-line", signature="base64(HMAC-SHA256(secret, 'host: H\ndate: D\nGET P HTTP/1.1'))".
        host = request.headers.get("Host", "")
        try:
            fields = dict(part.strip().split("=", 1) for part in
                          base64.b64decode(query.get("authorization", "")).decode().split(","))
        except ValueError:
            return self._refuse(401, "authorization is malformed")
        origin = f"host: {host}\ndate: {query.get('date', '')}\nGET {parts.path} HTTP/1.1"
        digest = base64.b64encode(hmac.new(self.api_secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()
        if (fields.get("api_key") != f'"{self.api_key}"' or fields.get("signature") != f'"{digest}"'
                or fields.get("headers") != '"host date request-line"' or query.get("host") != host):
            return self._refuse(401, "HMAC signature does not match")
        return None

    def _handler(self, ws) -> None:
        kind = self._kind(urlsplit(ws.request.path).path)
        with self._lock:
            record = [r for r in self.records if r["kind"] == kind][-1]
        try:
            if kind == "xunfei_asr":
                self._iat(ws, record)
            elif kind == "xunfei_tts":
                self._tts(ws, record)
            elif kind == "edge":
                self._edge(ws, record)
        except Exception as e:  # a client that hung up: recorded for the test
            record["error"] = repr(e)

    def _iat(self, ws, record) -> None:
        pcm = b""
        while True:
            frame = json.loads(ws.recv(timeout=10))
            record["frames"].append(frame)
            data = frame.get("data", {})
            if len(record["frames"]) == 1 and frame.get("common", {}).get("app_id") != self.app_id:
                ws.send(json.dumps({"code": 10313, "message": "invalid appid", "sid": "s"}))
                return
            pcm += base64.b64decode(data.get("audio", ""))
            if data.get("status") == 2:
                break
        if self.fail.get("xunfei_asr") == "error_frame":
            ws.send(json.dumps({"code": 10110, "message": "licc limit", "sid": "s"}))
            return
        if data.get("format") != "audio/L16;rate=16000" or len(pcm) < 3200 or not any(pcm[:4000]):
            ws.send(json.dumps({"code": 10043, "message": "audio decode error", "sid": "s"}))
            return
        half = len(self.transcript) // 2
        first = {"sn": 1, "ls": False, "pgs": "apd", "ws": [{"cw": [{"w": "错字"}]}]}
        second = {"sn": 2, "ls": True, "pgs": "rpl", "rg": [1, 1],
                  "ws": [{"cw": [{"w": self.transcript[:half]}]}, {"cw": [{"w": self.transcript[half:]}]}]}
        ws.send(json.dumps({"code": 0, "message": "success", "sid": "s", "data": {"status": 1, "result": first}}))
        ws.send(json.dumps({"code": 0, "message": "success", "sid": "s", "data": {"status": 2, "result": second}}))

    def _tts(self, ws, record) -> None:
        frame = json.loads(ws.recv(timeout=10))
        record["frames"].append(frame)
        record["text"] = base64.b64decode(frame["data"]["text"]).decode("utf-8")
        if frame.get("common", {}).get("app_id") != self.app_id:
            ws.send(json.dumps({"code": 10313, "message": "invalid appid", "sid": "s"}))
            return
        if self.fail.get("xunfei_tts") == "error_frame":
            ws.send(json.dumps({"code": 10160, "message": "parse request json error", "sid": "s"}))
            return
        half = len(MP3) // 2
        for status, part in ((1, MP3[:half]), (2, MP3[half:])):
            ws.send(json.dumps({"code": 0, "message": "success", "sid": "s",
                                "data": {"audio": base64.b64encode(part).decode(), "status": status, "ced": "1"}}))

    def _edge(self, ws, record) -> None:
        config = ws.recv(timeout=10)
        ssml = ws.recv(timeout=10)
        record["frames"] += [config, ssml]
        if "Path:speech.config" not in config or "Path:ssml" not in ssml:
            return
        request_id = ssml.split("X-RequestId:")[1].split("\r\n")[0]
        record["ssml"] = ssml.split("\r\n\r\n", 1)[1]
        head = f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
        ws.send(head + "Path:turn.start\r\n\r\n{}")
        if self.fail.get("edge") == "error_frame":
            ws.send(head + "Path:nonsense\r\n\r\n{}")
            return
        for part in (MP3[:200], MP3[200:]):
            header = f"X-RequestId:{request_id}\r\nContent-Type:audio/mpeg\r\nPath:audio\r\n".encode()
            ws.send(len(header).to_bytes(2, "big") + header + part)
        ws.send(head + "Path:turn.end\r\n\r\n{}")

    def __enter__(self) -> "SpeechWsServer":
        self._server = serve(self._handler, "127.0.0.1", 0, process_request=self._check_handshake)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()

    def settings(self) -> dict[str, Any]:
        return {
            "xunfei_app_id": self.app_id, "xunfei_api_key": self.api_key, "xunfei_api_secret": self.api_secret,
            "xunfei_asr_url": self.url("/v2/iat"), "xunfei_tts_url": self.url("/v2/tts"),
            "edge_tts_wss_url": self.url("/edge/v1") + "?TrustedClientToken=6A5AA1D4EAFF4E9FB37E23D68491D6F4",
        }
