"""`python app.py` (WeCom through the ntwork simulator, the Dify simulator) with the baidu, ali,
tencent, xunfei and edge speech engines pointed at their loopback simulators: a voice message is
transcribed by the chosen engine, Dify answers the transcript, and the answer is spoken by the
other engine and sent; a wrong key gives the user a clear answer; an engine that cannot do the
job it is given, or whose package / system voice is missing, stops start-up with one line."""
from __future__ import annotations

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import run_app, write_config
from tests.e2e.test_wework_process import ALICE, ALICE_NAME, PRIVATE, start, wait_ready
from tests.fakes.speech_cn import MP3, SpeechCnServer
from tests.fakes.speech_ws import SpeechWsServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fakes():
    with SpeechCnServer(transcript="今天天气怎么样") as cn, SpeechWsServer(transcript="明天会下雨吗") as ws:
        yield cn, ws


def _voice_round_trip(tmp_path, fakes, stt: str, tts: str, **extra):
    cn, ws = fakes
    with DifyServer(api_key="app-test", mode="chat") as dify:
        daemon, ctl = start(tmp_path, dify, speech_recognition=True, voice_reply_voice=True, voice_to_text=stt,
                            text_to_voice=tts, voice_request_timeout=5, **cn.settings(), **ws.settings(), **extra)
        try:
            wait_ready(daemon)
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))
            call = ctl.wait_for_call("send_file", lambda c: True)
            return call, dify
        finally:
            daemon.kill()


@pytest.mark.parametrize("stt, tts", [("baidu", "ali"), ("tencent", "xunfei"), ("xunfei", "edge"), ("ali", "tencent"),
                                      ("baidu", "baidu")])
def test_a_voice_message_is_transcribed_and_the_answer_spoken(tmp_path, fakes, stt, tts):
    cn, ws = fakes
    call, dify = _voice_round_trip(tmp_path, fakes, stt, tts)
    transcript = ws.transcript if stt == "xunfei" else cn.transcript
    assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")][-1] == transcript
    sent_path = call["data"]["file"]  # WeCom's hook sends voice as a file, as in the original
    assert sent_path.endswith(".mp3")
    with open(sent_path, "rb") as f:
        assert f.read() == MP3
    spoken = {"xunfei": lambda: ws.of_kind("xunfei_tts")[-1]["text"], "edge": lambda: ws.of_kind("edge")[-1]["ssml"]}
    if tts in spoken:
        assert f"echo: {transcript}" in spoken[tts]()


def test_a_wrong_key_gives_the_user_a_clear_answer(tmp_path, fakes):
    cn, ws = fakes
    with DifyServer(api_key="app-test", mode="chat") as dify:
        settings = {**cn.settings(), **ws.settings(), "baidu_secret_key": "wrong-secret-000"}
        daemon, ctl = start(tmp_path, dify, speech_recognition=True, voice_to_text="baidu", voice_request_timeout=5,
                            **settings)
        try:
            wait_ready(daemon)
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))
            call = ctl.wait_for_call("send_text", lambda c: "baidu_api_key" in c["data"]["content"])
        finally:
            daemon.kill()
    assert "Baidu" in call["data"]["content"] and not dify.requests_to("/v1/chat-messages")
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "[BaiduVoice] voiceToText failed" in log and "invalid_client" in log and "wrong-secret-000" not in log


@pytest.mark.parametrize("settings, expected", [
    ({"speech_recognition": True, "voice_to_text": "edge"}, "config error: voice engine 'edge' (Edge TTS) has no speech recognition: choose another voice_to_text "
     "(chosen by the setting 'voice_to_text')"),
    ({"voice_reply_voice": True, "text_to_voice": "pytts"}, "config error: voice engine 'pytts' "),
    ({"voice_reply_voice": True, "text_to_voice": "baidu"}, "config error: voice engine 'baidu': baidu_api_key / baidu_secret_key is empty"),
    ({"speech_recognition": True, "voice_to_text": "nosuch"}, "unknown voice engine 'nosuch'"),
])
def test_an_engine_that_cannot_work_stops_start_up(tmp_path, settings, expected):
    try:
        import pyttsx3

        pyttsx3.init()
        if settings.get("text_to_voice") == "pytts":
            pytest.skip("pyttsx3 and its speech driver are installed here")
    except Exception:
        pass
    config = write_config(tmp_path, channel_type="terminal", bot_type="", model="dify", dify_api_key="app-x", **settings)
    result = run_app(tmp_path, "--config", config, timeout=30)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-2000:]
    if settings.get("text_to_voice") == "pytts":  # names what to install
        assert "requirements-voice.txt" in result.stderr and "espeak-ng" in result.stderr
