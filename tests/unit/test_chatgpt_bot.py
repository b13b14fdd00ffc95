"""The OpenAI-style chat bot against a real OpenAI-compatible server on loopback."""
from __future__ import annotations

import json

import pytest

import config
from bot.chatgpt.chat_gpt_bot import AzureChatGPTBot, ChatGPTBot
from bot.chatgpt.chat_gpt_session import ChatGPTSession, estimate_message_tokens, estimate_text_tokens
from bridge.bridge import Bridge
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from tests.fakes.openai_server import OpenAIServer, openai_error

KEY = "sk-test"


@pytest.fixture
def server():
    with OpenAIServer(api_keys={KEY, "sk-user-own-key-0001"}) as s:
        yield s


@pytest.fixture
def settings_for(settings, server):
    settings["bot_type"] = "chatGPT"
    settings["model"] = "gpt-3.5-turbo"
    settings["open_ai_api_base"] = server.base_url
    settings["open_ai_api_key"] = KEY
    settings["proxy"] = ""
    settings["character_desc"] = "You are a test bot."
    settings["conversation_max_tokens"] = 1000
    settings["request_timeout"] = 5
    settings["rate_limit_chatgpt"] = 0
    settings["rate_limit_dalle"] = 0
    settings["use_azure_chatgpt"] = False
    settings["use_linkai"] = False
    return settings


@pytest.fixture
def bot(settings_for):
    b = ChatGPTBot()
    b.retry_wait = 0.001
    return b


@pytest.fixture
def bridge(settings_for):
    Bridge.reset_instance()
    Bridge().reset_bot()
    yield Bridge()
    Bridge.reset_instance()


def ctx(content, session_id="alice", ctype=ContextType.TEXT, **kwargs) -> Context:
    return Context(ctype, content, {"session_id": session_id, **kwargs})


def ask(bot, text, session_id="alice", **kwargs) -> Reply:
    return bot.reply(text, ctx(text, session_id, **kwargs))


def assert_short_error(reply: Reply):
    assert reply.type == ReplyType.ERROR
    assert "Traceback" not in reply.content and len(reply.content) < 160


# --- answers ----------------------------------------------------------------------


def test_streamed_answer_and_request_shape(bot, server, settings_for):
    settings_for["temperature"] = 0.3
    reply = ask(bot, "hello")
    assert (reply.type, reply.content) == (ReplyType.TEXT, "echo: hello (messages: 2)")
    req = server.last
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json["stream"] is True
    assert req.json["model"] == "gpt-3.5-turbo"
    assert (req.json["temperature"], req.json["top_p"], req.json["presence_penalty"]) == (0.3, 1, 0)
    assert req.messages == [{"role": "system", "content": "You are a test bot."}, {"role": "user", "content": "hello"}]


def test_long_streamed_answer_is_assembled(bot, server):
    text = "第一段。" * 50 + "The end."
    server.push_answer(text)
    assert ask(bot, "长回答").content == text


