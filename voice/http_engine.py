"""What the HTTP speech engines (openai, linkai, azure, elevenlabs, google) share.

Each engine only says how to call its vendor (``transcribe`` / ``synthesize``); this module does
the rest the same way for all of them, so a user gets the same kind of answer whichever engine
is configured:

* the audio a chat platform delivers (WeChat / WeCom SILK, WAV, MP3, ...) is turned into a form
  the vendor takes (``prepare_upload``, ``wav_16k_mono``), without ffmpeg;
* every failure (no key, wrong key, quota, server error, timeout, unreadable answer) becomes an
  ERROR reply with a short text naming the setting to check, in both languages for speech to text
  (the speaker's language is unknown until transcribed) and in the text's language for text to
  speech; the log gets the details with the key masked;
* synthesized audio is written to a fresh file in tmp/ only once the vendor answered with audio
  (a JSON error body is never saved as an .mp3 and sent, as the original did).

Neither method raises: a worker never dies on a speech call.
"""
from __future__ import annotations

import io
import json
import os
import re
import wave
from typing import Any

import requests

from bridge.bridge import in_language, is_chinese
from bridge.reply import Reply, ReplyType
from common.log import logger
from common.masking import mask_secret, mask_urls
from common.tmp_dir import UNWRITABLE_TEXT, is_tmp_write_error, unique_tmp_path
from config import conf
from voice.audio_convert import any_to_wav, audio_format, audio_format_of_bytes, wav_to_pcm16_mono
from voice.voice import Voice

STT, TTS = "stt", "tts"

# (connect, read) seconds: a speech call must not hold a worker for ever (the original had none).
TIMEOUT = (10, 120)

# audio_format() name -> (mimetype, extension) for an upload.
MIME_TYPES: dict[str, tuple[str, str]] = {
    "wav": ("audio/wav", ".wav"),
    "mp3": ("audio/mpeg", ".mp3"),
    "m4a": ("audio/mp4", ".m4a"),
    "webm": ("audio/webm", ".webm"),
    "ogg": ("audio/ogg", ".ogg"),
    "flac": ("audio/flac", ".flac"),
    "amr": ("audio/amr", ".amr"),
    "aac": ("audio/aac", ".aac"),
}
_SUFFIXES = {"mp3": ".mp3", "wav": ".wav", "ogg": ".ogg", "flac": ".flac", "aac": ".aac", "m4a": ".m4a",
             "webm": ".webm", "amr": ".amr"}

# (operation or None for both, kind) -> (Chinese, English); "{engine}" and "{settings}" filled in.
_TEXTS: dict[tuple[str | None, str], tuple[str, str]] = {
    (None, "no_key"): ("未配置 {settings}，无法使用 {engine} 语音服务。", "{settings} is not set, so {engine} speech cannot be used."),
    (None, "config"): ("{engine} 拒绝了请求，请检查配置 {settings}。", "{engine} refused the request: check the {settings} settings."),
    (None, "unreachable"): ("无法连接 {engine} 语音服务，请检查 {settings} 或稍后再试。",
                            "Cannot reach the {engine} speech service: check {settings} or try again later."),
    (None, "timeout"): ("{engine} 语音服务响应超时，请稍后再试。", "The {engine} speech service did not answer in time. Please try again later."),
    (None, "busy"): ("{engine} 语音服务繁忙或额度已用完，请稍后再试。", "The {engine} speech service is busy or out of quota. Please try again later."),
    (None, "unsupported"): ("{engine} 不提供这项语音功能。", "{engine} does not offer this speech function."),
    (STT, "format"): ("不支持这种语音格式。", "This audio format is not supported."),
    (STT, "too_large"): ("语音太长了，请发一段短一些的语音。", "The voice message is too long. Please send a shorter one."),
    (STT, "no_file"): ("找不到语音文件，请重新发送。", "The voice file could not be read. Please send it again."),
    (STT, "empty"): ("没有听清您说的话，请再说一遍。", "No words were recognised. Please try again."),
    (TTS, "empty"): ("没有可以朗读的文字。", "There is no text to read out."),
    (STT, "failed"): ("语音识别失败，请稍后再试。", "Speech recognition failed. Please try again later."),
    (TTS, "failed"): ("语音合成失败，请稍后再试。", "Text to speech failed. Please try again later."),
}


class SpeechError(Exception):
    """A failed speech call. ``kind`` picks the user text; the message is for the log."""

    def __init__(self, kind: str, detail: str, status: int | None = None, setting: str = ""):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.setting = setting  # for no_key: the empty setting


def kind_of_status(status: int, body: str = "") -> str:
    """The user-text kind of an HTTP error status (``body``: the answer, for vendors that
    report a bad key with 400, as Google does)."""
    if status in (401, 403) or (status == 400 and re.search(r"api[ _-]?key", body, re.I)):
        return "config"
    if status == 404:  # a base URL without its version path, or an unknown voice / model
        return "config"
    return {413: "too_large", 415: "format", 429: "busy"}.get(status, "failed")


