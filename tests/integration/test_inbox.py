"""Accepted messages live in the state store's inbox until answered (ChatChannel.produce,
resume_inbox): the pipeline in one process with a real SQLite store. The crash itself
(kill -9 of `python app.py`) is in tests/e2e/test_durable_process.py."""
from __future__ import annotations

import os
import pytest

from bridge.bridge import Bridge
from bridge.context import ContextType
from bridge.reply import ReplyType
from channel.chat_channel import BUSY_TEXT_EN, BUSY_TEXT_ZH, INTERRUPTED_TEXT_EN, INTERRUPTED_TEXT_ZH, NOT_STORED_TEXT_EN, \
    Produced, refusal_text
from common.store import SQLiteStore
from tests.fakes.recording_channel import RecordingChannel, make_msg


@pytest.fixture
def store(tmp_path):
    from config import conf

    s = SQLiteStore(str(tmp_path / "state.db"))
    book = conf().user_data_book
    book.attach(s)
    yield s
    book.close()
    book._store = None
    s.close()


@pytest.fixture
def channels(settings):
    settings["single_chat_prefix"] = [""]
    settings["bot_type"] = "tests.fakes.bots:EchoBot"
    Bridge().reset_bot()
    made = []

    def make(cls=RecordingChannel):
        ch = cls()
        made.append(ch)
        return ch

    yield make
    for ch in made:
        ch.stop()
    Bridge().reset_bot()


def texts(channel):
    return [c for _, _, c in channel.sent]



def busy(text: str) -> str:
    return refusal_text(BUSY_TEXT_ZH, BUSY_TEXT_EN, text)

def test_a_backlog_kept_at_stop_is_answered_by_the_next_channel_in_order(store, channels):
    first = channels()
    first.halt()  # a stop that ran out of time: nothing more starts
    for text in ("one", "two", "#cmd", "three"):
        assert first.receive(make_msg(text, msg_id=f"id-{text}")) is not None
    other = make_msg("from bob", sender="bob", sender_name="Bob", msg_id="id-bob")
    first.receive(other)
    assert store.inbox_count("RecordingChannel") == 5
    assert first.sent == []

    second = channels()  # the next start
    assert second.resume_inbox() == 5
    assert second.wait_idle(10)
    alice = [c for r, _, c in second.sent if r == "alice"]
    # The command jumps the queue, as it did when it was received.
    assert alice == ["echo: #cmd", "echo: one", "echo: two", "echo: three"]
    assert ("bob", ReplyType.TEXT, "echo: from bob") in second.sent
    assert store.inbox_count() == 0
    # Answered: a redelivery of the same ids is still a duplicate.
    assert second.receive(make_msg("one", msg_id="id-one")) is None


def test_a_kept_message_whose_dedup_key_expired_is_still_a_duplicate_after_the_restart(store, channels, gated):
    first = channels()
    first.halt()
    first.receive(make_msg("slow day", msg_id="old-1"))
    # The daemon stayed down longer than the dedup window: the key is gone, the message is not.
    store._conn.execute("DELETE FROM seen")
    second = channels()
    try:
        assert second.resume_inbox() == 1
        assert second.receive(make_msg("slow day", msg_id="old-1")) is None  # the platform redelivers it
    finally:
        gated.gate.set()
    assert second.wait_idle(10)
    assert texts(second) == ["echo: slow day"]


def test_the_rebuilt_context_has_what_handling_needs(store, channels, settings):
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["group_chat_prefix"] = ["@bot"]
    first = channels()
    first.halt()
    msg = make_msg("@bot hi there", group=("room-1", "Room One"), sender="carol", sender_name="Carol", msg_id="g1")
    context = first.receive(msg)
    second = channels()
    second.resume_inbox()
    assert second.wait_idle(10)
    # Group reply decorated with the sender's name: the message object came back.
    assert second.sent == [("room-1", ReplyType.TEXT, "@Carol\necho: hi there")]
    assert context["session_id"] == "carol@@room-1"


def test_a_message_refused_as_busy_can_be_sent_again_with_the_same_id(store, channels, settings, gated):
    settings["session_queue_size"] = 1
    channel = channels()
    try:
        channel.receive(make_msg("running", msg_id="r"))
        assert gated.started.wait(5)
        channel.receive(make_msg("waiting", msg_id="w"))
        channel.receive(make_msg("refused", msg_id="x"))
        assert texts(channel) == [busy("refused")]
    finally:
        gated.gate.set()
    assert channel.wait_idle(10)
    # The user (or the platform) sends it again: it was never taken, so it is not a duplicate.
    assert channel.receive(make_msg("refused", msg_id="x")) is not None
    assert channel.wait_idle(10)
    assert texts(channel) == [busy("refused"), "echo: running", "echo: waiting", "echo: refused"]


