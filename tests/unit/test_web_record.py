"""The web channel's durable record of a user (channel/web/history.py) and the
`already_answered` hook it makes exact."""
from __future__ import annotations

import json
import threading
import time

import pytest

from bridge.bridge import Bridge
from bridge.context import Context, ContextType
from channel.web.history import ANSWERED_MAX, NAMESPACE, UserRecord, WebJournal
from common.store import MemoryStore, SQLiteStore
from tests.fakes.gated_bot import PartThenGateBot


@pytest.fixture
def gated_channel(settings, tmp_path):
    """A WebChannel (no HTTP server) on a SQLite store, its bot PartThenGateBot, gate shut."""
    from channel.web.web_channel import WebChannel

    settings["bot_type"] = "tests.fakes.gated_bot:PartThenGateBot"
    Bridge().reset_bot()
    PartThenGateBot.gate.clear()
    PartThenGateBot.started.clear()
    store = SQLiteStore(str(tmp_path / "state.db"))
    channel = WebChannel()
    channel.channel_type = "web"
    channel.journal = WebJournal(store, 50)
    yield channel, store
    PartThenGateBot.gate.set()
    channel.stop_accepting()
    channel.stop()
    store.close()
    Bridge().reset_bot()


def message_context(user: str, msg_id: str) -> Context:
    from channel.web.web_channel import WebMessage

    context = Context(ContextType.TEXT, "anything")
    context.kwargs.update(receiver=user, session_id=user, msg=WebMessage(msg_id, "anything", user))
    return context


def stored_events(store, user: str) -> list[dict]:
    """The payloads of the user's events as the store has them."""
    value = store.get(NAMESPACE, user)
    return [json.loads(e.text) for e in UserRecord.from_value(value).events] if value is not None else []


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_already_answered_turns_true_with_the_final_event_and_survives_a_restart(gated_channel, tmp_path):
    from channel.web.web_channel import WebChannel

    channel, store = gated_channel
    assert channel._take("ann", "hello", "ann:m1")  # accepted
    assert PartThenGateBot.started.wait(5)
    # The first part goes out (HOLD_MAX after it was sent: the bot is still busy), not final;
    # the message is not answered yet.
    assert wait_until(lambda: stored_events(store, "ann"), 5)
    assert [(e["content"], e["reply_to"], e.get("final")) for e in stored_events(store, "ann")] == [
        ("part: hello", "ann:m1", None)]
    assert channel.already_answered(message_context("ann", "ann:m1")) is False
    PartThenGateBot.gate.set()
    assert channel.wait_idle(10)
    events = stored_events(store, "ann")
    assert [(e["content"], e["reply_to"], e.get("final")) for e in events] == [
        ("part: hello", "ann:m1", None), ("echo: hello", "ann:m1", True)]
    assert channel.already_answered(message_context("ann", "ann:m1")) is True
    assert channel.already_answered(message_context("ann", "ann:m2")) is False
    assert channel.already_answered(message_context("bob", "ann:m1")) is False
    assert channel.already_answered(Context(ContextType.TEXT, "no message")) is False

    # A new channel on the same store (a restart) knows it too.
    again = WebChannel()
    again.journal = WebJournal(store, 50)
    try:
        assert again.already_answered(message_context("ann", "ann:m1")) is True
    finally:
        again.stop()


def test_a_message_that_ends_without_an_answer_is_answered_with_its_last_part(gated_channel, monkeypatch):
    from channel.web import web_channel

    monkeypatch.setattr(web_channel, "HOLD_MAX", 60.0)  # the part is surely still held at the end
    channel, store = gated_channel
    PartThenGateBot.gate.set()
    assert channel._take("cid", "quiet", "cid:q")  # accepted
    assert channel.wait_idle(10)
    events = stored_events(store, "cid")
    assert [(e["content"], e["reply_to"], e.get("final")) for e in events] == [("part: quiet", "cid:q", True)]
    assert channel.already_answered(message_context("cid", "cid:q")) is True


