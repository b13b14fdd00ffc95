"""DifyBot against the Dify simulator over loopback: app types, event folding, broken
streams, errors, retries, conversations (404 recovery, restart, message limit), images,
answer splitting, streamed paragraphs, identity, and 50 sessions through the pipeline."""
from __future__ import annotations

import io
import os
import time

import pytest

from bot.dify.dify_bot import DifyBot
from bot.dify.dify_client import DifyClient
from bridge.bridge import Bridge
from bridge.context import ContextType
from bridge.reply import ReplyType
from common import memory
from common.store import SQLiteStore
from sandbox.dify_server import DifyServer
from tests.fakes.dify_fixtures import (  # noqa: F401 - fixtures
    DeliveryChannel,
    dify,
    dify_settings,
    make_context,
    unused_port,
)
from tests.fakes.recording_channel import RecordingChannel, assert_echoed_in_order, make_msg, talk_at_once

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 256


@pytest.fixture
def bot(dify):
    return DifyBot()


@pytest.fixture
def channel():
    return DeliveryChannel()


def ask(bot, text, channel=None, **kwargs):
    context = make_context(text, channel=channel, **kwargs)
    return bot.reply(text, context)


def chat_requests(server):
    return server.requests_to("/v1/chat-messages")


def texts(replies):
    return [r.content for r in replies]


# --- app types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
@pytest.mark.parametrize("app_type,mode", [("chatbot", "chat"), ("chatflow", "advanced-chat")])
def test_chat_apps_in_both_modes(bot, dify, dify_settings, app_type, mode, response_mode):
    dify.mode = mode
    dify_settings["dify_app_type"] = app_type
    dify_settings["dify_response_mode"] = response_mode
    reply = ask(bot, "hello there")
    assert (reply.type, reply.content) == (ReplyType.TEXT, "echo: hello there")
    [request] = chat_requests(dify)
    assert request["json"]["response_mode"] == response_mode
    assert request["json"]["user"] == "alice"
    assert "conversation_id" not in request["json"]
    assert bot.sessions.get_session("alice").conversation_id in dify.conversations


def test_streamed_answers_share_one_kept_alive_connection(bot, dify, dify_settings):
    dify_settings["dify_response_mode"] = "streaming"
    for i in range(3):
        assert ask(bot, f"question {i}").content == f"echo: question {i}"
    assert dify.connections_accepted == 1


def test_events_after_message_end_do_not_hold_the_answer(bot, dify, dify_settings):
    # Text-to-speech events may follow message_end; the answer is complete without them.
    dify_settings["dify_response_mode"] = "streaming"
    dify.push_events([{"event": "message", "answer": "spoken"}, {"event": "message_end"}, 30,
                      {"event": "tts_message", "audio": ""}])
    started = time.monotonic()
    assert ask(bot, "hi").content == "spoken"
    # Not waited for: neither the 30 s tail nor the 5 s read timeout of the test settings.
    assert time.monotonic() - started < 3
    assert ask(bot, "again").content == "echo: again"
    assert dify.connections_accepted == 2  # the cut-off connection was not reused


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_agent_apps_always_stream(bot, dify, dify_settings, response_mode):
    dify.mode = "agent-chat"
    dify_settings["dify_app_type"] = "agent"
    dify_settings["dify_response_mode"] = response_mode
    assert ask(bot, "use a tool").content == "echo: use a tool"
    assert chat_requests(dify)[0]["json"]["response_mode"] == "streaming"


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_workflow_app_sends_inputs_and_reads_the_output_variable(bot, dify, dify_settings, response_mode):
    dify.mode = "workflow"
    dify_settings["dify_app_type"] = "workflow"
    dify_settings["dify_response_mode"] = response_mode
    dify_settings["dify_workflow_input_variable"] = "question"
    dify_settings["dify_workflow_output_variable"] = "result"
    dify.push_workflow({"result": "42", "other": 1})
    assert ask(bot, "meaning of life?").content == "42"
    [request] = dify.requests_to("/v1/workflows/run")
    assert request["json"]["inputs"] == {"question": "meaning of life?", "user_id": "alice", "user_name": "Alice",
                                         "room_id": "", "room_name": ""}
    assert request["json"]["response_mode"] == response_mode
    assert request["json"]["user"] == "alice"


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_workflow_missing_output_names_the_variable(bot, dify, dify_settings, response_mode):
    dify.mode = "workflow"
    dify_settings["dify_app_type"] = "workflow"
    dify_settings["dify_response_mode"] = response_mode
    dify.push_workflow({"answer": "x", "score": 3})
    reply = ask(bot, "q")
    assert reply.type == ReplyType.TEXT
    assert "'text'" in reply.content and "answer, score" in reply.content
    assert "dify_workflow_output_variable" in reply.content


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_failed_workflow_gives_an_error_reply(bot, dify, dify_settings, response_mode):
    dify.mode = "workflow"
    dify_settings["dify_app_type"] = "workflow"
    dify_settings["dify_response_mode"] = response_mode
    dify.push_workflow({}, status="failed", error="node LLM exploded: secret stack")
    reply = ask(bot, "q")
    assert reply.content == "The Dify workflow failed; please try again later."


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_completion_app(bot, dify, dify_settings, response_mode):
    dify.mode = "completion"
    dify_settings["dify_app_type"] = "completion"
    dify_settings["dify_response_mode"] = response_mode
    assert ask(bot, "complete me").content == "echo: complete me"
    [request] = dify.requests_to("/v1/completion-messages")
    assert request["json"]["inputs"] == {"query": "complete me"}
    assert request["json"]["response_mode"] == response_mode


