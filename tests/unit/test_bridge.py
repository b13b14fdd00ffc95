"""Bridge routing, lazy bot creation and error replies; bot and voice factories."""
from __future__ import annotations

import threading
import time

import pytest

from bot import bot_factory
from bot.bot import Bot
from bot.bot_factory import BotNotAvailable, UnknownBot, create_bot, register_bot
from bridge.bridge import Bridge, route
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common import const
from config import conf
from tests.fakes.bots import EchoBot, FailingBot, RecordingBot
from voice import factory as voice_factory
from voice.factory import create_voice


@pytest.fixture(autouse=True)
def clean_state(settings):
    """The live config (restored by `settings`) and the registries; a new Bridge each test."""
    saved_bots = dict(bot_factory.REGISTRY)
    saved_voices = dict(voice_factory.VOICE_REGISTRY)
    Bridge.reset_instance()
    yield
    Bridge.reset_instance()
    bot_factory.REGISTRY.clear()
    bot_factory.REGISTRY.update(saved_bots)
    voice_factory.VOICE_REGISTRY.clear()
    voice_factory.VOICE_REGISTRY.update(saved_voices)


def set_conf(**values):
    for key, value in values.items():
        conf()[key] = value


def text_context(content: str, session_id: str = "s1") -> Context:
    return Context(ContextType.TEXT, content, {"session_id": session_id})


# --- routing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gpt-3.5-turbo", const.CHATGPT),
        ("gpt-4o", const.CHATGPT),
        ("", const.CHATGPT),
        ("some-unknown-model", const.CHATGPT),
        ("text-davinci-003", const.OPEN_AI),
        ("wenxin", const.BAIDU),
        ("wenxin-4", const.BAIDU),
        ("xunfei", const.XUNFEI),
        ("qwen", const.QWEN),
        ("qwen-turbo", const.QWEN_DASHSCOPE),
        ("qwen-plus", const.QWEN_DASHSCOPE),
        ("qwen-max", const.QWEN_DASHSCOPE),
        ("gemini", const.GEMINI),
        ("gemini-1.5-pro", const.GEMINI),
        ("dify", const.DIFY),
        ("glm-4", const.ZHIPU_AI),
        ("glm-4-flash", const.ZHIPU_AI),
        ("coze", const.COZE),
        ("claude-3-opus-20240229", const.CLAUDEAPI),
        ("claude-3-5-sonnet", const.CLAUDEAPI),
        ("claude", const.CLAUDEAI),
        ("claude-2", const.CHATGPT),  # neither rule matches, as in the original
        ("deepseek-chat", const.DEEPSEEK),
        ("deepseek-reasoner", const.DEEPSEEK),
        ("deepseek", const.CHATGPT),  # the original's rule needs "deepseek-"
        ("moonshot", const.MOONSHOT),
        ("moonshot-v1-8k", const.MOONSHOT),
        ("moonshot-v1-32k", const.MOONSHOT),
        ("moonshot-v1-128k", const.MOONSHOT),
        ("modelscope", const.MODELSCOPE),
        ("abab6.5-chat", const.MiniMax),
    ],
)
def test_model_routes_to_bot_type(model, expected):
    set_conf(model=model)
    assert Bridge().get_bot_type("chat") == expected
    assert route()["chat"] == expected


def test_defaults_of_the_other_engines():
    btype = route()
    assert btype == {"chat": const.CHATGPT, "voice_to_text": "openai", "text_to_voice": "google", "translate": "baidu"}


def test_azure_setting_routes_unless_the_model_names_another_bot():
    set_conf(use_azure_chatgpt=True, model="gpt-4")
    assert route()["chat"] == const.CHATGPTONAZURE
    set_conf(model="text-davinci-003")
    assert route()["chat"] == const.CHATGPTONAZURE
    set_conf(model="dify")
    assert route()["chat"] == const.DIFY


def test_bot_type_overrides_model():
    set_conf(model="dify", bot_type="chatGPT")
    assert Bridge().get_bot_type("chat") == const.CHATGPT
    set_conf(model="gpt-4", bot_type="dify")
    assert route()["chat"] == const.DIFY