def test_a_message_that_ends_with_nothing_sent_gets_an_end_event(gated_channel):
    from channel.web.web_channel import END_EVENT

    channel, store = gated_channel
    context = message_context("dan", "dan:x")
    context.content = ""  # handled at once, nothing sent
    channel._handle(context)
    record = UserRecord.from_value(store.get(NAMESPACE, "dan"))
    assert [(e.name, json.loads(e.text)["type"], json.loads(e.text)["final"]) for e in record.events] == [
        (END_EVENT, "END", True)]
    assert channel.already_answered(context) is True
    assert record.history == []  # not part of the conversation


def test_ids_go_on_in_a_new_channel_on_the_same_store(settings):
    from channel.web.web_channel import WebChannel

    store = MemoryStore()
    first = WebChannel()
    first.journal = WebJournal(store, 50)
    first.push("eve", "TEXT", "a")
    first.push("eve", "TEXT", "b")
    first.stop()
    second = WebChannel()
    second.journal = WebJournal(store, 50)
    second.push("eve", "TEXT", "c")
    second.stop()
    ids = [e["id"] for e in stored_events(store, "eve")]
    epochs = {i.split("-")[0] for i in ids}
    assert len(epochs) == 1 and [int(i.split("-")[1]) for i in ids] == [1, 2, 3]


