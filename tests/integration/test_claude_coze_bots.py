"""The Claude (claudeAPI) and Coze bots in-process against their simulators: the error
mapping of every status, answers shown growing on a channel that can, and Claude's rules
for the history."""
from __future__ import annotations

import pytest

from bot.bytedance.bytedance_coze_bot import ByteDanceCozeBot
from bot.claudeapi.claude_api_bot import ClaudeAPIBot, claude_messages
from bridge.context import Context, ContextType
from bridge.reply import ReplyType
from common.store import MemoryStore
from tests.e2e.daemon import free_port
from tests.fakes.anthropic_server import AnthropicServer
from tests.fakes.coze_server import DEFAULT_BOT, CozeServer


class ShowingChannel:
    """A channel that shows partial answers: records what it was shown."""

    def __init__(self):
        self.shown: list[str] = []

    def can_show_partial(self, context):
        return True

    def show_partial(self, context, stream_id, text):
        self.shown.append(text)


def ctx(text, session="s1", channel=None, ctype=ContextType.TEXT):
    context = Context(ctype, text)
    context["session_id"] = session
    if channel is not None:
        context["channel"] = channel
    return context


# --- Claude ---------------------------------------------------------------------------


@pytest.fixture
def claude(settings):
    with AnthropicServer(models=["claude-3-5-sonnet-latest"]) as server:
        settings.update(claude_api_base=server.base_url, claude_api_key="sk-ant-test", model="claude-3-5-sonnet",
                        character_desc="", open_ai_api_base="https://api.openai.com/v1")
        bot = ClaudeAPIBot()
        bot.max_retries = 0  # the client's own back-off would only slow the test
        yield bot, server


@pytest.mark.parametrize("status, expected", [
    (429, "Claude is rate limiting requests (429); please try again later."),
    (529, "Claude is overloaded right now (529); please try again later."),
    (403, "Claude denied access (403): check the key's permissions and the region."),
    (500, "The Claude service is unavailable right now; please try again later."),
])
def test_claude_status_errors_are_named(claude, status, expected):
    bot, server = claude
    server.push_error(status)
    reply = bot.reply("hello", ctx("hello"))
    assert (reply.type, reply.content) == (ReplyType.ERROR, expected)
    assert bot.reply("hello", ctx("hello")).content == "echo: hello (turns: 1)"  # nothing left behind


def test_claude_error_event_inside_a_stream(claude):
    bot, server = claude
    server.push_stream_error("half an ans", "overloaded_error")
    assert bot.reply("hello", ctx("hello")).content == "Claude is overloaded right now (529); please try again later."


def test_claude_unreachable_base_url(claude, settings):
    bot, _ = claude
    settings["claude_api_base"] = f"http://127.0.0.1:{free_port()}"
    reply = bot.reply("你好", ctx("你好"))
    assert reply.content == "连接不上 Claude 服务，请检查网络以及配置项 proxy 和 claude_api_base。"


def test_claude_streamed_answer_is_shown_growing(claude):
    bot, server = claude
    server.push_answer("one two three four five")
    channel = ShowingChannel()
    reply = bot.reply("count", ctx("count", channel=channel))
    assert reply.content == "one two three four five"
    assert len(channel.shown) > 2 and channel.shown[-1] == "one two three four five"
    assert all(channel.shown[i + 1].startswith(channel.shown[i]) for i in range(len(channel.shown) - 1))


def test_claude_history_follows_the_messages_api_rules():
    system, messages = claude_messages([
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "a stray answer first"},
        {"role": "user", "content": "q1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q3"},
    ])
    assert system == "be brief"
    assert messages == [{"role": "user", "content": "q1\n\nq2"}, {"role": "assistant", "content": "a2"},
                        {"role": "user", "content": "q3"}]


def test_claude_memory_commands_and_image_refusal(claude):
    bot, server = claude
    assert bot.reply("a", ctx("a")).content == "echo: a (turns: 1)"
    assert bot.reply("#清除记忆", ctx("#清除记忆")).content == "记忆已清除"
    assert bot.reply("b", ctx("b")).content == "echo: b (turns: 1)"
    drawn = bot.reply("a cat", ctx("a cat", ctype=ContextType.IMAGE_CREATE))
    assert drawn.type == ReplyType.ERROR and "cannot create images" in drawn.content


# --- Coze -------------------------------------------------------------------------------


@pytest.fixture
def coze(settings):
    with CozeServer() as server:
        settings.update(coze_api_base=server.base_url, coze_api_key="pat_test", coze_bot_id=DEFAULT_BOT,
                        coze_stream=True, coze_conversation_max_messages=20)
        yield ByteDanceCozeBot(MemoryStore()), server


def test_coze_streamed_answer_is_shown_growing(coze):
    bot, server = coze
    server.push_answer("one two three four five")
    channel = ShowingChannel()
    assert bot.reply("count", ctx("count", channel=channel)).content == "one two three four five"
    assert len(channel.shown) > 2 and channel.shown[-1] == "one two three four five"


@pytest.mark.parametrize("stream", [True, False])
def test_coze_failed_chat_and_rate_limit(coze, settings, stream):
    bot, server = coze
    settings["coze_stream"] = stream
    server.push_chat_failed(0, "the workflow failed")
    assert bot.reply("a", ctx("a")).content == "The Coze bot failed to answer this time; please try again later."
    server.push_error(4013, "The request frequency exceeds the limit")
    assert bot.reply("b", ctx("b")).content == "Coze is rate limiting requests; please try again later."


