"""The queueing pipeline end to end inside one process: rules -> queues -> Bridge -> bot -> send."""
from __future__ import annotations

import time

import pytest

from bridge.bridge import Bridge
from bridge.reply import ReplyType
from tests.fakes.recording_channel import RecordingChannel, assert_echoed_in_order, make_msg, talk_at_once


@pytest.fixture
def pipeline(settings):
    settings["single_chat_prefix"] = [""]
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["bot_type"] = "tests.fakes.bots:SlowRandomBot"
    Bridge().reset_bot()
    channels = []

    def make(**kwargs):
        ch = RecordingChannel(**kwargs)
        channels.append(ch)
        return ch

    yield make
    for ch in channels:
        ch.stop()
    Bridge().reset_bot()


def wait_started(bot_cls, timeout=5.0):
    assert bot_cls.started.wait(timeout), "the bot never started"


def test_fifty_sessions_twenty_messages_keep_order(pipeline, settings):
    settings["worker_threads"] = 8
    channel = pipeline()
    sessions, per_session = 50, 20

    talk_at_once(channel, sessions, per_session)
    assert channel.wait_idle(60)
    assert len(channel.sent) == sessions * per_session  # nothing lost, nothing duplicated
    assert_echoed_in_order(channel, sessions, per_session)
    assert channel.dispatcher.session_count() == 0  # idle sessions are forgotten


def test_hash_command_overtakes_queued_messages(pipeline, settings, gated):
    GatedBot = gated
    channel = pipeline()
    try:
        channel.receive(make_msg("first"))  # runs and blocks on the gate
        wait_started(GatedBot)
        channel.receive(make_msg("second"))
        channel.receive(make_msg("third"))
        channel.receive(make_msg("#command"))
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert [c for _, _, c in channel.sent] == ["echo: first", "echo: #command", "echo: second", "echo: third"]


def test_hash_commands_queued_back_to_back_keep_their_order(pipeline, settings, gated):
    GatedBot = gated
    channel = pipeline()
    try:
        channel.receive(make_msg("first"))
        wait_started(GatedBot)
        channel.receive(make_msg("second"))
        channel.receive(make_msg("#one"))
        channel.receive(make_msg("#two"))
        channel.receive(make_msg("third"))
        channel.receive(make_msg("#three"))
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert [c for _, _, c in channel.sent] == [
        "echo: first", "echo: #one", "echo: #two", "echo: #three", "echo: second", "echo: third",
    ]


def cancel_on_command(channel) -> list:
    """Make "#cancel" cancel its session while it is handled, as #reset does; returns the
    list the cancelled texts are put in."""
    cancelled = []
    handle = channel._handle

    def handle_with_cancel(context):
        if context.content == "#cancel":
            cancelled.extend(c.content for c in channel.cancel_session(context["session_id"]))
        handle(context)

    channel.dispatcher._handler = handle_with_cancel
    return cancelled


def test_cancel_from_a_handler_keeps_what_came_after(pipeline, settings, gated):
    """What #reset does: cancelling while handling a message drops only older messages."""
    GatedBot = gated
    channel = pipeline()
    cancelled = cancel_on_command(channel)
    try:
        channel.receive(make_msg("running"))
        wait_started(GatedBot)
        channel.receive(make_msg("older 1"))
        channel.receive(make_msg("older 2"))
        channel.receive(make_msg("#cancel"))
        channel.receive(make_msg("newer"))
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert cancelled == ["older 1", "older 2"]
    assert [c for _, _, c in channel.sent] == ["echo: running", "echo: #cancel", "echo: newer"]


def test_full_queue_tells_the_user(pipeline, settings, gated):
    GatedBot = gated
    settings["session_queue_size"] = 2
    channel = pipeline()
    try:
        channel.receive(make_msg("q0"))
        wait_started(GatedBot)
        channel.receive(make_msg("q1"))
        channel.receive(make_msg("q2"))
        channel.receive(make_msg("q3"))  # refused: two are waiting already
        channel.receive(make_msg("问题4"))  # refused, and told in Chinese
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    contents = [c for _, _, c in channel.sent]
    # Each refusal names the message refused: it comes before the answers to earlier ones.
    assert contents[:2] == ["Too many messages are waiting, so this one was not taken: “q3”. Please send it again in a moment.",
                            "消息太多，正在处理中，这条没有收到：“问题4”，请稍后再发"]
    assert contents[2:] == ["echo: q0", "echo: q1", "echo: q2"]


def test_a_command_is_taken_when_the_queue_is_full(pipeline, settings, gated):
    """#reset is needed most when the queue is full: commands are not refused with the rest."""
    GatedBot = gated
    settings["session_queue_size"] = 2
    channel = pipeline()
    cancelled = cancel_on_command(channel)
    try:
        channel.receive(make_msg("q0"))
        wait_started(GatedBot)
        channel.receive(make_msg("q1"))
        channel.receive(make_msg("q2"))
        channel.receive(make_msg("#cancel"))
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert cancelled == ["q1", "q2"]
    assert [c for _, _, c in channel.sent] == ["echo: q0", "echo: #cancel"]