def test_non_streaming_server_answer(settings, settings_for):
    with OpenAIServer(stream=False) as plain:
        settings["open_ai_api_base"] = plain.base_url
        bot = ChatGPTBot()
        assert ask(bot, "hi").content == "echo: hi (messages: 2)"
        plain.push_answer("plain JSON", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        assert ask(bot, "again").content == "plain JSON"
        assert plain.last.json["stream"] is True  # asked, ignored by the server


def test_history_is_sent_on_the_second_turn(bot, server):
    ask(bot, "first question")
    reply = ask(bot, "second question")
    assert reply.content == "echo: second question (messages: 4)"
    assert [m["role"] for m in server.last.messages] == ["system", "user", "assistant", "user"]
    assert server.last.messages[0]["content"] == "You are a test bot."
    assert server.last.messages[2]["content"] == "echo: first question (messages: 2)"
    # Sessions are per session id.
    assert ask(bot, "other user", session_id="bob").content == "echo: other user (messages: 2)"


def test_history_trimmed_to_the_budget_in_chinese(bot, server, settings_for):
    settings_for["character_desc"] = "你是助手"
    settings_for["conversation_max_tokens"] = 100
    questions = ["请问今天的天气怎么样我们要不要出去玩一下" + str(i) for i in range(4)]  # ~21 tokens each
    for q in questions:
        assert ask(bot, q, session_id="trim").type == ReplyType.TEXT
        sent = server.last.messages
        assert sent[0] == {"role": "system", "content": "你是助手"}
        assert sent[-1] == {"role": "user", "content": q}
        assert estimate_message_tokens(sent) <= 100
    # One earlier turn fits next to the question, two do not.
    assert [m["role"] for m in server.last.messages] == ["system", "user", "assistant", "user"]
    assert server.last.messages[1]["content"] == questions[2]


def test_token_estimate():
    assert estimate_text_tokens("你好世界") == 4
    assert estimate_text_tokens("hello world!") == 3  # 12 characters / 4
    assert estimate_text_tokens("，。！") == 3  # full-width punctuation
    assert estimate_text_tokens("") == 0
    assert estimate_message_tokens([{"role": "user", "content": "你好"}]) == 4 + 2 + 3


def test_session_trimming_rules(settings):
    settings["character_desc"] = "sys"
    s = ChatGPTSession("s")
    for i in range(3):
        s.add_query("问题" * 10 + str(i))
        s.add_reply("回答" * 10 + str(i))
    s.add_query("最新的问题")
    total = s.discard_exceeding(80)
    assert total <= 80 and total == s.calc_tokens()
    assert s.messages[0]["role"] == "system"
    assert s.messages[1]["role"] == "user"  # never starts with an orphan answer
    assert s.messages[-1]["content"] == "最新的问题"
    # A lone latest question over budget is kept (and sent) anyway.
    s.add_query("长" * 500)
    s.discard_exceeding(50)
    assert [m["role"] for m in s.messages] == ["system", "user"]
    assert s.messages[1]["content"] == "长" * 500


def test_per_user_key_and_model(bot, server):
    reply = ask(bot, "mine", openai_api_key="sk-user-own-key-0001", gpt_model="gpt-4o")
    assert reply.type == ReplyType.TEXT
    assert server.last.headers["authorization"] == "Bearer sk-user-own-key-0001"
    assert server.last.json["model"] == "gpt-4o"


def test_reasoning_models_get_no_sampling_parameters(bot, server):
    ask(bot, "think", gpt_model="o3-mini")
    assert "temperature" not in server.last.json and "top_p" not in server.last.json


def test_no_key_sends_no_authorization(settings, settings_for):
    with OpenAIServer(api_keys=set()) as local:
        settings["open_ai_api_base"] = local.base_url
        settings["open_ai_api_key"] = ""
        assert ask(ChatGPTBot(), "local").type == ReplyType.TEXT
        assert "authorization" not in local.last.headers


# --- commands ---------------------------------------------------------------------


def test_clear_memory_commands(bot, server, settings_for):
    settings_for["clear_memory_commands"] = ["#忘记"]
    ask(bot, "remember me")
    ask(bot, "remember me", session_id="bob")
    reply = ask(bot, "#清除记忆")
    assert (reply.type, reply.content) == (ReplyType.INFO, "记忆已清除")
    assert ask(bot, "fresh").content == "echo: fresh (messages: 2)"
    assert ask(bot, "#忘记").type == ReplyType.INFO
    assert ask(bot, "again").content == "echo: again (messages: 2)"
    count = len(server.requests)
    reply = ask(bot, "#清除所有")
    assert (reply.type, reply.content) == (ReplyType.INFO, "所有人记忆已清除")
    assert len(server.requests) == count  # commands never reach the API
    assert ask(bot, "x", session_id="bob").content == "echo: x (messages: 2)"


def test_update_config_command_reloads(bot, settings_for, tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"temperature": 0.2, "open_ai_api_key": "sk-from-file"}), encoding="utf-8")
    monkeypatch.setattr(config, "_config_path", str(path))
    reply = ask(bot, "#更新配置")
    assert (reply.type, reply.content) == (ReplyType.INFO, "配置已更新")
    assert config.conf().get("temperature") == 0.2
    assert config.conf().get("open_ai_api_key") == "sk-from-file"

    path.write_text("{not json", encoding="utf-8")
    reply = ask(bot, "#更新配置")
    assert reply.type == ReplyType.ERROR and "配置未更新" in reply.content
    assert config.conf().get("temperature") == 0.2  # unchanged


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, zh_part, en_part",
    [
        (401, None, "open_ai_api_key", "open_ai_api_key"),
        (403, None, "403", "403"),
        (404, None, "gpt-3.5-turbo", "gpt-3.5-turbo"),
        (429, None, "限流", "rate limiting"),
        (429, openai_error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota"), "额度", "quota"),
    ],
)
def test_http_errors_in_both_languages(bot, server, status, body, zh_part, en_part):
    for question, part in (("你好", zh_part), ("hello", en_part)):
        server.push_error(status, body)
        reply = ask(bot, question)
        assert_short_error(reply)
        assert part in reply.content
    assert len(server.requests) == 2  # not retried
    # The failed turns were not kept.
    assert ask(bot, "after").content == "echo: after (messages: 2)"