def test_coze_forgotten_conversation_when_polling(coze, settings):
    bot, server = coze
    settings["coze_stream"] = False
    assert bot.reply("a", ctx("a")).content == "echo: a (turn 1)"
    server.forget_conversations()
    assert bot.reply("b", ctx("b")).content == "echo: b (turn 1)"
    assert bot.reply("c", ctx("c")).content == "echo: c (turn 2)"


def test_coze_max_messages_and_reset(coze, settings):
    bot, server = coze
    settings["coze_conversation_max_messages"] = 2
    replies = [bot.reply(q, ctx(q)).content for q in ("a", "b", "c")]
    assert replies == ["echo: a (turn 1)", "echo: b (turn 2)", "echo: c (turn 1)"]  # a new conversation after 2
    bot.sessions.clear_session("s1")  # godcmd's #reset
    assert bot.reply("d", ctx("d")).content == "echo: d (turn 1)"
    assert len(server.conversations) == 3


def test_coze_poll_times_out(coze, settings):
    bot, server = coze
    settings.update(coze_stream=False, coze_answer_timeout=1)
    server.polls_before_done = 1000
    assert bot.reply("slow", ctx("slow")).content == "Coze did not answer in time (coze_answer_timeout); please try again later."


def test_claude_stream_that_never_ends_is_stopped_at_request_timeout(claude, settings):
    bot, server = claude
    settings["request_timeout"] = 1
    server.push_trickle("la ", every=0.1)
    reply = bot.reply("sing", ctx("sing"))
    assert reply.content == "Claude did not answer in time (request_timeout); please try again later."
    assert bot.reply("hello", ctx("hello")).content == "echo: hello (turns: 1)"


class SendingChannel(ShowingChannel):
    def __init__(self):
        super().__init__()
        self.sent = []

    def can_show_partial(self, context):
        return False

    def send(self, reply, context):
        self.sent.append(reply)


def test_coze_return_show_img_sends_the_images_of_an_answer(coze, settings):
    bot, server = coze
    settings["coze_return_show_img"] = "true"
    server.push_answer("Here is a cat:\n\n![cat](/files/cat.png)\n\nAnything else?")
    channel = SendingChannel()
    reply = bot.reply("a cat", ctx("a cat", channel=channel))
    kinds = [r.type for r in channel.sent] + [reply.type]
    assert kinds == [ReplyType.TEXT, ReplyType.IMAGE, ReplyType.TEXT], kinds
    assert channel.sent[1].content.read().startswith(b"\x89PNG")
    settings["coze_return_show_img"] = "false"  # the original's default: the answer as it is
    server.push_answer("![cat](/files/cat.png)")
    assert bot.reply("again", ctx("again", channel=channel)).content == "![cat](/files/cat.png)"


@pytest.mark.parametrize("stream", [True, False])
def test_claude_question_is_never_sent_again_after_a_timeout(claude, settings, stream):
    """A server that takes the question in and never answers: one request, then the
    timeout answer (the anthropic client's retries sent it three times)."""
    bot, server = claude
    bot.max_retries = 2
    settings.update(request_timeout=1, claude_stream=stream)
    server.push_silence()
    reply = bot.reply("are you there", ctx("are you there"))
    assert reply.content == "Claude did not answer in time (request_timeout); please try again later."
    assert len(server.message_requests()) == 1


def test_claude_non_streamed_answer_read_slowly_is_stopped_at_request_timeout(claude, settings):
    bot, server = claude
    settings.update(request_timeout=1, claude_stream=False)
    server.push_slow_body("a long answer", every=0.1)  # ~250 bytes: ~25 s, every read within its timeout
    reply = bot.reply("slowly", ctx("slowly"))
    assert reply.content == "Claude did not answer in time (request_timeout); please try again later."
    assert len(server.message_requests()) == 1


@pytest.mark.parametrize("status", [429, 529])
def test_claude_refused_request_is_asked_again(claude, settings, status):
    bot, server = claude
    bot.max_retries = 1
    server.push_error(status)
    assert bot.reply("hello", ctx("hello")).content == "echo: hello (turns: 1)"
    assert len(server.message_requests()) == 2


def test_claude_server_error_is_not_asked_again(claude, settings):
    bot, server = claude
    bot.max_retries = 2
    server.push_error(500)
    assert bot.reply("hello", ctx("hello")).content == "The Claude service is unavailable right now; please try again later."
    assert len(server.message_requests()) == 1


def test_claude_per_user_openai_model_gives_way_to_the_configured_claude_model(claude, settings):
    bot, server = claude
    settings["model"] = "claude-3-5-sonnet"
    context = ctx("hello")
    context["gpt_model"] = "gpt-4o"  # a user's #model choice made for another bot
    assert bot.reply("hello", context).content == "echo: hello (turns: 1)"
    assert server.message_requests()[-1].json["model"] == "claude-3-5-sonnet-latest"


@pytest.mark.parametrize("stream", [True, False])
def test_coze_several_answer_messages_are_joined_the_same_way_streamed_or_polled(coze, settings, stream):
    bot, server = coze
    settings["coze_stream"] = stream
    server.push_answers("First part.", "Second part.")
    assert bot.reply("two answers", ctx("two answers")).content == "First part.\n\nSecond part."
