"""A speech simulator for the HTTP voice engines: one HTTP server on 127.0.0.1 that speaks the
vendors' speech-to-text and text-to-speech endpoints, each under its own vendor name.

Structure (shared by the helpers that add engines):

* a **vendor** (``add_vendor``) has a name, the key it accepts, how a request carries the key
  (``auth``: a function of the request) and the shape of its error bodies (``error``);
* a **route** (``add_route``) is a method, a path regex and a handler of one vendor; the
  dispatcher finds the route, checks the key (wrong or missing: 401 in the vendor's shape),
  applies an injected fault if one is queued for that vendor, then calls the handler;
* a **handler** gets a ``SpeechRequest`` (method, path, query, headers, body, parsed JSON or
  multipart form) and returns an ``Answer``. Handlers check the audio really arrived in the
  format the vendor expects (``sniff_audio``: a WAV that the stdlib ``wave`` module reads, an
  MP3 / OGG / FLAC header...) and answer ``transcript`` for it; text-to-speech handlers answer a
  real small audio file (``tone_wav`` / ``silent_mp3``);
* the vendors of this file are registered by ``register_builtin`` (openai, linkai, azure,
  elevenlabs, google). Another module adds its own with a function ``register(server)`` passed
  to ``SpeechServer(extra=(register,))`` or ``server.install(register)``.

Tests read ``requests`` (every request, recorded before auth is checked, with the vendor, the
route name and the detected audio format), set ``transcript``, and inject faults with
``fail(vendor, status_or_"malformed", times=1)``: an HTTP status with the vendor's error body,
or ``"malformed"`` (200 with a body that is not what the client expects).
"""
from __future__ import annotations

import base64
import io
import json
import math
import re
import struct
import threading
import wave
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

TRANSCRIPT = "语音里的问题"
DEFAULT_KEYS = {
    "openai": "sk-speech-test",
    "linkai": "Link_speech_test",
    "azure": "azure-speech-key-1",
    "elevenlabs": "xi-speech-test-key",
    "google": "AIza-speech-test-key",
}


# --- audio ------------------------------------------------------------------------------------------------


def tone_wav(seconds: float = 0.3, rate: int = 24000) -> bytes:
    """A mono 16-bit WAV sine tone (what Azure's riff-24khz-16bit-mono-pcm answers)."""
    count = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(count))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def silent_mp3(frames: int = 12) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: an ID3v2.3 tag and silent frames (miniaudio decodes it)."""
    return b"ID3\x03\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + bytes(413)) * frames


@dataclass
class AudioInfo:
    format: str
    channels: int = 0
    rate: int = 0
    width: int = 0
    frames: int = 0


def sniff_audio(data: bytes) -> AudioInfo | None:
    """What audio ``data`` is, checked more than by its first bytes; None if it is not audio."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                info = AudioInfo("wav", w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes())
        except (wave.Error, EOFError):
            return None
        return info if info.frames > 0 else None
    if data[:3] == b"ID3" or (len(data) > 4 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return AudioInfo("mp3") if len(data) > 100 else None
    for magic, name in ((b"OggS", "ogg"), (b"fLaC", "flac"), (b"\x1a\x45\xdf\xa3", "webm")):
        if data.startswith(magic):
            return AudioInfo(name)
    if data[4:8] == b"ftyp":
        return AudioInfo("m4a")
    if data.startswith(b"#!AMR"):
        return AudioInfo("amr")
    return None


# --- requests and answers -----------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class SpeechRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    vendor: str = ""
    route: str = ""
    json: Any = None
    form: dict[str, Part] = field(default_factory=dict)
    audio: AudioInfo | None = None
    authorized: bool = False

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def field(self, name: str) -> str:
        part = self.form.get(name)
        return part.data.decode("utf-8", "replace") if part else ""


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> "Answer":
        return cls(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))


@dataclass
class Vendor:
    name: str
    key: str
    auth: Callable[[SpeechRequest], str]  # the key the request carries
    error: Callable[[int, str], Answer]  # an error answer in the vendor's shape