def test_404_names_the_model_and_base_url_setting(bot, settings, server):
    with OpenAIServer(models=["gpt-4o"]) as strict:
        settings["open_ai_api_base"] = strict.base_url
        reply = ask(bot, "hello")
        assert_short_error(reply)
        assert "gpt-3.5-turbo" in reply.content and "open_ai_api_base" in reply.content


def test_wrong_key_is_masked_in_the_log(bot, server, settings_for, logs):
    secret = "sk-wrong-key-abcdefghijkl"
    settings_for["open_ai_api_key"] = secret
    reply = ask(bot, "你好")
    assert_short_error(reply)
    assert "API Key 无效" in reply.content and "open_ai_api_key" in reply.content
    assert any("401" in line for line in logs.messages)
    assert not any(secret in line for line in logs.messages)


def test_wrong_own_key_points_to_the_command(bot, server):
    reply = ask(bot, "hello", openai_api_key="sk-not-valid-000000")
    assert_short_error(reply)
    assert "#set_openai_api_key" in reply.content


def test_server_errors_are_retried_then_succeed(bot, server):
    server.push_error(500)
    server.push_error(502)
    reply = ask(bot, "retry me")
    assert reply.content == "echo: retry me (messages: 2)"
    assert len(server.chat_requests()) == 3


def test_server_errors_give_up_after_two_retries(bot, server):
    for status in (500, 502, 503):
        server.push_error(status)
    reply = ask(bot, "服务器坏了")
    assert_short_error(reply)
    assert "503" in reply.content and "暂时不可用" in reply.content
    assert len(server.requests) == 3
    assert ask(bot, "ok").content == "echo: ok (messages: 2)"


def test_connection_refused(bot, settings_for):
    settings_for["open_ai_api_base"] = "http://127.0.0.1:9/v1"
    reply = ask(bot, "anyone there?")
    assert_short_error(reply)
    assert "proxy" in reply.content and "open_ai_api_base" in reply.content


def test_bad_base_url(bot, settings_for):
    settings_for["open_ai_api_base"] = "api.openai.com/v1"
    reply = ask(bot, "hi")
    assert_short_error(reply)
    assert "open_ai_api_base" in reply.content
    settings_for["open_ai_api_base"] = "http://127.0.0.1:9/v1"
    settings_for["proxy"] = "http://user:pw@[broken"
    reply = ask(bot, "hi")
    assert_short_error(reply)
    assert "proxy" in reply.content


def test_broken_stream_is_not_retried_and_not_kept(bot, server):
    server.push_broken_stream("half an ans")
    reply = ask(bot, "tell me")
    assert_short_error(reply)
    assert "cut off" in reply.content
    assert len(server.requests) == 1
    assert ask(bot, "next").content == "echo: next (messages: 2)"


