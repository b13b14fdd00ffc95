"""channel/wecom_bot/streams.py: growing answers shown in WeCom AI bot stream bubbles
(reference/wecom-aibot.md §2.6: a frame carries the whole text so far, a bubble holds at most
20480 bytes, dies after 6 minutes without a frame and must be finished within 10 minutes).

Most tests drive the StreamPump (the code under test) against a recording stand-in for the
connection it writes to: the test answers each frame itself (ack, error code, dropped socket).
StreamPump takes no clock, so its module's time source is swapped for tests/fakes/clock.py's
FakeClock: throttling, keepalives and bubble ages move only when a test moves the clock. The last
tests run the pump on a real LongConnection against the loopback WeCom simulator."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from channel.wecom_bot import streams, ws_client
from channel.wecom_bot.streams import (
    EXPIRED,
    FRAME_INTERVAL,
    INVALID_REQ_ID,
    RETRY_AFTER,
    STREAM_KEEPALIVE,
    STREAM_MAX_AGE,
    STREAM_SAFE_BYTES,
    StreamPump,
    pieces,
)
from channel.wecom_bot.ws_client import AckTimeout, AibotError, LongConnection, NotConnected, Pending
from tests.fakes.clock import FakeClock
from tests.fakes.wecom_aibot import AibotSimulator
from tests.fakes.wecom_aibot.records import MAX_CONTENT_BYTES

REQ = "req-1"
SETTLE = 0.2  # real seconds a test gives the pump to (wrongly) send a frame it must not send
EPS = 1e-3  # "just after" on the fake clock (sums of float seconds are not exact)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------- pieces
def test_pieces_of_short_text_is_the_text_itself():
    assert pieces("") == [""]
    assert pieces("hello") == ["hello"]
    exact = "a" * STREAM_SAFE_BYTES
    assert pieces(exact) == [exact]


def test_pieces_default_size_is_the_safe_stream_size():
    text = "a" * (STREAM_SAFE_BYTES + 1)
    out = pieces(text)
    assert [nbytes(p) for p in out] == [STREAM_SAFE_BYTES, 1]
    assert STREAM_SAFE_BYTES <= MAX_CONTENT_BYTES  # what WeCom takes in one stream frame


@pytest.mark.parametrize("unit", ["é", "中", "😀", "a中é😀"])
@pytest.mark.parametrize("max_bytes", [10, 11, 13])
def test_pieces_never_cut_a_character(unit, max_bytes):
    text = unit * 40
    out = pieces(text, max_bytes)
    assert "".join(out) == text
    assert all(nbytes(p) <= max_bytes for p in out)
    for piece, following in zip(out, out[1:]):
        # No line break in the text, so each piece takes all that fits: one more character would not.
        assert nbytes(piece + following[0]) > max_bytes
        piece.encode("utf-8")  # whole characters only (a cut surrogate pair would not encode)


def test_pieces_end_at_a_line_break_in_the_last_quarter():
    text = "a" * 80 + "\n" + "b" * 40
    out = pieces(text, 100)
    assert out == ["a" * 80 + "\n", "b" * 40]
    early = "a" * 10 + "\n" + "b" * 200  # the only break is too early: cut at the size
    out = pieces(early, 100)
    assert nbytes(out[0]) == 100 and "".join(out) == early


def test_pieces_of_a_long_mixed_answer_at_the_default_size():
    text = ("第一段，中文和 emoji 😀。\n" * 3000) + "end"
    out = pieces(text)
    assert len(out) > 1 and "".join(out) == text
    assert all(nbytes(p) <= STREAM_SAFE_BYTES for p in out)
    assert all(p.endswith("\n") for p in out[:-1])  # a paragraph end was near every cut


# ---------------------------------------------------------------------------------------------- the stand-in
class Frame:
    """One frame the pump handed to the connection."""

    def __init__(self, how: str, cmd: str, req_id: str, body: dict, pending: Pending | None) -> None:
        self.how, self.cmd, self.req_id, self.body, self.pending = how, cmd, req_id, body, pending

    @property
    def stream_id(self) -> str:
        return self.body["stream"]["id"]

    @property
    def content(self) -> str:
        return self.body["stream"]["content"]

    @property
    def finish(self) -> bool:
        return self.body["stream"]["finish"]

    def ack(self) -> None:
        self.pending.resolve(ack={"headers": {"req_id": self.req_id}, "errcode": 0, "errmsg": "ok"})

    def refuse(self, errcode: int, errmsg: str = "refused") -> None:
        self.pending.resolve(ack={"headers": {"req_id": self.req_id}, "errcode": errcode, "errmsg": errmsg})

    def lose(self) -> None:
        self.pending.resolve(error=NotConnected(self.cmd, "the connection dropped"))

    def __repr__(self) -> str:
        return f"<{self.how} {self.stream_id[:6]} finish={self.finish} {self.content[:20]!r}...>"


class RecordingConnection:
    """What StreamPump writes to (LongConnection's send/request/ack_timeout), recorded. Frames
    sent with send() wait for the test to answer them; request() answers at once, with the
    errors queued in `refusals` first."""

    ack_timeout = 0.5

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.refusals: list[AibotError] = []
        self._cond = threading.Condition()

    def send(self, cmd, body=None, req_id=None, on_done=None) -> Pending:
        pending = Pending(cmd, req_id, json.dumps(body, ensure_ascii=False), on_done)
        self._record(Frame("send", cmd, req_id, body, pending))
        return pending

    def request(self, cmd, body=None, req_id=None, timeout=None) -> dict:
        self._record(Frame("request", cmd, req_id, body, None))
        if self.refusals:
            raise self.refusals.pop(0)
        return {"headers": {"req_id": req_id}, "errcode": 0, "errmsg": "ok"}

    def _record(self, frame: Frame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 3.0) -> list[Frame]:
        """The first `count` frames, once there are that many."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.frames) >= count, timeout):
                raise AssertionError(f"{count} frame(s) expected, got {self.frames}")
            return list(self.frames[:count])

    def quiet(self, count: int) -> None:
        """Still exactly `count` frames after the pump had time to send more."""
        time.sleep(SETTLE)
        with self._cond:
            assert len(self.frames) == count, self.frames[count:]


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(streams, "time", SimpleNamespace(monotonic=clock))
    return clock


@pytest.fixture
def conn():
    return RecordingConnection()


@pytest.fixture
def pump(conn, clock):
    pump = StreamPump(conn)
    yield pump
    pump.stop()


class Talk:
    """One answer the bot writes for one question (a context)."""

    def __init__(self, pump: StreamPump, clock: FakeClock, req_id: str = REQ, answer_id: str = "a1") -> None:
        self.pump, self.clock, self.req_id, self.answer_id = pump, clock, req_id, answer_id
        self.context = object()
        self.text = ""

    def say(self, text: str) -> None:
        self.text = text
        self.pump.show(self.context, self.req_id, self.answer_id, text)

    def later(self, seconds: float) -> None:
        """Move the clock, and wake the pump (as the bot's next partial would)."""
        self.clock.advance(seconds)
        self.pump.show(self.context, self.req_id, self.answer_id, self.text)

    @property
    def answer(self):
        return self.pump.oldest(self.context)


@pytest.fixture
def talk(pump, clock):
    return Talk(pump, clock)


# ---------------------------------------------------------------------------------------------- growing
def test_first_frame_shows_the_text_at_once_on_the_message_req_id(conn, talk):
    talk.say("Hello")
    [frame] = conn.wait(1)
    assert frame.how == "send" and frame.cmd == "aibot_respond_msg" and frame.req_id == REQ
    assert frame.body == {"msgtype": "stream", "stream": {"id": frame.stream_id, "finish": False, "content": "Hello"}}
    assert frame.stream_id


def test_frames_are_whole_snapshots_throttled_to_one_per_interval(conn, talk):
    talk.say("The")
    first = conn.wait(1)[0]
    first.ack()
    talk.say("The answer")
    talk.say("The answer is")
    conn.quiet(1)  # the clock has not moved since the first frame
    talk.later(FRAME_INTERVAL * 0.9)
    conn.quiet(1)
    talk.later(FRAME_INTERVAL * 0.1 + EPS)
    second = conn.wait(2)[1]
    # The latest text, whole (WeCom replaces the bubble's text), in the same bubble.
    assert second.content == "The answer is" and second.stream_id == first.stream_id and not second.finish


def test_one_frame_of_an_answer_on_its_way_at_a_time(conn, talk):
    talk.say("one")
    first = conn.wait(1)[0]
    talk.say("one two")
    talk.later(10 * FRAME_INTERVAL)
    conn.quiet(1)  # not acked yet
    first.ack()
    assert conn.wait(2)[1].content == "one two"


def test_answers_to_different_messages_do_not_wait_for_each_other(conn, pump, clock):
    a, b = Talk(pump, clock, "req-a", "x"), Talk(pump, clock, "req-b", "x")
    a.say("for a")
    conn.wait(1)
    b.say("for b")  # a's frame is not acked
    frames = conn.wait(2)
    assert [(f.req_id, f.content) for f in frames] == [("req-a", "for a"), ("req-b", "for b")]
    assert frames[0].stream_id != frames[1].stream_id


def test_blank_text_shows_nothing(conn, talk):
    talk.say("  \n ")
    talk.later(1)
    conn.quiet(0)
    talk.say("  \n x")
    assert conn.wait(1)[0].content == "  \n x"


def test_same_text_is_not_sent_again_before_the_keepalive(conn, talk):
    talk.say("steady")
    conn.wait(1)[0].ack()
    talk.later(FRAME_INTERVAL * 4)
    conn.quiet(1)


def test_a_quiet_bubble_gets_its_text_again_every_keepalive(conn, talk):
    talk.say("thinking...")
    first = conn.wait(1)[0]
    first.ack()
    talk.later(STREAM_KEEPALIVE - 1)
    conn.quiet(1)
    talk.later(1)
    again = conn.wait(2)[1]
    assert (again.stream_id, again.content, again.finish) == (first.stream_id, "thinking...", False)
    assert STREAM_KEEPALIVE < 360  # WeCom drops a bubble after 6 minutes without a frame (§2.6)


def test_an_old_bubble_is_finished_and_the_answer_goes_on_in_a_new_one(conn, talk):
    talk.say("part one")
    frames = [conn.wait(1)[0]]
    frames[0].ack()
    # Keepalives at 240 s and 480 s keep the same bubble.
    for n in (2, 3):
        talk.later(STREAM_KEEPALIVE)
        frames.append(conn.wait(n)[-1])
        frames[-1].ack()
    assert {f.stream_id for f in frames} == {frames[0].stream_id} and not any(f.finish for f in frames)
    talk.later(STREAM_MAX_AGE - 2 * STREAM_KEEPALIVE + 1)  # the bubble is older than STREAM_MAX_AGE
    closing = conn.wait(4)[3]
    assert (closing.stream_id, closing.content, closing.finish) == (frames[0].stream_id, "part one", True)
    assert STREAM_MAX_AGE < 600  # a bubble must be finished within 10 minutes (§2.6)
    closing.ack()
    talk.say("part one, part two")
    nxt = conn.wait(5)[4]
    # Only what came after the finished bubble, in a new bubble.
    assert nxt.stream_id != frames[0].stream_id and nxt.content == ", part two" and not nxt.finish


def test_a_bubble_is_split_before_it_passes_the_size_limit(conn, talk):
    text = "中文😀" * 2500  # 25000 bytes, no line break
    talk.say(text)
    closing = conn.wait(1)[0]
    assert closing.finish
    assert STREAM_SAFE_BYTES - 4 < nbytes(closing.content) <= STREAM_SAFE_BYTES <= MAX_CONTENT_BYTES
    closing.ack()
    rest = conn.wait(2)[1]
    assert rest.stream_id != closing.stream_id and not rest.finish
    assert closing.content + rest.content == text


def test_a_new_bubble_waits_for_the_frame_that_closes_the_last_one(conn, talk):
    talk.say("x" * (STREAM_SAFE_BYTES + 50))
    closing = conn.wait(1)[0]
    assert closing.finish
    talk.later(10 * FRAME_INTERVAL)
    conn.quiet(1)  # one frame of the answer on its way at a time, the closing one too
    closing.ack()
    assert conn.wait(2)[1].content == "x" * 50


def test_a_lost_closing_frame_is_sent_again_and_no_text_is_skipped(conn, talk):
    text = "y" * STREAM_SAFE_BYTES + "tail"
    talk.say(text)
    closing = conn.wait(1)[0]
    closing.lose()  # the socket dropped before WeCom answered
    talk.later(RETRY_AFTER * 0.9)
    conn.quiet(1)
    talk.later(RETRY_AFTER * 0.1 + EPS)
    again = conn.wait(2)[1]
    assert (again.stream_id, again.content, again.finish) == (closing.stream_id, closing.content, True)
    again.ack()
    rest = conn.wait(3)[2]
    assert again.content + rest.content == text and rest.stream_id != closing.stream_id


def test_an_expired_closing_frame_moves_its_text_to_a_new_bubble(conn, talk):
    text = "z" * STREAM_SAFE_BYTES + "tail"
    talk.say(text)
    closing = conn.wait(1)[0]
    closing.refuse(EXPIRED, "stream message update expired")
    retry = conn.wait(2)[1]
    # WeCom closed that bubble itself: the same text goes again, in a new bubble.
    assert retry.stream_id != closing.stream_id and retry.content == closing.content and retry.finish
    retry.ack()
    rest = conn.wait(3)[2]
    assert retry.content + rest.content == text and rest.stream_id not in (closing.stream_id, retry.stream_id)


def test_a_closing_frame_the_req_id_refuses_is_not_tried_again(conn, talk):
    talk.say("r" * (STREAM_SAFE_BYTES + 10))
    conn.wait(1)[0].refuse(INVALID_REQ_ID, "invalid req_id")
    talk.later(RETRY_AFTER * 5)
    conn.quiet(1)
    assert talk.pump.finish(talk.answer, talk.text) is False  # the caller sends the text as a message


def test_an_expired_bubble_goes_on_in_a_new_bubble_with_the_whole_text(conn, talk):
    talk.say("first")
    first = conn.wait(1)[0]
    first.ack()
    talk.say("first second")
    talk.later(FRAME_INTERVAL)
    second = conn.wait(2)[1]
    second.refuse(EXPIRED, "stream message update expired")
    third = conn.wait(3)[2]
    assert third.stream_id != first.stream_id and third.content == "first second" and not third.finish


@pytest.mark.parametrize("lose", [lambda f: f.lose(), lambda f: f.pending.resolve(error=AckTimeout(f.cmd, 5))],
                         ids=["dropped", "ack-timeout"])
def test_a_frame_lost_on_the_way_is_sent_again_after_a_pause(conn, talk, lose):
    talk.say("hello")
    first = conn.wait(1)[0]
    lose(first)
    talk.later(RETRY_AFTER * 0.9)
    conn.quiet(1)
    talk.later(RETRY_AFTER * 0.1 + EPS)
    again = conn.wait(2)[1]
    assert (again.stream_id, again.content) == (first.stream_id, "hello")


def test_a_req_id_that_takes_no_stream_stops_the_pump_and_finish_says_so(conn, talk):
    talk.say("hi")
    conn.wait(1)[0].refuse(INVALID_REQ_ID, "invalid req_id")
    talk.say("hi there")
    talk.later(RETRY_AFTER * 5)
    conn.quiet(1)
    assert talk.pump.finish(talk.answer, "hi there, done") is False  # the caller sends it as a message
    assert len(conn.frames) == 1


def test_other_errors_stop_the_growing_answer(conn, talk):
    talk.say("hi")
    conn.wait(1)[0].refuse(45009, "api freq out of limit")
    talk.say("hi there")
    talk.later(RETRY_AFTER * 5)
    conn.quiet(1)
    assert talk.pump.finish(talk.answer, "hi there") is False


# ---------------------------------------------------------------------------------------------- finishing
def test_finish_closes_the_bubble_with_the_final_text(conn, talk):
    talk.say("Hello wor")
    first = conn.wait(1)[0]
    first.ack()
    assert talk.pump.finish(talk.answer, "Hello world!") is True
    final = conn.frames[-1]
    assert final.how == "request" and final.req_id == REQ
    assert (final.stream_id, final.content, final.finish) == (first.stream_id, "Hello world!", True)
    assert talk.pump.oldest(talk.context) is None  # the answer is no longer open
    talk.say("more")  # late partials of a finished answer are ignored
    talk.later(1)
    conn.quiet(2)


def test_finish_waits_for_the_frame_on_its_way(conn, talk):
    talk.say("partial")
    first = conn.wait(1)[0]
    result = []
    worker = threading.Thread(target=lambda: result.append(talk.pump.finish(talk.answer, "partial, final")))
    worker.start()
    conn.quiet(1)
    first.ack()
    worker.join(5)
    assert result == [True]
    final = conn.wait(2)[1]
    assert (final.how, final.stream_id, final.content, final.finish) == ("request", first.stream_id, "partial, final", True)


def test_finish_without_a_frame_yet_opens_and_closes_one_bubble(conn, pump, clock):
    talk = Talk(pump, clock)
    talk.say("   ")  # an answer with nothing visible yet
    assert pump.finish(talk.answer, "short answer") is True
    [final] = conn.frames
    assert (final.how, final.content, final.finish) == ("request", "short answer", True)


def test_a_long_final_text_spans_several_finished_bubbles(conn, talk):
    talk.say("start")
    first = conn.wait(1)[0]
    first.ack()
    final_text = "段落。\n" * 9000  # 9000 * 10 bytes
    assert talk.pump.finish(talk.answer, final_text) is True
    finals = conn.frames[1:]
    assert len(finals) == len(pieces(final_text)) > 1
    assert all(f.finish and nbytes(f.content) <= STREAM_SAFE_BYTES for f in finals)
    assert finals[0].stream_id == first.stream_id and len({f.stream_id for f in finals}) == len(finals)
    assert "".join(f.content for f in finals) == final_text


def test_finish_after_a_split_shows_only_what_the_finished_bubble_lacks(conn, talk):
    text = "w" * STREAM_SAFE_BYTES + "the end"
    talk.say(text)
    closing = conn.wait(1)[0]
    closing.ack()
    conn.wait(2)[1].ack()
    # The final text carries a decoration before the bot's text (a group's "@name").
    assert talk.pump.finish(talk.answer, "@alice\n" + text + " and more") is True
    final = conn.frames[-1]
    assert final.finish and final.stream_id == conn.frames[1].stream_id
    assert closing.content + final.content == text + " and more"


def test_finish_when_all_visible_text_is_in_finished_bubbles_sends_nothing_more(conn, talk):
    text = "v" * STREAM_SAFE_BYTES + " \n"  # the split leaves only blanks for a new bubble
    talk.say(text)
    closing = conn.wait(1)[0]
    assert closing.finish and closing.content == "v" * STREAM_SAFE_BYTES
    closing.ack()
    assert talk.pump.finish(talk.answer, text) is True
    assert conn.frames == [closing]  # no empty bubble opened after it


def test_finish_goes_on_in_a_new_bubble_when_the_last_one_expired(conn, talk):
    talk.say("slow answer")
    first = conn.wait(1)[0]
    first.ack()
    conn.refusals.append(AibotError(EXPIRED, "stream message update expired", "aibot_respond_msg"))
    assert talk.pump.finish(talk.answer, "slow answer, finally") is True
    refused, retried = conn.frames[1:]
    assert refused.stream_id == first.stream_id
    assert retried.stream_id != first.stream_id and (retried.content, retried.finish) == ("slow answer, finally", True)


def test_finish_on_a_req_id_that_takes_no_stream_returns_false(conn, pump, clock):
    talk = Talk(pump, clock)
    talk.say(" ")
    conn.refusals.append(AibotError(INVALID_REQ_ID, "invalid req_id", "aibot_respond_msg"))
    assert pump.finish(talk.answer, "answer") is False


def test_finish_passes_other_errors_on(conn, talk):
    talk.say("x")
    conn.wait(1)[0].ack()
    conn.refusals.append(NotConnected("aibot_respond_msg", "connecting"))
    with pytest.raises(NotConnected):
        talk.pump.finish(talk.answer, "x y")


def test_close_finishes_the_bubble_with_what_it_shows(conn, talk):
    talk.say("half an answer")
    first = conn.wait(1)[0]
    first.ack()
    talk.pump.close(talk.answer)
    final = conn.frames[-1]
    # Not an empty frame: that would blank the bubble.
    assert (final.how, final.stream_id, final.content, final.finish) == ("request", first.stream_id, "half an answer", True)


def test_close_without_anything_shown_sends_nothing_and_errors_are_only_logged(conn, pump, clock, logs):
    quiet = Talk(pump, clock, answer_id="q")
    quiet.say("")
    pump.close(quiet.answer)
    assert conn.frames == []
    talk = Talk(pump, clock, answer_id="t")
    talk.say("shown")
    conn.wait(1)[0].ack()
    conn.refusals.append(AibotError(EXPIRED, "stream message update expired", "aibot_respond_msg"))
    pump.close(talk.answer)  # does not raise
    assert "could not be closed" in logs.text()


def test_answers_of_a_context_oldest_first_and_forgotten(conn, pump, clock):
    first, second = Talk(pump, clock, answer_id="1"), Talk(pump, clock, answer_id="2")
    second.context = first.context
    first.say("one")
    second.say("two")
    assert [a.text for a in pump.open_answers(first.context)] == ["one", "two"]
    assert pump.oldest(first.context).text == "one"
    pump.take(pump.oldest(first.context), 0)
    assert pump.oldest(first.context).text == "two"
    pump.forget(first.context)
    assert pump.open_answers(first.context) == [] and pump.oldest(first.context) is None


def test_a_stopped_pump_sends_nothing(conn, clock):
    pump = StreamPump(conn)
    pump.stop()
    Talk(pump, clock).say("too late")
    conn.quiet(0)


# ---------------------------------------------------------------------------------------------- on the wire
BOT, SECRET = "bot-1", "secret-1"


@pytest.fixture
def sim_clock():
    return FakeClock()


@pytest.fixture
def wire(sim_clock, monkeypatch):
    """A LongConnection subscribed to the loopback simulator (reconnecting within 0.1 s)."""
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.1)
    sim = AibotSimulator(bots={BOT: SECRET}, clock=sim_clock).start()
    conn = LongConnection(sim.ws_url, BOT, SECRET, lambda frame: None, heartbeat=30, ack_timeout=2)
    assert conn.start(wait=5) == "ready"
    yield sim, conn
    conn.stop()
    sim.stop()


