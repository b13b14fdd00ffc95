"""`python app.py` with channel_type dingtalk (Stream mode) against the DingTalk simulator
(tests/fakes/dingtalk) and the Dify simulator, as real processes.

One daemon serves most tests of this module (they use distinct senders); the AI-card tests share
a second one (another robot app, CARD_APP), started first: its cut-off scenario waits out the
pipeline's send retries (3 s + 6 s) while the other tests run. The wrong-secret and crash tests
start their own."""
from __future__ import annotations

import json
import os
import re
import sys
import time

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, plugins_dir, wait_until, write_config
from tests.fakes.dingtalk import DingTalkSimulator
from tests.fakes.dingtalk import payloads as P
from tests.fakes.dingtalk.payloads import rich_text_body

pytestmark = pytest.mark.slow

APP, SECRET = "ding-app", "ding-secret"
CARD_APP, CARD_SECRET = "ding-card-app", "ding-card-secret"
GATEWAY = "/v1.0/gateway/connections/open"
CUT_OFF_EN = "(The answer was cut off by an error; please ask again.)"
INTERRUPTED_START = "The answer to your message was cut off by a restart"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def sim():
    with DingTalkSimulator({APP: SECRET, CARD_APP: CARD_SECRET}) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def settings(sim, dify, app_id: str = APP, **extra) -> dict:
    config = dict(
        channel_type="dingtalk", dingtalk_client_id=app_id,
        dingtalk_client_secret=CARD_SECRET if app_id == CARD_APP else SECRET,
        dingtalk_api_base=sim.http_url, dingtalk_oapi_base=sim.oapi_url, dingtalk_reconnect_max=0.3,
        bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-test",
        group_name_white_list=["ALL_GROUP"], image_recognition=True, shutdown_timeout=2,
        allowed_internal_hosts=["127.0.0.1"],
    )
    config.update(extra)
    return config


def start(folder, sim, dify, connections_before: int = 0, *args: str, app_id: str = APP, **extra) -> Daemon:
    daemon = Daemon(folder, "--config", write_config(folder, **settings(sim, dify, app_id, **extra)), *args)
    try:
        sim.wait_connected(app_id, count=connections_before + 1, timeout=20)
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
    folder = tmp_path_factory.mktemp("dingtalk")
    # The first token call is throttled (429): passing trouble, not wrong credentials.
    sim.fail_next("/v1.0/oauth2/accessToken", 429, {"code": "Throttling", "message": "too many requests"})
    daemon = start(folder, sim, dify, len(sim.connections(APP)), "--plugins-dir", plugins_dir(folder, ("media_reply",)),
                   dingtalk_health_port=port)
    yield Running(daemon, port)
    daemon.kill()


class Cards:
    """The AI-card daemon, and the card answer whose final text cannot be delivered (started
    with it: the pipeline gives that up after 3 s + 6 s of retries)."""

    def __init__(self, daemon: Daemon, cut_off_text: str) -> None:
        self.daemon = daemon
        self.cut_off_text = cut_off_text


@pytest.fixture(scope="module")
def cards(tmp_path_factory, sim, dify):
    folder = tmp_path_factory.mktemp("dingtalk-cards")
    # No group list at all (a config written for the original): start-up warns.
    daemon = start(folder, sim, dify, len(sim.connections(CARD_APP)), app_id=CARD_APP, dingtalk_card_enabled=True,
                   dingtalk_card_interval=0.3, group_name_white_list=[], dingtalk_reconnect_max=4)
    try:
        text = "This answer is shown, then its final text cannot be delivered."
        dify.push_answer(text, chunk_size=8, chunk_delay=0.02)
        sim.fail_finalize("cutter", count=3)  # the three attempts of the final reply all fail
        sim.push_text(CARD_APP, "cutter", "cut me off")
        wait_until(lambda: "cut me off" in queries(dify), what="the cut-off question reaching Dify")
        yield Cards(daemon, text)
    finally:
        daemon.kill()


def card_of(sim, sender: str) -> dict:
    [card] = [d for d in sim.deliveries(sender=sender) if d["via"] == "card"]
    return sim.cards[card["card"]]


