"""Azure AI Speech as a speech engine, through its REST APIs rather than the Speech SDK (a
large native package that has no wheel for every platform):

* speech to text: the REST API for short audio, ``POST https://{region}.stt.speech.microsoft.com
  /speech/recognition/conversation/cognitiveservices/v1?language=..&format=simple`` with a
  16 kHz mono PCM WAV body (``Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000``);
  it takes up to 60 s of audio, more than any chat voice message;
* text to speech: ``POST https://{region}.tts.speech.microsoft.com/cognitiveservices/v1`` with
  an SSML body and ``X-Microsoft-OutputFormat: riff-24khz-16bit-mono-pcm`` (a WAV file, which
  voice/audio_convert.py turns into SILK for WeChat without any decoder).

Both authenticate with ``Ocp-Apim-Subscription-Key: {azure_voice_api_key}``. The region is
``azure_voice_region`` as in the original; ``azure_voice_api_base`` (new) replaces both hosts,
for a sovereign cloud, a proxy or a test. The original kept its voice names in
voice/azure/config.json (created on first use); here they are settings: ``azure_voice_name``
for Chinese text, ``azure_voice_name_en`` for any other text, and ``azure_voice_language`` for
recognition.
"""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from bridge.bridge import is_chinese
from voice.http_engine import HttpVoice, SpeechError, audio_answer, json_body, post, setting, wav_16k_mono

OUTPUT_FORMAT = "riff-24khz-16bit-mono-pcm"
# Statuses of a recognition that heard nothing worth returning (the user is asked to repeat).
_NOTHING_HEARD = ("NoMatch", "InitialSilenceTimeout", "BabbleTimeout")


def _host(service: str) -> str:
    base = setting("azure_voice_api_base").rstrip("/")
    if base:
        return base
    region = setting("azure_voice_region", "japaneast")
    return f"https://{region}.{service}.speech.microsoft.com"


def ssml(text: str, voice: str) -> str:
    language = "-".join(voice.split("-")[:2]) or "zh-CN"
    return (f"<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang={quoteattr(language)}>"
            f"<voice name={quoteattr(voice)}>{escape(text)}</voice></speak>")


class AzureVoice(HttpVoice):
    ENGINE = "Azure"
    SETTINGS = ("azure_voice_api_key", "azure_voice_region", "azure_voice_api_base")
    LOGGED = ("azure_voice_language", "azure_voice_name", "azure_voice_name_en")

    def transcribe(self, path: str, scratch: list[str]) -> str:
        audio = wav_16k_mono(path, scratch)
        url = _host("stt") + "/speech/recognition/conversation/cognitiveservices/v1"
        response = post(url, self.ENGINE, params={"language": setting("azure_voice_language", "zh-CN"), "format": "simple"},
                        headers={"Ocp-Apim-Subscription-Key": self.api_key(), "Accept": "application/json",
                                 "Content-Type": "audio/wav; codecs=audio/pcm; samplerate=16000"},
                        data=audio)
        body = json_body(response, self.ENGINE)
        status = body.get("RecognitionStatus")
        if status == "Success":
            return str(body.get("DisplayText") or "")
        if status in _NOTHING_HEARD:
            return ""
        raise SpeechError("failed", f"{self.ENGINE}: recognition status {status!r}: {response.text[:200]!r}")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        voice = setting("azure_voice_name", "zh-CN-XiaoxiaoNeural") if is_chinese(text) \
            else setting("azure_voice_name_en", "en-US-JacobNeural")
        response = post(_host("tts") + "/cognitiveservices/v1", self.ENGINE,
                        headers={"Ocp-Apim-Subscription-Key": self.api_key(),
                                 "Content-Type": "application/ssml+xml", "X-Microsoft-OutputFormat": OUTPUT_FORMAT,
                                 "User-Agent": "dify-on-wechat"},
                        data=ssml(text, voice).encode("utf-8"))
        return audio_answer(response, self.ENGINE, ".wav")
