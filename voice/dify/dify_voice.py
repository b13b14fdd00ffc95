"""Speech to text and text to speech through a Dify app (``POST /audio-to-text``, ``/text-to-audio``).

Uses the global ``dify_api_base`` / ``dify_api_key``, read at each call so a changed setting
takes effect without a restart. Differences from the original, on purpose:

* Speech to text sends the file in a format Dify takes, with the matching mimetype: WAV, AMR,
  MP3, M4A and WebM as they are, SILK (WeChat / WeCom voice) decoded to WAV first. The
  original turned everything into MP3 through pydub/ffmpeg, which a plain Windows PC lacks, and
  labelled every upload ``audio/mp3``.
* Both calls send a ``user`` (the caller's id when given, else ``"voice"``) through the shared
  Dify client (bot/dify/dify_client.py): pooled connections, the ``dify_connect_timeout`` /
  ``dify_read_timeout`` timeouts (the original had none and could hang a worker) and the same
  retries of 429, 5xx and connection failures as chat.
* Text to speech checks the status and the content type before writing anything: the original
  wrote Dify's JSON error body into the ``.mp3`` it then sent as a voice message.
* Neither method raises: every failure (HTTP error, refused connection, timeout, unreadable or
  unsupported audio) is an ERROR reply with a short text saying what to do, and the details,
  key masked, go to the log. ``dify_error_reply``, when set, replaces the text as for chat.
"""
from __future__ import annotations

import os
import re

from bot.dify.dify_client import DEFAULT_API_BASE, get_client
from bot.dify.errors import DifyConnectionError, DifyError, DifyTimeout
from bridge.bridge import in_language, is_chinese
from bridge.reply import Reply, ReplyType
from common.log import logger
from common.masking import mask_secret, mask_urls
from common.tmp_dir import UNWRITABLE_TEXT, is_tmp_write_error, unique_tmp_path
from config import conf
from voice.audio_convert import audio_format, audio_format_of_bytes, any_to_wav
from voice.voice import Voice

DEFAULT_USER = "voice"

# audio_format() name -> (mimetype, extension) for the upload. Dify checks the part's
# mimetype against audio/{mp3,mp4,mpeg,mpga,m4a,wav,webm,amr}; newer servers check against
# mp3/m4a/wav/webm/amr(/ogg) only, so the names below are the ones every version accepts.
UPLOAD_TYPES: dict[str, tuple[str, str]] = {
    "wav": ("audio/wav", ".wav"),
    "amr": ("audio/amr", ".amr"),
    "mp3": ("audio/mp3", ".mp3"),
    "m4a": ("audio/m4a", ".m4a"),
    "webm": ("audio/webm", ".webm"),
    "ogg": ("audio/ogg", ".ogg"),  # newer servers only; older ones answer 415
}

# Content type of a text-to-audio answer -> extension of the file written.
_AUDIO_SUFFIXES = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/opus": ".ogg",
    "audio/amr": ".amr",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
    "audio/m4a": ".m4a",
    "audio/webm": ".webm",
    "audio/flac": ".flac",
}
_FORMAT_SUFFIXES = {"mp3": ".mp3", "wav": ".wav", "amr": ".amr", "m4a": ".m4a", "webm": ".webm",
                    "ogg": ".ogg", "flac": ".flac", "aac": ".aac"}
_BINARY_TYPES = ("application/octet-stream", "binary/octet-stream")

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

STT, TTS = "stt", "tts"

