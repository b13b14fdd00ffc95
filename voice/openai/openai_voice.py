"""OpenAI's audio API as a speech engine: ``POST /audio/transcriptions`` (Whisper / gpt-4o
transcribe models) and ``POST /audio/speech`` (tts-1, tts-1-hd, gpt-4o-mini-tts).

Called over HTTP with requests, not the ``openai`` package: requirements.txt pins the 0.27 line
for third-party plugins, and these two calls need nothing from it. Settings are the original's:
``open_ai_api_key``, ``open_ai_api_base``, ``text_to_voice_model``, ``tts_voice_id``; the
transcription model is ``voice_to_text_model`` (new; the original always sent ``whisper-1``).
The original wrote whatever came back (an error body too) into the .mp3 it sent, and turned
every failure into one vague sentence; here see voice/http_engine.py.

The LinkAI engine speaks the same two calls (voice/linkai/linkai_voice.py) and reuses them.
"""
from __future__ import annotations

from voice.http_engine import (MIME_TYPES, HttpVoice, SpeechError, audio_answer, base_url, json_body, post,
                               prepare_upload, setting, upload_name)

DEFAULT_API_BASE = "https://api.openai.com/v1"

# The formats the transcription endpoint takes (OpenAI's list: flac, mp3, mp4, mpeg, mpga, m4a,
# ogg, wav, webm). SILK is decoded to WAV first; AMR has no decoder here and is refused.
ACCEPTED = ("flac", "mp3", "m4a", "ogg", "wav", "webm")


def transcribe(url: str, key: str, path: str, model: str, engine: str, accepted: tuple[str, ...],
               scratch: list[str], extra: dict | None = None) -> str:
    """The text of ``path`` from an OpenAI-style ``/audio/transcriptions`` endpoint."""
    upload, fmt = prepare_upload(path, accepted, scratch)
    mimetype = MIME_TYPES[fmt][0]
    data = {"model": model, "response_format": "json", **(extra or {})}
    with open(upload, "rb") as f:
        response = post(url, engine, headers={"Authorization": f"Bearer {key}"},
                        files={"file": (upload_name(path, fmt), f, mimetype)}, data=data)
    body = json_body(response, engine)
    text = body.get("text")
    if not isinstance(text, str):
        raise SpeechError("failed", f"{engine}: the answer has no text: {response.text[:200]!r}")
    return text


def speak(url: str, key: str, payload: dict, engine: str) -> tuple[bytes, str]:
    """The audio for ``payload`` from an OpenAI-style ``/audio/speech`` endpoint."""
    response = post(url, engine, headers={"Authorization": f"Bearer {key}"}, json=payload)
    return audio_answer(response, engine, ".mp3")


class OpenaiVoice(HttpVoice):
    ENGINE = "OpenAI"
    SETTINGS = ("open_ai_api_key", "open_ai_api_base")
    LOGGED = ("voice_to_text_model", "text_to_voice_model", "tts_voice_id")

    def transcribe(self, path: str, scratch: list[str]) -> str:
        url = base_url("open_ai_api_base", DEFAULT_API_BASE) + "/audio/transcriptions"
        return transcribe(url, self.api_key(), path, setting("voice_to_text_model", "whisper-1"), self.ENGINE,
                          ACCEPTED, scratch)

    def synthesize(self, text: str) -> tuple[bytes, str]:
        url = base_url("open_ai_api_base", DEFAULT_API_BASE) + "/audio/speech"
        payload = {"model": setting("text_to_voice_model", "tts-1"), "input": text,
                   "voice": setting("tts_voice_id", "alloy"), "response_format": "mp3"}
        return speak(url, self.api_key(), payload, self.ENGINE)