def test_a_long_answer_reaches_wecom_as_finished_bubbles_within_its_limit(wire, clock):
    sim, conn = wire
    pushed = sim.push_text(BOT, "u1", "write a lot")
    pump = StreamPump(conn)
    try:
        talk = Talk(pump, clock, pushed.req_id)
        text = "一二三四五六七八九十\n" * 2600  # 80600 bytes
        talk.say(text[: len(text) // 2])
        sim.wait(lambda: len(sim.bubbles(pushed.req_id)) >= 2, timeout=5)
        talk.say(text)
        talk.later(FRAME_INTERVAL)
        assert pump.finish(talk.answer, text) is True
    finally:
        pump.stop()
    bubbles = sim.bubbles(pushed.req_id)
    assert all(b.finished for b in bubbles) and len(bubbles) >= 5
    assert "".join(b.text for b in bubbles) == text
    assert all(nbytes(frame) <= MAX_CONTENT_BYTES for b in bubbles for frame in b.frames)
    assert not [e for e in sim.errors]


def test_a_dropped_socket_while_splitting_loses_no_text(wire, clock):
    sim, conn = wire
    pushed = sim.push_text(BOT, "u1", "write a lot")
    sim.drop_after_frames(BOT, 1, process=False)  # the frame closing the first bubble never lands
    pump = StreamPump(conn)
    try:
        talk = Talk(pump, clock, pushed.req_id)
        text = "k" * STREAM_SAFE_BYTES + "the rest"
        talk.say(text)
        sim.wait_subscribed(BOT, timeout=5, after=1)  # the connection came back
        deadline = time.monotonic() + 5
        while not conn.is_ready() and time.monotonic() < deadline:  # (the client has the login's ack)
            time.sleep(0.01)
        talk.later(RETRY_AFTER)
        sim.wait(lambda: len(sim.bubbles(pushed.req_id)) >= 2, timeout=5)
        assert pump.finish(talk.answer, text) is True
    finally:
        pump.stop()
    bubbles = sim.bubbles(pushed.req_id)
    assert all(b.finished for b in bubbles)
    assert "".join(b.text for b in bubbles) == text


def test_wecom_expiring_a_bubble_moves_the_answer_to_a_new_one(wire, clock, sim_clock):
    sim, conn = wire
    pushed = sim.push_text(BOT, "u1", "think long")
    pump = StreamPump(conn)
    try:
        talk = Talk(pump, clock, pushed.req_id)
        talk.say("part one")
        sim.wait(lambda: len(sim.bubbles(pushed.req_id)) == 1, timeout=5)
        sim_clock.advance(sim.stream_idle_limit + 1)  # WeCom's side: the bubble was quiet too long
        talk.say("part one, part two")
        talk.later(FRAME_INTERVAL)
        sim.wait(lambda: len(sim.bubbles(pushed.req_id)) == 2, timeout=5)
        assert pump.finish(talk.answer, "part one, part two. Done.") is True
    finally:
        pump.stop()
    old, new = sim.bubbles(pushed.req_id)
    assert old.expired and not old.finished and old.text == "part one"
    assert new.finished and new.text == "part one, part two. Done."


def test_an_event_req_id_refuses_the_stream_and_finish_says_so(wire, clock):
    sim, conn = wire
    sim.push_text(BOT, "u1", "hello")  # the user is known to the bot
    event = sim.push_enter_chat(BOT, "u1")
    pump = StreamPump(conn)
    try:
        talk = Talk(pump, clock, event.req_id)
        talk.say("welcome?")
        sim.wait(lambda: sim.replies(event.req_id), timeout=5)
        assert pump.finish(talk.answer, "welcome!") is False
    finally:
        pump.stop()
    assert [r["errcode"] for r in sim.replies(event.req_id)] == [INVALID_REQ_ID]
