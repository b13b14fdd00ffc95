"""The baidu, ali, tencent, xunfei, edge and pytts voice engines against loopback simulators of
their vendors (tests/fakes/speech_cn.py over HTTP, tests/fakes/speech_ws.py over websockets):
a WeChat voice message (SILK) transcribed, a reply spoken into a real audio file, and a wrong
key, a server error and a malformed answer each an ERROR reply with a clear text and a log
line with the key masked."""
from __future__ import annotations

import logging
import os

import pytest

from bridge.reply import ReplyType
from tests.fakes.audio import make_silk, make_wav
from tests.fakes.speech_cn import MP3, SpeechCnServer
from tests.fakes.speech_ws import SpeechWsServer
from voice.factory import create_voice

HTTP_ENGINES = ("baidu", "ali", "tencent")
WS_ENGINES = ("xunfei",)


@pytest.fixture(scope="module")
def cn():
    with SpeechCnServer() as server:
        yield server


@pytest.fixture(scope="module")
def ws():
    with SpeechWsServer() as server:
        yield server


@pytest.fixture
def speech(cn, ws, settings, tmp_path, monkeypatch):
    """The live config pointed at both simulators, run in an empty folder (tmp/ inspected)."""
    monkeypatch.chdir(tmp_path)
    cn.fail.clear()
    ws.fail.clear()
    settings.update(cn.settings())
    settings.update(ws.settings())
    settings["voice_request_timeout"] = 5
    settings["qwen_access_key_id"] = ""
    settings["qwen_access_key_secret"] = ""
    return cn, ws


@pytest.fixture
def voice_file(tmp_path):
    return make_silk(str(tmp_path / "voice.silk"), seconds=0.6, tencent=True)  # as WeChat delivers it


@pytest.mark.parametrize("engine", HTTP_ENGINES + WS_ENGINES)
def test_a_wechat_voice_message_is_transcribed(speech, engine, voice_file):
    cn, ws = speech
    reply = create_voice(engine).voiceToText(voice_file)
    assert reply.type == ReplyType.TEXT, reply.content
    assert reply.content == (ws.transcript if engine == "xunfei" else cn.transcript)


@pytest.mark.parametrize("engine", HTTP_ENGINES + WS_ENGINES + ("edge",))
def test_a_reply_is_spoken_into_an_mp3_file(speech, engine):
    reply = create_voice(engine).textToVoice("你好，今天天气不错")
    assert reply.type == ReplyType.VOICE, reply.content
    assert reply.content.endswith(".mp3") and os.path.dirname(os.path.abspath(reply.content)).endswith("tmp")
    with open(reply.content, "rb") as f:
        assert f.read() == MP3


def test_baidu_sends_16k_pcm_and_reuses_its_token(speech, voice_file, tmp_path):
    cn, _ = speech
    before = len(cn.of_kind("baidu_token"))
    engine = create_voice("baidu")
    assert engine.voiceToText(voice_file).type == ReplyType.TEXT
    # A 44.1 kHz stereo WAV is resampled and downmixed: the fake checks format, rate and length.
    assert engine.voiceToText(make_wav(str(tmp_path / "stereo.wav"), seconds=0.5, rate=44100, channels=2)).type == ReplyType.TEXT
    assert engine.textToVoice("再见").type == ReplyType.VOICE
    assert len(cn.of_kind("baidu_token")) == before + 1


@pytest.mark.parametrize("engine", ["baidu", "ali"])
def test_a_refused_token_is_fetched_again_once(speech, engine, voice_file):
    cn, _ = speech
    voice = create_voice(engine)
    assert voice.voiceToText(voice_file).type == ReplyType.TEXT
    fetched = len(cn.of_kind(f"{engine}_token"))
    cn.revoke_tokens()  # the cached token is now refused (Baidu err_no 3302, NLS status 40000001)
    heard, spoken = voice.voiceToText(voice_file), voice.textToVoice("你好")
    assert (heard.type, heard.content) == (ReplyType.TEXT, cn.transcript)
    assert spoken.type == ReplyType.VOICE
    assert len(cn.of_kind(f"{engine}_token")) == fetched + 1


def test_xunfei_signs_the_url_and_applies_the_correction_frame(speech, voice_file):
    _, ws = speech
    reply = create_voice("xunfei").voiceToText(voice_file)
    assert reply.content == ws.transcript  # "错字" of frame 1 replaced by frame 2 (pgs rpl)
    record = ws.of_kind("xunfei_asr")[-1]
    assert record["frames"][0]["common"] == {"app_id": ws.app_id}
    assert record["frames"][-1]["data"]["status"] == 2


def test_edge_uses_the_configured_voice(speech, settings):
    _, ws = speech
    settings["edge_tts_voice"] = "zh-CN-XiaoxiaoNeural"
    assert create_voice("edge").textToVoice("好的").type == ReplyType.VOICE
    assert "(zh-CN, XiaoxiaoNeural)" in ws.of_kind("edge")[-1]["ssml"]
    import edge_tts.communicate

    assert "speech.platform.bing.com" in edge_tts.communicate.WSS_URL  # restored after the call


def test_edge_cannot_transcribe_and_says_so(speech, voice_file):
    reply = create_voice("edge").voiceToText(voice_file)
    assert reply.type == ReplyType.ERROR and "Edge TTS" in reply.content