@dataclass
class Route:
    vendor: str
    name: str
    method: str
    pattern: re.Pattern
    handler: Callable[["SpeechServer", SpeechRequest], Answer]


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    parts: dict[str, Part] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = Part(str(name), part.get_filename(), part.get_content_type(),
                                    part.get_payload(decode=True) or b"")
    return parts


# --- the server ---------------------------------------------------------------------------------------------


class SpeechServer:
    def __init__(self, keys: dict[str, str] | None = None, transcript: str = TRANSCRIPT,
                 extra: tuple[Callable[["SpeechServer"], None], ...] = ()) -> None:
        self.keys = {**DEFAULT_KEYS, **(keys or {})}
        self.transcript = transcript
        self.vendors: dict[str, Vendor] = {}
        self.routes: list[Route] = []
        self.requests: list[SpeechRequest] = []
        self._faults: dict[str, list[int | str]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        register_builtin(self)
        for register in extra:
            register(self)

    # --- structure
    def add_vendor(self, name: str, auth: Callable[[SpeechRequest], str], error: Callable[[int, str], Answer],
                   key: str | None = None) -> None:
        self.vendors[name] = Vendor(name, key if key is not None else self.keys.get(name, f"{name}-test-key"), auth, error)

    def add_route(self, vendor: str, name: str, method: str, path_regex: str,
                  handler: Callable[["SpeechServer", SpeechRequest], Answer]) -> None:
        self.routes.append(Route(vendor, name, method.upper(), re.compile(path_regex), handler))

    def install(self, register: Callable[["SpeechServer"], None]) -> "SpeechServer":
        register(self)
        return self

    # --- scripting
    def fail(self, vendor: str, fault: int | str, times: int = 1) -> None:
        """The next ``times`` authorised requests to ``vendor`` get ``fault``: an HTTP status
        (answered in the vendor's error shape) or ``"malformed"``."""
        with self._lock:
            self._faults.setdefault(vendor, []).extend([fault] * times)

    def reset(self) -> None:
        """Forget recorded requests and queued faults; keys back to the defaults."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            for vendor in self.vendors.values():
                vendor.key = self.keys.get(vendor.name, vendor.key)

    def requests_to(self, vendor: str, route: str | None = None) -> list[SpeechRequest]:
        with self._lock:
            return [r for r in self.requests if r.vendor == vendor and (route is None or r.route == route)]

    def bad_audio(self, req: SpeechRequest, *formats: str) -> Answer | None:
        """An error answer unless the request's audio is one of ``formats``."""
        if req.audio is None or req.audio.format not in formats:
            got = req.audio.format if req.audio else "no audio"
            return self.vendors[req.vendor].error(400, f"expected {'/'.join(formats)} audio, got {got}")
        return None

    # --- lifecycle
    def start(self) -> "SpeechServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                answer = server._dispatch(self)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "SpeechServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- dispatch
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> Answer:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        req = SpeechRequest(handler.command, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()},
                            {k.lower(): v for k, v in handler.headers.items()}, body)
        content_type = req.header("content-type")
        if content_type.startswith("application/json"):
            try:
                req.json = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                req.json = None
        elif content_type.startswith("multipart/form-data"):
            req.form = _parse_multipart(content_type, body)
        route = next((r for r in self.routes if r.method == req.method and r.pattern.fullmatch(req.path)), None)
        if route is None:
            with self._lock:
                self.requests.append(req)
            return Answer.json({"error": {"message": f"no route {req.method} {req.path}"}}, 404)
        req.vendor, req.route = route.vendor, route.name
        vendor = self.vendors[route.vendor]
        req.authorized = vendor.auth(req) == vendor.key
        with self._lock:
            self.requests.append(req)
            fault = self._faults[vendor.name].pop(0) if req.authorized and self._faults.get(vendor.name) else None
        if not req.authorized:
            return vendor.error(401, "invalid API key")
        if fault == "malformed":
            return Answer(200, b'{"truncated": ', "application/json")
        if fault is not None:
            return vendor.error(int(fault), f"injected HTTP {fault}")
        return route.handler(self, req)


