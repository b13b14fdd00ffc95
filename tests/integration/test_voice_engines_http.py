"""The HTTP voice engines (openai, linkai, azure, elevenlabs, google) against the speech simulator,
in-process: what goes over the wire (key, format, fields), the replies, and the error matrix
(no key, wrong key, 429, 500, a malformed answer, a server that is down), each a clear ERROR
reply naming what to check, with the key masked in the log and no file left behind."""
from __future__ import annotations

import os

import pytest

from bridge.reply import ReplyType
from common.masking import mask_secret
from tests.e2e.daemon import free_port
from tests.fakes.audio import make_mp3, make_silk, make_wav
from tests.fakes.speech_server import SpeechServer, engine_settings, sniff_audio
from voice.factory import create_voice

ENGINES = ["openai", "linkai", "azure", "elevenlabs", "google"]
KEY_SETTING = {"openai": "open_ai_api_key", "linkai": "linkai_api_key", "azure": "azure_voice_api_key",
               "elevenlabs": "xi_api_key", "google": "google_voice_api_key"}
WRONG_KEY = "wrong-key-123456789"


@pytest.fixture(scope="module")
def server():
    with SpeechServer() as srv:
        yield srv


@pytest.fixture
def speech(server, settings, tmp_path, monkeypatch):
    """The live config in an empty folder (so tmp/ can be inspected); a fresh request log."""
    monkeypatch.chdir(tmp_path)
    server.reset()
    return server


def point(settings, server, engine, key=None):
    for name, value in engine_settings(server, engine, key).items():
        settings[name] = value


def tmp_files(root) -> list[str]:
    folder = root / "tmp"
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.mark.parametrize("engine", ENGINES)
def test_wechat_silk_is_transcribed(speech, settings, tmp_path, engine):
    point(settings, speech, engine)
    voice = make_silk(str(tmp_path / "voice.silk"), seconds=1.0, tencent=True)
    reply = create_voice(engine).voiceToText(voice)
    assert (reply.type, reply.content) == (ReplyType.TEXT, speech.transcript)
    [request] = speech.requests
    assert request.vendor == engine and request.authorized
    assert request.audio is not None and request.audio.format == "wav"  # SILK decoded: the vendors do not take it
    if engine in ("azure", "google"):  # their sync APIs want 16 kHz mono LINEAR16
        assert (request.audio.rate, request.audio.channels, request.audio.width) == (16000, 1, 2)
    assert abs(request.audio.frames / request.audio.rate - 1.0) < 0.05
    assert tmp_files(tmp_path) == []  # the converted WAV is removed


@pytest.mark.parametrize("engine", ENGINES)
def test_mp3_is_transcribed(speech, settings, tmp_path, engine):
    point(settings, speech, engine)
    reply = create_voice(engine).voiceToText(make_mp3(str(tmp_path / "v.mp3"), frames=20))
    assert (reply.type, reply.content) == (ReplyType.TEXT, speech.transcript)
    [request] = speech.requests
    # Sent as MP3 where the vendor takes files; decoded to 16 kHz WAV where it wants LINEAR16.
    assert request.audio.format == ("wav" if engine in ("azure", "google") else "mp3")


@pytest.mark.parametrize("engine", ENGINES)
def test_text_is_spoken_into_a_real_audio_file(speech, settings, tmp_path, engine):
    point(settings, speech, engine)
    reply = create_voice(engine).textToVoice("你好，世界")
    assert reply.type == ReplyType.VOICE, reply.content
    with open(reply.content, "rb") as f:
        audio = f.read()
    info = sniff_audio(audio)
    assert info is not None
    assert os.path.splitext(reply.content)[1] == {"wav": ".wav", "mp3": ".mp3"}[info.format]
    [request] = speech.requests
    assert request.authorized
    if engine in ("openai", "linkai"):
        assert request.json["input"] == "你好，世界" and request.json["model"] == "tts-1" and request.json["voice"] == "alloy"
    elif engine == "azure":
        assert "zh-CN-XiaoxiaoNeural" in request.body.decode() and "你好，世界" in request.body.decode()
    elif engine == "elevenlabs":
        assert request.path.endswith("/21m00Tcm4TlvDq8ikWAM") and request.json["model_id"] == "eleven_multilingual_v2"
    else:
        assert request.json["input"]["text"] == "你好，世界" and request.json["voice"]["languageCode"] == "cmn-CN"