def test_max_pending_messages_bounds_all_sessions(store, channels, settings, gated):
    settings["max_pending_messages"] = 2
    settings["worker_threads"] = 1
    channel = channels()
    try:
        channel.receive(make_msg("a", sender="u1", msg_id="1"))
        assert gated.started.wait(5)
        channel.receive(make_msg("b", sender="u2", msg_id="2"))
        context = channel._compose_context(ContextType.TEXT, "c", msg=make_msg("c", sender="u3", msg_id="3"), isgroup=False)
        assert channel.produce(context) is Produced.BUSY
        assert channel.sent == [("u3", ReplyType.TEXT, busy("c"))]
        # A command is refused too when everything is full; its secret is not quoted back.
        command = channel._compose_context(ContextType.TEXT, "#auth hunter2",
                                           msg=make_msg("#auth hunter2", sender="u4", msg_id="4"), isgroup=False)
        assert channel.produce(command) is Produced.BUSY
        assert channel.sent[-1][0] == "u4" and "hunter2" not in channel.sent[-1][2] and "#auth" in channel.sent[-1][2]
    finally:
        gated.gate.set()
    assert channel.wait_idle(10)
    assert sorted(texts(channel)) == sorted([busy("c"), busy("#auth hunter2"), "echo: a", "echo: b"])


def test_a_store_that_cannot_write_refuses_the_message_with_a_clear_error(store, channels):
    channel = channels()
    store.close()  # every write now fails, as with a full or vanished disk
    context = channel._compose_context(ContextType.TEXT, "hello", msg=make_msg("hello", msg_id="m1"), isgroup=False)
    assert context is not None
    assert channel.produce(context) is Produced.NOT_STORED
    assert channel.dispatcher.pending() == 0
    assert channel.sent == [("alice", ReplyType.ERROR, "[ERROR]\n" + NOT_STORED_TEXT_EN.format(quote="hello"))]


def test_cancelled_messages_leave_the_inbox(store, channels, gated):
    channel = channels()
    try:
        channel.receive(make_msg("running"))
        assert gated.started.wait(5)
        channel.receive(make_msg("dropped 1"))
        channel.receive(make_msg("dropped 2"))
        assert store.inbox_count() == 3
        assert [c.content for c in channel.cancel_session("alice")] == ["dropped 1", "dropped 2"]
        assert store.inbox_count() == 1
    finally:
        gated.gate.set()
    assert channel.wait_idle(10)
    assert store.inbox_count() == 0


class RememberingChannel(RecordingChannel):
    """A channel with a durable outbox of its own: it can tell what was answered."""

    answered = {"already done"}

    def already_answered(self, context):
        return context.content in self.answered


def test_resume_skips_what_the_channel_says_was_answered(store, channels):
    first = channels(RememberingChannel)
    first.halt()
    first.receive(make_msg("already done"))
    first.receive(make_msg("not yet"))
    second = channels(RememberingChannel)
    assert second.resume_inbox() == 1
    assert second.wait_idle(10)
    assert texts(second) == ["echo: not yet"]
    assert store.inbox_count() == 0


def test_a_record_that_cannot_be_rebuilt_is_reported_not_dropped_quietly(store, channels, logs):
    store.inbox_add("RecordingChannel", "alice", {"v": 999, "what": "from a future version"})
    channel = channels()
    assert channel.resume_inbox() == 0
    assert "cannot be rebuilt" in logs.text()
    assert store.inbox_count() == 0


class CountingBot:
    """Keeps a per-user count in nested user data, the way plugins change it in place."""

    def reply(self, query, context=None):
        from bridge.reply import Reply
        from config import conf

        counts = conf().get_user_data(context["receiver"]).setdefault("counts", {})
        counts["asked"] = counts.get("asked", 0) + 1  # nested: the dict itself sees no write
        return Reply(ReplyType.TEXT, f"asked {counts['asked']}")


class DoneWatchingStore(SQLiteStore):
    """A real store that notes the saved user data at the moment a message is marked done."""

    def __init__(self, path):
        super().__init__(path)
        self.user_data_at_done = []

    def inbox_done(self, item_id):
        self.user_data_at_done.append(self.load_user_datas())
        return super().inbox_done(item_id)


def test_user_data_changed_by_a_message_is_saved_before_the_message_counts_as_answered(tmp_path, channels, settings):
    # A kill -9 between "done" and the flusher's next run must not lose the change.
    from config import conf

    s = DoneWatchingStore(str(tmp_path / "state.db"))
    book = conf().user_data_book
    book.attach(s)
    book.close()  # stop the flusher thread: only the pipeline's own save can be seen below
    try:
        settings["bot_type"] = "tests.integration.test_inbox:CountingBot"
        Bridge().reset_bot()
        channel = channels()
        for n in range(3):
            assert channel.receive(make_msg(f"q{n}", msg_id=f"count-{n}")) is not None
            assert channel.wait_idle(10)
        assert [c for _, _, c in channel.sent] == ["asked 1", "asked 2", "asked 3"]
        assert [d.get("alice", {}).get("counts") for d in s.user_data_at_done] == [
            {"asked": 1}, {"asked": 2}, {"asked": 3}]
    finally:
        book._store = None
        s.close()


