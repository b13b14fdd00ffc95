"""What the vendor speech engines (baidu, ali, tencent, xunfei, edge, pytts) share.

Each engine only talks to its vendor: it implements ``transcribe(path) -> str`` and/or
``synthesize(text) -> (audio bytes, file suffix)`` and raises :class:`SpeechError` with a
``kind`` when something goes wrong. :class:`CloudVoice` turns that into the voice interface
the Bridge calls (``voiceToText`` / ``textToVoice``): a TEXT or VOICE reply on success, an
ERROR reply with a short text in the user's language otherwise, never an exception, and the
details (keys masked) in the log.

The original read some engines' settings from ``voice/<engine>/config.json``; that file format
keeps working (:func:`engine_file_settings`), and a setting of the main config, when set, wins
over it (as the original did for Ali's ``qwen_access_key_*``).
"""
from __future__ import annotations

import json
import os
import wave
import io
from typing import Any

import requests

from bridge.bridge import in_language, is_chinese
from bridge.reply import Reply, ReplyType
from common.log import logger
from common.masking import mask_secret
from common.tmp_dir import UNWRITABLE_TEXT, is_tmp_write_error, unique_tmp_path
from config import conf
from voice.audio_convert import UnsupportedAudioFormat, audio_format, sil_to_wav, wav_to_pcm16_mono
from voice.voice import Voice

VOICE_DIR = os.path.dirname(os.path.abspath(__file__))
ASR_RATE = 16000  # every vendor here recognises 16 kHz mono 16-bit PCM
DEFAULT_TIMEOUT = 30.0

STT, TTS = "stt", "tts"

# (operation or None for both, kind) -> (Chinese, English). {engine} is the engine's label.
_TEXTS: dict[tuple[str | None, str], tuple[str, str]] = {
    (None, "no_key"): ("{engine} 语音服务未配置密钥（{settings}），无法使用。", "{engine} speech is not configured: set {settings}."),
    (None, "auth"): ("{engine} 拒绝了密钥，请检查配置 {settings}。", "{engine} refused the credentials: check {settings}."),
    (None, "unreachable"): ("无法连接 {engine} 语音服务，请稍后再试。", "Cannot reach the {engine} speech service. Please try again later."),
    (None, "timeout"): ("{engine} 语音服务响应超时，请稍后再试。", "The {engine} speech service did not answer in time. Please try again later."),
    (None, "busy"): ("{engine} 语音服务调用量超限或繁忙，请稍后再试。", "The {engine} speech service is busy or over its quota. Please try again later."),
    (None, "unsupported"): ("{engine} 不提供这项语音服务。", "{engine} does not offer this speech service."),
    (None, "engine_missing"): ("{engine} 语音引擎在这台机器上不可用，请联系管理员。", "The {engine} speech engine is not available on this machine; ask the administrator."),
    (STT, "format"): ("不支持这种语音格式。", "This audio format is not supported."),
    (STT, "no_file"): ("找不到语音文件，请重新发送。", "The voice file could not be read. Please send it again."),
    (STT, "empty"): ("没有听清您说的话，请再说一遍。", "No words were recognised. Please try again."),
    (TTS, "empty"): ("没有可以朗读的文字。", "There is no text to read out."),
    (STT, "failed"): ("{engine} 语音识别失败，请稍后再试。", "{engine} speech recognition failed. Please try again later."),
    (TTS, "failed"): ("{engine} 语音合成失败，请稍后再试。", "{engine} text to speech failed. Please try again later."),
}


class SpeechError(Exception):
    """A failed vendor call. ``kind`` picks the user text; the message is for the log."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


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


def pcm16k(path: str) -> bytes:
    """``path`` as 16 kHz mono signed 16-bit PCM: WAV (any rate/width/channels), SILK (WeChat
    voice), and MP3/FLAC/OGG through miniaudio. SpeechError ``format`` / ``no_file`` else."""
    try:
        fmt = audio_format(path)
    except OSError as e:
        raise SpeechError("no_file", f"cannot read {path}: {e}") from e
    try:
        if fmt == "wav":
            return wav_to_pcm16_mono(path, [ASR_RATE])[0]
        if fmt == "silk":
            scratch = unique_tmp_path(".wav")
            try:
                sil_to_wav(path, scratch, ASR_RATE)
                return wav_to_pcm16_mono(scratch, [ASR_RATE])[0]
            finally:
                _remove(scratch)
        from voice.audio_convert import _decode_compressed  # MP3 / FLAC / OGG, no ffmpeg

        return _decode_compressed(path, ASR_RATE)
    except (UnsupportedAudioFormat, ValueError) as e:
        raise SpeechError("format", str(e)) from e


def wav_bytes(pcm: bytes, rate: int = ASR_RATE) -> bytes:
    """A WAV file in memory around 16-bit mono PCM."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buffer.getvalue()