WRONG_KEYS = {
    "baidu": {"baidu_secret_key": "wrong-secret-000"},
    "ali": {"ali_voice_access_key_secret": "wrong-secret-000"},
    "tencent": {"tencent_secret_key": "wrong-secret-000"},
    "xunfei": {"xunfei_api_secret": "wrong-secret-000"},
}
SETTING_NAMED = {"baidu": "baidu_api_key", "ali": "access_key_secret", "tencent": "tencent_secret_key",
                 "xunfei": "APISecret"}


@pytest.mark.parametrize("engine", sorted(WRONG_KEYS))
def test_a_wrong_key_is_a_clear_error_naming_the_setting(speech, settings, engine, voice_file, logs):
    settings.update(WRONG_KEYS[engine])
    voice = create_voice(engine)
    heard, spoken = voice.voiceToText(voice_file), voice.textToVoice("你好")
    for reply in (heard, spoken):
        assert reply.type == ReplyType.ERROR
        assert SETTING_NAMED[engine] in reply.content
    assert "请检查配置" in spoken.content  # Chinese text in, Chinese answer
    assert "wrong-secret-000" not in logs.text()
    errors = logs.text(logging.ERROR)
    assert "voiceToText failed" in errors and "textToVoice failed" in errors
    assert not os.path.exists("tmp") or not os.listdir("tmp")


@pytest.mark.parametrize("engine", sorted(WRONG_KEYS))
def test_missing_credentials_are_named(speech, settings, engine):
    for name in WRONG_KEYS[engine]:
        settings[name] = ""
    reply = create_voice(engine).textToVoice("hello there")
    assert reply.type == ReplyType.ERROR and "is not set" in reply.content


SERVER_ERROR_KINDS = {"baidu": ("baidu_asr", "baidu_tts"), "ali": ("ali_asr", "ali_tts"),
                      "tencent": ("tencent_asr", "tencent_tts"), "xunfei": ("xunfei_asr", "xunfei_tts"),
                      "edge": (None, "edge")}


@pytest.mark.parametrize("engine", sorted(SERVER_ERROR_KINDS))
@pytest.mark.parametrize("failure", ["server_error", "malformed"])
def test_a_server_failure_is_an_error_reply_and_writes_no_file(speech, engine, failure, voice_file, logs):
    cn, ws = speech
    asr_kind, tts_kind = SERVER_ERROR_KINDS[engine]
    fake = ws if engine in ("xunfei", "edge") else cn
    ws_failure = {"server_error": "server_error", "malformed": "error_frame"}[failure]
    for kind in (asr_kind, tts_kind):
        if kind:
            fake.fail[kind] = ws_failure if fake is ws else failure
    voice = create_voice(engine)
    spoken = voice.textToVoice("hello there")
    assert spoken.type == ReplyType.ERROR and "failed" in spoken.content or "busy" in spoken.content, spoken.content
    if asr_kind:
        heard = voice.voiceToText(voice_file)
        assert heard.type == ReplyType.ERROR and "语音识别" in heard.content or "繁忙" in heard.content, heard.content
    assert "textToVoice failed" in logs.text(logging.ERROR)
    assert not os.path.exists("tmp") or not os.listdir("tmp")


def test_unreachable_service_is_a_clear_error(speech, settings, voice_file):
    from tests.e2e.daemon import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    settings["baidu_speech_token_url"] = dead + "/oauth/2.0/token"
    settings["xunfei_asr_url"] = dead.replace("http", "ws") + "/v2/iat"
    for engine in ("baidu", "xunfei"):
        reply = create_voice(engine).voiceToText(voice_file)
        assert reply.type == ReplyType.ERROR and "Cannot reach" in reply.content, reply.content


def test_unreadable_audio_is_a_format_error(speech, tmp_path):
    junk = tmp_path / "junk.amr"
    junk.write_bytes(b"#!AMR\n" + bytes(64))
    for engine in ("baidu", "tencent"):
        reply = create_voice(engine).voiceToText(str(junk))
        assert reply.type == ReplyType.ERROR and "format" in reply.content


def test_the_originals_config_json_files_are_read(tmp_path):
    from voice.cloud_speech import engine_file_settings

    folder = tmp_path / "xunfei"
    folder.mkdir()
    (folder / "config.json").write_text('{"APPID": "a1", "BusinessArgsTTS": {"vcn": "x"}}', encoding="utf-8")
    assert engine_file_settings("xunfei", str(folder)) == {"APPID": "a1", "BusinessArgsTTS": {"vcn": "x"}}
    (folder / "config.json").write_text("[1, 2]", encoding="utf-8")
    assert engine_file_settings("xunfei", str(folder)) == {}
    assert engine_file_settings("xunfei", str(tmp_path / "absent")) == {}


def test_pytts_without_its_driver_names_what_to_install(speech):
    from bot.bot_factory import BotNotAvailable

    try:
        import pyttsx3  # noqa: F401
        pyttsx3.init()
    except Exception:
        with pytest.raises(BotNotAvailable, match="requirements-voice.txt"):
            create_voice("pytts")
    else:
        pytest.skip("pyttsx3 and its speech driver are installed here")
