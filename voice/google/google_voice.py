"""Google Cloud Speech-to-Text and Text-to-Speech as a speech engine, over their REST APIs.

The original used two unofficial endpoints: ``speech_recognition``'s ``recognize_google`` (the
Chrome web-speech API with a key shared by every user of that library, which Google never
offered for applications and throttles at will) and ``gTTS`` (Google Translate's read-aloud
endpoint, scraped; its last release is from 2024). Neither has a contract, a key of the user's
own or a way to point a test at it, so this engine uses Google's supported APIs instead:

* ``POST {base}/v1/speech:recognize`` (Cloud Speech-to-Text v1, synchronous, up to 60 s) with
  ``config`` ``{encoding: LINEAR16, sampleRateHertz: 16000, languageCode}`` and the audio as
  base64 (16 kHz mono WAV made by voice/http_engine.wav_16k_mono);
* ``POST {base}/v1/text:synthesize`` (Cloud Text-to-Speech v1) answering ``audioContent`` in
  base64 (MP3).

Both take an API key (``google_voice_api_key``, new) in the ``X-Goog-Api-Key`` header, so it
never appears in a URL. ``google_voice_api_base`` (new) replaces both hosts
(``speech.googleapis.com`` / ``texttospeech.googleapis.com``) for a proxy or a test. Start-up
refuses ``google`` without a key and says why (voice/startup_check.py).
"""
from __future__ import annotations

import base64
import binascii

from bridge.bridge import is_chinese
from voice.http_engine import HttpVoice, SpeechError, check_audio, json_body, post, setting, wav_16k_mono

STT_BASE = "https://speech.googleapis.com"
TTS_BASE = "https://texttospeech.googleapis.com"

RETIRED = ("the free Google endpoints the original used (speech_recognition's recognize_google and gTTS) "
           "are unofficial, shared and throttled and are not supported; set google_voice_api_key to a "
           "Google Cloud API key with Speech-to-Text and Text-to-Speech enabled, or choose another engine "
           "(e.g. openai, azure, edge)")


def _base(default: str) -> str:
    return (setting("google_voice_api_base") or default).rstrip("/")


class GoogleVoice(HttpVoice):
    ENGINE = "Google"
    SETTINGS = ("google_voice_api_key", "google_voice_api_base")
    LOGGED = ("google_voice_language",)

    @staticmethod
    def settings_problem(cfg) -> str | None:
        if not str(cfg.get("google_voice_api_key") or "").strip():
            return f"voice engine 'google': {RETIRED}"
        return None

    def transcribe(self, path: str, scratch: list[str]) -> str:
        audio = wav_16k_mono(path, scratch)
        body = {"config": {"encoding": "LINEAR16", "sampleRateHertz": 16000,
                           "languageCode": setting("google_voice_language", "cmn-Hans-CN")},
                "audio": {"content": base64.b64encode(audio).decode("ascii")}}
        response = post(_base(STT_BASE) + "/v1/speech:recognize", self.ENGINE,
                        headers={"X-Goog-Api-Key": self.api_key()}, json=body)
        answer = json_body(response, self.ENGINE)
        results = answer.get("results") or []  # no results: nothing was heard
        try:
            return "".join(str(r["alternatives"][0].get("transcript") or "") for r in results if r.get("alternatives"))
        except (TypeError, KeyError, IndexError, AttributeError):
            raise SpeechError("failed", f"{self.ENGINE}: unexpected answer: {response.text[:200]!r}") from None

    def synthesize(self, text: str) -> tuple[bytes, str]:
        language = "cmn-CN" if is_chinese(text) else "en-US"
        body = {"input": {"text": text}, "voice": {"languageCode": language}, "audioConfig": {"audioEncoding": "MP3"}}
        response = post(_base(TTS_BASE) + "/v1/text:synthesize", self.ENGINE,
                        headers={"X-Goog-Api-Key": self.api_key()}, json=body)
        content = json_body(response, self.ENGINE).get("audioContent")
        try:
            audio = base64.b64decode(content or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise SpeechError("failed", f"{self.ENGINE}: audioContent is not base64: {str(content)[:80]!r}") from None
        return audio, check_audio(audio, self.ENGINE)