# (operation or None for both, kind) -> (Chinese, English)
_TEXTS: dict[tuple[str | None, str], tuple[str, str]] = {
    (None, "no_key"): ("未配置 dify_api_key，无法使用 Dify 语音服务。", "dify_api_key is not set, so Dify speech cannot be used."),
    (None, "config"): ("Dify 拒绝了请求，请检查配置 dify_api_key 和 dify_api_base。",
                       "Dify refused the request: check the dify_api_key and dify_api_base settings."),
    (None, "unreachable"): ("无法连接 Dify 服务，请检查 dify_api_base 或稍后再试。",
                            "Cannot reach the Dify service: check dify_api_base or try again later."),
    (None, "timeout"): ("Dify 服务响应超时，请稍后再试。", "The Dify service did not answer in time. Please try again later."),
    (None, "busy"): ("Dify 服务繁忙，请稍后再试。", "The Dify service is busy. Please try again later."),
    (STT, "disabled"): ("Dify 应用未开启语音转文字功能。", "Speech to text is not enabled in the Dify app."),
    (TTS, "disabled"): ("Dify 应用未开启文字转语音功能。", "Text to speech is not enabled in the Dify app."),
    (STT, "format"): ("不支持这种语音格式。", "This audio format is not supported."),
    (STT, "too_large"): ("语音太长了，请发一段短一些的语音。", "The voice message is too long. Please send a shorter one."),
    (STT, "no_file"): ("找不到语音文件，请重新发送。", "The voice file could not be read. Please send it again."),
    (STT, "empty"): ("没有听清您说的话，请再说一遍。", "No words were recognised. Please try again."),
    (TTS, "empty"): ("没有可以朗读的文字。", "There is no text to read out."),
    (STT, "failed"): ("语音识别失败，请稍后再试。", "Speech recognition failed. Please try again later."),
    (TTS, "failed"): ("语音合成失败，请稍后再试。", "Text to speech failed. Please try again later."),
}