def test_cancel_session_drops_only_waiting_messages(pipeline, settings, gated):
    GatedBot = gated
    channel = pipeline()
    try:
        channel.receive(make_msg("running"))
        wait_started(GatedBot)
        channel.receive(make_msg("waiting 1"))
        channel.receive(make_msg("waiting 2"))
        channel.receive(make_msg("other", sender="bob", sender_name="Bob"))
        channel.cancel_session("alice")
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert sorted(c for _, _, c in channel.sent) == ["echo: other", "echo: running"]


def test_concurrency_in_session_runs_several_at_once(pipeline, settings, gated):
    GatedBot = gated
    settings["concurrency_in_session"] = 3
    channel = pipeline()
    try:
        for i in range(5):
            channel.receive(make_msg(f"q{i}"))
        deadline = time.monotonic() + 5
        while GatedBot.running < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        assert GatedBot.running == 3  # never more than the setting
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    assert GatedBot.max_running == 3
    assert len(channel.sent) == 5


def test_send_is_retried_then_succeeds(pipeline):
    channel = pipeline(fail_sends=2)
    channel.receive(make_msg("hello"))
    assert channel.wait_idle(10)
    assert channel.send_attempts == 3
    assert [c for _, _, c in channel.sent] == ["echo: hello"]


def test_send_gives_up_after_retries_and_keeps_going(pipeline):
    channel = pipeline(fail_sends=3)
    channel.receive(make_msg("lost"))
    assert channel.wait_idle(10)
    channel.receive(make_msg("next"))
    assert channel.wait_idle(10)
    assert channel.send_attempts == 4
    assert [c for _, _, c in channel.sent] == ["echo: next"]


def test_failing_bot_gives_an_error_reply_not_a_traceback(pipeline, settings):
    settings["bot_type"] = "tests.fakes.bots:FailingBot"
    Bridge().reset_bot()
    channel = pipeline()
    channel.receive(make_msg("hello"))
    assert channel.wait_idle(10)
    [(receiver, rtype, content)] = channel.sent
    assert rtype == ReplyType.ERROR and content.startswith("[ERROR]\n")
    assert "Traceback" not in content and "RuntimeError" not in content


def test_unknown_bot_gives_a_clear_error_reply(pipeline, settings):
    settings["bot_type"] = "no-such-bot"
    Bridge().reset_bot()
    channel = pipeline()
    channel.receive(make_msg("hello"))
    assert channel.wait_idle(10)
    [(receiver, rtype, content)] = channel.sent
    assert rtype == ReplyType.ERROR
    assert "no-such-bot" in content


def test_stopped_channel_refuses_new_messages(pipeline):
    channel = pipeline()
    channel.stop_accepting()
    assert channel.receive(make_msg("late")) is not None
    assert channel.wait_idle(1)
    assert channel.sent == []


def test_a_message_delivered_twice_is_answered_once(pipeline, tmp_path):
    from common.store import SQLiteStore
    from config import conf

    store = SQLiteStore(str(tmp_path / "state.db"))
    book = conf().user_data_book
    book.attach(store)
    try:
        channel = pipeline()
        first = make_msg("hello", msg_id="platform-42")
        channel.receive(first)
        channel.receive(make_msg("hello", msg_id="platform-42"))  # the platform retried
        channel.receive(make_msg("hello", msg_id="platform-43"))
        assert channel.wait_idle(10)
        assert [c for _, _, c in channel.sent] == ["echo: hello", "echo: hello"]
        # A new channel (a restart) still knows the id.
        again = pipeline()
        again.receive(make_msg("hello", msg_id="platform-42"))
        assert again.wait_idle(10)
        assert again.sent == []
    finally:
        book.close()
        book._store = None
        store.close()


def test_cancel_all_session_empties_every_queue(pipeline, settings, gated):
    GatedBot = gated
    settings["concurrency_in_session"] = 1
    channel = pipeline()
    try:
        channel.receive(make_msg("a running"))
        wait_started(GatedBot)
        for user in ("bob", "carol"):
            channel.receive(make_msg(f"{user} 1", sender=user, sender_name=user))
            channel.receive(make_msg(f"{user} 2", sender=user, sender_name=user))
        channel.receive(make_msg("a waiting"))
        channel.cancel_all_session()
    finally:
        GatedBot.gate.set()
    assert channel.wait_idle(10)
    # bob and carol may have started before the cancel (8 workers); what was still
    # queued is gone, and nothing ran twice.
    contents = [c for _, _, c in channel.sent]
    assert "echo: a running" in contents
    assert "echo: a waiting" not in contents
    assert "echo: bob 2" not in contents and "echo: carol 2" not in contents
    assert len(contents) == len(set(contents))


def test_deliver_sends_a_decorated_part_before_the_final_reply(pipeline, settings):
    from bridge.reply import Reply

    settings["single_chat_reply_prefix"] = "[bot] "
    channel = pipeline()
    msg = make_msg("question")
    context = channel._compose_context(msg.ctype, msg.content, isgroup=False, msg=msg)
    channel.deliver(context, Reply(ReplyType.TEXT, "part one"))
    assert channel.sent == [("alice", ReplyType.TEXT, "[bot] part one")]
