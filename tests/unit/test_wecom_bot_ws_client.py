"""channel/wecom_bot/ws_client.py: the WeCom AI bot long connection (reference/wecom-aibot.md §2.1-§2.3,
§2.9, §2.10, §5.3), driven against the loopback simulator (tests/fakes/wecom_aibot) over real
WebSockets on 127.0.0.1. Heartbeats and ack timeouts are made short through the constructor, and the
back-off's first step through its module constant, so reconnects take a fraction of a second."""
from __future__ import annotations

import itertools
import json
import re
import threading
import time

import pytest
from websockets.sync.client import connect

from channel.wecom_bot import ws_client
from channel.wecom_bot.ws_client import (
    AUTH_REFUSED,
    CONNECTING,
    READY,
    STOPPED,
    TAKEN_OVER,
    AckTimeout,
    AibotError,
    LongConnection,
    NotConnected,
    parse_frame,
)
from tests.e2e.daemon import free_port
from tests.fakes.clock import FakeClock
from tests.fakes.wecom_aibot import AibotSimulator

BOT, SECRET = "bot-1", "secret-1"
FIRST_STEP = ws_client.BACKOFF_FIRST  # the module's own value (the fixture below lowers it)
SETTLE = 0.3  # real seconds given to the connection to (wrongly) do something it must not


def until(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what} not met within {timeout} s")