def test_settings_reach_the_wire(speech, settings, tmp_path):
    point(settings, speech, "openai")
    settings.update(voice_to_text_model="gpt-4o-mini-transcribe", text_to_voice_model="gpt-4o-mini-tts", tts_voice_id="nova")
    create_voice("openai").voiceToText(make_wav(str(tmp_path / "v.wav")))
    create_voice("openai").textToVoice("hello")
    stt, tts = speech.requests
    assert stt.field("model") == "gpt-4o-mini-transcribe" and stt.form["file"].content_type == "audio/wav"
    assert (tts.json["model"], tts.json["voice"]) == ("gpt-4o-mini-tts", "nova")
    point(settings, speech, "linkai")
    settings["linkai_app_code"] = "app-42"
    create_voice("linkai").textToVoice("hello")
    assert speech.requests[-1].json["app_code"] == "app-42"
    point(settings, speech, "azure")
    settings.update(azure_voice_language="en-US", azure_voice_name_en="en-GB-SoniaNeural")
    create_voice("azure").voiceToText(make_wav(str(tmp_path / "v.wav")))
    create_voice("azure").textToVoice("hello <world> & co")
    stt, tts = speech.requests[-2:]
    assert stt.query == {"language": "en-US", "format": "simple"}
    assert b"en-GB-SoniaNeural" in tts.body and b"hello &lt;world&gt; &amp; co" in tts.body


# --- the error matrix ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_key_is_a_clear_answer_and_the_key_is_masked(speech, settings, tmp_path, engine, logs):
    point(settings, speech, engine, key=WRONG_KEY)
    voice = create_voice(engine)
    stt = voice.voiceToText(make_wav(str(tmp_path / "v.wav")))
    tts = voice.textToVoice("你好")
    assert stt.type == ReplyType.ERROR and tts.type == ReplyType.ERROR
    assert KEY_SETTING[engine] in stt.content and "refused" in stt.content  # both languages for STT
    assert tts.content.startswith(voice.ENGINE + " 拒绝了请求") and KEY_SETTING[engine] in tts.content
    assert len(speech.requests) == 2 and not any(r.authorized for r in speech.requests)
    assert WRONG_KEY not in logs.text()
    assert f"{KEY_SETTING[engine]}={mask_secret(WRONG_KEY)}" in logs.text()
    assert tmp_files(tmp_path) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_key_sends_nothing(speech, settings, tmp_path, engine):
    point(settings, speech, engine, key="")
    reply = create_voice(engine).textToVoice("hello")
    assert reply.type == ReplyType.ERROR and f"{KEY_SETTING[engine]} is not set" in reply.content
    assert speech.requests == []


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fault, words", [(429, "busy or out of quota"), (500, "failed"), ("malformed", "failed")])
def test_server_errors_are_clear_answers_and_write_nothing(speech, settings, tmp_path, engine, fault, words, logs):
    point(settings, speech, engine)
    speech.fail(engine, fault, times=2)
    voice = create_voice(engine)
    stt = voice.voiceToText(make_wav(str(tmp_path / "v.wav")))
    tts = voice.textToVoice("hello")
    assert stt.type == ReplyType.ERROR and words in stt.content
    assert tts.type == ReplyType.ERROR and words in tts.content
    assert tmp_files(tmp_path) == []  # no error body saved as audio
    if fault != "malformed":
        assert f"HTTP {fault}" in logs.text() and "injected" in logs.text()  # the vendor's words reach the log


@pytest.mark.parametrize("engine", ENGINES)
def test_a_server_that_is_down_is_a_clear_answer(speech, settings, tmp_path, engine):
    point(settings, speech, engine)
    dead = f"http://127.0.0.1:{free_port()}"
    for name, value in list(settings.items()):
        if isinstance(value, str) and value.startswith(speech.base_url):
            settings[name] = value.replace(speech.base_url, dead)
    reply = create_voice(engine).textToVoice("hello")
    assert reply.type == ReplyType.ERROR and "Cannot reach" in reply.content


@pytest.mark.parametrize("engine", ENGINES)
def test_unreadable_audio_is_refused_before_sending(speech, settings, tmp_path, engine):
    point(settings, speech, engine)
    junk = tmp_path / "voice.bin"
    junk.write_bytes(b"not audio at all" * 10)
    reply = create_voice(engine).voiceToText(str(junk))
    assert reply.type == ReplyType.ERROR and "not supported" in reply.content
    assert speech.requests == []
