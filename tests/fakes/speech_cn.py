"""A loopback simulator of the Chinese cloud speech REST APIs the baidu, ali and tencent voice
engines call, on one ThreadingHTTPServer:

* Baidu: ``POST /oauth/2.0/token`` (client credentials), ``POST /server_api`` (JSON, base64 PCM),
  ``POST /text2audio`` (form);
* Alibaba NLS: ``GET /nls-meta/`` (CreateToken, RPC HMAC-SHA1 signature checked),
  ``POST /stream/v1/asr`` (``X-NLS-Token``, raw PCM), ``POST /stream/v1/tts`` (JSON);
* Tencent Cloud: ``POST /asr/`` and ``POST /tts/`` (API 3.0, TC3-HMAC-SHA256 recomputed).

Each checks the credentials the way the vendor does, checks that recognition got real 16 kHz
16-bit audio (PCM of a plausible length, or a RIFF/WAVE file), records every request, answers
``transcript`` and, for synthesis, a small real MP3. ``fail`` injects one failure per request
kind: ``"server_error"`` (HTTP 500 with an HTML body) or ``"malformed"`` (HTTP 200, not JSON).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import threading
import wave
import io
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.audio import _MP3_FRAME

# The vendors' signatures are recomputed here from their documentation, independently of the
# product's code (voice/ali, voice/tencent), so a mistake there is refused here.


def ali_rpc_signature(params: dict[str, str], secret: str) -> str:
    """Alibaba Cloud RPC signature v1: HMAC-SHA1 keyed by secret + "&" over
    GET&%2F&percent(sorted canonical query)."""
    from urllib.parse import quote

    def enc(value: str) -> str:
        return quote(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

    canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
    to_sign = "GET&" + enc("/") + "&" + enc(canonical)
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def tencent_tc3_signature(secret_key: str, service: str, headers, payload: bytes) -> str:
    """TC3-HMAC-SHA256 over the headers the request names in SignedHeaders."""
    auth = headers.get("Authorization", "")
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    timestamp = int(headers.get("X-TC-Timestamp", "0"))
    day = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip().lower() if name != 'content-type' else headers.get(name, '').strip()}\n"
                                for name in signed.split(";"))
    request = "\n".join(["POST", "/", "", canonical_headers, signed, hashlib.sha256(payload).hexdigest()])
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("TC3" + secret_key).encode()
    for part in (day, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + _MP3_FRAME * 4


class SpeechCnServer:
    def __init__(self, transcript: str = "今天天气怎么样") -> None:
        self.transcript = transcript
        self.baidu_key, self.baidu_secret = "baidu-api-key-123", "baidu-secret-456"
        self.ali_key_id, self.ali_secret, self.ali_app_key = "LTAI-ali-key-id", "ali-secret-789", "ali-app-key"
        self.tencent_id, self.tencent_key = "AKID-tencent-id", "tencent-secret-key"
        self.requests: list[dict[str, Any]] = []
        self.fail: dict[str, str] = {}  # request kind ("baidu_asr", "ali_tts", ...) -> failure
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (expired, or revoked in the console)."""
        with self._lock:
            self._tokens.clear()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["kind"] == kind]

    # --- audio checks ------------------------------------------------------------------------

    @staticmethod
    def _pcm_ok(pcm: bytes) -> bool:
        return len(pcm) >= 3200 and len(pcm) % 2 == 0 and any(pcm[:4000])  # >= 0.1 s, 16-bit, not silence

    @classmethod
    def _wav_ok(cls, data: bytes) -> bool:
        try:
            with wave.open(io.BytesIO(data)) as w:
                return (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1) and cls._pcm_ok(
                    w.readframes(w.getnframes()))
        except (wave.Error, EOFError):
            return False

    # --- vendors -----------------------------------------------------------------------------

    def _new_token(self, prefix: str) -> str:
        self._issued = getattr(self, "_issued", 0) + 1
        token = f"{prefix}-token-{self._issued}"
        self._tokens.add(token)
        return token

    def baidu(self, path: str, query: dict, body: bytes, headers) -> tuple[int, str, bytes]:
        if path == "/oauth/2.0/token":
            if query.get("client_id") != self.baidu_key or query.get("client_secret") != self.baidu_secret:
                return _json(401, {"error": "invalid_client", "error_description": "unknown client id"})
            return _json(200, {"access_token": self._new_token("baidu"), "expires_in": 2592000})
        if path == "/server_api":
            req = json.loads(body)
            if req.get("token") not in self._tokens:
                return _json(200, {"err_no": 3302, "err_msg": "Authentication failed."})
            pcm = base64.b64decode(req.get("speech", ""))
            if req.get("format") != "pcm" or req.get("rate") != 16000 or req.get("len") != len(pcm) or not self._pcm_ok(pcm):
                return _json(200, {"err_no": 3300, "err_msg": "speech quality error."})
            return _json(200, {"err_no": 0, "err_msg": "success.", "corpus_no": "1", "sn": "x", "result": [self.transcript]})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("tok") not in self._tokens:
            return _json(200, {"err_no": 502, "err_msg": "access token invalid or no longer valid", "err_subcode": 16})
        if not form.get("tex"):
            return _json(200, {"err_no": 501, "err_msg": "Invalid param"})
        return 200, "audio/mp3", MP3

    def ali(self, path: str, query: dict, body: bytes, headers) -> tuple[int, str, bytes]:
        if path == "/nls-meta/":
            params = {k: v for k, v in query.items() if k != "Signature"}
            if query.get("AccessKeyId") != self.ali_key_id:
                return _json(404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."})
            if query.get("Signature") != ali_rpc_signature(params, self.ali_secret) or query.get("Action") != "CreateToken":
                return _json(400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."})
            return _json(200, {"Token": {"Id": self._new_token("ali"), "ExpireTime": 4102444800}, "RequestId": "r"})
        if path == "/stream/v1/asr":
            if headers.get("X-NLS-Token") not in self._tokens:
                return _json(401, {"status": 40000001, "message": "Gateway:ACCESS_DENIED:The token is invalid!"})
            if query.get("appkey") != self.ali_app_key:
                return _json(400, {"status": 40020105, "message": "Meta:APPKEY_NOT_EXIST"})
            if query.get("format") != "pcm" or query.get("sample_rate") != "16000" or not self._pcm_ok(body):
                return _json(400, {"status": 40000004, "message": "bad audio"})
            return _json(200, {"task_id": "t", "result": self.transcript, "status": 20000000, "message": "SUCCESS"})
        req = json.loads(body)
        if req.get("token") not in self._tokens:
            return _json(400, {"status": 40000001, "message": "The token is invalid!"})
        if req.get("appkey") != self.ali_app_key:
            return _json(400, {"status": 40020105, "message": "Meta:APPKEY_NOT_EXIST"})
        return 200, "audio/mpeg", MP3

    def tencent(self, path: str, query: dict, body: bytes, headers) -> tuple[int, str, bytes]:
        service = path.strip("/")
        action = headers.get("X-TC-Action", "")
        credential = headers.get("Authorization", "").split("Credential=")[-1].split("/")[0]
        if credential != self.tencent_id:
            return _json(200, {"Response": {"Error": {"Code": "AuthFailure.SecretIdNotFound", "Message": "The SecretId is not found"}, "RequestId": "r"}})
        auth = headers.get("Authorization", "")
        signed = auth.split("SignedHeaders=")[-1].split(",")[0].split(";")
        fresh = abs(time.time() - int(headers.get("X-TC-Timestamp", "0"))) < 300
        if (not auth.startswith(f"TC3-HMAC-SHA256 Credential={self.tencent_id}/") or not {"content-type", "host"} <= set(signed)
                or not fresh or auth.split("Signature=")[-1] != tencent_tc3_signature(self.tencent_key, service, headers, body)):
            return _json(200, {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated."}, "RequestId": "r"}})
        req = json.loads(body)
        if service == "asr" and action == "SentenceRecognition":
            audio = base64.b64decode(req.get("Data", ""))
            if req.get("VoiceFormat") != "wav" or req.get("DataLen") != len(audio) or not self._wav_ok(audio):
                return _json(200, {"Response": {"Error": {"Code": "FailedOperation.ErrorRecognize", "Message": "bad audio"}, "RequestId": "r"}})
            return _json(200, {"Response": {"Result": self.transcript, "AudioDuration": 1000, "RequestId": "r"}})
        if service == "tts" and action == "TextToVoice" and req.get("Text"):
            return _json(200, {"Response": {"Audio": base64.b64encode(MP3).decode(), "SessionId": req.get("SessionId"), "RequestId": "r"}})
        return _json(200, {"Response": {"Error": {"Code": "InvalidAction", "Message": action}, "RequestId": "r"}})

    def route(self, method: str, path: str) -> tuple[str, Any] | None:
        table = {
            "/oauth/2.0/token": ("baidu_token", self.baidu), "/server_api": ("baidu_asr", self.baidu),
            "/text2audio": ("baidu_tts", self.baidu), "/nls-meta/": ("ali_token", self.ali),
            "/stream/v1/asr": ("ali_asr", self.ali), "/stream/v1/tts": ("ali_tts", self.ali),
            "/asr/": ("tencent_asr", self.tencent), "/tts/": ("tencent_tts", self.tencent),
        }
        return table.get(path)

    def __enter__(self) -> "SpeechCnServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = fake.route(self.command, parts.path)
                if found is None:
                    status, ctype, data = 404, "text/plain", b"no such route"
                else:
                    kind, handler = found
                    with fake._lock:
                        fake.requests.append({"kind": kind, "query": query, "body": body, "headers": dict(self.headers)})
                        failure = fake.fail.get(kind)
                    if failure == "server_error":
                        status, ctype, data = 500, "text/html", b"<html>502 Bad Gateway</html>"
                    elif failure == "malformed":
                        status, ctype, data = 200, "application/json", b"{not json"
                    else:
                        try:
                            status, ctype, data = handler(parts.path, query, body, self.headers)
                        except (ValueError, KeyError) as e:
                            status, ctype, data = _json(400, {"error": f"malformed request: {e}"})
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def settings(self) -> dict[str, Any]:
        """Main-config settings pointing the three engines here with the right credentials."""
        base = self.base_url
        return {
            "baidu_api_key": self.baidu_key, "baidu_secret_key": self.baidu_secret, "baidu_app_id": "1",
            "baidu_speech_token_url": base + "/oauth/2.0/token", "baidu_speech_asr_url": base + "/server_api",
            "baidu_speech_tts_url": base + "/text2audio",
            "ali_voice_access_key_id": self.ali_key_id, "ali_voice_access_key_secret": self.ali_secret,
            "ali_voice_app_key": self.ali_app_key, "ali_voice_token_url": base + "/nls-meta/",
            "ali_voice_asr_url": base + "/stream/v1/asr", "ali_voice_tts_url": base + "/stream/v1/tts",
            "tencent_secret_id": self.tencent_id, "tencent_secret_key": self.tencent_key,
            "tencent_asr_endpoint": base + "/asr", "tencent_tts_endpoint": base + "/tts",
        }


def _json(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8")