def test_a_record_of_the_first_version_is_read_as_the_history():
    old = [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello", "id": "abc-1"}, "junk"]
    record = UserRecord.from_value(old)
    assert record.history == old[:2] and record.seq == 0 and record.events == []


@pytest.mark.parametrize("value", [
    {"v": 2}, {"v": 3, "epoch": "a", "seq": 1}, {"v": 2, "epoch": "", "seq": 1}, {"v": 2, "epoch": "a", "seq": -1},
    {"v": 2, "epoch": "a", "seq": True}, {"v": 2, "epoch": "a", "seq": 1, "events": [[2, 0, "{}", None]]},
    {"v": 2, "epoch": "a", "seq": 1, "events": [["1", 0, "{}", None]]}, "text", 5,
    {"v": 2, "epoch": "a", "seq": 1, "events": [[1, 0, None, None]]},  # refers to no history entry
])
def test_a_record_of_no_known_shape_is_refused(value):
    with pytest.raises(ValueError):
        UserRecord.from_value(value)


def test_a_record_of_no_known_shape_in_the_store_starts_over_with_a_warning(logs):
    store = MemoryStore()
    store.put(NAMESPACE, "odd", {"v": 99})
    record = WebJournal(store, 5).load("odd")
    assert record.seq == 0 and not record.detached
    assert any("unreadable" in m for m in logs.messages)


def test_an_unreadable_store_gives_a_detached_record_that_is_never_written(logs):
    store = MemoryStore()
    store.put(NAMESPACE, "u", UserRecord(seq=7).to_value())
    store.close()
    journal = WebJournal(store, 5)
    record = journal.load("u")
    assert record.detached and journal.save("u", record) is False
    assert any("not readable" in m for m in logs.messages)


def test_the_record_is_bounded():
    record = UserRecord()
    now = time.time()
    for i in range(10):
        record.add_event({"type": "TEXT", "content": str(i)}, None, now - 100 if i < 2 else now)
        record.mark_answered(f"m{i}")
    # Two expired, then four over the cap of four: the first two of those were delivered.
    dropped = record.trim(now, history_size=3, events_max=4, events_ttl=50, delivered=5)
    assert [e.seq for e in record.events] == [7, 8, 9, 10]
    assert dropped == 1  # seq 6 was never written to a connection
    assert [e["content"] for e in record.history] == ["7", "8", "9"]
    for i in range(ANSWERED_MAX + 5):
        record.mark_answered(f"n{i}")
    assert len(record.answered) == ANSWERED_MAX
    assert record.is_answered(f"n{ANSWERED_MAX + 4}") and not record.is_answered("m0")


def test_a_store_that_fails_mid_run_still_delivers_in_order_to_the_open_page(settings, logs):
    from tests.e2e.test_web_process import SSE, running_channel

    store = MemoryStore()
    with running_channel(settings) as channel:
        channel.journal = WebJournal(store, 50)
        stream = SSE(channel.server.port, "fay")
        assert stream.opened.wait(5)
        channel.push("fay", "TEXT", "a")
        first = stream.next()
        store.close()  # every read and write fails from here on
        channel.push("fay", "TEXT", "b")
        second = stream.next()
        stream.close()
    epoch, _, seq = first["id"].partition("-")
    assert second["data"]["content"] == "b" and second["id"] == f"{epoch}-{int(seq) + 1}"
    assert any("not readable" in m for m in logs.messages)


class FullDiskStore(MemoryStore):
    """Reads work, writes fail while `full` is set: a full disk (SQLite reads on, writes refused)."""

    full = False

    def put(self, namespace, key, value, ttl=None):
        if self.full:
            raise OSError("database or disk is full")
        super().put(namespace, key, value, ttl)


def test_a_full_disk_mid_run_neither_hides_later_events_nor_loses_them(settings, logs):
    # Found by tests/reliability (state db disk full): after failed writes the stored record was
    # read back with its older numbers, so every later event had an id the open page had passed.
    from tests.e2e.test_web_process import SSE, running_channel

    store = FullDiskStore()
    with running_channel(settings) as channel:
        channel.journal = WebJournal(store, 50)
        stream = SSE(channel.server.port, "gus")
        assert stream.opened.wait(5)
        channel.push("gus", "TEXT", "a")
        store.full = True
        channel.push("gus", "TEXT", "b")
        channel.push("gus", "TEXT", "c")
        store.full = False
        channel.push("gus", "TEXT", "d")
        got = [stream.next(timeout=5) for _ in range(4)]
        stream.close()
    assert [e["data"]["content"] for e in got] == ["a", "b", "c", "d"]
    seqs = [int(e["id"].partition("-")[2]) for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs
    # Once the disk has room again, the events written while it was full are stored too.
    assert [e["content"] for e in stored_events(store, "gus")] == ["a", "b", "c", "d"]
    assert any("not saved" in m for m in logs.messages)


class GateStore(MemoryStore):
    """A store whose writes of one key wait at a gate (a slow disk, for that user only)."""

    def __init__(self, slow_key: str) -> None:
        super().__init__()
        self.slow_key = slow_key
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def put(self, namespace, key, value, ttl=None):
        if key == self.slow_key:
            self.waiting.set()
            self.gate.wait(20)
        super().put(namespace, key, value, ttl)


def test_a_slow_store_write_for_one_user_does_not_hold_up_another(settings):
    from tests.e2e.test_web_process import SSE, running_channel

    store = GateStore("slow user")
    with running_channel(settings) as channel:
        channel.journal = WebJournal(store, 50)
        stream = SSE(channel.server.port, "quick user")
        assert stream.opened.wait(5)
        slow = threading.Thread(target=channel.push, args=("slow user", "TEXT", "late"), daemon=True)
        slow.start()
        try:
            assert store.waiting.wait(5)
            threading.Thread(target=channel.push, args=("quick user", "TEXT", "now"), daemon=True).start()
            assert stream.next(10)["data"]["content"] == "now"
        finally:
            store.gate.set()
            slow.join(10)
            stream.close()


def test_an_answer_is_stored_once_and_read_back_whole():
    record = UserRecord()
    now = time.time()
    shown = record.add_event({"type": "TEXT", "content": "答" * 1000, "timestamp": now, "final": True}, None, now)
    done = record.add_event({"type": "END", "content": ""}, "end", now)
    value = record.to_value()
    assert json.dumps(value, ensure_ascii=False).count("答" * 1000) == 1  # in the history only
    again = UserRecord.from_value(json.loads(json.dumps(value)))
    assert again.events == [shown, done]
    # Given to a connection and gone from the history: no longer kept.
    again.trim(now, history_size=0, events_max=10, events_ttl=60, delivered=1)
    assert [e.seq for e in again.events] == [2]


def test_an_answer_the_history_shows_is_kept_past_the_expiry_for_a_page_that_slept():
    record = UserRecord()
    long_ago = time.time() - 3600
    record.add_event({"type": "TEXT", "content": "shown"}, None, long_ago)
    record.add_event({"type": "TEXT_PARTIAL", "content": "", "done": True}, "partial", long_ago)
    record.trim(time.time(), history_size=5, events_max=10, events_ttl=600, delivered=0)
    assert [(e.seq, e.name) for e in record.events] == [(1, None)]


def test_concurrent_pushes_number_every_event_once(settings, tmp_path):
    from channel.web.web_channel import WebChannel

    store = SQLiteStore(str(tmp_path / "state.db"))
    channel = WebChannel()
    channel.journal = WebJournal(store, 50)
    users = ["u0", "u1", "u2"]
    seqs: dict[str, list[int]] = {u: [] for u in users}
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(30):
            user = users[(n + i) % len(users)]
            seq = channel.push(user, "TEXT", f"{n}-{i}")
            with lock:
                seqs[user].append(seq)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        for user in users:
            assert sorted(seqs[user]) == list(range(1, len(seqs[user]) + 1)), user
            record = UserRecord.from_value(store.get(NAMESPACE, user))
            assert record.seq == len(seqs[user])
            assert [e.seq for e in record.events] == list(range(1, record.seq + 1))[-len(record.events):]
    finally:
        channel.stop()
        store.close()


def test_a_refused_post_takes_out_of_the_history_only_the_question_it_added(gated_channel, monkeypatch):
    from channel.chat_channel import Produced

    channel, store = gated_channel

    def questions(user: str) -> list[str]:
        value = store.get(NAMESPACE, user)
        return [e["msg_id"] for e in UserRecord.from_value(value).history if e["role"] == "user"] if value else []

    # Every queue full from here on: each POST is refused (the 503).
    monkeypatch.setattr(channel, "produce", lambda context: Produced.BUSY)
    assert channel._take("u", "new question", "u:m0") is Produced.BUSY
    assert questions("u") == []  # never taken: not in the history
    # A retry racing its first try: the first try wrote its question and is being queued when
    # the retry is refused. The refusal must not take away the first try's question.
    channel._write("u", [], user_entry={"role": "user", "type": "TEXT", "content": "asked", "timestamp": time.time(),
                                        "msg_id": "u:m1"})
    assert channel._take("u", "asked", "u:m1") is Produced.BUSY
    assert questions("u") == ["u:m1"]


def test_a_held_reply_does_not_count_as_sent_in_the_inbox(gated_channel, monkeypatch):
    """The web channel holds a reply until the handling ends and stores it then: the pipeline's
    inbox mark ("a reply went out") must wait for that, or a crash in between loses the answer
    (the next start would skip the message as answered)."""
    from channel.web import web_channel
    from config import conf

    monkeypatch.setattr(web_channel, "HOLD_MAX", 60.0)  # the part stays held while the bot waits
    channel, store = gated_channel
    book = conf().user_data_book
    book.attach(store)  # the inbox lives in the state store
    try:
        channel.channel_type = "web"
        assert channel._take("eve", "hello", "eve:m1")
        assert PartThenGateBot.started.wait(5)
        time.sleep(0.2)  # the part was handed to send() and is held
        assert stored_events(store, "eve") == []
        assert [i.replied for i in store.inbox_items("web")] == [None]
        PartThenGateBot.gate.set()
        assert channel.wait_idle(10)
        assert store.inbox_items("web") == []
        assert channel.already_answered(message_context("eve", "eve:m1")) is True
    finally:
        book._store = None