@pytest.mark.parametrize(
    "voice_to_text, text_to_voice, expected_stt, expected_tts",
    [
        ("openai", "openai", const.LINKAI, const.LINKAI),
        ("openai", "tts-1", const.LINKAI, const.LINKAI),
        ("openai", "tts-1-hd", const.LINKAI, const.LINKAI),
        ("", "", const.LINKAI, const.LINKAI),
        ("azure", "edge", "azure", "edge"),
    ],
)
def test_use_linkai_overrides_chat_and_openai_voice(voice_to_text, text_to_voice, expected_stt, expected_tts):
    set_conf(model="dify", use_linkai=True, linkai_api_key="Link_xxx", voice_to_text=voice_to_text, text_to_voice=text_to_voice)
    btype = Bridge().btype
    assert btype["chat"] == const.LINKAI
    assert btype["voice_to_text"] == expected_stt
    assert btype["text_to_voice"] == expected_tts


def test_use_linkai_needs_a_key_and_yields_to_bot_type():
    set_conf(model="dify", use_linkai=True)
    assert route()["chat"] == const.DIFY
    set_conf(linkai_api_key="Link_xxx", bot_type="coze")
    assert route() == {"chat": const.COZE, "voice_to_text": "openai", "text_to_voice": "google", "translate": "baidu"}


def test_reset_bot_reroutes_after_model_change():
    set_conf(bot_type="tests.fakes.bots:EchoBot")
    bridge = Bridge()
    first = bridge.get_bot("chat")
    assert isinstance(first, EchoBot)
    conf()["bot_type"] = ""
    conf()["model"] = "dify"
    assert bridge.get_bot_type("chat") == "tests.fakes.bots:EchoBot"  # nothing changes before the reset
    bridge.reset_bot()
    assert bridge.get_bot_type("chat") == const.DIFY
    assert "chat" not in bridge.bots
    assert Bridge() is bridge


def test_bridge_is_a_singleton_and_resettable():
    a = Bridge()
    assert Bridge() is a
    assert isinstance(a, Bridge)
    Bridge.reset_instance()
    assert Bridge() is not a


# --- bots -----------------------------------------------------------------------


def test_dotted_path_bot_answers():
    set_conf(bot_type="tests.fakes.bots:EchoBot")
    reply = Bridge().fetch_reply_content("hello", text_context("hello"))
    assert reply.type == ReplyType.TEXT
    assert reply.content == "echo: hello"


def test_recording_bot_sees_query_and_session():
    RecordingBot.clear()
    set_conf(bot_type="tests.fakes.bots:RecordingBot")
    Bridge().fetch_reply_content("q1", text_context("q1", "alice"))
    Bridge().fetch_reply_content("q2", text_context("q2", "bob"))
    assert RecordingBot.recorded() == [("q1", "alice"), ("q2", "bob")]


class SlowInitBot(Bot):
    created = 0
    lock = threading.Lock()

    def __init__(self):
        time.sleep(0.05)  # wide window for a second thread to race in
        with SlowInitBot.lock:
            SlowInitBot.created += 1

    def reply(self, query, context=None):
        return Reply(ReplyType.TEXT, query)


def test_lazy_single_creation_under_8_threads():
    SlowInitBot.created = 0
    register_bot("slow-init", SlowInitBot)
    set_conf(bot_type="slow-init")
    bridge = Bridge()
    assert "chat" not in bridge.bots  # lazy
    barrier = threading.Barrier(8)
    seen = []
    seen_lock = threading.Lock()

    def worker():
        barrier.wait()
        bot = bridge.get_bot("chat")
        reply = bridge.fetch_reply_content("x", text_context("x"))
        with seen_lock:
            seen.append((id(bot), reply.content))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert SlowInitBot.created == 1
    assert len(seen) == 8 and len({s[0] for s in seen}) == 1
    assert all(content == "x" for _, content in seen)


