"""Alibaba Cloud Intelligent Speech Interaction (NLS) (``voice_to_text`` / ``text_to_voice``: ``ali``).

The original's protocol, on the endpoints Alibaba documents today:

* a token from an AccessKey pair: ``CreateToken`` (version 2019-02-28) on ``nls-meta``, a GET
  signed with HMAC-SHA1 (Alibaba's RPC signature), cached until 5 minutes before ``ExpireTime``;
* one-sentence recognition (up to 60 s): ``POST /stream/v1/asr?appkey=...&format=pcm&sample_rate=16000``
  with the ``X-NLS-Token`` header and 16 kHz PCM as the body; ``status`` 20000000 is success;
* synthesis: ``POST /stream/v1/tts`` with a JSON body; audio back on success, JSON on failure.

Settings: the original's ``voice/ali/config.json`` (``app_key``, ``access_key_id``,
``access_key_secret``, ``api_url_voice_to_text``, ``api_url_text_to_voice``), with the main
config's ``qwen_access_key_id`` / ``qwen_access_key_secret`` first for the key pair (as in the
original) and ``ali_voice_*`` settings first for everything (so a single config.json suffices).
Differences from the original, on purpose: synthesis asks for MP3 (the original asked for WAV
but only accepted an ``audio/mpeg`` answer, so it always failed), and the text is not stripped
of every character outside a fixed alphabet (that deleted most punctuation and all emoji-free
non-Latin scripts it did not list).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote

import requests

from common.log import logger
from common.token_cache import TokenCache
from config import conf
from voice.cloud_speech import (VendorVoice, SpeechError, engine_file_settings, http_error, json_body, masked,
                                pcm16k, request_timeout, setting)

TOKEN_URL = "https://nls-meta.cn-shanghai.aliyuncs.com/"
ASR_URL = "https://nls-gateway-cn-shanghai.aliyuncs.com/stream/v1/asr"
TTS_URL = "https://nls-gateway-cn-shanghai.aliyuncs.com/stream/v1/tts"
# The original's config template named this host for recognition; Alibaba documents the
# hyphenated one only.
_OLD_ASR_HOST = "nls-gateway.cn-shanghai.aliyuncs.com"

SUCCESS = 20000000
# NLS status codes: 40000001 the token is invalid or expired, 40020105 the appkey does not exist,
# 40000005 too many requests (quota / concurrency).
TOKEN_REFUSED = {40000001}
APPKEY_WRONG = {40020105, 40020106}
BUSY = {40000005}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba's RPC signature wants it (``~`` kept, space as %20)."""
    return quote(str(value), safe="~")