class DifyVoiceError(Exception):
    """A failed Dify speech call. ``kind`` picks the user text; the message is for the log."""

    def __init__(self, kind: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


def _settings_key() -> str:
    return str(conf().get("dify_api_key") or "").strip()


def _describe() -> str:
    """Where a request went, for the log (the key masked)."""
    key = _settings_key()
    return f"base={mask_urls(conf().get('dify_api_base') or DEFAULT_API_BASE)}, key={mask_secret(key) if key else '<empty>'}"


def _voice_error(e: DifyError) -> DifyVoiceError:
    """The voice kind of a failed call through the shared Dify client."""
    if isinstance(e, DifyTimeout):
        kind = "timeout"
    elif isinstance(e, DifyConnectionError):
        kind = "unreachable"
    elif e.status == 400 and "not enabled" in e.message.lower():
        kind = "disabled"
    elif e.status in (401, 403, 404):  # a bad key, a disabled app, or a base URL without /v1
        kind = "config"
    else:
        kind = {413: "too_large", 415: "format", 429: "busy"}.get(e.status, "failed")
    return DifyVoiceError(kind, str(e), e.status or None)


def request_audio_to_text(path: str, filename: str, mimetype: str, user: str) -> str:
    """``POST /audio-to-text`` through the shared client: the transcript of ``path``."""
    try:
        return get_client().audio_to_text(path, user, mime_type=mimetype, filename=filename)
    except DifyError as e:
        raise _voice_error(e) from e


def request_text_to_audio(text: str, user: str) -> tuple[bytes, str]:
    """``POST /text-to-audio`` through the shared client: the audio bytes and the file
    extension that fits them."""
    try:
        audio, content_type = get_client().text_to_audio(text, user)
    except DifyError as e:
        raise _voice_error(e) from e
    content_type = content_type.split(";")[0].strip().lower()
    sniffed = audio_format_of_bytes(audio[:16])
    if content_type.startswith("audio/"):
        return audio, _AUDIO_SUFFIXES.get(content_type) or _FORMAT_SUFFIXES.get(sniffed or "", ".mp3")
    if content_type in _BINARY_TYPES or (not content_type and sniffed):
        return audio, _FORMAT_SUFFIXES.get(sniffed or "", ".mp3")
    # An error page with a 2xx status is not speech (the client already refuses JSON and text).
    raise DifyVoiceError("failed", f"text-to-audio answered {content_type or 'no content type'}, not audio: {audio[:200]!r}")


def _upload_name(path: str, extension: str) -> str:
    """A plain ASCII file name with the extension that matches the content."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return (stem if _SAFE_NAME.fullmatch(stem) else "voice") + extension


def _remove(path: str | None) -> None:
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def user_text(operation: str, kind: str, chinese: bool | None) -> str:
    """The text of an ERROR reply; ``chinese=None`` gives both languages."""
    custom = conf().get("dify_error_reply")
    if custom:
        return str(custom)
    zh, en = _TEXTS.get((operation, kind)) or _TEXTS.get((None, kind)) or _TEXTS[(operation, "failed")]
    return in_language(zh, en, chinese)


class DifyVoice(Voice):
    """Dify's speech endpoints as a voice engine. Method names are the original's."""

    def voiceToText(self, voice_file: str, user: str | None = None) -> Reply:
        """Transcribe ``voice_file``; TEXT with the words, or ERROR. Never raises.

        The language of the speaker is unknown until it is transcribed, so error texts carry
        both Chinese and English, as the Bridge's own do.
        """
        converted: str | None = None
        try:
            if not _settings_key():
                raise DifyVoiceError("no_key", "dify_api_key is empty")
            try:
                fmt = audio_format(voice_file)
            except OSError as e:
                raise DifyVoiceError("no_file", f"cannot read {voice_file}: {e}") from e
            upload_path = voice_file
            if fmt == "silk":
                converted = unique_tmp_path(".wav")
                try:
                    any_to_wav(voice_file, converted)
                except (ValueError, OSError) as e:
                    raise DifyVoiceError("format", f"SILK to WAV failed: {e}") from e
                upload_path, fmt = converted, "wav"
            if fmt not in UPLOAD_TYPES:
                raise DifyVoiceError("format", f"{fmt or 'unrecognised'} audio is not accepted by Dify: {voice_file}")
            mimetype, extension = UPLOAD_TYPES[fmt]
            text = request_audio_to_text(upload_path, _upload_name(voice_file, extension), mimetype, str(user or DEFAULT_USER))
        except DifyVoiceError as e:
            logger.error(f"[DifyVoice] voiceToText failed for {voice_file}: {e.detail} ({_describe()})")
            return Reply(ReplyType.ERROR, user_text(STT, e.kind, None))
        except Exception:  # a bug or an OS error: still an ERROR reply, never a dead worker
            logger.exception(f"[DifyVoice] voiceToText failed for {voice_file} ({_describe()})")
            return Reply(ReplyType.ERROR, user_text(STT, "failed", None))
        finally:
            _remove(converted)
        if not text.strip():
            logger.warning(f"[DifyVoice] no words recognised in {voice_file}")
            return Reply(ReplyType.ERROR, user_text(STT, "empty", None))
        logger.info(f"[DifyVoice] voiceToText: {len(text)} characters from {voice_file}")
        logger.debug(f"[DifyVoice] voiceToText text={text!r}")
        return Reply(ReplyType.TEXT, text)

    def textToVoice(self, text: str, user: str | None = None) -> Reply:
        """Synthesize ``text``; VOICE with the path of a new file in tmp/, or ERROR. Never raises.

        Nothing is written unless Dify answered with audio.
        """
        chinese = is_chinese(text)
        path: str | None = None
        try:
            if not isinstance(text, str) or not text.strip():
                raise DifyVoiceError("empty", "no text to synthesize")
            if not _settings_key():
                raise DifyVoiceError("no_key", "dify_api_key is empty")
            audio, suffix = request_text_to_audio(text, str(user or DEFAULT_USER))
            path = unique_tmp_path(suffix)
            with open(path, "wb") as f:
                f.write(audio)
        except DifyVoiceError as e:
            logger.error(f"[DifyVoice] textToVoice failed: {e.detail} ({_describe()})")
            return Reply(ReplyType.ERROR, user_text(TTS, e.kind, chinese))
        except Exception as e:
            _remove(path)  # a half-written file must not be sent later
            if is_tmp_write_error(e):
                logger.error(f"[DifyVoice] textToVoice: tmp/ cannot be written: {e}")
                return Reply(ReplyType.ERROR, UNWRITABLE_TEXT[0] if chinese else UNWRITABLE_TEXT[1])
            logger.exception(f"[DifyVoice] textToVoice failed ({_describe()})")
            return Reply(ReplyType.ERROR, user_text(TTS, "failed", chinese))
        logger.info(f"[DifyVoice] textToVoice wrote {len(audio)} bytes to {path}")
        return Reply(ReplyType.VOICE, path)