def test_per_context_overrides(dify_settings, dify):
    with DifyServer(api_key="app-other", mode="workflow") as other:
        bot = DifyBot()
        context = make_context("routed")
        context["dify_api_base"] = other.base_url
        context["dify_api_key"] = "app-other"
        context["dify_app_type"] = "workflow"
        assert bot.reply("routed", context).content == "echo: routed"
        assert len(other.requests_to("/v1/workflows/run")) == 1
        assert not chat_requests(dify)


def test_image_create_gets_its_prefix_back(bot, dify, dify_settings):
    dify_settings["image_create_prefix"] = ["画", "draw"]
    context = make_context("一只猫", ctype=ContextType.IMAGE_CREATE)
    assert bot.reply("一只猫", context).content == "echo: 画一只猫"


def test_other_context_types_are_refused(bot):
    context = make_context("x", ctype=ContextType.VOICE)
    assert bot.reply("x", context).type == ReplyType.ERROR


# --- streamed events -----------------------------------------------------------------------------

def test_agent_events_fold_into_parts(bot, dify, dify_settings, channel):
    dify.mode = "agent-chat"
    dify_settings["dify_app_type"] = "agent"
    dify.add_file("/files/tools/pic.png", PNG, "image/png")
    dify.push_events([
        "ping",
        {"event": "agent_thought", "position": 1, "thought": "", "tool": ""},
        {"event": "agent_message", "answer": "Let me "},
        {"event": "agent_message", "answer": "draw it."},
        {"event": "agent_thought", "position": 1, "tool": "dalle3", "tool_input": "{}"},
        {"event": "message_file", "type": "image", "belongs_to": "assistant",
         "url": "/files/tools/pic.png?timestamp=1&nonce=2&sign=3"},
        "ping",
        {"event": "tts_message", "audio": "SUQz"},
        {"event": "node_started", "data": {}},
        {"event": "something_new", "foo": 1},
        {"event": "agent_message", "answer": "Here it is."},
        {"event": "message_end", "metadata": {"usage": {"total_tokens": 3}}},
        {"event": "tts_message_end", "audio": ""},
    ])
    reply = ask(bot, "draw a cat", channel)
    assert (reply.type, reply.content) == (ReplyType.TEXT, "Here it is.")
    first, image = channel.delivered
    assert (first.type, first.content) == (ReplyType.TEXT, "Let me draw it.")
    assert image.type == ReplyType.IMAGE and image.content.getvalue() == PNG


def test_message_replace_replaces_the_text(bot, dify):
    dify.push_events([
        {"event": "message", "answer": "something "},
        {"event": "message", "answer": "forbidden"},
        {"event": "message_replace", "answer": "[removed by moderation]"},
        {"event": "message_end", "metadata": {}},
    ])
    assert ask(bot, "q").content == "[removed by moderation]"