def error_message(response: requests.Response) -> str:
    """The vendor's own words from an error answer (its JSON ``error.message``, ``message``,
    ``detail``...), else the start of the body."""
    text = response.text[:500]
    try:
        body = response.json()
    except ValueError:
        return text.strip() or response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error", "msg"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("status") or json.dumps(value, ensure_ascii=False)
            if value:
                return str(value)
    return text


def post(url: str, engine: str, **kwargs: Any) -> requests.Response:
    """POST with the module's timeouts; connection failures and error statuses become SpeechError."""
    kwargs.setdefault("timeout", TIMEOUT)
    try:
        response = requests.post(url, **kwargs)
    except requests.Timeout as e:
        raise SpeechError("timeout", f"{engine}: {mask_urls(url)} timed out: {e}") from e
    except requests.RequestException as e:
        raise SpeechError("unreachable", f"{engine}: cannot reach {mask_urls(url)}: {e}") from e
    if response.status_code >= 400:
        message = error_message(response)
        raise SpeechError(kind_of_status(response.status_code, message),
                          f"{engine}: {mask_urls(url)} answered HTTP {response.status_code}: {message}",
                          response.status_code)
    return response


def json_body(response: requests.Response, engine: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise SpeechError("failed", f"{engine}: the answer is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise SpeechError("failed", f"{engine}: the answer is not a JSON object: {response.text[:200]!r}")
    return body


def audio_answer(response: requests.Response, engine: str, default_suffix: str = ".mp3") -> tuple[bytes, str]:
    """The audio of a text-to-speech answer and the extension that fits it; a body that is not
    audio (a JSON or HTML error page with a 2xx status) is refused."""
    audio = response.content
    sniffed = audio_format_of_bytes(audio[:16]) if audio else None
    if not sniffed:
        content_type = response.headers.get("Content-Type", "")
        raise SpeechError("failed", f"{engine}: answered {content_type or 'no content type'}, not audio: {audio[:200]!r}")
    return audio, _SUFFIXES.get(sniffed, default_suffix)


def check_audio(audio: bytes, engine: str) -> str:
    """The extension for audio bytes decoded from a JSON answer; SpeechError if they are not audio."""
    sniffed = audio_format_of_bytes(audio[:16]) if audio else None
    if not sniffed:
        raise SpeechError("failed", f"{engine}: the audio in the answer is empty or not audio: {audio[:40]!r}")
    return _SUFFIXES.get(sniffed, ".mp3")


def read_format(path: str) -> str | None:
    try:
        return audio_format(path)
    except OSError as e:
        raise SpeechError("no_file", f"cannot read {path}: {e}") from e


def prepare_upload(path: str, accepted: tuple[str, ...], scratch: list[str]) -> tuple[str, str]:
    """A file the vendor takes, and its format: ``path`` itself when its format is in
    ``accepted``, else SILK decoded to WAV (a scratch file, appended to ``scratch``)."""
    fmt = read_format(path)
    if fmt in accepted:
        return path, fmt
    if fmt == "silk" and "wav" in accepted:
        converted = unique_tmp_path(".wav")
        scratch.append(converted)
        try:
            any_to_wav(path, converted)
        except (ValueError, OSError) as e:
            raise SpeechError("format", f"SILK to WAV failed: {e}") from e
        return converted, "wav"
    raise SpeechError("format", f"{fmt or 'unrecognised'} audio is not accepted: {path}")


def wav_16k_mono(path: str, scratch: list[str]) -> bytes:
    """The audio of ``path`` as a 16 kHz mono 16-bit WAV file (what Azure's short-audio API and
    Google's LINEAR16 take): WAV and SILK through audio_convert, MP3 / OGG / FLAC through miniaudio."""
    fmt = read_format(path)
    try:
        if fmt in ("wav", "silk"):
            wav_path, _ = prepare_upload(path, ("wav",), scratch)
            pcm, rate = wav_to_pcm16_mono(wav_path, [16000])
        elif fmt in ("mp3", "ogg", "flac"):
            import miniaudio

            with open(path, "rb") as f:
                decoded = miniaudio.decode(f.read(), output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1,
                                           sample_rate=16000)
            pcm, rate = decoded.samples.tobytes(), 16000
        else:
            raise SpeechError("format", f"{fmt or 'unrecognised'} audio cannot be converted to 16 kHz WAV: {path}")
    except SpeechError:
        raise
    except Exception as e:  # UnsupportedAudioFormat, ImportError, OSError, miniaudio.DecodeError
        raise SpeechError("format", f"cannot convert {path} to 16 kHz WAV: {e}") from e
    return wav_bytes(pcm, rate)


def wav_bytes(pcm: bytes, rate: int = 16000) -> bytes:
    """A WAV file in memory around 16-bit mono PCM."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


def upload_name(path: str, fmt: str) -> str:
    """A plain ASCII file name with the extension that matches the content."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return (stem if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stem) else "voice") + MIME_TYPES.get(fmt, ("", ".bin"))[1]


def setting(name: str, default: str = "") -> str:
    return str(conf().get(name) or default).strip()


def base_url(name: str, default: str) -> str:
    return setting(name, default).rstrip("/")


def _remove(paths: list[str]) -> None:
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


class HttpVoice(Voice):
    """An engine that calls a vendor over HTTP. Subclasses set ENGINE (the name users see),
    SETTINGS (the settings a refusal points to, key first) and LOGGED (more settings the log
    shows) and implement ``transcribe`` and ``synthesize``; ``api_key`` returns the key (empty:
    the no_key answer, nothing sent)."""

    ENGINE = ""
    SETTINGS: tuple[str, ...] = ()
    LOGGED: tuple[str, ...] = ()

    def api_key(self) -> str:
        return setting(self.SETTINGS[0]) if self.SETTINGS else ""

    def transcribe(self, path: str, scratch: list[str]) -> str:
        raise SpeechError("unsupported", f"{self.ENGINE} has no speech to text")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        raise SpeechError("unsupported", f"{self.ENGINE} has no text to speech")

    # ---- shared behaviour
    def describe(self) -> str:
        """The settings behind a request, for the log (key masked)."""
        parts = []
        for name in self.SETTINGS + self.LOGGED:
            value = setting(name)
            parts.append(f"{name}={mask_secret(value, name) if 'key' in name and value else mask_urls(value) or '<empty>'}")
        return ", ".join(parts)

    def user_text(self, operation: str, kind: str, chinese: bool | None, missing: str = "") -> str:
        zh, en = _TEXTS.get((operation, kind)) or _TEXTS.get((None, kind)) or _TEXTS[(operation, "failed")]
        fill = {"engine": self.ENGINE, "settings": missing or ", ".join(self.SETTINGS)}
        return in_language(zh.format(**fill), en.format(**fill), chinese)

    def voiceToText(self, voice_file: str, user: str | None = None) -> Reply:
        """Transcribe ``voice_file``; TEXT with the words, or ERROR. Never raises."""
        scratch: list[str] = []
        tag = f"[{self.ENGINE}Voice]"
        try:
            if not self.api_key():
                raise SpeechError("no_key", f"{self.SETTINGS[0]} is empty", setting=self.SETTINGS[0])
            text = self.transcribe(voice_file, scratch)
        except SpeechError as e:
            logger.error(f"{tag} voiceToText failed for {voice_file}: {e.detail} ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(STT, e.kind, None, e.setting))
        except Exception:  # a bug or an OS error: still an ERROR reply, never a dead worker
            logger.exception(f"{tag} voiceToText failed for {voice_file} ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(STT, "failed", None))
        finally:
            _remove(scratch)
        if not (text or "").strip():
            logger.warning(f"{tag} no words recognised in {voice_file}")
            return Reply(ReplyType.ERROR, self.user_text(STT, "empty", None))
        logger.info(f"{tag} voiceToText: {len(text)} characters from {voice_file}")
        logger.debug(f"{tag} voiceToText text={text!r}")
        return Reply(ReplyType.TEXT, text)

    def textToVoice(self, text: str, user: str | None = None) -> Reply:
        """Synthesize ``text``; VOICE with the path of a new file in tmp/, or ERROR. Never raises."""
        chinese = is_chinese(text)
        tag = f"[{self.ENGINE}Voice]"
        path: str | None = None
        try:
            if not isinstance(text, str) or not text.strip():
                raise SpeechError("empty", "no text to synthesize")
            if not self.api_key():
                raise SpeechError("no_key", f"{self.SETTINGS[0]} is empty", setting=self.SETTINGS[0])
            audio, suffix = self.synthesize(text)
            path = unique_tmp_path(suffix)
            with open(path, "wb") as f:
                f.write(audio)
        except SpeechError as e:
            logger.error(f"{tag} textToVoice failed: {e.detail} ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(TTS, e.kind, chinese, e.setting))
        except Exception as e:
            if path:
                _remove([path])  # a half-written file must not be sent later
            if is_tmp_write_error(e):
                logger.error(f"{tag} textToVoice: tmp/ cannot be written: {e}")
                return Reply(ReplyType.ERROR, UNWRITABLE_TEXT[0] if chinese else UNWRITABLE_TEXT[1])
            logger.exception(f"{tag} textToVoice failed ({self.describe()})")
            return Reply(ReplyType.ERROR, self.user_text(TTS, "failed", chinese))
        logger.info(f"{tag} textToVoice wrote {len(audio)} bytes to {path}")
        return Reply(ReplyType.VOICE, path)