class Seen:
    """What a callback was given, in order (thread-safe enough for appends and reads)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.items: list = []
        self.fail_first = fail_first

    def __call__(self, *args) -> None:
        self.items.append(args[0] if len(args) == 1 else args)
        if self.fail_first and len(self.items) == 1:
            raise RuntimeError("a handler bug")


class Bot:
    """A LongConnection with what it handed on: callbacks and (state, reason) changes."""

    def __init__(self, sim: AibotSimulator, secret: str = SECRET, url: str | None = None,
                 heartbeat: float = 30.0, ack_timeout: float = 2.0, on_callback: Seen | None = None) -> None:
        self.callbacks = on_callback or Seen()
        self.states = Seen()
        self.conn = LongConnection(url or sim.ws_url, BOT, secret, self.callbacks, heartbeat=heartbeat,
                                   ack_timeout=ack_timeout, on_state=self.states)

    def delays(self) -> list[float]:
        """The back-off delays chosen so far, as the state reasons tell them (0.1 s resolution)."""
        return [float(m.group(1)) for _, reason in self.states.items
                for m in [re.search(r"reconnecting in ([\d.]+) s", reason)] if m]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.05)


@pytest.fixture
def make_sim():
    sims = []

    def factory(**knobs) -> AibotSimulator:
        sim = AibotSimulator(bots={BOT: SECRET}, clock=FakeClock(), **knobs).start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def make_bot():
    bots = []

    def factory(sim, start: bool = True, **kw) -> Bot:
        bot = Bot(sim, **kw)
        bots.append(bot)
        if start:
            assert bot.conn.start(wait=5) == READY
        return bot

    yield factory
    for bot in bots:
        bot.conn.stop()


def stream(content: str, sid: str = "s1", finish: bool = False) -> dict:
    return {"msgtype": "stream", "stream": {"id": sid, "finish": finish, "content": content}}


def texts(bot: Bot) -> list[str]:
    """The text of each text-message callback the connection handed on."""
    out = []
    for frame in bot.callbacks.items:
        body = frame.get("body") if isinstance(frame, dict) else None
        text = body.get("text") if isinstance(body, dict) else None
        if isinstance(text, dict):
            out.append(text.get("content"))
    return out


def client_frames(sim: AibotSimulator, cmd: str, connection: int | None = None) -> list[dict]:
    return [f for _, number, f in sim.frames
            if isinstance(f, dict) and f.get("cmd") == cmd and connection in (None, number)]


# ---------------------------------------------------------------------------------------------- login
def test_login_then_callbacks_are_handed_on(sim, make_bot):
    bot = make_bot(sim)
    assert bot.conn.is_ready() and bot.conn.connections == 1 and sim.connection_count(BOT) == 1
    [subscribe] = client_frames(sim, "aibot_subscribe")
    assert subscribe["body"] == {"bot_id": BOT, "secret": SECRET}
    until(lambda: (READY, "subscribed") in bot.states.items, what="the state change")
    pushed = sim.push_text(BOT, "u1", "hello bot")
    frame = until(lambda: bot.callbacks.items, what="a callback")[0]
    assert frame["cmd"] == "aibot_msg_callback" and frame["headers"]["req_id"] == pushed.req_id
    assert frame["body"]["text"]["content"] == "hello bot"


def test_a_failing_callback_handler_does_not_end_the_connection(sim, make_bot, logs):
    bot = make_bot(sim, on_callback=Seen(fail_first=True))
    sim.push_text(BOT, "u1", "one")
    sim.push_text(BOT, "u1", "two")
    until(lambda: len(bot.callbacks.items) == 2, what="both callbacks")
    assert bot.conn.is_ready() and sim.connection_count(BOT) == 1
    assert "could not be handled" in logs.text()


@pytest.mark.parametrize("close_on_failure", [False, True], ids=["socket-kept", "socket-closed"])
def test_a_wrong_secret_is_refused_for_good(make_sim, make_bot, close_on_failure):
    sim = make_sim(close_on_auth_failure=close_on_failure)
    bot = make_bot(sim, start=False, secret="wrong")
    assert bot.conn.start(wait=5) == AUTH_REFUSED
    assert "853000" in bot.conn.reason and "wecom_bot_secret" in bot.conn.reason
    time.sleep(SETTLE)  # many back-off steps of 0.05 s: no second attempt
    assert len(sim.connections) == 1 and sim.connection_count(BOT) == 0
    assert bot.conn.state == AUTH_REFUSED
    with pytest.raises(NotConnected):
        bot.conn.request("ping")


def test_another_login_error_is_retried(sim, make_bot):
    sim.fail_next("aibot_subscribe", -1, errmsg="system busy")
    bot = make_bot(sim)  # READY in the end
    assert len(client_frames(sim, "aibot_subscribe")) == 2 and len(sim.connections) == 2
    assert bot.conn.connections == 1


def test_an_unanswered_login_is_tried_again(make_sim, make_bot, monkeypatch):
    monkeypatch.setattr(ws_client, "SUBSCRIBE_TIMEOUT", 0.2)
    sim = make_sim(no_ack_cmds={"aibot_subscribe"})
    bot = make_bot(sim, start=False)
    assert bot.conn.start(wait=0.1) == CONNECTING  # the daemon goes on; the connection keeps trying
    until(lambda: len(client_frames(sim, "aibot_subscribe")) >= 2, what="a second login")
    sim.no_ack_cmds.clear()
    until(bot.conn.is_ready, what="READY")


def test_an_unreachable_server_keeps_being_tried(make_bot, sim):
    port = free_port()  # nothing listens there, and no other test takes it meanwhile
    bot = make_bot(sim, start=False, url=f"ws://127.0.0.1:{port}")
    assert bot.conn.start(wait=0.2) == CONNECTING
    until(lambda: len(bot.delays()) >= 3, what="three reconnect attempts")
    with pytest.raises(NotConnected):
        bot.conn.request("ping", timeout=0.1)


# ---------------------------------------------------------------------------------------------- requests
def test_a_request_returns_its_ack(sim, make_bot):
    bot = make_bot(sim)
    pushed = sim.push_text(BOT, "u1", "hi")
    ack = bot.conn.request("aibot_respond_msg", stream("Hello", finish=True), pushed.req_id)
    assert ack["errcode"] == 0 and ack["headers"]["req_id"] == pushed.req_id
    [bubble] = sim.bubbles(pushed.req_id)
    assert bubble.text == "Hello" and bubble.finished


def test_an_ack_with_an_error_code_raises_it(sim, make_bot):
    bot = make_bot(sim)
    with pytest.raises(AibotError) as info:
        bot.conn.request("aibot_respond_msg", stream("x"), "a-req-id-wecom-never-gave")
    assert type(info.value) is AibotError and info.value.errcode == 846605
    assert "invalid req_id" in info.value.errmsg and "846605" in str(info.value)
    pushed = sim.push_text(BOT, "u1", "hi")
    with pytest.raises(AibotError) as info:
        bot.conn.request("aibot_respond_msg", {"msgtype": "text", "text": {"content": "x"}}, pushed.req_id)
    assert info.value.errcode == 40008
    # The connection is fine afterwards.
    assert bot.conn.request("aibot_respond_msg", stream("ok"), pushed.req_id)["errcode"] == 0
    assert sim.connection_count(BOT) == 1


def test_an_ack_with_an_odd_errcode_is_an_error(make_sim, make_bot):
    sim = make_sim(no_ack_cmds={"aibot_send_msg"})
    bot = make_bot(sim)
    done = Seen()
    bot.conn.send("aibot_send_msg", {"chatid": "u1", "msgtype": "markdown", "markdown": {"content": "x"}},
                  "my-req", on_done=done)
    until(lambda: client_frames(sim, "aibot_send_msg"), what="the request on the wire")
    sim.push_raw(BOT, {"headers": {"req_id": "my-req"}, "errcode": "E-1", "errmsg": "odd"})
    pending = until(lambda: done.items, what="the answer")[0]
    assert isinstance(pending.error, AibotError) and pending.error.errcode == -1 and pending.error.errmsg == "odd"


def test_frames_of_one_req_id_go_one_at_a_time_and_other_req_ids_do_not_wait(make_sim, make_bot):
    sim = make_sim(no_ack_cmds={"aibot_respond_msg"})
    bot = make_bot(sim, ack_timeout=0.4)
    a, b = sim.push_text(BOT, "u1", "a"), sim.push_text(BOT, "u2", "b")
    done = Seen()
    bot.conn.send("aibot_respond_msg", stream("a1"), a.req_id, on_done=done)
    bot.conn.send("aibot_respond_msg", stream("a1 a2"), a.req_id, on_done=done)
    bot.conn.send("aibot_respond_msg", stream("b1"), b.req_id, on_done=done)
    until(lambda: len(sim.replies(b.req_id)) == 1, what="b's frame")
    assert [r["stream"]["content"] for r in sim.replies(a.req_id)] == ["a1"]  # a2 waits for a1's ack
    until(lambda: len(done.items) == 3, what="three answers")
    assert all(isinstance(p.error, AckTimeout) for p in done.items)
    assert [r["stream"]["content"] for r in sim.replies(a.req_id)] == ["a1", "a1 a2"]  # after a1 timed out


def test_each_frame_gets_its_own_ack_in_order(make_sim, make_bot):
    sim = make_sim(ack_delay=0.02)
    bot = make_bot(sim)
    pushed = sim.push_text(BOT, "u1", "count")
    sim.fail_next("aibot_respond_msg", 6000, errmsg="command conflict")  # the first frame only
    done = Seen()
    texts = ["1", "1 2", "1 2 3", "1 2 3 4"]
    for text in texts:
        bot.conn.send("aibot_respond_msg", stream(text), pushed.req_id, on_done=done)
    until(lambda: len(done.items) == 4, what="four answers")
    assert [p.cmd for p in done.items] == ["aibot_respond_msg"] * 4
    assert [json.loads(p.text)["body"]["stream"]["content"] for p in done.items] == texts
    assert [p.error.errcode if p.error else 0 for p in done.items] == [6000, 0, 0, 0]
    assert sim.bubbles(pushed.req_id)[0].frames == texts[1:]


def test_a_lost_ack_times_out_on_time_and_frees_its_req_id(make_sim, make_bot):
    # A long heartbeat: nothing else wakes the reader while the ack is awaited.
    sim = make_sim(no_ack_cmds={"aibot_respond_msg"})
    bot = make_bot(sim, heartbeat=30, ack_timeout=0.3)
    pushed = sim.push_text(BOT, "u1", "hi")
    until(lambda: bot.callbacks.items, what="the callback")
    done = threading.Event()
    lost = bot.conn.send("aibot_respond_msg", stream("lost"), pushed.req_id, on_done=lambda p: done.set())
    assert done.wait(3), "on_done of a frame never acked was not called within 10 ack timeouts"
    assert isinstance(lost.error, AckTimeout)
    with pytest.raises(AckTimeout):
        bot.conn.request("aibot_respond_msg", stream("lost too"), pushed.req_id)
    sim.no_ack_cmds.clear()
    # The timed-out frame no longer holds up the next frame of its req_id.
    assert bot.conn.request("aibot_respond_msg", stream("through"), pushed.req_id, timeout=2)["errcode"] == 0


def test_an_ack_without_a_req_id_leaves_the_request_to_time_out(sim, make_bot, logs):
    bot = make_bot(sim, ack_timeout=0.3)
    with pytest.raises(AckTimeout):  # 40058 comes back without the req_id (§2.1)
        bot.conn.request("aibot_send_msg", {"msgtype": "markdown", "markdown": {"content": "no chatid"}})
    assert "without naming the request" in logs.text() and "40058" in logs.text()
    assert bot.conn.is_ready()


def test_acks_for_unknown_req_ids_are_ignored(make_sim, make_bot):
    sim = make_sim(no_ack_cmds={"aibot_respond_msg"})
    bot = make_bot(sim, heartbeat=0.1, ack_timeout=1.0)
    pushed = sim.push_text(BOT, "u1", "hi")
    waiting = bot.conn.send("aibot_respond_msg", stream("x"), pushed.req_id)
    until(lambda: sim.replies(pushed.req_id), what="the frame on the wire")
    for stray in ({"headers": {"req_id": "nobody-asked"}, "errcode": 0, "errmsg": "ok"},
                  {"headers": {"req_id": 12345}, "errcode": 0, "errmsg": "ok"},
                  {"errcode": 0, "errmsg": "ok"}):
        sim.push_raw(BOT, stray)
    time.sleep(SETTLE)
    assert waiting.ack is None and waiting.error is None  # not taken for the answer to another request
    with pytest.raises(AckTimeout):
        waiting.wait(3)  # until its own ack time is over
    assert bot.conn.is_ready() and sim.connection_count(BOT) == 1


@pytest.mark.parametrize("junk", [
    "{not json", "[1, 2, 3]", '"a string"', "", "null", "\ufeff{}",
    json.dumps({"headers": "not an object", "errcode": 0}),
    json.dumps({"headers": [1, 2], "errcode": 0}),
    json.dumps({"cmd": "aibot_event_callback", "headers": {"req_id": "r"}, "body": "not an object"}),
], ids=["broken", "array", "string", "empty", "null", "bom", "headers-str", "headers-list", "body-str"])
def test_malformed_frames_are_skipped_without_dropping_the_connection(sim, make_bot, junk):
    bot = make_bot(sim, ack_timeout=3)
    pushed = sim.push_text(BOT, "u1", "hi")
    until(lambda: bot.callbacks.items, what="the first callback")
    sim.push_raw(BOT, junk)
    # A request answered after the junk still gets its ack, on the same socket.
    assert bot.conn.request("aibot_respond_msg", stream("fine"), pushed.req_id)["errcode"] == 0
    sim.push_text(BOT, "u1", "after the junk")
    until(lambda: "after the junk" in texts(bot), what="the callback after the junk")
    assert sim.connection_count(BOT) == 1 and bot.conn.connections == 1


def test_raw_control_characters_inside_json_strings_are_accepted(make_sim, make_bot):
    sim = make_sim(control_chars_in_json=True)
    bot = make_bot(sim)
    sim.push_text(BOT, "u1", "line one\nline\ttwo")
    frame = until(lambda: bot.callbacks.items, what="the callback")[0]
    assert frame["body"]["text"]["content"] == "line one\nline\ttwo"


def test_parse_frame():
    assert parse_frame('{"a": "x\ny"}') == {"a": "x\ny"}
    assert parse_frame(b'{"a": 1}') == {"a": 1}
    assert parse_frame(b'{"a": "\xff"}') == {"a": "\ufffd"}  # bad UTF-8 does not end the frame
    for bad in ("[1]", "1", "{", b"\x00"):
        with pytest.raises(ValueError):
            parse_frame(bad)


# ---------------------------------------------------------------------------------------------- drops
def test_a_drop_mid_request_fails_it_at_once_with_a_clear_error(sim, make_bot, monkeypatch):
    bot = make_bot(sim, ack_timeout=20)  # a hang would show as AckTimeout, after 20 s
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.6)  # the queued frame goes before the reconnect
    pushed = sim.push_text(BOT, "u1", "hi")
    sim.drop_after_frames(BOT, 1)
    queued = Seen()
    result = {}

    def ask():
        try:
            result["ack"] = bot.conn.request("aibot_respond_msg", stream("one"), pushed.req_id)
        except AibotError as e:
            result["error"] = e

    worker = threading.Thread(target=ask)
    worker.start()
    bot.conn.send("aibot_respond_msg", stream("one two"), pushed.req_id, on_done=queued)  # same req_id
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(result.get("error"), NotConnected) and "dropped" in str(result["error"])
    [behind] = until(lambda: queued.items, what="the queued frame's answer")
    assert isinstance(behind.error, NotConnected)
    # The connection comes back, and the message can still be answered.
    sim.wait_subscribed(BOT, timeout=5, after=1)
    until(bot.conn.is_ready, what="READY again")
    assert bot.conn.request("aibot_respond_msg", stream("again", finish=True), pushed.req_id)["errcode"] == 0
    assert bot.conn.connections == 2


def test_a_close_frame_from_the_server_fails_pending_requests_and_reconnects(make_sim, make_bot):
    sim = make_sim(no_ack_cmds={"aibot_respond_msg"})
    bot = make_bot(sim, ack_timeout=20)
    pushed = sim.push_text(BOT, "u1", "hi")
    done = Seen()
    bot.conn.send("aibot_respond_msg", stream("one"), pushed.req_id, on_done=done)
    until(lambda: sim.replies(pushed.req_id), what="the frame on the wire")
    sim.drop(BOT, close_frame=True, code=1001)
    [pending] = until(lambda: done.items, what="the answer")
    assert isinstance(pending.error, NotConnected)
    sim.wait_subscribed(BOT, timeout=5, after=1)


def test_a_request_while_reconnecting_waits_for_the_new_socket(sim, make_bot, monkeypatch):
    bot = make_bot(sim)
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.6)  # a reconnect 0.3-0.6 s after the drop
    pushed = sim.push_text(BOT, "u1", "hi")
    sim.drop(BOT)
    until(lambda: bot.conn.state == CONNECTING, what="CONNECTING")
    assert bot.conn.request("aibot_respond_msg", stream("after", finish=True), pushed.req_id, timeout=5)["errcode"] == 0
    assert bot.conn.connections == 2


def test_answered_heartbeats_keep_the_connection(sim, make_bot):
    bot = make_bot(sim, heartbeat=0.05)
    until(lambda: len(client_frames(sim, "ping", 1)) >= 6, what="six pings")
    assert sim.connection_count(BOT) == 1 and bot.conn.connections == 1 and bot.conn.is_ready()


def test_two_unanswered_heartbeats_mean_a_dead_socket(make_sim, make_bot):
    sim = make_sim(ack_pings=False)
    bot = make_bot(sim, heartbeat=0.1)
    sim.wait_subscribed(BOT, timeout=5, after=1)
    sim.ack_pings = True
    assert len(client_frames(sim, "ping", 1)) == 2  # the third interval ends it
    sim.wait(lambda: sim.connections[0].close_reason is not None, timeout=5)
    assert sim.connections[0].close_reason == "client_closed"
    until(lambda: bot.conn.connections == 2, what="the second login")


def test_the_server_dropping_an_idle_socket_is_noticed(make_sim, make_bot):
    sim = make_sim()
    bot = make_bot(sim)
    sim.drop(BOT)  # TCP ends without a close frame
    sim.wait_subscribed(BOT, timeout=5, after=1)
    until(lambda: bot.conn.connections == 2, what="the second login")
    pushed = sim.push_text(BOT, "u1", "on the new socket")
    until(lambda: any(f["headers"]["req_id"] == pushed.req_id for f in bot.callbacks.items), what="the callback")


# ---------------------------------------------------------------------------------------------- back-off
def test_backoff_doubles_from_one_second_up_to_thirty_with_jitter(monkeypatch):
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", FIRST_STEP)
    for n, delay in enumerate(itertools.islice(LongConnection._backoff(), 12)):
        base = min(30.0, 2.0 ** n)  # 1, 2, 4, 8, 16, 30, 30, ... (§2.10)
        assert base / 2 <= delay <= base
    firsts = {next(LongConnection._backoff()) for _ in range(50)}
    assert len(firsts) > 40  # jitter: daemons restarted together do not retry in step


def test_backoff_starts_over_after_a_successful_login(sim, make_bot, monkeypatch):
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.1)  # steps of 0.05-0.1, 0.1-0.2, 0.2-0.4 s ...
    sim.fail_next("aibot_subscribe", -1, count=3, errmsg="system busy")
    bot = make_bot(sim)
    before = bot.delays()
    assert len(before) == 3 and before[2] >= 0.2  # it grew while the login failed
    number = sim.live_connection(BOT)
    sim.push_text(BOT, "u1", "hi")  # the connection worked: it brought a message
    until(lambda: bot.callbacks.items, what="the message")
    sim.drop(BOT)
    sim.wait_subscribed(BOT, timeout=5, after=number)
    until(lambda: len(bot.delays()) == 4, what="the reconnect after the drop")
    assert bot.delays()[3] <= 0.1  # the first step again, not the fourth (0.4-0.8 s)


def test_a_login_that_is_closed_at_once_does_not_start_the_backoff_over(sim, make_bot, monkeypatch):
    monkeypatch.setattr(ws_client, "BACKOFF_FIRST", 0.1)  # steps of 0.05-0.1, 0.1-0.2, 0.2-0.4 s ...
    bot = make_bot(sim)
    number = sim.wait_subscribed(BOT, timeout=5)
    for n in range(3):  # WeCom takes the login, then closes before anything else comes
        sim.drop(BOT)
        number = sim.wait_subscribed(BOT, timeout=5, after=number)
    until(lambda: len(bot.delays()) == 3, what="three reconnects")
    assert bot.delays()[2] >= 0.2  # it grew (0.2-0.4 s), not 0.05-0.1 s each time


# ---------------------------------------------------------------------------------------------- the end
def test_taken_over_stops_for_good_and_fails_what_is_pending(make_sim, make_bot):
    sim = make_sim(no_ack_cmds={"aibot_respond_msg"})
    bot = make_bot(sim, ack_timeout=20)
    pushed = sim.push_text(BOT, "u1", "hi")
    done = Seen()
    bot.conn.send("aibot_respond_msg", stream("x"), pushed.req_id, on_done=done)
    until(lambda: sim.replies(pushed.req_id), what="the frame on the wire")
    sim.takeover(BOT, drop_after=1000)  # WeCom would keep the old socket open a while
    until(lambda: bot.conn.state == TAKEN_OVER, what="TAKEN_OVER")
    assert "another client" in bot.conn.reason
    [pending] = until(lambda: done.items, what="the pending frame's answer")
    assert isinstance(pending.error, NotConnected)
    time.sleep(SETTLE)
    assert len(sim.connections) == 1 and bot.conn.state == TAKEN_OVER  # no reconnect: it would kick back
    assert sim.connections[0].close_reason == "client_closed"
    assert [f["cmd"] for f in bot.callbacks.items] == ["aibot_msg_callback"]  # the event is not handed on
    with pytest.raises(NotConnected):
        bot.conn.request("aibot_respond_msg", stream("y"), pushed.req_id)


def test_a_second_client_logging_in_takes_the_bot(sim, make_bot):
    bot = make_bot(sim)
    with connect(sim.ws_url, open_timeout=5, close_timeout=1) as other:
        other.send(json.dumps({"cmd": "aibot_subscribe", "headers": {"req_id": "other-1"},
                               "body": {"bot_id": BOT, "secret": SECRET}}))
        assert json.loads(other.recv(timeout=5))["errcode"] == 0
        until(lambda: bot.conn.state == TAKEN_OVER, what="TAKEN_OVER")
        time.sleep(SETTLE)
        assert sim.live_connection(BOT) == 2 and len(sim.connections) == 2


def test_stop_closes_the_socket_and_does_not_reconnect(sim, make_bot):
    bot = make_bot(sim)
    bot.conn.stop()
    assert bot.conn.state == STOPPED and (STOPPED, "stopped") in bot.states.items
    sim.wait(lambda: sim.connections[0].close_reason is not None, timeout=5)
    assert sim.connections[0].close_reason == "client_closed"
    time.sleep(SETTLE)
    assert len(sim.connections) == 1
    with pytest.raises(NotConnected):
        bot.conn.request("ping")