def test_message_without_usage_in_message_end_is_fine(bot, dify):
    dify.push_events([{"event": "message", "answer": "ok"}, {"event": "message_end"}])
    assert ask(bot, "q").content == "ok"


def test_chatflow_events_are_ignored_but_the_answer_kept(bot, dify, dify_settings):
    dify.mode = "advanced-chat"
    dify_settings["dify_app_type"] = "chatflow"
    dify.push_workflow({"answer": "flow answer"})
    assert ask(bot, "q").content == "flow answer"


def test_chatflow_failure_event_gives_an_error_reply(bot, dify, dify_settings):
    dify.mode = "advanced-chat"
    dify_settings["dify_app_type"] = "chatflow"
    dify.push_workflow({}, status="failed", error="boom")
    reply = ask(bot, "q")
    assert reply.type == ReplyType.TEXT
    assert "boom" not in reply.content
    assert reply.content == ("Dify could not handle this request; try rephrasing it, and if it keeps happening "
                             "ask the administrator to check the log.")


def test_stream_cut_keeps_the_text_with_a_note(bot, dify):
    dify.push_events([{"event": "message", "answer": "The first half"}, "CUT"])
    reply = ask(bot, "q")
    assert reply.content == "The first half\n(The answer was cut off.)"
    assert len(chat_requests(dify)) == 1
    assert bot.sessions.get_session("alice").conversation_id in dify.conversations


def test_stream_cut_in_chinese(bot, dify):
    dify.push_events([{"event": "message", "answer": "一半"}, "CUT"])
    assert ask(bot, "你好").content == "一半\n（回答因连接中断而不完整）"


def test_stream_cut_before_any_text_is_an_error(bot, dify):
    dify.push_events(["ping", {"event": "agent_thought", "position": 1}, "CUT"])
    reply = ask(bot, "q")
    assert reply.content == "Dify's answer was interrupted; please try again."
    assert len(chat_requests(dify)) == 1


def test_stream_ending_without_message_end_counts_as_cut(bot, dify):
    dify.push_events([{"event": "message", "answer": "dangling"}])
    assert ask(bot, "q").content == "dangling\n(The answer was cut off.)"


def test_error_event_mid_stream(bot, dify):
    dify.push_events([{"event": "message", "answer": "x"},
                      {"event": "error", "code": "internal_server_error", "status": 500, "message": "oops"}])
    assert ask(bot, "q").content == "The Dify service had an error; please try again later."
    assert len(chat_requests(dify)) == 1  # a stream is never sent again


# --- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,code,message,expected", [
    (401, "unauthorized", "Access token is invalid", "dify_api_key"),
    (403, "forbidden", "disabled", "published"),
    (400, "app_unavailable", "App unavailable", "dify_app_type"),
    (400, "not_chat_app", "mode mismatch", "dify_app_type"),
    (400, "invalid_param", "Agent Chat App does not support blocking mode", "streaming"),
    (400, "provider_quota_exceeded", "Your quota for Dify Hosted Model Provider has been exhausted.", "quota"),
    (400, "provider_not_initialize", "No valid model provider credentials found.", "provider"),
    (400, "model_currently_not_support", "Dify Hosted OpenAI trial currently not support the GPT-4 model.", "model"),
    (429, "too_many_requests", "Too many requests.", "try again later"),
    (500, "internal_server_error", "Internal Server Error", "Dify service had an error"),
    (400, "invalid_param", "query is required", "could not handle"),
    (404, "not_found", "The requested URL was not found", "dify_api_base"),
])
def test_error_codes_become_clear_messages(bot, dify, dify_settings, status, code, message, expected):
    dify_settings["dify_max_retries"] = 0
    dify_settings["dify_response_mode"] = "blocking"
    dify.push_error(status, code, message)
    reply = ask(bot, "hello")
    assert reply.type == ReplyType.TEXT
    assert expected in reply.content
    assert message not in reply.content


def test_error_messages_follow_the_language(bot, dify, dify_settings):
    dify_settings["dify_max_retries"] = 0
    dify.push_error(429, "too_many_requests", "x")
    assert ask(bot, "你好").content == "请求太频繁了，请稍后再试。"