def test_find_chat_bot_keeps_one_extra_bot_per_type():
    bridge = Bridge()
    bot = bridge.find_chat_bot("tests.fakes.bots:EchoBot")
    assert isinstance(bot, EchoBot)
    assert bridge.find_chat_bot("tests.fakes.bots:EchoBot") is bot
    with pytest.raises(UnknownBot):
        bridge.find_chat_bot("no-such-bot")


def test_unknown_bot_gives_error_reply_in_english():
    set_conf(bot_type="no-such-bot")
    reply = Bridge().fetch_reply_content("hello", text_context("hello"))
    assert reply.type == ReplyType.ERROR
    assert "no-such-bot" in reply.content
    assert "Unknown bot" in reply.content
    assert "Traceback" not in reply.content


def test_unknown_bot_gives_error_reply_in_chinese():
    set_conf(bot_type="no-such-bot")
    reply = Bridge().fetch_reply_content("你好", text_context("你好"))
    assert reply.type == ReplyType.ERROR
    assert "未知" in reply.content and "no-such-bot" in reply.content


def test_unavailable_bot_gives_error_reply():
    # Registered in the original's table but not ported (yet) to this version.
    register_bot(const.XUNFEI, "bot.xunfei_not_ported_here.xunfei_spark_bot:XunFeiBot")
    set_conf(model="xunfei")
    reply = Bridge().fetch_reply_content("hello", text_context("hello"))
    assert reply.type == ReplyType.ERROR
    assert "xunfei" in reply.content
    assert "not available in this version" in reply.content
    reply = Bridge().fetch_reply_content("你好", text_context("你好"))
    assert reply.type == ReplyType.ERROR and "不可用" in reply.content


def test_unavailable_bot_is_retried_after_it_becomes_available():
    register_bot("later", "bot.not_there_yet:Nope")
    set_conf(bot_type="later")
    bridge = Bridge()
    assert bridge.fetch_reply_content("a", text_context("a")).type == ReplyType.ERROR
    register_bot("later", EchoBot)
    assert bridge.fetch_reply_content("a", text_context("a")).content == "echo: a"


def test_failing_bot_gives_error_reply_without_details():
    set_conf(bot_type="tests.fakes.bots:FailingBot")
    reply = Bridge().fetch_reply_content("hello", text_context("hello"))
    assert reply.type == ReplyType.ERROR
    assert reply.content.startswith("Sorry")
    for leak in ("Traceback", "RuntimeError", "exploded", "sk-secret", "File \""):
        assert leak not in reply.content
    chinese = Bridge().fetch_reply_content("你好", text_context("你好"))
    assert chinese.type == ReplyType.ERROR and "抱歉" in chinese.content
    assert "sk-secret" not in chinese.content


def test_failing_bot_traceback_goes_to_the_log(logs):
    set_conf(bot_type="tests.fakes.bots:FailingBot")
    Bridge().fetch_reply_content("hello", text_context("hello"))
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in logs.records)


def test_bridge_context_may_be_omitted():
    set_conf(bot_type="tests.fakes.bots:EchoBot")
    assert Bridge().fetch_reply_content("hi").content == "echo: hi"


# --- voice and translate ----------------------------------------------------------


def test_voice_engines_not_ported_give_error_replies():
    # Point the names at modules that do not exist, whatever is ported by now.
    voice_factory.register_voice("openai", "voice.not_ported_openai:OpenaiVoice")
    voice_factory.register_voice("google", "voice.not_ported_google:GoogleVoice")
    set_conf(voice_to_text="openai", text_to_voice="google")
    bridge = Bridge()
    stt = bridge.fetch_voice_to_text("/tmp/a.mp3")
    assert stt.type == ReplyType.ERROR and "openai" in stt.content
    tts = bridge.fetch_text_to_voice("hello")
    assert tts.type == ReplyType.ERROR and "google" in tts.content and "not available" in tts.content
    tts_zh = bridge.fetch_text_to_voice("你好")
    assert tts_zh.type == ReplyType.ERROR and "不可用" in tts_zh.content


