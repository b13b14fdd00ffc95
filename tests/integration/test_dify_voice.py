"""DifyVoice against the Dify simulator: what goes over the wire (format, mimetype, user, key),
the replies, and that every failure is an ERROR reply (and TTS failures write no file)."""
from __future__ import annotations

import io
import os
import socket
import wave

import pytest

from bridge.bridge import Bridge
from bridge.reply import ReplyType
from sandbox.dify_server import DifyServer
from tests.e2e.daemon import free_port  # nothing listens there, and no other test takes it meanwhile
from tests.fakes.audio import make_amr, make_mp3, make_silk, make_wav
from voice.dify.dify_voice import DifyVoice

KEY = "app-test"


@pytest.fixture
def server():
    srv = DifyServer(api_key=KEY, mode="chat").start()
    yield srv
    srv.stop()


@pytest.fixture
def dify(server, settings, tmp_path, monkeypatch):
    """The live config pointed at the simulator; runs in an empty folder so tmp/ can be inspected."""
    monkeypatch.chdir(tmp_path)
    settings["dify_api_base"] = server.base_url
    settings["dify_api_key"] = KEY
    settings["dify_connect_timeout"] = 2
    settings["dify_read_timeout"] = 5
    settings["dify_error_reply"] = ""
    return server


def _tmp_files(root) -> list[str]:
    folder = root / "tmp"
    return sorted(os.listdir(folder)) if folder.exists() else []


def _only_upload(server) -> dict:
    calls = server.requests_to("/v1/audio-to-text")
    assert len(calls) == 1
    return calls[0]