def test_dify_error_reply_replaces_every_error_text(bot, dify, dify_settings):
    dify_settings["dify_error_reply"] = "出错啦"
    dify_settings["dify_api_key"] = "app-wrong"
    reply = ask(bot, "hello")
    assert (reply.type, reply.content) == (ReplyType.TEXT, "出错啦")


def test_unknown_app_type_names_the_setting(bot, dify):
    context = make_context("q")
    context["dify_app_type"] = "assistant"
    assert "dify_app_type" in bot.reply("q", context).content


def test_two_503_then_an_answer(bot, dify):
    dify.push_error(503, "internal_server_error", "busy")
    dify.push_error(503, "internal_server_error", "busy")
    assert ask(bot, "persist").content == "echo: persist"
    assert len(chat_requests(dify)) == 3


def test_exhausted_retries_tell_the_user(bot, dify, dify_settings):
    dify_settings["dify_max_retries"] = 1
    dify.push_error(502, "", "Bad Gateway")
    dify.push_error(502, "", "Bad Gateway")
    assert ask(bot, "q").content == "The Dify service had an error; please try again later."
    assert len(chat_requests(dify)) == 2


def test_hang_gives_a_timeout_message(bot, dify, dify_settings):
    dify_settings["dify_read_timeout"] = 0.3
    dify.push_hang(3)
    assert ask(bot, "q").content == "Dify took too long to answer; please try again later."


def test_silence_mid_stream_is_a_timeout(bot, dify, dify_settings):
    dify_settings["dify_read_timeout"] = 0.3
    dify.push_events(["ping", {"event": "agent_thought", "position": 1}, {"event": "message", "answer": "late"}],
                     delay=1.0)
    assert ask(bot, "q").content == "Dify took too long to answer; please try again later."
    dify.push_events([{"event": "message", "answer": "early"}, {"event": "message", "answer": " late"}], delay=1.0)
    assert ask(bot, "q").content == "early\n(The answer was cut off.)"
    assert len(chat_requests(dify)) == 2


def test_unreachable_dify_gives_a_connection_message(bot, dify_settings):
    dify_settings["dify_api_base"] = f"http://127.0.0.1:{unused_port()}/v1"
    dify_settings["dify_max_retries"] = 0
    assert "Cannot reach the Dify service" in ask(bot, "q").content


# --- conversations -------------------------------------------------------------------------------------

def test_conversation_continues_and_is_recovered_after_a_404(bot, dify):
    ask(bot, "one")
    cid = bot.sessions.get_session("alice").conversation_id
    ask(bot, "two")
    assert [q for q, _ in dify.conversations[cid]["turns"]] == ["one", "two"]
    dify.forget_conversation(cid)
    assert ask(bot, "three").content == "echo: three"
    new_cid = bot.sessions.get_session("alice").conversation_id
    assert new_cid != cid and new_cid in dify.conversations
    assert [q for q, _ in dify.conversations[new_cid]["turns"]] == ["three"]
    sent = chat_requests(dify)
    assert sent[-2]["json"]["conversation_id"] == cid and "conversation_id" not in sent[-1]["json"]
    ask(bot, "four")
    assert chat_requests(dify)[-1]["json"]["conversation_id"] == new_cid


def test_info_log_says_who_and_how_much_not_what(bot, dify, logs):
    import logging

    from common.log import is_debug, set_debug

    debug_before = is_debug()
    set_debug(True)  # the question itself is a DEBUG record
    try:
        assert ask(bot, "my private question").content == "echo: my private question"
    finally:
        set_debug(debug_before)
    info = logs.text(logging.INFO)
    assert "private question" not in info
    assert "question of 19 characters from session alice" in info
    assert "my private question" in logs.text(logging.DEBUG)


def test_a_stale_conversation_is_replaced_quietly(bot, dify, logs):
    """A conversation Dify no longer knows is expected (deleted in Dify, a new simulator) and
    handled: it is noted in the log, not shown as a warning."""
    import logging

    ask(bot, "one")
    dify.forget_conversation(bot.sessions.get_session("alice").conversation_id)
    assert ask(bot, "two").content == "echo: two"
    assert "is gone; starting a new one" in logs.text(logging.INFO)
    assert logs.text(logging.WARNING) == ""