# --- the vendors of this file -------------------------------------------------------------------------------


def _bearer(req: SpeechRequest) -> str:
    value = req.header("authorization")
    return value[7:] if value.startswith("Bearer ") else ""


def _openai_error(status: int, message: str) -> Answer:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return Answer.json({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


def _linkai_error(status: int, message: str) -> Answer:
    return Answer.json({"success": False, "code": status, "message": message}, status)


def _azure_error(status: int, message: str) -> Answer:
    # Azure Speech answers a wrong key with an empty 401 body; other errors carry a short text.
    return Answer(status, b"" if status == 401 else message.encode(), "text/plain")


def _elevenlabs_error(status: int, message: str) -> Answer:
    return Answer.json({"detail": {"status": "invalid_api_key" if status == 401 else "error", "message": message}}, status)


def _google_error(status: int, message: str) -> Answer:
    # Google reports an invalid API key as 400 INVALID_ARGUMENT, not 401.
    if status == 401:
        return Answer.json({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                      "status": "INVALID_ARGUMENT"}}, 400)
    state = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "INVALID_ARGUMENT")
    return Answer.json({"error": {"code": status, "message": message, "status": state}}, status)


def _openai_transcription(server: SpeechServer, req: SpeechRequest) -> Answer:
    upload = req.form.get("file")
    req.audio = sniff_audio(upload.data) if upload else None
    if not req.field("model"):
        return server.vendors[req.vendor].error(400, "model is required")
    formats = ("wav", "mp3", "ogg", "flac", "webm", "m4a") + (("amr",) if req.vendor == "linkai" else ())
    return server.bad_audio(req, *formats) or Answer.json({"text": server.transcript})


def _openai_speech(server: SpeechServer, req: SpeechRequest) -> Answer:
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("input") or not body.get("model") or not body.get("voice"):
        return server.vendors[req.vendor].error(400, "input, model and voice are required")
    return Answer(200, silent_mp3(), "audio/mpeg")


def _azure_stt(server: SpeechServer, req: SpeechRequest) -> Answer:
    req.audio = sniff_audio(req.body)
    if not req.query.get("language"):
        return _azure_error(400, "language is required")
    bad = server.bad_audio(req, "wav")
    if bad:
        return bad
    if (req.audio.rate, req.audio.channels, req.audio.width) != (16000, 1, 2) \
            or "samplerate=16000" not in req.header("content-type"):
        return _azure_error(400, "audio must be 16 kHz mono 16-bit PCM, as the content type says")
    return Answer.json({"RecognitionStatus": "Success", "DisplayText": server.transcript, "Offset": 0, "Duration": 10000000})


def _azure_tts(server: SpeechServer, req: SpeechRequest) -> Answer:
    if not req.header("content-type").startswith("application/ssml+xml") or b"<speak" not in req.body \
            or not req.header("x-microsoft-outputformat"):
        return _azure_error(400, "an SSML body and X-Microsoft-OutputFormat are required")
    return Answer(200, tone_wav(), "audio/x-wav")


def _elevenlabs_stt(server: SpeechServer, req: SpeechRequest) -> Answer:
    upload = req.form.get("file")
    req.audio = sniff_audio(upload.data) if upload else None
    if not req.field("model_id"):
        return _elevenlabs_error(422, "model_id is required")
    return server.bad_audio(req, "wav", "mp3", "ogg", "flac", "webm", "m4a") or \
        Answer.json({"language_code": "zho", "language_probability": 0.98, "text": server.transcript, "words": []})


def _elevenlabs_tts(server: SpeechServer, req: SpeechRequest) -> Answer:
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("text"):
        return _elevenlabs_error(422, "text is required")
    return Answer(200, silent_mp3(), "audio/mpeg")


