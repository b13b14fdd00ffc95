"""Tencent Cloud speech (``voice_to_text`` / ``text_to_voice``: ``tencent``): ASR
``SentenceRecognition`` (2019-06-14) and TTS ``TextToVoice`` (2019-08-23), API 3.0 requests
signed with TC3-HMAC-SHA256, written here so the ``tencentcloud-sdk-python`` package (the
original's) is not needed.

Settings: the original's ``voice/tencent/config.json`` (``secret_id``, ``secret_key``,
``voice_type``), each overridden by ``tencent_secret_id`` / ``tencent_secret_key`` /
``tencent_voice_type`` when set. Differences from the original, on purpose: the audio is sent
as 16 kHz WAV whatever arrived (the original labelled WeChat's SILK as "wav"), the fields
Tencent retired (``ProjectId``, ``SubServiceType``, ``UsrAudioKey``) are not sent, and the
answer's format is MP3, matching the file name (the original asked for the default, WAV, and
saved it as .mp3).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests

from config import conf
from voice.cloud_speech import (VendorVoice, SpeechError, engine_file_settings, http_error, json_body, masked,
                                request_timeout, setting)
from voice.http_engine import wav_16k_mono

ASR_ENDPOINT = "https://asr.tencentcloudapi.com"
TTS_ENDPOINT = "https://tts.tencentcloudapi.com"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"

AUTH_CODES = ("AuthFailure",)  # AuthFailure.SecretIdNotFound, .SignatureFailure, .SignatureExpire, ...
BUSY_CODES = ("RequestLimitExceeded", "LimitExceeded", "ResourceInsufficient", "UnsupportedOperation.PkgExhausted",
              "FailedOperation.ServiceIsolate", "ResourceUnavailable")
FORMAT_CODES = ("FailedOperation.ErrorDownFile", "InvalidParameterValue.ErrorInvalidVoiceFormat",
                "InvalidParameterValue.ErrorInvalidVoicedata", "FailedOperation.ErrorRecognize")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, service: str, host: str, action: str, payload: str,
                      timestamp: int) -> str:
    """The ``Authorization`` header of a Tencent Cloud API 3.0 POST (TC3-HMAC-SHA256), signing
    content-type, host and x-tc-action."""
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    signed_headers = "content-type;host;x-tc-action"
    canonical_request = "\n".join([
        "POST", "/", "",
        f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-tc-action:{action.lower()}\n",
        signed_headers, hashlib.sha256(payload.encode("utf-8")).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    signing_key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    signature = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"


class TencentVoice(VendorVoice):
    NAME = "tencent"
    ENGINE = "Tencent Cloud"
    KEY_SETTINGS = "tencent_secret_id / tencent_secret_key (or voice/tencent/config.json)"

    def __init__(self) -> None:
        self.file_settings = engine_file_settings("tencent")

    def _credentials(self) -> tuple[str, str]:
        secret_id = str(setting("tencent_secret_id", self.file_settings, "secret_id") or "")
        secret_key = str(setting("tencent_secret_key", self.file_settings, "secret_key") or "")
        # The original's template ships these placeholders: treat them as unset.
        if secret_id == "YOUR_SECRET_ID":
            secret_id = ""
        if secret_key == "YOUR_SECRET_KEY":
            secret_key = ""
        if not secret_id or not secret_key:
            raise SpeechError("no_key", "tencent_secret_id or tencent_secret_key is empty")
        return secret_id, secret_key

    def describe(self) -> str:
        return f"secret_id={masked(str(setting('tencent_secret_id', self.file_settings, 'secret_id') or ''))}"

    def missing_settings(self) -> str | None:
        try:
            self._credentials()
        except SpeechError:
            return "tencent_secret_id / tencent_secret_key (or voice/tencent/config.json)"
        return None

    def _request(self, service: str, endpoint: str, action: str, version: str, params: dict) -> dict:
        """POST one API 3.0 action; the ``Response`` object, or SpeechError from its ``Error``."""
        secret_id, secret_key = self._credentials()
        host = urlsplit(endpoint).netloc
        payload = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
        timestamp = int(time.time())
        headers = {
            "Authorization": tc3_authorization(secret_id, secret_key, service, host, action, payload, timestamp),
            "Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": action, "X-TC-Version": version,
            "X-TC-Timestamp": str(timestamp), "X-TC-Region": str(conf().get("tencent_region") or "ap-guangzhou"),
        }
        try:
            response = requests.post(endpoint.rstrip("/") + "/", data=payload.encode("utf-8"), headers=headers,
                                     timeout=request_timeout())
        except requests.RequestException as e:
            raise http_error(f"Tencent {action}", e) from e
        body = json_body(f"Tencent {action}", response).get("Response")
        if not isinstance(body, dict):
            raise SpeechError("failed", f"{action}: HTTP {response.status_code}, no Response object")
        error = body.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code") or "")
            detail = f"{action}: {code} {error.get('Message', '')!r} (RequestId {body.get('RequestId')})"
            if code.startswith(AUTH_CODES):
                raise SpeechError("config", detail)
            if code.startswith(BUSY_CODES):
                raise SpeechError("busy", detail)
            raise SpeechError("format" if code.startswith(FORMAT_CODES) else "failed", detail)
        return body

    def transcribe(self, path: str, scratch: list[str]) -> str:
        audio = wav_16k_mono(path, scratch)
        body = self._request("asr", str(conf().get("tencent_asr_endpoint") or ASR_ENDPOINT), "SentenceRecognition",
                             "2019-06-14", {
                                 "EngSerViceType": str(conf().get("tencent_asr_engine") or "16k_zh"),
                                 "SourceType": 1, "VoiceFormat": "wav",
                                 "Data": base64.b64encode(audio).decode("ascii"), "DataLen": len(audio),
                             })
        return str(body.get("Result") or "")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        try:
            voice_type = int(setting("tencent_voice_type", self.file_settings, "voice_type", 1003))
        except (TypeError, ValueError):
            raise SpeechError("failed", "tencent_voice_type must be a number") from None
        body = self._request("tts", str(conf().get("tencent_tts_endpoint") or TTS_ENDPOINT), "TextToVoice",
                             "2019-08-23", {
                                 "Text": text, "SessionId": uuid.uuid4().hex, "VoiceType": voice_type,
                                 "Codec": "mp3", "SampleRate": 16000, "Volume": 5, "Speed": 0,
                                 "ModelType": 1, "PrimaryLanguage": 1,
                             })
        try:
            audio = base64.b64decode(str(body.get("Audio") or ""), validate=True)
        except ValueError as e:
            raise SpeechError("failed", f"TextToVoice: Audio is not base64: {e}") from e
        return audio, ".mp3"