def test_a_restart_continues_the_same_conversation(dify, tmp_path, monkeypatch):
    from config import conf

    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    monkeypatch.setattr(conf().user_data_book, "_store", store)
    ask(DifyBot(), "before restart")
    store.close()
    store = SQLiteStore(path)
    monkeypatch.setattr(conf().user_data_book, "_store", store)
    ask(DifyBot(), "after restart")
    store.close()
    assert len(dify.conversations) == 1
    [conversation] = dify.conversations.values()
    assert [q for q, _ in conversation["turns"]] == ["before restart", "after restart"]


def test_max_messages_rolls_over_to_a_new_conversation(bot, dify, dify_settings):
    dify_settings["dify_conversation_max_messages"] = 2
    for i in range(5):
        ask(bot, f"m{i}")
    sent = [r["json"].get("conversation_id") for r in chat_requests(dify)]
    assert sent[0] is None and sent[1] is not None
    assert sent[2] is None and sent[3] is not None and sent[3] != sent[1]
    assert sent[4] is None
    assert sorted(len(c["turns"]) for c in dify.conversations.values()) == [1, 2, 2]


def test_no_limit_keeps_one_conversation(bot, dify, dify_settings):
    dify_settings["dify_conversation_max_messages"] = 0
    for i in range(7):
        ask(bot, f"m{i}")
    assert len(dify.conversations) == 1


def test_reset_commands_clear_sessions_durably(bot, dify):
    ask(bot, "one")
    ask(bot, "one", sender="bob", sender_name="Bob")
    bot.sessions.clear_session("alice")
    assert bot.sessions.get_session("alice").conversation_id == ""
    ask(bot, "two")
    assert len(dify.conversations) == 3
    bot.sessions.clear_all_session()
    assert bot.sessions.session_ids() == []


def test_build_session_sends_the_system_prompt(bot, dify):
    bot.sessions.build_session("alice", system_prompt="You are a pirate.")
    ask(bot, "hi")
    assert chat_requests(dify)[0]["json"]["inputs"]["system_prompt"] == "You are a pirate."


def test_sessions_expire_with_expires_in_seconds(dify, dify_settings):
    from common.store import MemoryStore

    now = [1000.0]
    bot = DifyBot(MemoryStore(clock=lambda: now[0]))
    dify_settings["expires_in_seconds"] = 60
    ask(bot, "one")
    now[0] += 30
    ask(bot, "two")  # within the TTL, which slides
    now[0] += 59
    ask(bot, "three")
    now[0] += 61
    ask(bot, "four")
    assert sorted(len(c["turns"]) for c in dify.conversations.values()) == [1, 3]


# --- images in, media out -------------------------------------------------------------------------

class PreparedMsg:
    def __init__(self):
        self.prepared = 0

    def prepare(self):
        self.prepared += 1


def test_last_image_is_uploaded_and_attached(bot, dify, dify_settings, tmp_path):
    dify_settings["image_recognition"] = True
    image = tmp_path / "photo.png"
    image.write_bytes(PNG)
    msg = PreparedMsg()
    memory.USER_IMAGE_CACHE["alice"] = {"path": str(image), "msg": msg}
    assert ask(bot, "what is this?").content == "echo: what is this?"
    assert msg.prepared == 1
    [upload] = dify.uploads.values()
    assert upload["user"] == "alice" and upload["content"] == PNG
    [file_id] = dify.uploads
    assert chat_requests(dify)[0]["json"]["files"] == [
        {"type": "image", "transfer_method": "local_file", "upload_file_id": file_id}
    ]
    assert "alice" not in memory.USER_IMAGE_CACHE
    ask(bot, "and now?")
    assert "files" not in chat_requests(dify)[1]["json"]


