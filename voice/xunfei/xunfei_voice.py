"""iFlytek (xfyun) speech (``voice_to_text`` / ``text_to_voice``: ``xunfei``) over its websocket
APIs: streaming dictation (``/v2/iat``) and online synthesis (``/v2/tts``).

Each call opens a websocket to a URL signed with HMAC-SHA256 (``host``, ``date`` and the request
line, keyed by the APISecret, in the ``authorization`` query parameter), sends JSON frames and
reads JSON frames until ``data.status`` is 2.

Settings: the original's ``voice/xunfei/config.json`` (``APPID``, ``APIKey``, ``APISecret``,
``BusinessArgsASR``, ``BusinessArgsTTS``); when the file is absent or a credential is empty,
``xunfei_app_id`` / ``xunfei_api_key`` / ``xunfei_api_secret`` (the same console app's).
``xunfei_asr_url`` / ``xunfei_tts_url`` name the endpoints. Differences from the original, on
purpose: the signature names the host actually connected to (the original signed synthesis
with the dictation host), the audio is converted to 16 kHz PCM first (the original sent the WAV
frames as they were, at whatever rate), calls run in the worker thread with a timeout (no
global state shared by concurrent calls), and an error frame is an error reply, not an empty
transcript or an empty .mp3.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from email.utils import formatdate
from urllib.parse import urlencode, urlsplit

from config import conf
from voice.cloud_speech import VendorVoice, SpeechError, engine_file_settings, masked, pcm16k, request_timeout

ASR_URL = "wss://iat-api.xfyun.cn/v2/iat"
TTS_URL = "wss://tts-api.xfyun.cn/v2/tts"
ASR_DEFAULTS = {"domain": "iat", "language": "zh_cn", "accent": "mandarin", "vad_eos": 10000, "dwa": "wpgs"}
TTS_DEFAULTS = {"aue": "lame", "sfl": 1, "auf": "audio/L16;rate=16000", "vcn": "xiaoyan", "tte": "utf8"}
FRAME_BYTES = 8000  # 250 ms of 16 kHz PCM per frame
FRAME_INTERVAL = 0.04  # iFlytek asks clients not to send faster than about real time x 6

# Error codes: 10105 / 10110 / 11200 / 11201 the app has no right (or no quota left), 10313 the app id is wrong.
AUTH_CODES = {10105, 10313, 11200}
BUSY_CODES = {10110, 11201, 10114}


def signed_url(url: str, api_key: str, api_secret: str, date: str | None = None) -> str:
    """``url`` with iFlytek's ``authorization``, ``date`` and ``host`` query parameters."""
    parts = urlsplit(url)
    date = date or formatdate(usegmt=True)
    origin = f"host: {parts.netloc}\ndate: {date}\nGET {parts.path} HTTP/1.1"
    signature = base64.b64encode(hmac.new(api_secret.encode("utf-8"), origin.encode("utf-8"), hashlib.sha256).digest()).decode()
    authorization = (f'api_key="{api_key}", algorithm="hmac-sha256", headers="host date request-line", '
                     f'signature="{signature}"')
    query = urlencode({"authorization": base64.b64encode(authorization.encode("utf-8")).decode(), "date": date,
                       "host": parts.netloc})
    return f"{url}?{query}"


