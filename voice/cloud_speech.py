"""What the vendor speech engines (baidu, ali, tencent, xunfei, edge, pytts) share.

Each engine only talks to its vendor: it implements ``transcribe(path, scratch) -> str`` and/or
``synthesize(text) -> (audio bytes, file suffix)`` and raises voice/http_engine's SpeechError
with a ``kind`` when something goes wrong; :class:`VendorVoice` (on voice/http_engine.HttpVoice,
shared with the openai, azure, google... engines) turns that into the voice interface the Bridge
calls: a TEXT or VOICE reply, or an ERROR reply with a short text in the user's language, never
an exception, and the details (keys masked) in the log.

The original read some engines' settings from ``voice/<engine>/config.json``; that file format
keeps working (:func:`engine_file_settings`), and a setting of the main config, when set, wins
over it (as the original did for Ali's ``qwen_access_key_*``).
"""
from __future__ import annotations

import io
import json
import os
import wave
from typing import Any

import requests

from common.log import logger
from common.masking import mask_secret
from config import conf
from voice.http_engine import HttpVoice, SpeechError, wav_16k_mono

VOICE_DIR = os.path.dirname(os.path.abspath(__file__))
ASR_RATE = 16000  # every vendor here recognises 16 kHz mono 16-bit PCM
DEFAULT_TIMEOUT = 30.0

def request_timeout() -> float:
    try:
        return float(conf().get("voice_request_timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT


def engine_file_settings(engine: str, folder: str | None = None) -> dict[str, Any]:
    """The original's ``voice/<engine>/config.json`` as a dict; {} when absent. A file that is
    not a JSON object is reported and ignored (the original crashed the engine)."""
    path = os.path.join(folder or os.path.join(VOICE_DIR, engine), "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        logger.error(f"[{engine}] ignoring {path}: {e}")
        return {}
    if not isinstance(data, dict):
        logger.error(f"[{engine}] ignoring {path}: not a JSON object")
        return {}
    return data


def setting(name: str, file_settings: dict[str, Any], file_key: str, default: Any = "") -> Any:
    """The main config's ``name`` when set, else ``file_key`` of the engine's config.json."""
    value = conf().get(name)
    if value not in (None, ""):
        return value
    value = file_settings.get(file_key)
    return default if value in (None, "") else value


def masked(value: str) -> str:
    return mask_secret(value) if value else "<empty>"


def pcm16k(path: str, scratch: list[str]) -> bytes:
    """``path`` as 16 kHz mono signed 16-bit PCM (SILK, WAV of any rate, MP3 / OGG / FLAC), through
    http_engine.wav_16k_mono; SpeechError ``format`` / ``no_file`` when it cannot be read."""
    with wave.open(io.BytesIO(wav_16k_mono(path, scratch))) as w:
        return w.readframes(w.getnframes())


def http_error(engine: str, e: requests.RequestException) -> SpeechError:
    """A requests failure (no answer at all) as a SpeechError. The vendors here answer errors
    with their own status codes in 4xx/200 bodies, so their calls read the body themselves
    instead of going through http_engine.post."""
    if isinstance(e, requests.Timeout):
        return SpeechError("timeout", f"{engine}: {e}")
    if isinstance(e, requests.ConnectionError):
        return SpeechError("unreachable", f"{engine}: {e}")
    return SpeechError("failed", f"{engine}: {e}")


def json_body(engine: str, response: requests.Response) -> dict:
    """The JSON object of ``response``; SpeechError ``failed`` for anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SpeechError("failed", f"{engine}: HTTP {response.status_code}, not a JSON object: {response.text[:200]!r}")
    return body


class VendorVoice(HttpVoice):
    """An engine of this family on top of voice/http_engine.HttpVoice (the shared replies, texts
    and logging of every speech engine). Credentials may come from several places (a setting,
    the engine's config.json), so ``missing_settings`` says what is missing, and ``api_key``
    is only a "configured?" flag for HttpVoice's no-key answer."""

    NAME = ""  # the engine's name in voice_to_text / text_to_voice
    KEY_SETTINGS = ""  # what to fill in, as the user is told
    CAN_TRANSCRIBE = True
    CAN_SPEAK = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.SETTINGS = (cls.KEY_SETTINGS,) if cls.KEY_SETTINGS else ("-",)

    def missing_settings(self) -> str | None:
        """The settings that must be filled in and are empty, or None."""
        return None

    def api_key(self) -> str:
        return "" if self.missing_settings() else "configured"

    def describe(self) -> str:
        return ""

    @classmethod
    def settings_problem(cls, cfg) -> str | None:
        """Checked at start-up (voice/startup_check.py) when the engine is in use."""
        from voice.startup_check import engines_in_use

        roles = [op for op, name in engines_in_use(cfg).items() if name == cls.NAME]
        if "voice_to_text" in roles and not cls.CAN_TRANSCRIBE:
            return f"voice engine '{cls.NAME}' ({cls.ENGINE}) has no speech recognition: choose another voice_to_text"
        if "text_to_voice" in roles and not cls.CAN_SPEAK:
            return f"voice engine '{cls.NAME}' ({cls.ENGINE}) has no text to speech: choose another text_to_voice"
        from bot.bot_factory import BotNotAvailable

        try:
            missing = cls().missing_settings()
        except BotNotAvailable as e:  # a missing package or system voice: the engine says which
            return str(e)
        return f"voice engine '{cls.NAME}': {missing} is empty" if missing else None