def sign_rpc(params: dict[str, str], secret: str, method: str = "GET") -> str:
    """The ``Signature`` of an Alibaba Cloud RPC request (HMAC-SHA1 over the sorted query)."""
    query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    digest = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class AliVoice(VendorVoice):
    NAME = "ali"
    ENGINE = "Aliyun"
    KEY_SETTINGS = "app_key / access_key_id / access_key_secret (voice/ali/config.json or ali_voice_*)"

    def __init__(self) -> None:
        self.file_settings = engine_file_settings("ali")
        self._tokens = TokenCache(self._fetch_token, margin=300, label="Aliyun NLS")

    def _get(self, name: str, file_key: str, default: str = "") -> str:
        return str(setting(name, self.file_settings, file_key, default) or "")

    def _key_pair(self) -> tuple[str, str]:
        key_id = str(conf().get("qwen_access_key_id") or "") or self._get("ali_voice_access_key_id", "access_key_id")
        secret = str(conf().get("qwen_access_key_secret") or "") or self._get("ali_voice_access_key_secret", "access_key_secret")
        return key_id, secret

    def _asr_url(self) -> str:
        return self._get("ali_voice_asr_url", "api_url_voice_to_text", ASR_URL)

    def missing_settings(self) -> str | None:
        if not all(self._key_pair()) or not self._get("ali_voice_app_key", "app_key"):
            return "app_key / access_key_id / access_key_secret (voice/ali/config.json or ali_voice_*)"
        return None

    @classmethod
    def settings_problem(cls, cfg) -> str | None:
        url = cls()._asr_url()
        if _OLD_ASR_HOST in url:  # may still answer: a warning, not a stop
            logger.warning(f"[AliVoice] {_OLD_ASR_HOST} (the original's config.json template) is not a documented "
                           f"NLS host; the documented recognition endpoint is {ASR_URL}")
        return super().settings_problem(cfg)

    def describe(self) -> str:
        return f"access_key_id={masked(self._key_pair()[0])}, app_key={masked(self._get('ali_voice_app_key', 'app_key'))}"

    def _app_key(self) -> str:
        app_key = self._get("ali_voice_app_key", "app_key")
        if not app_key:
            raise SpeechError("no_key", "the NLS project app_key is empty")
        return app_key

    def _fetch_token(self) -> tuple[str, float]:
        key_id, secret = self._key_pair()
        if not key_id or not secret:
            raise SpeechError("no_key", "access_key_id or access_key_secret is empty")
        params = {
            "AccessKeyId": key_id, "Action": "CreateToken", "Format": "JSON", "RegionId": "cn-shanghai",
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2019-02-28",
        }
        params["Signature"] = sign_rpc(params, secret)
        try:
            response = requests.get(self._get("ali_voice_token_url", "api_url_token", TOKEN_URL), params=params,
                                    timeout=request_timeout())
        except requests.RequestException as e:
            raise http_error("Aliyun CreateToken", e) from e
        body = json_body("Aliyun CreateToken", response)
        token = body.get("Token") if isinstance(body.get("Token"), dict) else None
        if not token or not token.get("Id"):
            code = str(body.get("Code") or "")
            kind = "config" if response.status_code in (400, 401, 403, 404) and ("AccessKey" in code or "Signature" in code) else "failed"
            raise SpeechError(kind, f"CreateToken refused: HTTP {response.status_code} {code} {body.get('Message', '')}")
        expires = float(token.get("ExpireTime") or 0)
        return str(token["Id"]), max(expires - time.time(), 60.0)

    def _call(self, what: str, call):
        try:
            return self._tokens.use(what, call, lambda e: isinstance(e, SpeechError) and e.kind == "auth_token")
        except SpeechError as e:
            if e.kind == "auth_token":
                raise SpeechError("config", e.detail) from e
            raise

    @staticmethod
    def _failure(what: str, response: requests.Response, body: dict) -> SpeechError:
        status = body.get("status")
        detail = f"{what}: status={status} message={body.get('message')!r} (HTTP {response.status_code})"
        if status in TOKEN_REFUSED:
            return SpeechError("auth_token", detail)
        if status in APPKEY_WRONG:
            return SpeechError("config", detail + ": check app_key")
        if status in BUSY or response.status_code == 429:
            return SpeechError("busy", detail)
        return SpeechError("failed", detail)

    def transcribe(self, path: str, scratch: list[str]) -> str:
        pcm = pcm16k(path, scratch)
        app_key = self._app_key()

        def call(token: str) -> str:
            params = {"appkey": app_key, "format": "pcm", "sample_rate": 16000,
                      "enable_punctuation_prediction": "true", "enable_inverse_text_normalization": "true"}
            try:
                response = requests.post(self._asr_url(), params=params, data=pcm, timeout=request_timeout(),
                                         headers={"X-NLS-Token": token, "Content-Type": "application/octet-stream"})
            except requests.RequestException as e:
                raise http_error("Aliyun ASR", e) from e
            body = json_body("Aliyun ASR", response)
            if body.get("status") == SUCCESS:
                return str(body.get("result") or "")
            raise self._failure("Aliyun ASR", response, body)

        return self._call("asr", call)

    def synthesize(self, text: str) -> tuple[bytes, str]:
        app_key = self._app_key()
        voice = self._get("ali_voice_tts_voice", "voice")

        def call(token: str) -> tuple[bytes, str]:
            payload = {"appkey": app_key, "token": token, "text": text, "format": "mp3", "sample_rate": 16000}
            if voice:
                payload["voice"] = voice
            try:
                response = requests.post(self._get("ali_voice_tts_url", "api_url_text_to_voice", TTS_URL), json=payload,
                                         timeout=request_timeout())
            except requests.RequestException as e:
                raise http_error("Aliyun TTS", e) from e
            if response.status_code == 200 and response.headers.get("Content-Type", "").lower().startswith("audio/"):
                return response.content, ".mp3"
            raise self._failure("Aliyun TTS", response, json_body("Aliyun TTS", response))

        return self._call("tts", call)