def test_timeout(bot, server, settings_for):
    settings_for["request_timeout"] = 0.3
    server.push_hang(2)
    reply = ask(bot, "你在吗")
    assert_short_error(reply)
    assert "超时" in reply.content
    assert len(server.requests) == 1  # a timeout is not retried


def test_answer_that_is_not_openai_shaped(bot, server):
    server.push_error(200, "<html>captive portal</html>")
    reply = ask(bot, "hi")
    assert_short_error(reply)
    assert "OpenAI" in reply.content


def test_bad_request_clears_the_session(bot, server):
    ask(bot, "one")
    server.push_error(400, openai_error(400, "maximum context length exceeded", code="context_length_exceeded"))
    reply = ask(bot, "two")
    assert_short_error(reply)
    assert ask(bot, "three").content == "echo: three (messages: 2)"


def test_rate_limit_bucket(bot, server, settings_for):
    settings_for["rate_limit_chatgpt"] = 2
    assert ask(bot, "1").type == ReplyType.TEXT
    assert ask(bot, "2").type == ReplyType.TEXT
    busy = ask(bot, "第三个问题")
    assert_short_error(busy)
    assert "太快" in busy.content
    assert len(server.requests) == 2


def test_unsupported_context_type(bot, server):
    reply = bot.reply("/tmp/a.mp3", ctx("/tmp/a.mp3", ctype=ContextType.VOICE))
    assert reply.type == ReplyType.ERROR
    assert not server.requests


def test_reply_text_compat(bot, server):
    session = bot.sessions.build_session("compat")
    session.add_query("plugin question")
    result = bot.reply_text("compat", session, args={"model": "gpt-4o-mini"})
    assert result["content"] == "echo: plugin question (messages: 2)"
    assert result["completion_tokens"] > 0
    assert server.last.json["model"] == "gpt-4o-mini"
    server.push_error(401)
    assert bot.reply_text("compat", session)["completion_tokens"] == 0


# --- images -----------------------------------------------------------------------


def test_image_generation(bot, server, settings_for):
    settings_for["image_create_size"] = "512x512"
    reply = bot.reply("一只猫", ctx("一只猫", ctype=ContextType.IMAGE_CREATE))
    assert reply.type == ReplyType.IMAGE_URL
    assert reply.content == f"{server.root_url}/images/1.png"
    req = server.last
    assert req.path == "/v1/images/generations"
    assert req.json == {"model": "dall-e-2", "prompt": "一只猫", "n": 1, "size": "512x512"}
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_dalle3_revised_prompt_goes_to_the_channel(bot, server, settings_for):
    sent = []

    class Channel:
        def send(self, reply, context):
            sent.append(reply)

    settings_for["text_to_image"] = "dall-e-3"
    reply = bot.reply("a cat", ctx("a cat", ctype=ContextType.IMAGE_CREATE, channel=Channel()))
    assert reply.type == ReplyType.IMAGE_URL
    # dalle3_image_quality not set: "standard", the original's default (and the API's).
    assert server.last.json["quality"] == "standard"
    assert len(sent) == 1 and "A detailed picture of a cat" in sent[0].content


def test_image_errors_and_rate_limit(bot, server, settings_for):
    server.push_error(400, openai_error(400, "Your request was rejected as a result of our safety system.", code="content_policy_violation"))
    reply = bot.reply("画个东西", ctx("画个东西", ctype=ContextType.IMAGE_CREATE))
    assert_short_error(reply)
    assert "安全审核" in reply.content
    settings_for["rate_limit_dalle"] = 1
    assert bot.reply("cat", ctx("cat", ctype=ContextType.IMAGE_CREATE)).type == ReplyType.IMAGE_URL
    busy = bot.reply("cat", ctx("cat", ctype=ContextType.IMAGE_CREATE))
    assert_short_error(busy)


# --- Azure, proxy, routing ----------------------------------------------------------


