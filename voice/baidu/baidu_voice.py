"""Baidu speech (``voice_to_text`` / ``text_to_voice``: ``baidu``) over its REST API.

The original went through the ``baidu-aip`` SDK; this talks to the same REST endpoints
directly (no extra package):

* an access token from ``baidu_api_key`` + ``baidu_secret_key`` (OAuth client credentials,
  valid 30 days, kept until shortly before it expires and fetched again when refused);
* recognition: ``POST vop.baidu.com/server_api`` with 16 kHz PCM (base64) and ``baidu_dev_pid``
  (1536 Mandarin, 1537 Mandarin only, 1737 English, 1637 Cantonese, 1837 Sichuanese);
* synthesis: ``POST tsn.baidu.com/text2audio``, MP3 back.

Voice parameters (``lang``, ``ctp``, ``spd``, ``pit``, ``vol``, ``per``) come from the original's
``voice/baidu/config.json`` when it exists; the original created that file in the source folder
on first use, this uses the same defaults without writing anything.
"""
from __future__ import annotations

import base64

import requests

from common.token_cache import TokenCache
from config import conf
from voice.cloud_speech import (VendorVoice, SpeechError, engine_file_settings, http_error, json_body, masked,
                                pcm16k, request_timeout)

TOKEN_URL = "https://aip.baidubce.com/oauth/2.0/token"
ASR_URL = "https://vop.baidu.com/server_api"
TTS_URL = "https://tsn.baidu.com/text2audio"
CUID = "dify-on-wechat"  # any stable id of the caller; Baidu uses it for statistics only

FILE_DEFAULTS = {"lang": "zh", "ctp": 1, "spd": 5, "pit": 5, "vol": 5, "per": 0}

# err_no of recognition: the credentials (3302: token invalid / no permission for the dev_pid),
# the quota (3305 "request pv too much"), the audio (3300 params, 3301 quality, 3308-3310 length).
ASR_AUTH = {3302}
ASR_BUSY = {3305}
ASR_FORMAT = {3300, 3301, 3308, 3309, 3310, 3311, 3312}
# err_no / err_subcode of synthesis: 502 token refused, 501/500 bad parameters.
TTS_AUTH = {502}


def _url(name: str, default: str) -> str:
    return str(conf().get(name) or default)


class BaiduVoice(VendorVoice):
    NAME = "baidu"
    ENGINE = "Baidu"
    KEY_SETTINGS = "baidu_api_key / baidu_secret_key"

    def __init__(self) -> None:
        self.file_settings = {**FILE_DEFAULTS, **engine_file_settings("baidu")}
        self._tokens = TokenCache(self._fetch_token, margin=3600, label="Baidu speech")

    def describe(self) -> str:
        return f"api_key={masked(str(conf().get('baidu_api_key') or ''))}"

    def missing_settings(self) -> str | None:
        if not conf().get("baidu_api_key") or not conf().get("baidu_secret_key"):
            return "baidu_api_key / baidu_secret_key"
        return None

    def _fetch_token(self) -> tuple[str, float]:
        key, secret = str(conf().get("baidu_api_key") or ""), str(conf().get("baidu_secret_key") or "")
        if not key or not secret:
            raise SpeechError("no_key", "baidu_api_key or baidu_secret_key is empty")
        try:
            response = requests.post(_url("baidu_speech_token_url", TOKEN_URL), timeout=request_timeout(), params={
                "grant_type": "client_credentials", "client_id": key, "client_secret": secret})
        except requests.RequestException as e:
            raise http_error("Baidu token", e) from e
        body = json_body("Baidu token", response)
        token = body.get("access_token")
        if not token:
            kind = "config" if response.status_code in (400, 401) or "client" in str(body.get("error", "")) else "failed"
            raise SpeechError(kind, f"token refused: HTTP {response.status_code} {body}")
        return str(token), float(body.get("expires_in") or 2592000)

    def _with_token(self, call):
        """``call(token)``, once more with a new token when Baidu refused the cached one."""
        return self._tokens.use("baidu speech", call, lambda e: isinstance(e, SpeechError) and e.kind == "auth_token")

    def transcribe(self, path: str, scratch: list[str]) -> str:
        pcm = pcm16k(path, scratch)
        try:
            dev_pid = int(conf().get("baidu_dev_pid") or 1536)
        except (TypeError, ValueError):
            raise SpeechError("failed", f"baidu_dev_pid must be a number, got {conf().get('baidu_dev_pid')!r}") from None

        def call(token: str) -> str:
            try:
                response = requests.post(_url("baidu_speech_asr_url", ASR_URL), timeout=request_timeout(), json={
                    "format": "pcm", "rate": 16000, "channel": 1, "cuid": CUID, "token": token,
                    "dev_pid": dev_pid, "speech": base64.b64encode(pcm).decode("ascii"), "len": len(pcm)})
            except requests.RequestException as e:
                raise http_error("Baidu ASR", e) from e
            body = json_body("Baidu ASR", response)
            err = body.get("err_no")
            if err == 0:
                result = body.get("result") or []
                return "".join(str(part) for part in result) if isinstance(result, list) else str(result)
            detail = f"err_no={err} err_msg={body.get('err_msg')!r} (HTTP {response.status_code})"
            if err in ASR_AUTH:
                raise SpeechError("auth_token", detail)
            if err in ASR_BUSY:
                raise SpeechError("busy", detail + ": the daily quota is used up or the service is not paid for")
            raise SpeechError("format" if err in ASR_FORMAT else "failed", detail)

        try:
            return self._with_token(call)
        except SpeechError as e:
            if e.kind == "auth_token":  # refused twice: the key has no speech permission
                raise SpeechError("config", e.detail) from e
            raise

    def synthesize(self, text: str) -> tuple[bytes, str]:
        settings = self.file_settings

        def call(token: str) -> tuple[bytes, str]:
            form = {"tex": text, "tok": token, "cuid": CUID, "ctp": settings["ctp"], "lan": settings["lang"],
                    "spd": settings["spd"], "pit": settings["pit"], "vol": settings["vol"], "per": settings["per"],
                    "aue": 3}  # 3 = MP3
            try:
                response = requests.post(_url("baidu_speech_tts_url", TTS_URL), data=form, timeout=request_timeout())
            except requests.RequestException as e:
                raise http_error("Baidu TTS", e) from e
            content_type = response.headers.get("Content-Type", "").lower()
            if response.status_code == 200 and content_type.startswith("audio/"):
                return response.content, ".mp3"
            body = json_body("Baidu TTS", response)
            err = body.get("err_no") or body.get("err_subcode")
            detail = f"err_no={err} err_msg={body.get('err_msg')!r} (HTTP {response.status_code})"
            raise SpeechError("auth_token" if err in TTS_AUTH else "failed", detail)

        try:
            return self._with_token(call)
        except SpeechError as e:
            if e.kind == "auth_token":
                raise SpeechError("config", e.detail) from e
            raise