def http_error(engine: str, e: requests.RequestException) -> SpeechError:
    """A requests failure (no answer at all) as a SpeechError."""
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


def _remove(path: str | None) -> None:
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


class CloudVoice(Voice):
    """The voice interface around a vendor's ``transcribe`` / ``synthesize``."""

    label = "speech"  # the vendor's name in user texts and the log
    key_settings = ""  # the settings a user must fill in, named in "no key" / "refused" texts
    can_transcribe = True
    can_speak = True

    @classmethod
    def startup_problem(cls, role: str) -> str | None:
        """A fatal problem for ``role`` ("voice_to_text" / "text_to_voice"), checked at start-up."""
        if role == "voice_to_text" and not cls.can_transcribe:
            return f"{cls.label} has no speech recognition; choose another voice_to_text"
        if role == "text_to_voice" and not cls.can_speak:
            return f"{cls.label} has no text to speech; choose another text_to_voice"
        return None

    @classmethod
    def startup_warning(cls, role: str) -> str | None:
        """Logged at start-up: missing credentials (a plugin or a later config change may
        still supply them, so they do not stop start-up)."""
        try:
            missing = cls().missing_settings()
        except Exception as e:  # the engine cannot even be created: the first call will say why
            return f"{cls.label} cannot be set up: {e}"
        return f"{missing} not set: voice messages will get an error until it is" if missing else None

    def missing_settings(self) -> str | None:
        """The settings that must be filled in and are empty, or None."""
        return None

    def transcribe(self, path: str) -> str:
        raise SpeechError("unsupported", f"{self.label} has no speech recognition")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        raise SpeechError("unsupported", f"{self.label} has no text to speech")

    def describe(self) -> str:
        """Where requests go and which key, masked, for the log."""
        return ""

    def user_text(self, operation: str, kind: str, chinese: bool | None) -> str:
        zh, en = _TEXTS.get((operation, kind)) or _TEXTS.get((None, kind)) or _TEXTS[(operation, "failed")]
        values = {"engine": self.label, "settings": self.key_settings or "its settings"}
        return in_language(zh.format(**values), en.format(**values), chinese)

    def _log_failure(self, operation: str, e: SpeechError) -> None:
        where = self.describe()
        logger.error(f"[{self.label}] {operation} failed ({e.kind}): {e.detail}" + (f" ({where})" if where else ""))

    def voiceToText(self, voice_file: str, user: str | None = None) -> Reply:
        """TEXT with the words of ``voice_file``, or ERROR. Never raises. The speaker's
        language is unknown before transcription: error texts carry both languages."""
        try:
            text = self.transcribe(voice_file)
        except SpeechError as e:
            self._log_failure("voiceToText", e)
            return Reply(ReplyType.ERROR, self.user_text(STT, e.kind, None))
        except Exception:  # a bug: still an ERROR reply, never a dead worker
            logger.exception(f"[{self.label}] voiceToText failed for {voice_file} ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(STT, "failed", None))
        if not text.strip():
            logger.warning(f"[{self.label}] no words recognised in {voice_file}")
            return Reply(ReplyType.ERROR, self.user_text(STT, "empty", None))
        logger.info(f"[{self.label}] voiceToText: {len(text)} characters from {voice_file}")
        return Reply(ReplyType.TEXT, text)

    def textToVoice(self, text: str, user: str | None = None) -> Reply:
        """VOICE with the path of a new audio file in tmp/, or ERROR. Never raises; nothing
        is written unless the vendor answered with audio."""
        chinese = is_chinese(text) if isinstance(text, str) else True
        path: str | None = None
        try:
            if not isinstance(text, str) or not text.strip():
                raise SpeechError("empty", "no text to synthesize")
            audio, suffix = self.synthesize(text)
            if not audio:
                raise SpeechError("failed", "the service answered with no audio")
            path = unique_tmp_path(suffix)
            with open(path, "wb") as f:
                f.write(audio)
        except SpeechError as e:
            self._log_failure("textToVoice", e)
            return Reply(ReplyType.ERROR, self.user_text(TTS, e.kind, chinese))
        except Exception as e:
            _remove(path)  # a half-written file must not be sent later
            if is_tmp_write_error(e):
                logger.error(f"[{self.label}] textToVoice: tmp/ cannot be written: {e}")
                return Reply(ReplyType.ERROR, UNWRITABLE_TEXT[0] if chinese else UNWRITABLE_TEXT[1])
            logger.exception(f"[{self.label}] textToVoice failed ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(TTS, "failed", chinese))
        logger.info(f"[{self.label}] textToVoice wrote {len(audio)} bytes to {path}")
        return Reply(ReplyType.VOICE, path)
