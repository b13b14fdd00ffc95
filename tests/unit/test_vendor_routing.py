"""The original's model -> bot routing through the real config loading (a config.json on disk,
read by load_config), and what each vendor's bot makes of the original's settings: the class
at the original's module path, the address, the key and the model it sends."""
from __future__ import annotations

import json

import pytest

import config as config_module
from bot.bot_factory import REGISTRY, bot_class
from bridge.bridge import Bridge, route
from common import const


@pytest.fixture
def load(tmp_path, settings, monkeypatch):
    """Write a config.json holding `values` and load it as the daemon does."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.lower() in config_module.SETTINGS:
            monkeypatch.delenv(name)  # the environment would override the file

    def _load(**values):
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"channel_type": "terminal", **values}), encoding="utf-8")
        config_module.load_config(str(path))
        Bridge.reset_instance()
        return config_module.conf()

    yield _load
    config_module._config_path = None
    Bridge.reset_instance()


# (config.json, the chat bot type, the original's class name)
ROUTES = [
    ({}, const.CHATGPT, "ChatGPTBot"),
    ({"model": "gpt-4o"}, const.CHATGPT, "ChatGPTBot"),
    ({"model": "text-davinci-003"}, const.OPEN_AI, "OpenAIBot"),
    ({"model": "gpt-4", "use_azure_chatgpt": True}, const.CHATGPTONAZURE, "AzureChatGPTBot"),
    ({"model": "wenxin"}, const.BAIDU, "BaiduWenxinBot"),
    ({"model": "wenxin-4"}, const.BAIDU, "BaiduWenxinBot"),
    ({"model": "xunfei"}, const.XUNFEI, "XunFeiBot"),
    ({"model": "qwen"}, const.QWEN, "AliQwenBot"),
    ({"model": "qwen-turbo"}, const.QWEN_DASHSCOPE, "DashscopeBot"),
    ({"model": "qwen-plus"}, const.QWEN_DASHSCOPE, "DashscopeBot"),
    ({"model": "qwen-max"}, const.QWEN_DASHSCOPE, "DashscopeBot"),
    ({"model": "gemini-pro"}, const.GEMINI, "GoogleGeminiBot"),
    ({"model": "gemini-2.5-flash"}, const.GEMINI, "GoogleGeminiBot"),
    ({"model": "glm-4"}, const.ZHIPU_AI, "ZHIPUAIBot"),
    ({"model": "glm-4-flash"}, const.ZHIPU_AI, "ZHIPUAIBot"),
    ({"model": "deepseek-chat"}, const.DEEPSEEK, "DeepseekBot"),
    ({"model": "deepseek-reasoner"}, const.DEEPSEEK, "DeepseekBot"),
    ({"model": "moonshot"}, const.MOONSHOT, "MoonshotBot"),
    ({"model": "moonshot-v1-8k"}, const.MOONSHOT, "MoonshotBot"),
    ({"model": "moonshot-v1-128k"}, const.MOONSHOT, "MoonshotBot"),
    ({"model": "modelscope"}, const.MODELSCOPE, "ModelScopeBot"),
    ({"model": "abab6.5-chat"}, const.MiniMax, "MinimaxBot"),
    # A model name beats use_azure_chatgpt, as in the original.
    ({"model": "glm-4", "use_azure_chatgpt": True}, const.ZHIPU_AI, "ZHIPUAIBot"),
    # bot_type wins over every model rule and over use_linkai.
    ({"model": "glm-4", "bot_type": "deepseek"}, const.DEEPSEEK, "DeepseekBot"),
    ({"model": "deepseek-chat", "bot_type": "chatGPT"}, const.CHATGPT, "ChatGPTBot"),
    ({"model": "qwen-max", "bot_type": "moonshot", "use_linkai": True, "linkai_api_key": "Link_x"}, const.MOONSHOT, "MoonshotBot"),
    # use_linkai with a key replaces the model's bot; without a key it does not.
    ({"model": "glm-4", "use_linkai": True, "linkai_api_key": "Link_x"}, const.LINKAI, "LinkAIBot"),
    ({"model": "glm-4", "use_linkai": True}, const.ZHIPU_AI, "ZHIPUAIBot"),
]


@pytest.mark.parametrize("values, bot_type, class_name", ROUTES, ids=[json.dumps(v, sort_keys=True) for v, _, _ in ROUTES])
def test_the_original_routing_through_a_loaded_config(load, values, bot_type, class_name):
    load(**values)
    assert route()["chat"] == bot_type
    assert Bridge().get_bot_type("chat") == bot_type
    cls = bot_class(bot_type)
    assert cls.__name__ == class_name
    # The class lives at the original's module path, so its bot_type values keep working.
    assert f"{cls.__module__}:{cls.__name__}" == REGISTRY[bot_type]


def _call(load, **values):
    """The chat request the routed bot would send for one question (nothing is sent)."""
    settings = load(**values)
    bot = bot_class(route()["chat"])()
    key, own = bot._chat_key(None)
    model = settings.get("model")
    return bot._chat_call([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], model, key, own)


@pytest.mark.parametrize(
    "values, url, key, model",
    [
        # The original's DeepSeek bot used open_ai_api_key with open_ai_api_base: kept as a pair for a relay.
        ({"model": "deepseek-chat", "open_ai_api_key": "sk-ds", "open_ai_api_base": "https://proxy.example/v1"},
         "https://proxy.example/v1/chat/completions", "sk-ds", "deepseek-chat"),
        ({"model": "deepseek-reasoner", "deepseek_api_key": "sk-new", "open_ai_api_key": "sk-old"},
         "https://api.deepseek.com/v1/chat/completions", "sk-new", "deepseek-reasoner"),
        # deepseek_api_key never goes to the OpenAI relay of open_ai_api_base.
        ({"model": "deepseek-chat", "deepseek_api_key": "sk-new", "open_ai_api_key": "sk-old",
          "open_ai_api_base": "https://relay.example/v1"}, "https://api.deepseek.com/v1/chat/completions", "sk-new", "deepseek-chat"),
        ({"model": "deepseek-chat", "deepseek_api_key": "sk-new", "deepseek_api_base": "https://ds.example/v1",
          "open_ai_api_base": "https://relay.example/v1"}, "https://ds.example/v1/chat/completions", "sk-new", "deepseek-chat"),
        ({"bot_type": "deepseek", "deepseek_api_key": "sk-new"}, "https://api.deepseek.com/v1/chat/completions", "sk-new", "deepseek-chat"),
        # Moonshot / ModelScope: the original's full chat-completions URL settings.
        ({"model": "moonshot", "moonshot_api_key": "sk-m"}, "https://api.moonshot.cn/v1/chat/completions", "sk-m", "moonshot-v1-32k"),
        ({"bot_type": "moonshot", "moonshot_api_key": "sk-m"}, "https://api.moonshot.cn/v1/chat/completions", "sk-m", "moonshot-v1-128k"),
        ({"model": "modelscope", "modelscope_api_key": "ms"}, "https://api-inference.modelscope.cn/v1/chat/completions", "ms",
         "Qwen/Qwen2.5-7B-Instruct"),
        ({"bot_type": "modelscope", "model": "deepseek-ai/DeepSeek-V3", "modelscope_api_key": "ms"},
         "https://api-inference.modelscope.cn/v1/chat/completions", "ms", "deepseek-ai/DeepSeek-V3"),
        ({"model": "glm-4-plus", "zhipu_ai_api_key": "zp"}, "https://open.bigmodel.cn/api/paas/v4/chat/completions", "zp", "glm-4-plus"),
        ({"model": "qwen", "dashscope_api_key": "sk-q"}, "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions", "sk-q", "qwen-plus"),
        ({"model": "qwen-turbo", "dashscope_api_key": "sk-q"}, "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions", "sk-q", "qwen-turbo"),
        # MiniMax: the original's default URL (retired ChatCompletion Pro) gives way to the current root.
        ({"model": "abab6.5-chat", "Minimax_api_key": "mm", "Minimax_base_url": "https://api.minimax.chat/v1/text/chatcompletion_pro?GroupId=1"},
         "https://api.minimaxi.com/v1/chat/completions", "mm", "abab6.5-chat"),
        ({"model": "gemini", "gemini_api_key": "AIza"}, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "AIza",
         "gemini-2.5-flash"),
        ({"model": "gemini-2.5-pro", "gemini_api_key": "AIza"}, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
         "AIza", "gemini-2.5-pro"),
        # Spark: the domain is the model; the APIPassword wins over APIKey:APISecret.
        ({"model": "xunfei", "xunfei_api_key": "k", "xunfei_api_secret": "s"}, "https://spark-api-open.xf-yun.com/v1/chat/completions",
         "k:s", "generalv3.5"),
        ({"model": "xunfei", "xunfei_api_key": "k", "xunfei_api_secret": "s", "xunfei_api_password": "pw", "xunfei_domain": "lite"},
         "https://spark-api-open.xf-yun.com/v1/chat/completions", "pw", "lite"),
        # Wenxin: the original's v1 endpoint names become v2 model ids.
        ({"model": "wenxin", "baidu_wenxin_api_key": "bce-v3/ALTAK-a/b"}, "https://qianfan.baidubce.com/v2/chat/completions",
         "bce-v3/ALTAK-a/b", "ernie-lite-8k"),
        ({"model": "wenxin-4", "baidu_wenxin_api_key": "bce-v3/ALTAK-a/b"}, "https://qianfan.baidubce.com/v2/chat/completions",
         "bce-v3/ALTAK-a/b", "ernie-4.0-8k"),
        ({"model": "wenxin", "baidu_wenxin_model": "completions", "baidu_wenxin_api_key": "bce-v3/ALTAK-a/b"},
         "https://qianfan.baidubce.com/v2/chat/completions", "bce-v3/ALTAK-a/b", "ernie-3.5-8k"),
    ],
)
def test_each_vendor_reads_the_original_settings(load, values, url, key, model):
    call = _call(load, **values)
    assert call.url == url
    assert call.headers == {"Authorization": f"Bearer {key}"}
    assert call.payload["model"] == model
    assert call.payload["stream"] is True


@pytest.mark.parametrize("values", [
    {"model": "deepseek-chat", "open_ai_api_key": "sk-openai"},  # OpenAI's default address
    {"model": "deepseek-chat", "open_ai_api_key": "sk-openai", "open_ai_api_base": "https://api.openai.com/v1"},
    {"model": "deepseek-chat", "open_ai_api_key": "sk-openai", "deepseek_api_base": "https://ds.example/v1"},
])
def test_an_openai_key_is_never_sent_to_deepseek(load, values):
    settings = load(**values)
    bot = bot_class(route()["chat"])
    assert bot.preset.api_key(settings) == ""
    problem = bot.settings_problem(settings)
    assert problem.startswith("setting 'deepseek_api_key' is empty") and "never sent to DeepSeek" in problem
    assert "sk-openai" not in problem


def test_vendor_quirks_shape_the_request(load):
    # Zhipu refuses temperature / top_p of 0 or 1 and the OpenAI penalties.
    payload = _call(load, model="glm-4", zhipu_ai_api_key="zp", temperature=1, top_p=0, frequency_penalty=0.5).payload
    assert (payload["temperature"], payload["top_p"]) == (0.99, 0.01)
    assert "frequency_penalty" not in payload and "presence_penalty" not in payload
    # Wenxin gets the character prompt only with baidu_wenxin_prompt_enabled, as in the original.
    off = _call(load, model="wenxin", baidu_wenxin_api_key="bce-v3/x/y").payload
    assert [m["role"] for m in off["messages"]] == ["user"]
    on = _call(load, model="wenxin", baidu_wenxin_api_key="bce-v3/x/y", baidu_wenxin_prompt_enabled=True).payload
    assert [m["role"] for m in on["messages"]] == ["system", "user"]
    # A user's own OpenAI key (#set_openai_api_key) never goes to another vendor.
    settings = load(model="glm-4", zhipu_ai_api_key="zp")
    from bridge.context import Context, ContextType

    bot = bot_class(route()["chat"])()
    context = Context(ContextType.TEXT, "hi", {"session_id": "s", "openai_api_key": "sk-users-own-openai-key"})
    assert bot._chat_key(context) == ("zp", False)
    assert settings.get("zhipu_ai_api_key") == "zp"


class ShowingChannel:
    """A channel that shows answers growing (as web, Feishu and the WeCom AI bot do)."""

    def __init__(self) -> None:
        self.partials: list[str] = []

    def can_show_partial(self, context) -> bool:
        return True

    def show_partial(self, context, stream_id, text) -> None:
        self.partials.append(text)


@pytest.mark.parametrize("vendor, values", [
    ("zhipu", {"model": "glm-4", "zhipu_ai_api_key": "sk-test"}),
    ("minimax", {"model": "abab6.5-chat", "Minimax_api_key": "sk-test"}),
])
def test_a_vendor_answer_is_shown_growing_where_the_channel_can(load, vendor, values):
    from bridge.context import Context, ContextType
    from bridge.reply import ReplyType
    from tests.fakes.openai_server import OpenAIServer

    with OpenAIServer(vendor=vendor) as server:
        base_setting = {"zhipu": "zhipu_ai_api_base", "minimax": "Minimax_base_url"}[vendor]
        load(**values, **{base_setting: server.base_url})
        bot = bot_class(route()["chat"])()
        channel = ShowingChannel()
        answer = "A longer answer, streamed three characters at a time."
        server.push_answer(answer)
        reply = bot.reply("tell me", Context(ContextType.TEXT, "tell me", {"session_id": "s", "channel": channel}))
    assert reply.type == ReplyType.TEXT and reply.content == answer
    assert len(channel.partials) > 3  # shown while it was read ...
    assert all(answer.startswith(shown) for shown in channel.partials)  # ... without MiniMax's <think> part
    assert channel.partials[-1] == answer


# simulator vendor -> the preset (bot type) that talks to it
_SIMULATED_PRESETS = {"deepseek": "deepseek", "moonshot": "moonshot", "zhipu": "glm-4", "qwen": "dashscope",
                      "minimax": "minimax", "modelscope": "modelscope", "gemini": "gemini", "xunfei": "xunfei",
                      "qianfan": "baidu"}


@pytest.mark.parametrize("vendor, bot_type", sorted(_SIMULATED_PRESETS.items()))
def test_a_bad_parameter_of_the_simulators_is_read_as_a_bad_request(vendor, bot_type):
    """The simulators answer a refused request field the way each vendor's docs say; the
    presets must read that as a bad request, never as a wrong key (Spark's 10005 was)."""
    import json as _json

    from bot.compatible.presets import AUTH, BAD_REQUEST, PRESETS
    from bot.compatible.vendor_bot import vendor_error_fields
    from tests.fakes.openai_server import VENDORS

    status, body = VENDORS[vendor].errors["param"]
    message, codes = vendor_error_fields(_json.dumps(body).encode())
    kind = PRESETS[bot_type].error_kind(status, codes, message)
    assert kind != AUTH
    assert kind in (BAD_REQUEST, None)  # None: OpenAI's rules (a 400) decide


@pytest.mark.parametrize("vendor, values, base_setting", [
    ("minimax", {"model": "abab6.5-chat", "Minimax_api_key": "sk-test"}, "Minimax_base_url"),
    ("modelscope", {"model": "modelscope", "modelscope_api_key": "sk-test"}, "modelscope_base_url"),
])
@pytest.mark.parametrize("stream", [True, False])
def test_an_answer_that_is_only_unfinished_reasoning_is_not_sent_raw(load, vendor, values, base_setting, stream):
    from bridge.context import Context, ContextType
    from bridge.reply import ReplyType
    from tests.fakes.openai_server import OpenAIServer

    with OpenAIServer(vendor=vendor, stream=stream) as server:
        load(**values, **{base_setting: server.base_url})
        bot = bot_class(route()["chat"])()
        server.push_answer("<think>The user asks about X. First I should consider")  # cut off inside the block
        reply = bot.reply("tell me", Context(ContextType.TEXT, "tell me", {"session_id": "s"}))
        assert reply.type == ReplyType.ERROR
        assert reply.content == "The model returned an empty answer; please rephrase and try again."
        assert "<think>" not in reply.content
        # The failed turn leaves nothing behind: the next question is answered as usual.
        assert bot.reply("again", Context(ContextType.TEXT, "again", {"session_id": "s"})).type == ReplyType.TEXT