def test_a_refused_picture_is_named_by_its_kind_not_by_its_path_on_this_machine(store, channels, settings, gated):
    settings["max_pending_messages"] = 1
    settings["worker_threads"] = 1
    channel = channels()
    try:
        channel.receive(make_msg("a", sender="u1", msg_id="1"))
        assert gated.started.wait(5)
        path = os.path.abspath("tmp/some-download.png")
        context = channel._compose_context(ContextType.IMAGE, path, msg=make_msg("a", sender="u2", msg_id="2"),
                                           isgroup=False)
        assert channel.produce(context) is Produced.BUSY
        assert channel.sent == [("u2", ReplyType.TEXT, BUSY_TEXT_EN.format(quote="[image]"))]
    finally:
        gated.gate.set()
    assert channel.wait_idle(10)


class CrashAfterAnswerChannel(RecordingChannel):
    """Dies (in effect) right after each answer went out: the inbox item is never deleted,
    which is what a kill -9 between the send and the delete leaves behind."""

    channel_type = "RecordingChannel"  # the inbox of the channel that starts next

    def _inbox_done(self, item_id):
        pass


def test_a_message_answered_just_before_a_crash_is_not_answered_again(store, channels, logs):
    first = channels(CrashAfterAnswerChannel)
    first.receive(make_msg("answered once", msg_id="a1"))
    assert first.wait_idle(10)
    assert texts(first) == ["echo: answered once"]
    assert [i.replied for i in store.inbox_items("RecordingChannel")] == ["final"]

    second = channels()  # the next start
    assert second.resume_inbox() == 0
    assert second.wait_idle(10)
    assert second.sent == []
    assert store.inbox_count() == 0
    assert "1 found answered already" in logs.text()


@pytest.fixture
def part_then_gate(settings):
    from tests.fakes.gated_bot import PartThenGateBot

    settings["bot_type"] = "tests.fakes.gated_bot:PartThenGateBot"
    Bridge().reset_bot()
    PartThenGateBot.gate.clear()
    PartThenGateBot.started.clear()
    yield PartThenGateBot
    PartThenGateBot.gate.set()


def test_a_message_cut_off_after_part_of_its_answer_is_not_answered_twice(store, channels, part_then_gate):
    first = channels()
    first.receive(make_msg("quiet", msg_id="p1"))
    assert part_then_gate.started.wait(5)  # its first part went out, the rest is being made
    first.halt()  # then the process dies: nothing more starts
    first.receive(make_msg("next one", msg_id="p2"))  # kept in the inbox behind it
    assert texts(first) == ["part: quiet"]
    assert [i.replied for i in store.inbox_items("RecordingChannel")] == ["partial", None]

    second = channels()  # the next start
    assert second.resume_inbox() == 2
    for _ in range(100):  # the note, then the next message's first part
        if len(second.sent) >= 2:
            break
        second.wait_idle(0.05)
    part_then_gate.gate.set()
    assert second.wait_idle(10)
    # The bot is not asked the cut-off question again (its part would come twice): the user
    # is told, then the message behind it is answered.
    assert texts(second) == [refusal_text(INTERRUPTED_TEXT_ZH, INTERRUPTED_TEXT_EN, "quiet"),
                             "part: next one", "echo: next one"]
    assert store.inbox_count() == 0


@pytest.mark.parametrize("ttl, redelivered_after, answered_again", [
    (None, 3600, False),  # the default (6 h): a re-delivery an hour later is still recognised
    (120, 60, False),     # dedup_ttl: recognised within it
    (120, 121, True),     # and forgotten after it, so state.db stays small
])
def test_dedup_ttl_is_how_long_an_answered_message_id_is_remembered(tmp_path, channels, settings, ttl,
                                                                     redelivered_after, answered_again):
    from config import conf
    from tests.fakes.clock import FakeClock

    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "state.db"), clock=clock)
    book = conf().user_data_book
    book.attach(store)
    try:
        if ttl is not None:
            settings["dedup_ttl"] = ttl
        channel = channels()
        channel.receive(make_msg("hello", msg_id="m-1"))
        assert channel.wait_idle(10)
        clock.advance(redelivered_after)
        store.purge_expired()
        channel.receive(make_msg("hello", msg_id="m-1"))
        assert channel.wait_idle(10)
        assert texts(channel) == ["echo: hello"] * (2 if answered_again else 1)
    finally:
        book.close()
        book._store = None
        store.close()