def test_unknown_voice_engine_gives_error_reply():
    set_conf(text_to_voice="no-such-engine")
    reply = Bridge().fetch_text_to_voice("hello")
    assert reply.type == ReplyType.ERROR and "no-such-engine" in reply.content


class FakeVoice:
    def voiceToText(self, voice_file):
        return Reply(ReplyType.TEXT, f"text of {voice_file}")

    def textToVoice(self, text):
        if text == "boom":
            raise ValueError("engine down")
        return Reply(ReplyType.VOICE, "/tmp/out.mp3")


def test_registered_voice_engine_is_used_and_its_errors_become_replies():
    voice_factory.register_voice("fake", FakeVoice)
    set_conf(voice_to_text="fake", text_to_voice="fake")
    bridge = Bridge()
    assert bridge.fetch_voice_to_text("a.silk").content == "text of a.silk"
    assert bridge.fetch_text_to_voice("hi").type == ReplyType.VOICE
    failed = bridge.fetch_text_to_voice("boom")
    assert failed.type == ReplyType.ERROR and "engine down" not in failed.content


def test_translate_never_raises():
    set_conf(translate="no-such-translator")
    reply = Bridge().fetch_translate("hello", to_lang="zh")
    assert isinstance(reply, Reply) and reply.type == ReplyType.ERROR


# --- factories ---------------------------------------------------------------------


def test_factory_knows_every_bot_type_of_the_original():
    names = [
        const.OPEN_AI, const.CHATGPT, const.BAIDU, const.XUNFEI, const.CHATGPTONAZURE, const.LINKAI,
        const.CLAUDEAI, const.CLAUDEAPI, const.QWEN, const.QWEN_DASHSCOPE, const.GEMINI, const.ZHIPU_AI,
        const.MOONSHOT, const.MiniMax, const.DIFY, const.COZE, const.DEEPSEEK, const.MODELSCOPE,
    ]
    for name in names:
        assert name in bot_factory.REGISTRY


def test_create_bot_errors():
    with pytest.raises(UnknownBot) as unknown:
        create_bot("nope")
    assert "nope" in str(unknown.value) and const.DIFY in str(unknown.value)
    assert isinstance(unknown.value, RuntimeError)  # what the original raised
    register_bot("ghost", "bot.ghost_bot:GhostBot")
    with pytest.raises(BotNotAvailable) as unavailable:
        create_bot("ghost")
    assert "ghost" in str(unavailable.value) and "not available in this version" in str(unavailable.value)
    with pytest.raises(BotNotAvailable):
        create_bot("tests.fakes.bots:NoSuchClass")
    with pytest.raises(BotNotAvailable):
        create_bot("tests.fakes.no_such_module:EchoBot")


def test_missing_dependency_is_named(tmp_path, monkeypatch):
    (tmp_path / "needs_dep_bot.py").write_text("import surely_not_installed_pkg_xyz\nclass B:\n    def reply(self, q, c=None):\n        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_bot("needs-dep", "needs_dep_bot:B")
    with pytest.raises(BotNotAvailable) as e:
        create_bot("needs-dep")
    assert "surely_not_installed_pkg_xyz" in str(e.value)


def test_register_bot_validates():
    with pytest.raises(ValueError):
        register_bot("bad", "not a path")
    with pytest.raises(TypeError):
        register_bot("bad", 42)
    register_bot("echo2", "tests.fakes.bots:EchoBot")
    assert isinstance(create_bot("echo2"), EchoBot)


def test_create_voice_errors():
    assert set(voice_factory.VOICE_REGISTRY) >= {
        "baidu", "google", "openai", "pytts", "azure", "elevenlabs", "linkai", "ali", "edge", "xunfei", "dify", "tencent"
    }
    with pytest.raises(UnknownBot):
        create_voice("nope")
    voice_factory.register_voice("pytts", "voice.not_ported_pytts:PyttsVoice")
    with pytest.raises(BotNotAvailable) as e:
        create_voice("pytts")
    assert "pytts" in str(e.value)


def test_failing_bot_class_is_a_bot():
    assert issubclass(FailingBot, Bot)
    with pytest.raises(NotImplementedError):
        Bot().reply("x")