def wait_for_log_match(daemon: Daemon, pattern: str, timeout: float = 10.0) -> re.Match:
    def found():
        with open(os.path.join(daemon.folder, "run.log"), encoding="utf-8") as f:
            return re.search(pattern, f.read())
    return wait_until(found, timeout, f"run.log to match {pattern!r}")


def queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


# --------------------------------------------------------------------------------------------- AI cards
def test_a_streamed_answer_grows_in_one_ai_card_at_the_interval_and_is_finished(cards, sim, dify):
    text = "Hello there, this answer is written in many small pieces for the card, slowly enough to grow."
    dify.push_answer(text, chunk_size=3, chunk_delay=0.04)  # about 1.3 s of streaming
    sim.push_text(CARD_APP, "jane", "tell me")
    wait_until(lambda: any(d["via"] == "card" and sim.cards[d["card"]]["finalized"]
                           for d in sim.deliveries(sender="jane")), what="the finished card")
    [card] = sim.deliveries(sender="jane")  # one card, nothing sent another way
    record = sim.cards[card["card"]]
    contents = [u["content"] for u in record["updates"]]
    assert len(contents) >= 3, contents  # it grew: several updates
    assert all(text.startswith(c) for c in contents) and contents[-1] == text
    assert [u["isFinalize"] for u in record["updates"]] == [False] * (len(contents) - 1) + [True]
    assert {u["outTrackId"] for u in record["updates"]} == {card["card"]}
    # dingtalk_card_interval (0.3 s) between two growing updates (DingTalk throttles them).
    times = [u["at"] for u in record["updates"] if not u["isFinalize"]]
    assert all(b - a >= 0.27 for a, b in zip(times, times[1:])), [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert record["create"]["openSpaceId"] == "dtv1.card//IM_ROBOT.jane"
    # The card's status is set to finished with the whole text (the call after the finalize).
    wait_until(lambda: sim.cards[card["card"]]["instance_updates"], what="the card's status update")
    record = sim.cards[card["card"]]
    assert record["instance_updates"][-1]["cardData"]["cardParamMap"] == {"flowStatus": "3", "msgContent": text}
    assert not sim.errors, sim.errors


def test_a_config_that_lets_no_group_in_is_warned_about_at_start_up(cards):
    cards.daemon.wait_for_log('"group_name_white_list": ["ALL_GROUP"]', timeout=5)
    with open(cards.daemon.folder + "/run.log", encoding="utf-8") as f:
        [line] = [l for l in f if "ALL_GROUP" in l]
    assert line.startswith("[WARNING]") and "group_name_white_list" in line


def test_a_card_whose_status_cannot_be_set_is_finalized_once_and_not_sent_again(cards, sim, dify):
    dify.push_answer("Finished, whatever the status says.", chunk_size=6, chunk_delay=0.02)
    sim.fail_next("/v1.0/card/instances", 500, count=1)  # the status PUT after the finalize
    sim.push_text(CARD_APP, "ivan", "status please")
    wait_until(lambda: [d for d in sim.deliveries(sender="ivan") if d["via"] == "card"]
               and card_of(sim, "ivan")["finalized"], what="the finalized card")
    cards.daemon.wait_for_log("its status was not set", timeout=5)
    time.sleep(0.3)
    record = card_of(sim, "ivan")
    assert [u["isFinalize"] for u in record["updates"]].count(True) == 1
    assert record["updates"][-1]["content"] == "Finished, whatever the status says."
    assert [d["via"] for d in sim.deliveries(sender="ivan")] == ["card"]  # no text sent another way
    assert not sim.errors, sim.errors  # (checked again after the retries would have come: see the cut-off test)


def test_a_card_created_for_an_answer_is_finished_on_a_retry_not_replaced_by_text(cards, sim, dify):
    dify.push_error(400, "invalid_param", "bad input")  # an error answer: nothing was shown growing
    sim.fail_finalize("uma", count=1)  # the card is created, its finalize refused once
    sim.push_text(CARD_APP, "uma", "this fails")
    wait_until(lambda: [d for d in sim.deliveries(sender="uma") if d["via"] == "card"], what="the card")
    wait_until(lambda: card_of(sim, "uma").get("refused_finalizes"), what="the refused finalize")
    time.sleep(0.3)
    assert [d["via"] for d in sim.deliveries(sender="uma")] == ["card"]  # not sent as text as well
    # (the retry, 3 s later, finishes this card: checked in the cut-off test)


def test_a_reconnect_closed_at_once_makes_the_waits_grow(cards, sim):
    """A connection DingTalk closes at once did not work: the wait is not reset to the first."""
    log = os.path.join(cards.daemon.folder, "run.log")
    with open(log, encoding="utf-8") as f:
        start_at = len(f.read())
    pattern = re.compile(r"reconnecting to DingTalk in ([\d.]+) s")

    def delays() -> list[float]:
        with open(log, encoding="utf-8") as f:
            return [float(x) for x in pattern.findall(f.read()[start_at:])]

    sim.close_at_once.add(CARD_APP)
    try:
        sim.drop(CARD_APP)  # after a connection that brought messages: the first wait (0.5-1 s)
        # Then each socket is closed at once: the waits go on growing (1-2 s, 2-4 s), not back to the first.
        wait_until(lambda: len(delays()) >= 3, timeout=8, what="three waits")
    finally:
        sim.close_at_once.discard(CARD_APP)
    first, second, third = delays()[:3]
    assert first <= 1.0 and second + third >= 2.5, delays()


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


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the Linux socket table")
def test_the_health_port_listens_on_loopback_only_by_default(app):
    port = int(app.health.rsplit(":", 1)[1].split("/", 1)[0])
    with open("/proc/net/tcp", encoding="ascii") as f:
        listening = [line.split()[1] for line in f.readlines()[1:] if line.split()[3] == "0A"]
    [address] = [a for a in listening if int(a.split(":")[1], 16) == port]
    assert address.split(":")[0] == "0100007F"  # 127.0.0.1, not 0.0.0.0


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
    tokens_before = sim.token_calls_by_app.get(APP, 0)
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
    assert sim.token_calls_by_app[APP] == tokens_before + 1
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
    assert pushed.connection == sim.connections(APP)[-1].number and len(sim.connections(APP)) == connections_before + 1
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
def test_a_throttled_token_call_at_start_up_is_not_taken_for_wrong_credentials(app):
    # The module's daemon got a 429 on its first token call (see the fixture) and runs.
    app.daemon.wait_for_log("no access token yet", timeout=5)
    assert app.daemon.proc.poll() is None


def test_a_group_message_that_does_not_at_the_robot_is_ignored(app, sim, dify):
    ignored = sim.push_text(APP, "olga", "just chatting", group="cid-group-3", at_bot=False)
    assert sim.wait_ack(ignored.message_id)["code"] == 200  # taken, and dropped by the rules
    sim.push_text(APP, "olga", "and now a question", group="cid-group-3")
    wait_until(lambda: sim.deliveries("cid-group-3"), what="the answer to the @")
    time.sleep(0.2)
    assert [d["text"].endswith("echo: and now a question") for d in sim.deliveries("cid-group-3")] == [True]
    assert "just chatting" not in queries(dify)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit on another process")
def test_a_message_the_store_cannot_save_is_not_acked_as_taken_and_is_taken_when_pushed_again(app, sim, dify):
    import resource

    pid = app.daemon.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # every write fails (EFBIG), as on a full disk
    try:
        refused = sim.push_text(APP, "pia", "keep me")
        assert sim.wait_ack(refused.message_id)["code"] != 200
        # The sender is told (DingTalk does not push a robot message again).
        wait_until(lambda: sim.texts(sender="pia"), what="the refusal")
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert "could not be saved" in sim.texts(sender="pia")[0]
    again = sim.push_text(APP, "pia", "keep me", msg_id=refused.msg_id)  # the same message, pushed again
    assert sim.wait_ack(again.message_id)["code"] == 200
    wait_until(lambda: len(sim.texts(sender="pia")) >= 2, what="the answer")
    assert sim.texts(sender="pia")[1:] == ["echo: keep me"]


def test_a_file_reply_that_cannot_be_read_is_not_sent_as_its_path(app, sim, dify):
    sim.push_text(APP, "quinn", "lost file")
    wait_until(lambda: sim.texts(sender="quinn"), what="the answer")
    [text] = sim.texts(sender="quinn")
    assert "could not be sent" in text and "secret-report" not in text and "/" not in text


def test_a_session_webhook_off_the_dingtalk_hosts_is_not_used(app, sim, dify):
    webhook, expires = sim.session_webhook("cid-p2p-rita")
    foreign = webhook.replace("127.0.0.1", "localhost")  # the same server, another host name
    data = P.robot_message(APP, "rita", "text", P.text_body("where does it go?"), webhook=foreign,
                           webhook_expires_ms=expires)
    sim.push_data(APP, data)
    wait_until(lambda: sim.deliveries(sender="rita"), what="the answer")
    [answer] = sim.deliveries(sender="rita")
    assert answer["via"] == "robot" and answer["text"] == "echo: where does it go?"
    session = foreign.rsplit("session=", 1)[1]
    assert not [p for p in sim.webhook_posts if p["session"] == session]  # never posted to it
    app.daemon.wait_for_log("its sessionWebhook is not on a DingTalk host", timeout=5)


def test_a_missing_permission_is_said_and_not_taken_for_an_expired_token(app, sim, dify):
    sim.fail_next("/v1.0/robot/oToMessages/batchSend", 403,
                  {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "no qyapi_robot_sendmsg"})
    tokens_before = sim.token_calls_by_app.get(APP, 0)
    sim.push_text(APP, "sam", "needs a scope", webhook_ttl_ms=-1000)
    app.daemon.wait_for_log("the app lacks a permission (no qyapi_robot_sendmsg)", timeout=5)
    assert sim.token_calls_by_app.get(APP, 0) == tokens_before  # no new token: it would not help


def test_credentials_refused_after_a_start_that_worked_are_retried_until_taken_again(app, sim, dify):
    connections_before = len(sim.connections(APP))
    sim.fail_next(GATEWAY, 403, {"code": "Forbidden", "message": "app disabled"}, count=3)
    sim.drop(APP)
    app.daemon.wait_for_log("the daemon receives no messages until DingTalk takes the credentials again", timeout=5)
    sim.wait_connected(APP, count=connections_before + 1, timeout=10)  # it kept trying
    sim.push_text(APP, "tess", "back again?")
    wait_until(lambda: sim.texts(sender="tess"), what="the answer")
    assert httpx.get(app.health, timeout=5).json()["connection"] == "connected"


def test_a_wrong_client_secret_stops_start_up_with_the_reason(tmp_path, sim, dify):
    tokens_before = sim.token_calls_by_app.get(APP, 0)
    gateway_before = len([c for c in sim.gateway_calls if c.get("clientId") == APP])
    daemon = Daemon(tmp_path, "--config", write_config(tmp_path, **settings(sim, dify, dingtalk_client_secret="wrong")))
    try:
        assert daemon.wait(30) == 2
        err = daemon.stderr()
        assert "dingtalk_client_secret" in err and "invalidClientIdOrSecret" in err
        # One try, not a loop of them.
        assert sim.token_calls_by_app[APP] - tokens_before == 1
        assert len([c for c in sim.gateway_calls if c.get("clientId") == APP]) == gateway_before
    finally:
        daemon.kill()


def test_a_crash_mid_card_and_a_stop_lose_nothing_and_answer_nothing_twice(tmp_path, sim, dify):
    dify.push_hang(20)  # kate: no answer before the kill, nothing shown
    cards_on = dict(dingtalk_card_enabled=True, dingtalk_card_interval=0.1)
    daemon = start(tmp_path, sim, dify, len(sim.connections(APP)), dify_read_timeout=60, dify_answer_timeout=60,
                   **cards_on)
    try:
        pushed = sim.push_text(APP, "kate", "do not lose me")
        assert sim.wait_ack(pushed.message_id)["code"] == 200
        wait_until(lambda: "do not lose me" in queries(dify), what="the question reaching Dify")
        # luke: the answer is growing in its card when the process dies.
        long_answer = "A long answer, still being written when the daemon dies. " * 3
        dify.push_answer(long_answer, chunk_size=4, chunk_delay=0.1)
        sim.push_text(APP, "luke", "write slowly")
        wait_until(lambda: [d for d in sim.deliveries(sender="luke") if d["text"]], what="the card growing")
        daemon.kill()  # SIGKILL
        daemon = start(tmp_path, sim, dify, len(sim.connections(APP)), shutdown_timeout=1.5, **cards_on)
        wait_until(lambda: sim.texts(sender="kate") and len(sim.deliveries(sender="luke")) >= 2, timeout=20,
                   what="the answers after the restart")
        time.sleep(0.5)
        assert sim.texts(sender="kate") == ["echo: do not lose me"]  # answered once
        # luke's answer was in the chat already: not asked again, and told it was cut off.
        assert queries(dify).count("write slowly") == 1
        first, note = sim.deliveries(sender="luke")
        assert first["via"] == "card" and first["text"] and long_answer.startswith(first["text"])
        assert note["text"].startswith(INTERRUPTED_START) and "write slowly" in note["text"]

        # A stop with an answer still running: the Stream closes first, so a message arriving in
        # the grace period is never acknowledged as taken (DingTalk would not push it again).
        dify.push_hang(20)
        sim.push_text(APP, "mike", "slow one")
        wait_until(lambda: "slow one" in queries(dify), what="the slow question reaching Dify")
        conn = sim.stream.live(APP)
        daemon.proc.terminate()
        daemon.wait_for_log("signal 15 received", timeout=5)
        late = None
        try:
            frame = P.callback_frame(P.robot_message(APP, "nora", "text", P.text_body("too late")), APP,
                                     conn.connection_id)
            sim.stream.send(conn, frame)
            late = frame["headers"]["messageId"]
        except Exception:
            pass  # closed already
        time.sleep(0.3)
        assert late is None or (sim.ack(late) or {}).get("code") != 200, sim.ack(late)
        sim.wait(lambda: not conn.open, 1.5, "the Stream closed while the running answer still has time")
        assert daemon.proc.poll() is None  # still in its grace period (shutdown_timeout 1.5 s)
        assert daemon.wait(10) == 0
    finally:
        daemon.kill()


def test_a_card_whose_final_text_cannot_be_delivered_is_finished_as_cut_off(cards, sim):
    """Started with the card daemon: the final reply failed three times (3 s + 6 s of retries)."""
    wait_until(lambda: card_of(sim, "cutter")["finalized"] and card_of(sim, "cutter")["instance_updates"], timeout=15,
               what="the cut-off card finished")
    record = card_of(sim, "cutter")
    assert record["refused_finalizes"] == 3
    final = record["updates"][-1]
    assert final["isFinalize"] and final["content"].endswith(CUT_OFF_EN)
    assert cards.cut_off_text.startswith(final["content"][: -len(CUT_OFF_EN)].strip())  # what it showed, then the note
    assert record["instance_updates"][-1]["cardData"]["cardParamMap"]["flowStatus"] == "5"  # failed, not finished
    assert [d["via"] for d in sim.deliveries(sender="cutter")] == ["card"]
    # The card whose finalize was refused once (an earlier test) was finished by the retry, once.
    uma = card_of(sim, "uma")
    assert [u["isFinalize"] for u in uma["updates"]] == [True] and "Dify could not" in uma["updates"][-1]["content"]
    assert [d["via"] for d in sim.deliveries(sender="uma")] == ["card"]
    # The card whose status could not be set (an earlier test) was still finalized only once.
    assert [u["isFinalize"] for u in card_of(sim, "ivan")["updates"]].count(True) == 1
    assert not sim.errors, sim.errors
