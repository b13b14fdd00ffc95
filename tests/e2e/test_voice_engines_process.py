"""The HTTP voice engines end to end: `python app.py` with the WeCom channel (ntwork simulator),
the Dify simulator as the chat bot and the speech simulator, one daemon per engine.

A WeCom voice message (SILK) is transcribed by the engine, Dify answers the words, and the answer
is spoken by the same engine and sent (WeCom's hook sends voice as a file). Then, on the same
daemon, a server error and a key the vendor no longer accepts each reach the user as a clear
answer, with the details in run.log. Start-up refuses an engine that cannot work, naming why.
"""
from __future__ import annotations

import os

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import run_app, wait_until, write_config
from tests.e2e.test_wework_process import ALICE, ALICE_NAME, PRIVATE, posix_only, start, wait_ready
from tests.fakes.speech_server import SpeechServer, engine_settings

pytestmark = pytest.mark.slow

ENGINES = ["openai", "linkai", "azure", "elevenlabs", "google"]
KEY_SETTING = {"openai": "open_ai_api_key", "linkai": "linkai_api_key", "azure": "azure_voice_api_key",
               "elevenlabs": "xi_api_key", "google": "google_voice_api_key"}


def texts(ctl) -> list[str]:
    return [c["data"]["content"] for c in ctl.calls() if c["method"] == "send_text"]


def spoken_text(request) -> str:
    """The text a text-to-speech request asked for, whatever the vendor's request shape."""
    if request.json is None:  # Azure: SSML
        import re
        from xml.sax.saxutils import unescape

        return unescape(re.search(r"<voice[^>]*>(.*)</voice>", request.body.decode("utf-8")).group(1))
    value = request.json.get("input", request.json.get("text"))
    return value["text"] if isinstance(value, dict) else value


@posix_only
@pytest.mark.parametrize("engine", ENGINES)
def test_voice_is_transcribed_answered_and_spoken(tmp_path, engine):
    with DifyServer(api_key="app-test", mode="chat") as dify, SpeechServer() as speech:
        daemon, ctl = start(tmp_path, dify, speech_recognition=True, voice_reply_voice=True,
                            voice_to_text=engine, text_to_voice=engine, **engine_settings(speech, engine))
        try:
            wait_ready(daemon)
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))  # the simulator's CDN serves WeChat SILK
            sent = ctl.wait_for_call("send_file")
            assert os.path.splitext(sent["data"]["file"])[1] in (".mp3", ".wav")
            assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == [speech.transcript]
            [stt] = speech.requests_to(engine, speech.requests[0].route)
            assert stt.authorized and stt.audio is not None and stt.audio.format == "wav"
            [tts] = [r for r in speech.requests if r is not stt]
            assert tts.authorized and spoken_text(tts) == f"echo: {speech.transcript}"
            assert texts(ctl) == []  # the answer went out as voice only

            # A server error: the user is told, the log has the vendor's status.
            speech.fail(engine, 500)
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))
            told = ctl.wait_for_call("send_text")
            assert told["data"]["content"].startswith("[ERROR]") and "Speech recognition failed" in told["data"]["content"]
            daemon.wait_for_log("answered HTTP 500", 10)

            # The vendor stops accepting the key: the answer names the setting to check.
            speech.vendors[engine].key = "a-rotated-key-0000"
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))
            wait_until(lambda: len(texts(ctl)) == 2, what="the wrong-key answer")
            refused = texts(ctl)[1]
            assert refused.startswith("[ERROR]") and "refused the request" in refused and KEY_SETTING[engine] in refused
            log = (tmp_path / "run.log").read_text(encoding="utf-8")
            assert engine_settings(speech, engine)[KEY_SETTING[engine]] not in log  # the key is masked
            assert len(dify.requests_to("/v1/chat-messages")) == 1  # nothing reached the bot after a failed transcription
        finally:
            daemon.kill()


def _start_terminal(tmp_path, **settings):
    config = write_config(tmp_path, channel_type="terminal", bot_type="", model="dify", dify_api_key="app-test",
                          dify_api_base="http://127.0.0.1:9/v1", **settings)
    return run_app(tmp_path, "--config", config, input="", timeout=60)


def test_google_without_a_key_stops_start_up_and_names_the_replacement(tmp_path):
    result = _start_terminal(tmp_path, voice_reply_voice=True, text_to_voice="google")
    assert result.returncode == 2, result.stderr
    assert "google_voice_api_key" in result.stderr and "gTTS" in result.stderr and "text_to_voice" in result.stderr


def test_an_unknown_engine_stops_start_up(tmp_path):
    result = _start_terminal(tmp_path, speech_recognition=True, voice_to_text="whisper-local")
    assert result.returncode != 0
    assert "unknown voice engine 'whisper-local'" in result.stderr and "voice_to_text" in result.stderr


def test_an_engine_not_turned_on_is_not_checked(tmp_path):
    # text_to_voice defaults to google, which needs a key; nobody asked for voice replies.
    result = _start_terminal(tmp_path, text_to_voice="google")
    assert result.returncode == 0, result.stderr
