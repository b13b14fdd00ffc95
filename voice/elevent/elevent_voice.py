"""ElevenLabs as a speech engine, over its REST API (the module path is the original's,
``voice.elevent.elevent_voice``, so a config naming it keeps working):

* text to speech: ``POST {xi_api_base}/v1/text-to-speech/{xi_voice_id}?output_format=mp3_44100_128``
  with ``{"text", "model_id"}``; the model is ``xi_model_id`` (default ``eleven_multilingual_v2``,
  the one the original used through the ``elevenlabs`` package's retired ``generate``);
* speech to text, which the original did not have (its voiceToText returned nothing):
  ``POST {xi_api_base}/v1/speech-to-text`` with the file and ``model_id`` ``xi_stt_model_id``
  (default ``scribe_v2``; ElevenLabs retired ``scribe_v1`` for new work).

Both authenticate with the ``xi-api-key`` header (``xi_api_key``).
"""
from __future__ import annotations

from urllib.parse import quote

from voice.http_engine import (MIME_TYPES, HttpVoice, SpeechError, audio_answer, base_url, json_body, post,
                               prepare_upload, setting, upload_name)

DEFAULT_API_BASE = "https://api.elevenlabs.io"
ACCEPTED = ("mp3", "wav", "m4a", "ogg", "flac", "webm", "aac")


class ElevenLabsVoice(HttpVoice):
    ENGINE = "ElevenLabs"
    SETTINGS = ("xi_api_key", "xi_voice_id", "xi_api_base")
    LOGGED = ("xi_model_id", "xi_stt_model_id")

    def transcribe(self, path: str, scratch: list[str]) -> str:
        upload, fmt = prepare_upload(path, ACCEPTED, scratch)
        with open(upload, "rb") as f:
            response = post(base_url("xi_api_base", DEFAULT_API_BASE) + "/v1/speech-to-text", self.ENGINE,
                            headers={"xi-api-key": self.api_key()},
                            files={"file": (upload_name(path, fmt), f, MIME_TYPES[fmt][0])},
                            data={"model_id": setting("xi_stt_model_id", "scribe_v2")})
        body = json_body(response, self.ENGINE)
        if not isinstance(body.get("text"), str):
            raise SpeechError("failed", f"{self.ENGINE}: the answer has no text: {response.text[:200]!r}")
        return body["text"]

    def synthesize(self, text: str) -> tuple[bytes, str]:
        voice = setting("xi_voice_id")
        if not voice:
            raise SpeechError("no_key", "xi_voice_id is empty", setting="xi_voice_id")
        url = base_url("xi_api_base", DEFAULT_API_BASE) + f"/v1/text-to-speech/{quote(voice, safe='')}"
        response = post(url, self.ENGINE, params={"output_format": "mp3_44100_128"},
                        headers={"xi-api-key": self.api_key(), "Accept": "audio/mpeg"},
                        json={"text": text, "model_id": setting("xi_model_id", "eleven_multilingual_v2")})
        return audio_answer(response, self.ENGINE, ".mp3")