def test_azure_url_and_header_through_the_bridge(bridge, server, settings_for):
    settings_for["bot_type"] = ""
    settings_for["use_azure_chatgpt"] = True
    settings_for["open_ai_api_base"] = server.root_url + "/"
    settings_for["azure_deployment_id"] = "my-gpt4o"
    settings_for["azure_api_version"] = ""
    bridge.reset_bot()
    reply = bridge.fetch_reply_content("hello azure", ctx("hello azure"))
    assert reply.content == "echo: hello azure (messages: 2)"
    assert isinstance(bridge.get_bot("chat"), AzureChatGPTBot)
    req = server.last
    assert req.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert req.query == {"api-version": "2024-02-15-preview"}
    assert req.headers["api-key"] == KEY and "authorization" not in req.headers

    settings_for["azure_api_version"] = "2024-06-01"
    server.push_error(404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}})
    reply = bridge.fetch_reply_content("hello", ctx("hello"))
    assert_short_error(reply)
    assert "my-gpt4o" in reply.content and "azure_deployment_id" in reply.content
    assert server.last.query == {"api-version": "2024-06-01"}


def test_azure_image(settings_for, server):
    settings_for["open_ai_api_base"] = server.root_url
    settings_for["azure_openai_dalle_deployment_id"] = "dalle3"
    bot = AzureChatGPTBot()
    reply = bot.reply("cat", ctx("cat", ctype=ContextType.IMAGE_CREATE))
    assert reply.type == ReplyType.IMAGE_URL
    assert server.last.path == "/openai/deployments/dalle3/images/generations"
    assert server.last.headers["api-key"] == KEY


def test_proxy_setting_is_used(bot, server, settings_for):
    # The API host does not exist: only a request sent through the proxy (the
    # simulator, which also answers forward-proxy requests) can be answered.
    settings_for["open_ai_api_base"] = "http://api.example.invalid/v1"
    settings_for["proxy"] = server.root_url
    reply = ask(bot, "via proxy")
    assert reply.content == "echo: via proxy (messages: 2)"
    assert server.last.proxied


def test_compatible_model_names_route_to_chatgpt(bridge, server, settings_for):
    settings_for["model"] = "deepseek-chat"
    bridge.reset_bot()
    reply = bridge.fetch_reply_content("你好", ctx("你好"))
    assert reply.content == "echo: 你好 (messages: 2)"
    assert isinstance(bridge.get_bot("chat"), ChatGPTBot)
    assert server.last.json["model"] == "deepseek-chat"


# --- answers made safe and bounded (issue 11) ----------------------------------------------


def test_a_lone_surrogate_in_an_answer_becomes_a_replacement_character(bot, server):
    server.push_answer("half an emoji \ud83d here")
    assert ask(bot, "odd").content == "half an emoji \ufffd here"


def test_a_huge_streamed_answer_is_not_read_past_answer_max_chars(bot, server):
    server.chunk_size = 256 * 1024
    server.push_answer("x" * (10 * 1024 * 1024))
    reply = ask(bot, "a long one")
    # Read until it passed the limit; the pipeline then cuts it to the limit and says so.
    assert reply.type == ReplyType.TEXT and 65536 < len(reply.content) <= 65536 + 256 * 1024


def test_one_huge_stream_event_is_refused_clearly(bot, server):
    server.chunk_size = 3 * 1024 * 1024
    server.push_answer("y" * (3 * 1024 * 1024))
    reply = ask(bot, "one block")
    assert_short_error(reply)
    assert reply.content == "The model's answer was too large to show; please ask for a shorter one."


def test_request_timeout_is_the_total_time_of_a_trickling_stream(bot, server, settings_for):
    # One token every 0.2 s never lets a read time out; request_timeout still ends the answer
    # (issue 11: it bounded only the wait between two reads, so the worker was held forever).
    settings_for["request_timeout"] = 1
    server.push_trickle("x", every=0.2)
    reply = ask(bot, "hi")
    assert_short_error(reply)
    assert "request_timeout" in reply.content or "超时" in reply.content
    assert len(server.chat_requests()) == 1  # not sent again
