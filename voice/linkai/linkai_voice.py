"""LinkAI's audio endpoints as a speech engine: ``POST {linkai_api_base}/v1/audio/transcriptions``
and ``/v1/audio/speech``, the OpenAI request shapes with a LinkAI key (``linkai_api_key``).

As in the original, text to speech also sends ``linkai_app_code`` (the app whose voice settings
apply), the model ``text_to_voice_model`` and the voice ``tts_voice_id``. The original returned
None on every failure, so the user heard nothing; here a failure is a clear ERROR reply (see
voice/http_engine.py). AMR is sent as it is (LinkAI takes it; the original tried to convert it
to MP3 through ffmpeg first); SILK is decoded to WAV.
"""
from __future__ import annotations

from voice.http_engine import HttpVoice, base_url, setting
from voice.openai.openai_voice import ACCEPTED, speak, transcribe

DEFAULT_API_BASE = "https://api.link-ai.tech"


class LinkAIVoice(HttpVoice):
    ENGINE = "LinkAI"
    SETTINGS = ("linkai_api_key", "linkai_api_base")
    LOGGED = ("voice_to_text_model", "text_to_voice_model", "tts_voice_id", "linkai_app_code")

    def transcribe(self, path: str, scratch: list[str]) -> str:
        url = base_url("linkai_api_base", DEFAULT_API_BASE) + "/v1/audio/transcriptions"
        return transcribe(url, self.api_key(), path, setting("voice_to_text_model", "whisper-1"), self.ENGINE,
                          ACCEPTED + ("amr",), scratch)

    def synthesize(self, text: str) -> tuple[bytes, str]:
        url = base_url("linkai_api_base", DEFAULT_API_BASE) + "/v1/audio/speech"
        payload = {"model": setting("text_to_voice_model", "tts-1"), "input": text,
                   "voice": setting("tts_voice_id", "alloy")}
        if setting("linkai_app_code"):
            payload["app_code"] = setting("linkai_app_code")
        return speak(url, self.api_key(), payload, self.ENGINE)