# --- speech to text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tencent", [False, True], ids=["silk", "wechat-silk"])
def test_silk_is_sent_as_wav(dify, tmp_path, tencent):
    dify.stt_text = "你好，今天天气怎么样"
    voice = make_silk(str(tmp_path / "voice.silk"), seconds=1.0, tencent=tencent)
    reply = DifyVoice().voiceToText(voice)
    assert (reply.type, reply.content) == (ReplyType.TEXT, "你好，今天天气怎么样")
    call = _only_upload(dify)
    part = call["files"]["file"]
    assert part["content_type"] == "audio/wav"
    assert part["filename"] == "voice.wav"
    with wave.open(io.BytesIO(part["content"]), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        assert abs(wav.getnframes() / 24000 - 1.0) < 0.05
    assert call["headers"]["authorization"] == f"Bearer {KEY}"
    assert call["form"]["user"] == "voice"
    assert _tmp_files(tmp_path) == []  # the converted WAV is deleted


@pytest.mark.parametrize(
    "maker, name, mimetype",
    [(make_amr, "voice.amr", "audio/amr"), (make_wav, "voice.wav", "audio/wav"), (make_mp3, "voice.mp3", "audio/mp3")],
)
def test_formats_dify_takes_are_sent_as_they_are(dify, tmp_path, maker, name, mimetype):
    path = maker(str(tmp_path / name))
    reply = DifyVoice().voiceToText(path)
    assert (reply.type, reply.content) == (ReplyType.TEXT, "transcribed text")
    part = _only_upload(dify)["files"]["file"]
    assert part["content_type"] == mimetype
    assert part["filename"] == name
    with open(path, "rb") as f:
        assert part["content"] == f.read()


def test_mimetype_follows_the_content_not_the_name(dify, tmp_path):
    path = make_amr(str(tmp_path / "语音.wav"))  # AMR under a wrong, non-ASCII name
    assert DifyVoice().voiceToText(path).type == ReplyType.TEXT
    part = _only_upload(dify)["files"]["file"]
    assert (part["content_type"], part["filename"]) == ("audio/amr", "voice.amr")


def test_the_callers_user_is_sent(dify, tmp_path):
    reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")), user="wxid_alice")
    assert reply.type == ReplyType.TEXT
    assert _only_upload(dify)["form"]["user"] == "wxid_alice"


def test_stt_disabled_in_the_app(dify, tmp_path):
    dify.stt_enabled = False
    reply = DifyVoice().voiceToText(make_wav(str(tmp_path / "v.wav"), seconds=0.2))
    assert reply.type == ReplyType.ERROR
    assert "Speech to text is not enabled in the Dify app" in reply.content
    assert "语音转文字" in reply.content  # the speaker's language is unknown: both languages


def test_unsupported_audio_type_415(dify, tmp_path):
    (tmp_path / "v.ogg").write_bytes(b"OggS" + bytes(60))  # sent as audio/ogg, which this Dify refuses
    reply = DifyVoice().voiceToText(str(tmp_path / "v.ogg"))
    assert reply.type == ReplyType.ERROR
    assert "audio format is not supported" in reply.content
    assert _only_upload(dify)["files"]["file"]["content_type"] == "audio/ogg"


def test_wrong_key_401(dify, settings, tmp_path):
    settings["dify_api_key"] = "app-wrong-key-123456"
    reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    assert reply.type == ReplyType.ERROR
    assert "dify_api_key" in reply.content


def test_the_key_never_reaches_the_log(dify, settings, tmp_path, logs):
    from common.log import is_debug, set_debug

    debug_before = is_debug()
    set_debug(True)  # the request line that names the key is a DEBUG record
    try:
        settings["dify_api_key"] = "app-wrong-key-123456"
        DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    finally:
        set_debug(debug_before)
    text = logs.text()
    assert "401" in text and "Access token is invalid" in text
    assert "app-wrong-key-123456" not in text
    assert "app*****456" in text  # the request was logged, masked


def test_unknown_format_is_refused_without_a_request(dify, tmp_path):
    (tmp_path / "v.xyz").write_bytes(b"\x01\x02\x03 not audio at all")
    reply = DifyVoice().voiceToText(str(tmp_path / "v.xyz"))
    assert reply.type == ReplyType.ERROR and "not supported" in reply.content
    assert dify.requests_to("/v1/audio-to-text") == []


def test_missing_file_and_missing_key(dify, settings, tmp_path):
    reply = DifyVoice().voiceToText(str(tmp_path / "gone.silk"))
    assert reply.type == ReplyType.ERROR and "could not be read" in reply.content
    settings["dify_api_key"] = ""
    reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    assert reply.type == ReplyType.ERROR and "dify_api_key is not set" in reply.content
    assert dify.requests_to("/v1/audio-to-text") == []


def test_nothing_recognised(dify, tmp_path):
    dify.stt_text = "  "
    reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    assert reply.type == ReplyType.ERROR and "No words were recognised" in reply.content


def test_connection_refused(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings["dify_api_base"] = f"http://127.0.0.1:{free_port()}/v1"
    settings["dify_api_key"] = KEY
    settings["dify_error_reply"] = ""
    settings["dify_max_retries"] = 0  # the shared client's retries are tested with the client
    reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    assert reply.type == ReplyType.ERROR and "Cannot reach the Dify service" in reply.content
    reply = DifyVoice().textToVoice("hello")
    assert reply.type == ReplyType.ERROR and "Cannot reach the Dify service" in reply.content
    assert _tmp_files(tmp_path) == []


def test_timeout(settings, tmp_path, monkeypatch):
    """A server that accepts the connection and never answers."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        settings["dify_api_base"] = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        settings["dify_api_key"] = KEY
        settings["dify_read_timeout"] = 0.3
        settings["dify_error_reply"] = ""
        reply = DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr")))
    assert reply.type == ReplyType.ERROR and "did not answer in time" in reply.content


def test_dify_error_reply_replaces_the_text(dify, settings, tmp_path):
    settings["dify_error_reply"] = "机器人休息中"
    dify.stt_enabled = False
    assert DifyVoice().voiceToText(make_amr(str(tmp_path / "v.amr"))).content == "机器人休息中"


# --- text to speech -----------------------------------------------------------------------------------------


def test_tts_writes_the_audio_to_a_new_file(dify, tmp_path):
    audio = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(413)
    dify.tts_audio = audio
    first = DifyVoice().textToVoice("你好")
    second = DifyVoice().textToVoice("你好")
    assert first.type == second.type == ReplyType.VOICE
    assert first.content != second.content  # unique names: two replies at once never collide
    assert first.content.endswith(".mp3")
    with open(first.content, "rb") as f:
        assert f.read() == audio
    assert os.path.dirname(os.path.abspath(first.content)) == str(tmp_path / "tmp")
    call = dify.requests_to("/v1/text-to-audio")[0]
    assert call["json"] == {"text": "你好", "user": "voice"}
    assert call["headers"]["authorization"] == f"Bearer {KEY}"


def test_tts_sends_the_callers_user(dify):
    assert DifyVoice().textToVoice("hi", user="wxid_bob").type == ReplyType.VOICE
    assert dify.requests_to("/v1/text-to-audio")[0]["json"]["user"] == "wxid_bob"


def test_tts_disabled_writes_no_file(dify, tmp_path):
    dify.tts_enabled = False
    reply = DifyVoice().textToVoice("你好")
    assert reply.type == ReplyType.ERROR
    assert reply.content == "Dify 应用未开启文字转语音功能。"  # the language of the text
    assert DifyVoice().textToVoice("hello").content == "Text to speech is not enabled in the Dify app."
    assert _tmp_files(tmp_path) == []


def test_tts_wrong_key_writes_no_file(dify, settings, tmp_path):
    settings["dify_api_key"] = "app-nope-nope-nope"
    reply = DifyVoice().textToVoice("hello")
    assert reply.type == ReplyType.ERROR and "dify_api_key" in reply.content
    assert _tmp_files(tmp_path) == []


def test_tts_json_with_status_200_is_not_audio(dify, tmp_path):
    """The original saved whatever came back as an .mp3 and sent it as a voice message."""
    dify.tts_json_200 = True
    reply = DifyVoice().textToVoice("hello")
    assert reply.type == ReplyType.ERROR
    assert _tmp_files(tmp_path) == []


def test_tts_empty_text_makes_no_request(dify):
    reply = DifyVoice().textToVoice("   ")
    assert reply.type == ReplyType.ERROR
    assert dify.requests_to("/v1/text-to-audio") == []


# --- through the Bridge --------------------------------------------------------------------------------------


@pytest.fixture
def bridge(dify, settings):
    settings["voice_to_text"] = "dify"
    settings["text_to_voice"] = "dify"
    Bridge().reset_bot()
    yield Bridge()
    Bridge.reset_instance()  # the next Bridge() reads the restored settings


def test_bridge_voice_to_text(bridge, dify, tmp_path):
    dify.stt_text = "打开灯"
    reply = bridge.fetch_voice_to_text(make_silk(str(tmp_path / "v.silk"), tencent=True))
    assert (reply.type, reply.content) == (ReplyType.TEXT, "打开灯")
    assert _only_upload(dify)["files"]["file"]["content_type"] == "audio/wav"


def test_bridge_errors_are_error_replies(bridge, dify, tmp_path):
    dify.stt_enabled = False
    dify.tts_enabled = False
    assert bridge.fetch_voice_to_text(make_amr(str(tmp_path / "v.amr"))).type == ReplyType.ERROR
    assert bridge.fetch_text_to_voice("hello").type == ReplyType.ERROR
    assert _tmp_files(tmp_path) == []


def test_bridge_text_to_voice(bridge, dify):
    reply = bridge.fetch_text_to_voice("hello")
    assert reply.type == ReplyType.VOICE and os.path.isfile(reply.content)