def _google_stt(server: SpeechServer, req: SpeechRequest) -> Answer:
    body = req.json if isinstance(req.json, dict) else {}
    try:
        audio = base64.b64decode(body["audio"]["content"], validate=True)
        config = body["config"]
    except (KeyError, TypeError, ValueError):
        return _google_error(400, "config and audio.content are required")
    req.audio = sniff_audio(audio)
    bad = server.bad_audio(req, "wav")
    if bad:
        return bad
    if config.get("encoding") != "LINEAR16" or config.get("sampleRateHertz") != req.audio.rate \
            or req.audio.width != 2 or not config.get("languageCode"):
        return _google_error(400, "LINEAR16 with the WAV's sample rate and a languageCode are required")
    return Answer.json({"results": [{"alternatives": [{"transcript": server.transcript, "confidence": 0.95}],
                                     "languageCode": config["languageCode"].lower()}]})


def _google_tts(server: SpeechServer, req: SpeechRequest) -> Answer:
    body = req.json if isinstance(req.json, dict) else {}
    if not (body.get("input") or {}).get("text") or not (body.get("voice") or {}).get("languageCode"):
        return _google_error(400, "input.text and voice.languageCode are required")
    return Answer.json({"audioContent": base64.b64encode(silent_mp3()).decode("ascii")})


def register_builtin(server: SpeechServer) -> None:
    """openai, linkai, azure, elevenlabs and google, on the paths their engines call."""
    server.add_vendor("openai", _bearer, _openai_error)
    server.add_route("openai", "transcriptions", "POST", r"/openai/v1/audio/transcriptions", _openai_transcription)
    server.add_route("openai", "speech", "POST", r"/openai/v1/audio/speech", _openai_speech)

    server.add_vendor("linkai", _bearer, _linkai_error)
    server.add_route("linkai", "transcriptions", "POST", r"/linkai/v1/audio/transcriptions", _openai_transcription)
    server.add_route("linkai", "speech", "POST", r"/linkai/v1/audio/speech", _openai_speech)

    server.add_vendor("azure", lambda r: r.header("ocp-apim-subscription-key"), _azure_error)
    server.add_route("azure", "stt", "POST", r"/azure/speech/recognition/conversation/cognitiveservices/v1", _azure_stt)
    server.add_route("azure", "tts", "POST", r"/azure/cognitiveservices/v1", _azure_tts)

    server.add_vendor("elevenlabs", lambda r: r.header("xi-api-key"), _elevenlabs_error)
    server.add_route("elevenlabs", "stt", "POST", r"/elevenlabs/v1/speech-to-text", _elevenlabs_stt)
    server.add_route("elevenlabs", "tts", "POST", r"/elevenlabs/v1/text-to-speech/[^/]+", _elevenlabs_tts)

    server.add_vendor("google", lambda r: r.header("x-goog-api-key"), _google_error)
    server.add_route("google", "stt", "POST", r"/google/v1/speech:recognize", _google_stt)
    server.add_route("google", "tts", "POST", r"/google/v1/text:synthesize", _google_tts)


def engine_settings(server: SpeechServer, engine: str, key: str | None = None) -> dict[str, Any]:
    """The config.json settings that point ``engine`` at ``server`` (``key``: another key, e.g. a wrong one)."""
    base = server.base_url
    k = key if key is not None else server.keys[engine]
    return {
        "openai": {"open_ai_api_key": k, "open_ai_api_base": f"{base}/openai/v1"},
        "linkai": {"linkai_api_key": k, "linkai_api_base": f"{base}/linkai"},
        "azure": {"azure_voice_api_key": k, "azure_voice_api_base": f"{base}/azure"},
        "elevenlabs": {"xi_api_key": k, "xi_voice_id": "21m00Tcm4TlvDq8ikWAM", "xi_api_base": f"{base}/elevenlabs"},
        "google": {"google_voice_api_key": k, "google_voice_api_base": f"{base}/google"},
    }[engine]