def test_image_ignored_without_image_recognition(bot, dify, tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(PNG)
    memory.USER_IMAGE_CACHE["alice"] = {"path": str(image), "msg": PreparedMsg()}
    ask(bot, "q")
    assert not dify.uploads and "files" not in chat_requests(dify)[0]["json"]


def test_upload_failure_asks_without_the_image_and_says_so(bot, dify, dify_settings, tmp_path, channel):
    dify_settings["image_recognition"] = True
    bad = tmp_path / "document.exe"  # the simulator refuses non-image types (415)
    bad.write_bytes(b"MZ")
    memory.USER_IMAGE_CACHE["alice"] = {"path": str(bad), "msg": PreparedMsg()}
    reply = ask(bot, "看看这个", channel)
    assert reply.content == "echo: 看看这个"
    [note] = channel.delivered
    assert (note.type, note.content) == (ReplyType.TEXT, "图片上传失败，这次的问题将不带图片发送。")
    assert "files" not in chat_requests(dify)[0]["json"]


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_answer_is_split_into_text_images_and_files(bot, dify, dify_settings, channel, tmp_path, monkeypatch,
                                                    response_mode):
    monkeypatch.chdir(tmp_path)  # tmp/ is relative to the working directory
    dify_settings["dify_response_mode"] = response_mode
    dify.add_file("/files/tools/chart.png", PNG, "image/png")
    dify.add_file("/files/report%20Q1.pdf", b"%PDF-1.4 data", "application/pdf")
    answer = (
        "Here is the chart:\n"
        f"![chart](/files/tools/chart.png?timestamp=1&sign=x)\n"
        "See [the docs](https://docs.example.com/guide) for more.\n"
        f"[report]({dify.host_url}/files/report%20Q1.pdf)\n"
        "![gone](/files/missing.png)\n"
        "[lost file](/files/missing.zip)\n"
        "Bye."
    )
    dify.push_answer(answer, chunk_size=7)
    reply = ask(bot, "q", channel)
    assert (reply.type, reply.content) == (ReplyType.TEXT, "Bye.")
    kinds = [r.type for r in channel.delivered]
    assert kinds == [ReplyType.TEXT, ReplyType.IMAGE, ReplyType.TEXT, ReplyType.FILE, ReplyType.TEXT, ReplyType.TEXT]
    d = channel.delivered
    assert d[0].content == "Here is the chart:"
    assert isinstance(d[1].content, io.BytesIO) and d[1].content.getvalue() == PNG
    assert d[2].content == "See [the docs](https://docs.example.com/guide) for more."
    assert os.path.basename(d[3].content) == "report Q1.pdf"
    with open(d[3].content, "rb") as f:
        assert f.read() == b"%PDF-1.4 data"
    assert d[4].content == f"图片链接：{dify.host_url}/files/missing.png"
    assert d[5].content == f"文件链接：{dify.host_url}/files/missing.zip"


def test_files_with_the_same_name_do_not_overwrite_each_other(bot, dify, channel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dify.add_file("/a/data.csv", b"1", "text/csv")
    dify.add_file("/b/data.csv", b"2", "text/csv")
    dify.push_answer(f"[a]({dify.host_url}/a/data.csv) [b](/b/data.csv)")
    reply = ask(bot, "q", channel)
    [first] = channel.delivered
    assert first.content != reply.content
    assert os.path.basename(first.content) == os.path.basename(reply.content) == "data.csv"
    assert open(first.content).read() == "1" and open(reply.content).read() == "2"


def test_oversized_image_falls_back_to_the_link(bot, dify, monkeypatch):
    monkeypatch.setattr(DifyClient, "image_max_bytes", 100)
    dify.add_file("/files/big.png", PNG, "image/png")
    dify.push_answer("![big](/files/big.png)")
    assert ask(bot, "q").content == f"图片链接：{dify.host_url}/files/big.png"


def test_empty_answer_sends_nothing(bot, dify):
    dify.push_answer("")
    assert ask(bot, "q") is None


# --- streamed paragraphs ------------------------------------------------------------------------------

def test_stream_reply_sends_paragraphs_as_they_complete(bot, dify, dify_settings, channel):
    dify_settings["dify_stream_reply"] = True
    answer = (
        "First paragraph.\n\n"
        "Second one,\nover two lines.\n\n"
        "```python\nx = 1\n\ny = 2\n```\n\n"
        "Last part"
    )
    dify.push_answer(answer, chunk_size=5)
    reply = ask(bot, "q", channel)
    assert texts(channel.delivered) == [
        "First paragraph.",
        "Second one,\nover two lines.",
        "```python\nx = 1\n\ny = 2\n```",
    ]
    assert reply.content == "Last part"


def test_stream_reply_delivers_before_the_answer_ends(bot, dify, dify_settings):
    dify_settings["dify_stream_reply"] = True
    delivered_at = []

    class Timing(DeliveryChannel):
        def deliver(self, context, reply):
            super().deliver(context, reply)
            delivered_at.append(time.monotonic())

    dify.push_events([{"event": "message", "answer": "Para one.\n\n"}, {"event": "message", "answer": "Para two."},
                      {"event": "message_end", "metadata": {}}], delay=0.25)
    channel = Timing()
    reply = ask(bot, "q", channel)
    finished = time.monotonic()
    assert texts(channel.delivered) == ["Para one."] and reply.content == "Para two."
    # The first paragraph went out while the server was still pausing between events.
    assert finished - delivered_at[0] >= 0.4


def test_stream_reply_cut_keeps_what_was_not_sent(bot, dify, dify_settings, channel):
    dify_settings["dify_stream_reply"] = True
    dify.push_events([{"event": "message", "answer": "Done.\n\nHalf a"}, "CUT"])
    reply = ask(bot, "q", channel)
    assert texts(channel.delivered) == ["Done."]
    assert reply.content == "Half a\n(The answer was cut off.)"


# --- identity -----------------------------------------------------------------------------------------

def test_identity_private_group_and_shared_group(bot, dify):
    ask(bot, "private", sender="wxid_alice", sender_name="Alice")
    ask(bot, "in group", sender="wxid_alice", sender_name="Alice", group=("room1@chatroom", "Team"))
    ask(bot, "shared", sender="wxid_bob", sender_name="Bob", group=("room2@chatroom", "Family"), shared=True)
    private, group, shared = (r["json"] for r in chat_requests(dify))
    assert private["user"] == "wxid_alice"
    assert private["inputs"] == {"user_id": "wxid_alice", "user_name": "Alice", "room_id": "", "room_name": ""}
    assert group["user"] == "wxid_alice"
    assert group["inputs"] == {"user_id": "wxid_alice", "user_name": "Alice",
                               "room_id": "room1@chatroom", "room_name": "Team"}
    assert shared["user"] == "room2@chatroom"
    assert shared["inputs"] == {"user_id": "", "user_name": "", "room_id": "room2@chatroom", "room_name": "Family"}
    # One person, two sessions (private and group): two conversations.
    assert len(dify.conversations) == 3


def test_every_channel_type_is_served(bot, dify, dify_settings):
    for channel_type in ("terminal", "feishu", "dingtalk", "wx", "web"):
        dify_settings["channel_type"] = channel_type
        assert ask(bot, channel_type).content == f"echo: {channel_type}"


# --- the whole pipeline ----------------------------------------------------------------------------------

def test_fifty_sessions_at_once_through_the_pipeline(dify, dify_settings):
    dify_settings["single_chat_prefix"] = [""]
    dify_settings["worker_threads"] = 8
    dify_settings["dify_conversation_max_messages"] = 0
    Bridge().reset_bot()
    channel = RecordingChannel()
    sessions, per_session = 50, 4
    try:
        talk_at_once(channel, sessions, per_session)
        assert channel.wait_idle(30)
    finally:
        channel.stop()
        Bridge().reset_bot()
    assert_echoed_in_order(channel, sessions, per_session)
    users = {r["json"]["user"] for r in chat_requests(dify)}
    assert users == {f"user-{n}" for n in range(sessions)}
    assert len(dify.conversations) == sessions
    assert all(len(c["turns"]) == per_session for c in dify.conversations.values())


def test_pipeline_delivers_parts_before_the_final_reply(dify, dify_settings):
    dify_settings["single_chat_prefix"] = [""]
    dify_settings["dify_stream_reply"] = True
    dify_settings["single_chat_reply_prefix"] = "[bot] "
    Bridge().reset_bot()
    channel = RecordingChannel()
    try:
        dify.push_answer("one\n\ntwo\n\nthree", chunk_size=2)
        channel.receive(make_msg("go", sender="carol"))
        assert channel.wait_idle(10)
    finally:
        channel.stop()
        Bridge().reset_bot()
    assert [c for _, _, c in channel.sent] == ["[bot] one", "[bot] two", "[bot] three"]