class XunfeiVoice(VendorVoice):
    NAME = "xunfei"
    ENGINE = "iFlytek"
    KEY_SETTINGS = "APPID / APIKey / APISecret (voice/xunfei/config.json or xunfei_app_id / xunfei_api_key / xunfei_api_secret)"

    def __init__(self) -> None:
        self.file_settings = engine_file_settings("xunfei")

    def _credentials(self) -> tuple[str, str, str]:
        f = self.file_settings
        app_id = str(f.get("APPID") or conf().get("xunfei_app_id") or "")
        api_key = str(f.get("APIKey") or conf().get("xunfei_api_key") or "")
        api_secret = str(f.get("APISecret") or conf().get("xunfei_api_secret") or "")
        if not (app_id and api_key and api_secret):
            raise SpeechError("no_key", "APPID, APIKey or APISecret is empty")
        return app_id, api_key, api_secret

    def describe(self) -> str:
        return f"APIKey={masked(str(self.file_settings.get('APIKey') or conf().get('xunfei_api_key') or ''))}"

    def missing_settings(self) -> str | None:
        try:
            self._credentials()
        except SpeechError:
            return "APPID / APIKey / APISecret (voice/xunfei/config.json or xunfei_app_id / xunfei_api_key / xunfei_api_secret)"
        return None

    def _business(self, key: str, defaults: dict) -> dict:
        value = self.file_settings.get(key)
        return dict(value) if isinstance(value, dict) else dict(defaults)

    def _session(self, url: str, first_frames, on_frame) -> None:
        """Connect to the signed ``url``, send every frame of ``first_frames()`` (a generator of
        dicts, may sleep between them) and hand each answer frame to ``on_frame`` until the
        service says it is done (``data.status`` 2)."""
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        app_id, api_key, api_secret = self._credentials()
        timeout = request_timeout()
        deadline = time.monotonic() + timeout
        try:
            with connect(signed_url(url, api_key, api_secret), open_timeout=timeout, close_timeout=2,
                         max_size=16 * 1024 * 1024) as ws:
                for frame in first_frames(app_id):
                    ws.send(json.dumps(frame))
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SpeechError("timeout", f"no final frame from {url} within {timeout} s")
                    try:
                        message = json.loads(ws.recv(timeout=remaining))
                    except TimeoutError:
                        raise SpeechError("timeout", f"no final frame from {url} within {timeout} s") from None
                    except ValueError as e:
                        raise SpeechError("failed", f"{url} sent a frame that is not JSON: {e}") from e
                    if not isinstance(message, dict):
                        raise SpeechError("failed", f"{url} sent {message!r}")
                    code = message.get("code")
                    if code != 0:
                        detail = f"code={code} message={message.get('message')!r} sid={message.get('sid')}"
                        raise SpeechError("config" if code in AUTH_CODES else "busy" if code in BUSY_CODES else "failed", detail)
                    data = message.get("data") or {}
                    on_frame(data)
                    if data.get("status") == 2:
                        return
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body[:200] if e.response.body else b""
            kind = "config" if status in (401, 403) else "busy" if status == 429 else "failed"
            raise SpeechError(kind, f"{url} refused the connection: HTTP {status} {body!r}") from e
        except TimeoutError as e:
            raise SpeechError("timeout", f"{url}: {e}") from e
        except (OSError, WebSocketException) as e:
            raise SpeechError("unreachable", f"{url}: {type(e).__name__}: {e}") from e

    def transcribe(self, path: str, scratch: list[str]) -> str:
        pcm = pcm16k(path, scratch)
        business = self._business("BusinessArgsASR", ASR_DEFAULTS)

        def frames(app_id: str):
            chunks = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)] or [b""]
            for index, chunk in enumerate(chunks):
                data = {"status": 0 if index == 0 else 1, "format": "audio/L16;rate=16000", "encoding": "raw",
                        "audio": base64.b64encode(chunk).decode("ascii")}
                yield {"common": {"app_id": app_id}, "business": business, "data": data} if index == 0 else {"data": data}
                time.sleep(FRAME_INTERVAL)
            yield {"data": {"status": 2, "format": "audio/L16;rate=16000", "encoding": "raw", "audio": ""}}

        pieces: dict[int, str] = {}  # sn -> text; "dynamic correction" (dwa=wpgs) replaces ranges

        def on_frame(data: dict) -> None:
            result = data.get("result") or {}
            if not isinstance(result, dict):
                return
            words = "".join(cw.get("w", "") for ws in result.get("ws") or [] for cw in ws.get("cw") or [])
            if result.get("pgs") == "rpl" and isinstance(result.get("rg"), list) and len(result["rg"]) == 2:
                for sn in range(int(result["rg"][0]), int(result["rg"][1]) + 1):
                    pieces.pop(sn, None)
            pieces[int(result.get("sn") or 0)] = words

        self._session(str(conf().get("xunfei_asr_url") or ASR_URL), frames, on_frame)
        return "".join(pieces[sn] for sn in sorted(pieces))

    def synthesize(self, text: str) -> tuple[bytes, str]:
        business = self._business("BusinessArgsTTS", TTS_DEFAULTS)
        audio = bytearray()

        def frames(app_id: str):
            yield {"common": {"app_id": app_id}, "business": business,
                   "data": {"status": 2, "text": base64.b64encode(text.encode("utf-8")).decode("ascii")}}

        def on_frame(data: dict) -> None:
            try:
                audio.extend(base64.b64decode(data.get("audio") or "", validate=True))
            except ValueError as e:
                raise SpeechError("failed", f"an audio frame is not base64: {e}") from e

        self._session(str(conf().get("xunfei_tts_url") or TTS_URL), frames, on_frame)
        # aue "lame" is MP3; "raw" is bare 16-bit PCM, which players need wrapped in WAV.
        if business.get("aue") == "raw":
            from voice.http_engine import wav_bytes

            rate = 8000 if "rate=8000" in str(business.get("auf", "")) else 16000
            return wav_bytes(bytes(audio), rate), ".wav"
        return bytes(audio), ".mp3"
