"""`python app.py` with channel_type dingtalk (Stream mode) against the DingTalk simulator
(tests/fakes/dingtalk) and the Dify simulator, as real processes.

One daemon serves most tests of this module (they use distinct senders); the AI-card tests have
a daemon of their own, and the wrong-secret and crash tests start theirs."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, write_config
from tests.fakes.dingtalk import DingTalkSimulator
from tests.fakes.dingtalk.payloads import rich_text_body

pytestmark = pytest.mark.slow

APP, SECRET = "ding-app", "ding-secret"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def sim():
    with DingTalkSimulator({APP: SECRET}) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def settings(sim, dify, **extra) -> dict:
    config = dict(
        channel_type="dingtalk", dingtalk_client_id=APP, dingtalk_client_secret=SECRET,
        dingtalk_api_base=sim.http_url, dingtalk_oapi_base=sim.oapi_url, dingtalk_reconnect_max=0.3,
        bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-test",
        group_name_white_list=["ALL_GROUP"], image_recognition=True, shutdown_timeout=2,
        allowed_internal_hosts=["127.0.0.1"],
    )
    config.update(extra)
    return config


def start(folder, sim, dify, connections_before: int = 0, **extra) -> Daemon:
    daemon = Daemon(folder, "--config", write_config(folder, **settings(sim, dify, **extra)))
    try:
        sim.wait_connected(APP, count=connections_before + 1, timeout=20)
    except AssertionError:
        daemon.kill()
        raise AssertionError(f"the daemon never connected: {daemon.stderr()[-3000:]}")
    return daemon


class Running:
    def __init__(self, daemon: Daemon, health_port: int) -> None:
        self.daemon = daemon
        self.health = f"http://127.0.0.1:{health_port}/healthz"


@pytest.fixture(scope="module")
def app(tmp_path_factory, sim, dify):
    port = free_port()
    daemon = start(tmp_path_factory.mktemp("dingtalk"), sim, dify, len(sim.connections(APP)), dingtalk_health_port=port)
    yield Running(daemon, port)
    daemon.kill()


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


# ---------------------------------------------------------------------------------------------------
def test_a_private_text_is_acked_and_answered_on_the_session_webhook(app, sim, dify):
    pushed = sim.push_text(APP, "alice", "hello there")
    assert sim.wait_ack(pushed.message_id)["code"] == 200
    wait_until(lambda: sim.texts(sender="alice"), what="the answer")
    [answer] = sim.deliveries(sender="alice")
    assert answer["via"] == "webhook" and answer["text"] == "echo: hello there" and answer["at"] == []
    # The gateway was asked for the robot-message topic; a ping is echoed with its opaque data.
    assert {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"} in sim.gateway_calls[-1]["subscriptions"]
    ping = sim.ping(APP)
    sim.wait(lambda: sim.ping_echoed(ping), 5, "the ping echo")
    health = httpx.get(app.health, timeout=5)
    assert health.status_code == 200 and health.json()["connection"] == "connected"


def test_a_voice_message_is_answered_from_dingtalks_transcript(app, sim, dify):
    sim.push_audio(APP, "victor", "明天会下雨吗")
    wait_until(lambda: sim.texts(sender="victor"), what="the answer")
    assert sim.texts(sender="victor") == ["echo: 明天会下雨吗"]


def test_a_group_message_that_ats_the_robot_is_answered_in_the_group_ating_the_sender(app, sim, dify):
    sim.push_text(APP, "bob", "what time is it", group="cid-group-1", group_title="Team")
    wait_until(lambda: sim.deliveries("cid-group-1"), what="the group answer")
    [answer] = sim.deliveries("cid-group-1")
    assert answer["via"] == "webhook" and answer["at"] == ["bob"]
    assert answer["text"].endswith("echo: what time is it")
    assert "what time is it" in queries(dify)  # the space DingTalk leaves after the @ is gone


def test_a_duplicate_msgid_is_answered_once(app, sim, dify):
    first = sim.push_text(APP, "frank", "only once")
    again = sim.push_text(APP, "frank", "only once", msg_id=first.msg_id)
    assert sim.wait_ack(again.message_id)["code"] == 200
    later = sim.push_text(APP, "frank", "next one")
    wait_until(lambda: len(sim.texts(sender="frank")) >= 2, what="both answers")
    time.sleep(0.3)
    assert sim.texts(sender="frank") == ["echo: only once", "echo: next one"]
    assert queries(dify).count("only once") == 1
    assert sim.wait_ack(later.message_id)["code"] == 200


def test_malformed_frames_are_refused_and_the_daemon_keeps_answering(app, sim, dify):
    before = len(dify.requests_to("/v1/chat-messages"))
    sim.push_raw(APP, "this is not json {")
    sim.push_raw(APP, json.dumps(["a", "list"]))
    bad_data = sim.push_data(APP, "{not json")
    no_text = sim.push_data(APP, {"msgId": "m-broken", "msgtype": "text", "conversationType": "1"})
    wrong_type = sim.push_data(APP, {"msgId": "m-wrong", "msgtype": "text", "text": "not an object",
                                     "conversationType": "1", "senderStaffId": "mallory"})
    assert sim.wait_ack(bad_data.message_id)["code"] == 400
    assert sim.wait_ack(no_text.message_id)["code"] == 400
    assert sim.wait_ack(wrong_type.message_id)["code"] == 400
    sim.push_text(APP, "grace", "still there?")
    wait_until(lambda: sim.texts(sender="grace"), what="the answer after the bad frames")
    assert sim.texts(sender="grace") == ["echo: still there?"]
    assert queries(dify)[before:] == ["still there?"]
    assert sim.stream.live(APP).number == bad_data.connection  # the same connection went on


def test_a_picture_goes_to_dify_with_the_next_question(app, sim, dify):
    sim.push_picture(APP, "carol", PNG)
    sim.push_text(APP, "carol", "what is in the picture?")
    wait_until(lambda: sim.texts(sender="carol"), what="the answer")
    assert sim.texts(sender="carol") == ["echo: what is in the picture?"]
    assert PNG in [u["content"] for u in dify.uploads.values()]  # the very bytes the user sent
    chat = dify.requests_to("/v1/chat-messages")[-1]["json"]
    assert chat["query"] == "what is in the picture?" and chat["files"][0]["upload_file_id"] in dify.uploads


def test_a_rich_text_with_a_picture_asks_dify_with_both(app, sim, dify):
    other = PNG + b"rich"
    body = rich_text_body(["what about", ("picture", sim.add_file(other)), "this one?"])
    sim.push(APP, "richText", body, "lena")
    wait_until(lambda: sim.texts(sender="lena"), what="the answer")
    assert sim.texts(sender="lena") == ["echo: what about\nthis one?"]
    chat = dify.requests_to("/v1/chat-messages")[-1]["json"]
    [upload_id] = [i for i, u in dify.uploads.items() if u["content"] == other]
    assert chat["files"][0]["upload_file_id"] == upload_id


def test_an_image_answer_is_uploaded_and_sent_through_the_robot_api(app, sim, dify):
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"![chart]({dify.host_url}/files/chart.png)")
    sim.push_text(APP, "dave", "draw a chart")
    wait_until(lambda: [d for d in sim.deliveries(sender="dave") if d["msgtype"] == "sampleImageMsg"],
               what="the image")
    [image] = [d for d in sim.deliveries(sender="dave") if d["msgtype"] == "sampleImageMsg"]
    media = sim.uploads[image["param"]["photoURL"]]
    assert media["type"] == "image" and media["data"] == PNG


def test_an_expired_session_webhook_makes_the_answer_go_through_the_robot_api(app, sim, dify):
    sim.expire_tokens()  # the daemon's cached token is refused now: it must fetch a new one, once
    tokens_before = sim.token_calls
    sim.push_text(APP, "erin", "late answer", webhook_ttl_ms=-1000)
    sim.push_text(APP, "gus", "late in a group", group="cid-group-2", webhook_ttl_ms=-1000)
    wait_until(lambda: sim.deliveries(sender="erin") and sim.deliveries("cid-group-2"), what="the answers")
    [p2p] = sim.deliveries(sender="erin")
    [group] = sim.deliveries("cid-group-2")
    assert (p2p["via"], p2p["msgtype"], p2p["text"]) == ("robot", "sampleText", "echo: late answer")
    assert group["via"] == "robot" and group["text"].endswith("echo: late in a group")
    sends = [s["json"] for s in sim.robot_sends if s["param"].get("content") in (p2p["text"], group["text"])]
    assert {s.get("openConversationId") for s in sends} == {None, "cid-group-2"}
    assert [s.get("userIds") for s in sends if "userIds" in s] == [["erin"]]
    # One new token, fetched after the refusal and used for both sends.
    assert sim.token_calls == tokens_before + 1
    tokens = [r["token"] for r in sim.requests if r["path"].startswith("/v1.0/robot/") and r["json"] in sends]
    valid = [t for t in tokens if t in sim.tokens]
    assert len(valid) == 2 and len(set(valid)) == 1  # each send retried once with the one new token
    assert len(tokens) <= 4


def test_a_markdown_answer_goes_as_markdown_on_the_webhook_and_the_robot_api(app, sim, dify):
    answer = "**Steps**\n\n1. open the app\n2. tap `Send`\n\n- done"
    dify.push_answer(answer)
    sim.push_text(APP, "nina", "how?")
    dify.push_answer(answer)
    sim.push_text(APP, "owen", "how?", webhook_ttl_ms=-1000)
    wait_until(lambda: sim.deliveries(sender="nina") and sim.deliveries(sender="owen"), what="the answers")
    [webhook] = sim.deliveries(sender="nina")
    [robot] = sim.deliveries(sender="owen")
    assert (webhook["via"], webhook["msgtype"], webhook["text"]) == ("webhook", "markdown", answer)
    assert (robot["via"], robot["msgtype"], robot["text"]) == ("robot", "sampleMarkdown", answer)
    assert robot["param"]["title"] == "Steps"


def test_a_long_answer_through_the_robot_api_goes_in_pieces_it_accepts(app, sim, dify):
    answer = "".join(f"第{n}段：\"港口\"很忙，船来船往。\n" for n in range(700))  # ~26,000 bytes
    dify.push_answer(answer, chunk_size=2000)
    sim.push_text(APP, "mona", "讲个长故事", webhook_ttl_ms=-1000)
    wait_until(lambda: "".join(sim.texts(sender="mona")).endswith("第699段：\"港口\"很忙，船来船往。"), what="the pieces")
    sends = [s["json"] for s in sim.robot_sends if s["json"].get("userIds") == ["mona"]]
    assert len(sends) > 1 and all(len(s["msgParam"].encode("utf-8")) <= 15000 for s in sends)
    assert "".join(sim.texts(sender="mona")) == answer.strip()


def test_a_disconnect_mid_answer_still_delivers_it_once_and_reconnects_with_a_new_ticket(app, sim, dify):
    text = "One. Two. Three. Four. Five. Six."
    dify.push_answer(text, chunk_size=3, chunk_delay=0.1)  # about 1.2 s of streaming
    tickets_before = len(sim.tickets)
    connections_before = len(sim.connections(APP))
    sim.push_text(APP, "henry", "count")
    wait_until(lambda: "count" in queries(dify), what="the question reaching Dify")
    sim.refuse_connections = True  # DingTalk unreachable for a while
    sim.drop(APP)
    try:
        health = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(httpx.get(app.health, timeout=5)),
                            what="healthz to report the lost connection")
        assert health.json()["connection"] == "connecting"
        wait_until(lambda: sim.texts(sender="henry"), what="the answer while the connection is down")
        assert sim.stream.live(APP) is None  # it arrived over HTTP while the socket was down
    finally:
        sim.refuse_connections = False
    sim.wait_connected(APP, count=connections_before + 1, timeout=15)
    assert len(sim.tickets) > tickets_before + 1  # a fresh ticket for each attempt
    pushed = sim.push_text(APP, "henry", "again")
    wait_until(lambda: len(sim.texts(sender="henry")) >= 2, what="the answer on the new connection")
    assert sim.texts(sender="henry") == [text, "echo: again"]
    assert pushed.connection == connections_before + 1
    assert httpx.get(app.health, timeout=5).json()["connection"] == "connected"


def test_a_system_disconnect_makes_it_reconnect_with_a_new_ticket(app, sim, dify):
    connections_before = len(sim.connections(APP))
    tickets_before = len(sim.tickets)
    sim.disconnect(APP, grace=0.2)
    conn = sim.wait_connected(APP, count=connections_before + 1, timeout=15)
    assert conn.ticket not in [c.ticket for c in sim.connections(APP)[:-1]] and len(sim.tickets) > tickets_before
    sim.push_text(APP, "iris", "hi after the disconnect")
    wait_until(lambda: sim.texts(sender="iris"), what="the answer")
    assert sim.texts(sender="iris") == ["echo: hi after the disconnect"]


# ---------------------------------------------------------------------------------------------------
def test_a_streamed_answer_grows_in_one_ai_card_and_is_finished_with_the_whole_text(tmp_path, sim, dify):
    text = "Hello there, this answer is written in many small pieces for the card."
    dify.push_answer(text, chunk_size=3, chunk_delay=0.03)
    daemon = start(tmp_path, sim, dify, len(sim.connections(APP)), dingtalk_card_enabled=True,
                   dingtalk_card_interval=0.1)
    try:
        sim.push_text(APP, "jane", "tell me")
        wait_until(lambda: any(d["via"] == "card" and sim.cards[d["card"]]["finalized"]
                               for d in sim.deliveries(sender="jane")), what="the finished card")
        [card] = sim.deliveries(sender="jane")  # one card, nothing sent another way
        record = sim.cards[card["card"]]
        contents = [u["content"] for u in record["updates"]]
        assert len(contents) >= 3, contents  # it grew: several updates
        assert all(text.startswith(c) for c in contents) and contents[-1] == text
        assert [u["isFinalize"] for u in record["updates"]] == [False] * (len(contents) - 1) + [True]
        assert {u["outTrackId"] for u in record["updates"]} == {card["card"]}
        assert record["create"]["openSpaceId"] == "dtv1.card//IM_ROBOT.jane"
        assert not sim.errors, sim.errors
        # A stop closes the Stream connection and ends the process promptly.
        daemon.proc.terminate()
        assert daemon.wait(10) == 0
        sim.wait(lambda: not sim.connections(APP)[-1].open, 5, "the socket closed")
    finally:
        daemon.kill()


def test_a_wrong_client_secret_stops_start_up_with_the_reason(tmp_path, sim, dify):
    tokens_before, gateway_before = sim.token_calls, len(sim.gateway_calls)
    daemon = Daemon(tmp_path, "--config", write_config(tmp_path, **settings(sim, dify, dingtalk_client_secret="wrong")))
    try:
        assert daemon.wait(30) == 2
        err = daemon.stderr()
        assert "dingtalk_client_secret" in err and "invalidClientIdOrSecret" in err
        # One try, not a loop of them.
        assert sim.token_calls - tokens_before == 1 and len(sim.gateway_calls) == gateway_before
    finally:
        daemon.kill()


def test_a_message_acked_before_a_crash_is_answered_once_after_the_restart(tmp_path, sim, dify):
    dify.push_hang(20)  # the first try never gets its answer before the kill
    daemon = start(tmp_path, sim, dify, len(sim.connections(APP)), dify_read_timeout=60, dify_answer_timeout=60)
    try:
        pushed = sim.push_text(APP, "kate", "do not lose me")
        assert sim.wait_ack(pushed.message_id)["code"] == 200
        wait_until(lambda: "do not lose me" in queries(dify), what="the question reaching Dify")
        daemon.kill()  # SIGKILL
        daemon = start(tmp_path, sim, dify, len(sim.connections(APP)))
        wait_until(lambda: sim.texts(sender="kate"), timeout=20, what="the answer after the restart")
        time.sleep(0.5)
        assert sim.texts(sender="kate") == ["echo: do not lose me"]
    finally:
        daemon.kill()
