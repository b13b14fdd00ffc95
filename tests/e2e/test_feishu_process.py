"""`python app.py` with channel_type feishu: the Feishu simulator's event sender encrypts and signs
like Feishu (tests/fakes/feishu), its OpenAPI server takes the replies, the Dify simulator is the
bot; all real processes and sockets.

One daemon (Encrypt Key mode) serves the tests that need no fresh one; the streamed answer, the
crash, plain mode and the long connection each start their own.
"""
from __future__ import annotations

import json
import signal
import sys
import time
import uuid

import pytest

from channel.chat_channel import BUSY_TEXT_EN, BUSY_TEXT_ZH, INTERRUPTED_TEXT_EN, INTERRUPTED_TEXT_ZH, refusal_text
from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, run_app, wait_healthy, write_config
from tests.fakes.feishu import EventSender, FeishuSimulator, crypto, envelope, mention, message_event, text_event

pytestmark = pytest.mark.slow

TOKEN, ENCRYPT_KEY = "verification-token-1", "encrypt-key-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x02" * 64
WAV = (b"RIFF" + (36 + 1600).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
       + bytes.fromhex("01000100401f0000803e000002001000") + b"data" + (1600).to_bytes(4, "little") + b"\x00" * 1600)


@pytest.fixture(scope="module")
def sim():
    with FeishuSimulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


class App:
    def __init__(self, folder, sim, dify, encrypt_key: str = ENCRYPT_KEY, **settings) -> None:
        self.folder, self.sim, self.dify = folder, sim, dify
        self.port = free_port()
        self.encrypt_key = encrypt_key
        self.settings = settings
        self.daemon: Daemon | None = None
        self.sender = EventSender(self.url, TOKEN, encrypt_key)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def config(self) -> str:
        return write_config(
            self.folder, channel_type="feishu", feishu_app_id=self.sim.app_id, feishu_app_secret=self.sim.app_secret,
            feishu_token=TOKEN, feishu_encrypt_key=self.encrypt_key, feishu_port=self.port,
            feishu_api_base=self.sim.base_url, bot_type="", model="dify", dify_api_base=self.dify.base_url,
            dify_api_key="app-test", shutdown_timeout=2, allowed_internal_hosts=["127.0.0.1"],
            **{"group_name_white_list": ["ALL_GROUP"], **self.settings})

    def start(self) -> "App":
        self.daemon = Daemon(self.folder, "--config", self.config())
        if self.settings.get("feishu_event_mode") != "websocket":
            wait_healthy(f"http://127.0.0.1:{self.port}", daemon=self.daemon)
        return self

    def kill(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
        self.sender.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, sim, dify):
    # Groups by name: Feishu events carry only chat ids, the daemon reads the names.
    # Two messages of a session may wait behind the one being answered (a post's picture and
    # text are two): the busy test's fourth is refused.
    application = App(tmp_path_factory.mktemp("feishu"), sim, dify, image_recognition=True,
                      group_name_white_list=["Team"], session_queue_size=2).start()
    yield application
    application.kill()


def user() -> str:
    return "ou_" + uuid.uuid4().hex


def group() -> str:
    return "oc_" + uuid.uuid4().hex


def texts_to(sim, target: str, count: int, timeout: float = 15) -> list[str]:
    sim.wait(lambda: len(sim.sent(target)) >= count, timeout)
    return sim.texts(target)


def questions(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


def at_bot(sim) -> dict:
    return mention("@_user_1", sim.bot_open_id, sim.bot_name)


# ---------------------------------------------------------------------------------------------- checks
def test_url_verification_is_answered_only_with_the_right_token(app):
    answered = app.sender.challenge("c-123")
    assert answered.status == 200 and answered.json == {"challenge": "c-123"}
    refused = app.sender.challenge("c-456", token="guessed")
    assert refused.status == 401 and b"c-456" not in refused.body
    # Unsigned (as the console may send it): the challenge is answered, never an event.
    unsigned = app.sender.challenge("c-789", signed=False)
    assert unsigned.status == 200 and unsigned.json == {"challenge": "c-789"}
    assert app.sender.challenge("c-000", token="guessed", signed=False).status == 401
    assert app.sender.send(text_event(user(), "unsigned event"), signed=False).status == 401


def test_forged_malformed_stale_and_huge_requests_are_refused_and_nothing_is_processed(app, sim, dify):
    victim = user()
    asked_before = len(questions(dify))
    assert app.sender.send(text_event(victim, "forged signature"), forge_signature=True).status == 401
    assert app.sender.send(text_event(victim, "wrong token"), token="guessed").status == 401
    assert app.sender.post(b"{not json", {"Content-Type": "application/json"}).status == 400
    assert app.sender.post(b"[" * 200000, {"Content-Type": "application/json"}).status == 400  # not a 500
    body, headers = app.sender.seal(envelope(text_event(victim, "tampered"), TOKEN))
    assert app.sender.post(body.replace(b'"}', b'A"}'), headers).status == 401  # signature no longer matches
    # Unencrypted while a key is set, even signed with it: Feishu encrypts everything then.
    plain = json.dumps(envelope(text_event(victim, "plaintext"), TOKEN)).encode()
    stamp, nonce = str(int(time.time())), "n1"
    signed = {"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
              "X-Lark-Signature": crypto.sign(stamp, nonce, ENCRYPT_KEY, plain)}
    assert app.sender.post(plain, signed).status == 401
    stale = app.sender.send(text_event(victim, "replayed"), timestamp=int(time.time()) - 3600)
    assert stale.status == 403
    assert app.sender.post(b'{"encrypt":"' + b"A" * (600 * 1024) + b'"}').status == 413
    # Nothing of that reached the bot or the chat; a good message is answered as usual.
    assert len(questions(dify)) == asked_before and sim.sent(victim) == []
    assert app.sender.send(text_event(victim, "still there?")).status == 200
    assert texts_to(sim, victim, 1) == ["echo: still there?"]


def test_a_private_text_is_acknowledged_at_once_and_answered_with_the_create_api(app, sim, dify):
    alice = user()
    delivery = app.sender.send(text_event(alice, "你好"))
    assert delivery.status == 200 and delivery.elapsed < 3
    assert texts_to(sim, alice, 1) == ["echo: 你好"]
    [sent] = sim.sent(alice)
    assert sent.via == "create" and sent.receive_id_type == "open_id" and sent.msg_type == "text"
    assert "你好" in questions(dify)


def test_a_repeated_event_and_a_repeated_message_id_are_answered_once(app, sim, dify):
    bob = user()
    event = text_event(bob, "only once")
    event_id = uuid.uuid4().hex
    assert app.sender.send(event, event_id=event_id).status == 200
    assert app.sender.send(event, event_id=event_id).status == 200  # Feishu's re-push: same event id
    assert app.sender.send(event).status == 200  # same message id under a new event id
    assert app.sender.send(text_event(bob, "next")).status == 200
    assert texts_to(sim, bob, 2) == ["echo: only once", "echo: next"]
    time.sleep(0.5)
    assert sim.texts(bob) == ["echo: only once", "echo: next"]
    assert questions(dify).count("only once") == 1


def test_a_group_message_is_answered_with_the_reply_api_only_when_the_bot_is_mentioned(app, sim, dify):
    chat, elsewhere, carol = group(), group(), user()
    sim.chat_names.update({chat: "Team", elsewhere: "Elsewhere"})  # only "Team" is in group_name_white_list
    other = mention("@_user_1", "ou_" + "d" * 32, "Dave")
    ignored = [text_event(carol, "nobody asked you", chat_id=chat),
               text_event(carol, "@_user_1 not you either", chat_id=chat, mentions=[other]),
               text_event(carol, "@_user_1 wrong group", chat_id=elsewhere, mentions=[at_bot(sim)])]
    for event in ignored:
        assert app.sender.send(event).status == 200
    asked = text_event(carol, "@_user_1 what time is it @_user_2", chat_id=chat,
                       mentions=[at_bot(sim), mention("@_user_2", "ou_" + "d" * 32, "Dave")])
    assert app.sender.send(asked).status == 200
    message_id = asked["message"]["message_id"]
    assert texts_to(sim, message_id, 1) == ["echo: what time is it @Dave"]
    assert sim.sent(message_id)[0].via == "reply"
    time.sleep(0.3)
    answered = {s.target for s in sim.sent()}
    assert chat not in answered and not any(e["message"]["message_id"] in answered for e in ignored)
    assert "what time is it @Dave" in questions(dify)
    assert not any(word in q for q in questions(dify) for word in ("nobody asked", "not you", "wrong group"))
    # The name was read once for each group, not for every message.
    assert len([c for c in sim.calls("chat") if c.path.endswith(chat)]) == 1


def test_a_busy_refusal_and_a_group_name_not_read_in_time_hold_no_acknowledgement(app, sim, dify):
    # Together: their waits (a slow answer, a slow send, a slow lookup) overlap.
    quinn, rita, chat = user(), user(), group()
    dify.push_hang(1.0)
    asked = len(questions(dify))
    assert app.sender.send(text_event(quinn, "first, answered slowly")).status == 200
    sim.wait(lambda: len(questions(dify)) > asked)
    for waiting in ("second, waits its turn", "third, waits too"):
        assert app.sender.send(text_event(quinn, waiting)).status == 200
    sim.delay_next("create", 1.2)  # the refusal's send is slow: the acknowledgement must not wait for it
    refused = app.sender.send(text_event(quinn, "fourth, one too many"))
    assert refused.status == 200 and refused.elapsed < 0.8
    # The group rules name groups ("Team"): a name Feishu gives too slowly refuses the event
    # (Feishu pushes it again), instead of the chat id standing in for it and the @ being dropped.
    sim.chat_names[chat] = "Team"
    sim.delay_next("chat", 1.6)
    group_asked = text_event(rita, "@_user_1 is the name known now", chat_id=chat, mentions=[at_bot(sim)])
    first = app.sender.send(group_asked)
    assert first.status == 503 and first.elapsed < 2.5
    sim.wait(lambda: [c for c in sim.calls("chat") if c.path.endswith(chat)], timeout=10)
    assert app.sender.send(group_asked).status == 200  # Feishu's push again: the name was kept meanwhile
    assert texts_to(sim, group_asked["message"]["message_id"], 1) == ["echo: is the name known now"]
    assert len([c for c in sim.calls("chat") if c.path.endswith(chat)]) == 1
    busy = refusal_text(BUSY_TEXT_ZH, BUSY_TEXT_EN, "fourth, one too many")
    sim.wait(lambda: busy in sim.texts(quinn) and "echo: third, waits too" in sim.texts(quinn), timeout=15)
    assert sim.texts(quinn).count(busy) == 1


def test_an_image_is_downloaded_and_goes_with_the_next_question(app, sim, dify):
    erin = user()
    image = message_event(erin, "image", {"image_key": "img_in_1"})
    sim.add_resource(image["message"]["message_id"], "img_in_1", PNG)
    assert app.sender.send(image).status == 200
    app.sender.send(text_event(erin, "这是什么"))
    assert texts_to(sim, erin, 1) == ["echo: 这是什么"]
    [chat] = [r for r in dify.requests_to("/v1/chat-messages") if r["json"]["query"] == "这是什么"]
    upload_id = chat["json"]["files"][0]["upload_file_id"]
    assert dify.uploads[upload_id]["content"] == PNG  # the very bytes, fetched from the resources API
    [download] = [c for c in sim.calls("resource") if c.path.endswith("/img_in_1")]
    assert download.query == {"type": "image"}


def test_a_rich_text_post_gives_its_text_and_its_picture(app, sim, dify):
    fay = user()
    post = message_event(fay, "post", {"title": "Look", "content": [
        [{"tag": "text", "text": "what is "}, {"tag": "a", "text": "this", "href": "https://example.com/x"}],
        [{"tag": "img", "image_key": "img_post_1"}]]})
    sim.add_resource(post["message"]["message_id"], "img_post_1", PNG + b"post")
    assert app.sender.send(post).status == 200
    assert texts_to(sim, fay, 1) == ["echo: Look\nwhat is this (https://example.com/x)"]
    [chat] = [r for r in dify.requests_to("/v1/chat-messages") if r["json"]["query"].startswith("Look")]
    assert dify.uploads[chat["json"]["files"][0]["upload_file_id"]]["content"] == PNG + b"post"


def test_an_image_answer_is_uploaded_and_sent_as_an_image(app, sim, dify):
    gina = user()
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"![chart]({dify.host_url}/files/chart.png)")
    app.sender.send(text_event(gina, "画个图"))
    sim.wait(lambda: any(s.msg_type == "image" for s in sim.sent(gina)))
    [image] = [s for s in sim.sent(gina) if s.msg_type == "image"]
    assert sim.images[image.content["image_key"]] == PNG
    [upload] = sim.calls("image")
    assert upload.body["image_type"][1] == b"message"


def test_a_file_answer_is_uploaded_and_sent_as_a_file(app, sim, dify):
    olga = user()
    pdf = b"%PDF-1.4 report"
    dify.add_file("/files/report.pdf", pdf, "application/pdf")
    dify.push_answer(f"[report]({dify.host_url}/files/report.pdf)")
    app.sender.send(text_event(olga, "send me the report"))
    sim.wait(lambda: any(s.msg_type == "file" for s in sim.sent(olga)))
    [sent] = [s for s in sim.sent(olga) if s.msg_type == "file"]
    assert sim.files[sent.content["file_key"]] == ("report.pdf", pdf)


def test_markdown_goes_as_a_card_and_a_long_answer_in_pieces_in_order(app, sim, dify):
    hana, ivan = user(), user()
    dify.push_answer("**重要** 记住这一点")
    app.sender.send(text_event(hana, "重点"))
    texts_to(sim, hana, 1)
    [card] = sim.sent(hana)
    assert card.msg_type == "interactive" and card.text == "**重要** 记住这一点"
    answer = "".join(f"第{n}段：港口很忙，船来船往。" for n in range(2500))  # ~110 KB
    dify.push_answer(answer, chunk_size=4000)
    app.sender.send(text_event(ivan, "讲个长故事"))
    sim.wait(lambda: "".join(sim.texts(ivan)).endswith("第2499段：港口很忙，船来船往。"), timeout=20)
    pieces = sim.texts(ivan)
    assert len(pieces) > 1 and "".join(pieces) == answer
    assert all(len(json.dumps(s.content, ensure_ascii=False).encode()) < 30 * 1024 for s in sim.sent(ivan))
    # Quotes and backslashes double once escaped: the cap is on the escaped size.
    quoted = '"\\' * 15000
    dify.push_answer(quoted, chunk_size=4000)
    app.sender.send(text_event(hana, "quotes"))
    sim.wait(lambda: "".join(sim.texts(hana)[1:]) == quoted, timeout=20)
    assert all(len(json.dumps(s.content, ensure_ascii=False).encode()) < 30 * 1024 for s in sim.sent(hana))


def test_send_failures_a_refused_token_a_refused_send_and_a_lost_answer_each_end_in_one_message(app, sim, dify):
    # Together, so the pipeline's retries (3 s later) run at the same time.
    jack, pia = user(), user()
    fetched = len([c for c in sim.calls("token") if c.code == 0])
    sim.revoke_tokens()  # the platform no longer takes the token the daemon holds
    sim.fail_next("create", 230020, "rate limited in this chat")  # refused: sent again later
    sim.lose_answer_next("create")  # arrived, but the daemon sees a 502: sent again with the same uuid
    app.sender.send(text_event(jack, "are you there?"))
    app.sender.send(text_event(pia, "say it once"))
    assert texts_to(sim, jack, 1, timeout=20) == ["echo: are you there?"]
    assert texts_to(sim, pia, 1, timeout=20) == ["echo: say it once"]

    def retried() -> int:  # messages sent more than once, each time with the same uuid
        uuids = [(c.body or {}).get("uuid") for c in sim.calls("create") if (c.body or {}).get("receive_id") in (jack, pia)]
        return len({u for u in uuids if uuids.count(u) > 1})

    sim.wait(lambda: retried() == 2)
    assert len([c for c in sim.calls("token") if c.code == 0]) == fetched + 1
    app.daemon.wait_for_log("230020")
    app.daemon.wait_for_log("rate limit for this chat")
    time.sleep(0.3)
    assert sim.texts(jack) == ["echo: are you there?"] and sim.texts(pia) == ["echo: say it once"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit on another process")
def test_a_message_the_store_cannot_take_is_refused_so_feishu_pushes_it_again(app, sim, dify):
    import resource

    nina = user()
    event = text_event(nina, "keep me")
    pid = app.daemon.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # every write fails, as on a full disk
    try:
        assert app.sender.send(event).status == 503  # not a 200 that would lose it
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert app.sender.send(event).status == 200  # Feishu's re-push is taken
    assert texts_to(sim, nina, 1) == ["echo: keep me"]
    time.sleep(0.3)
    assert sim.texts(nina) == ["echo: keep me"]  # the 503 was the refusal: nothing told to the user


# ---------------------------------------------------------------------------------------------- own daemons
def test_a_streamed_answer_grows_in_one_card_updated_in_place(tmp_path, sim, dify):
    app = App(tmp_path, sim, dify, dify_stream_reply=True, speech_recognition=True, voice_to_text="dify").start()
    try:
        # A finished text refused for a rate limit is written into the card a moment later
        # (checked at the end), not sent again as a second message.
        nora = user()
        limited = "限流之后才写完的回答，" * 4
        dify.push_answer(limited, chunk_size=len(limited) // 2, chunk_delay=0.1)
        sim.fail_next("patch", 99991400, "request trigger frequency limit")
        app.sender.send(text_event(nora, "限流"))
        sim.wait(lambda: [c for c in sim.calls("patch") if c.code == 99991400], timeout=15)
        kate = user()
        answer = "这是一个慢慢写出来的回答，" * 12
        dify.push_answer(answer, chunk_size=6, chunk_delay=0.05)  # ~1.3 s of streaming
        app.sender.send(text_event(kate, "慢慢说"))
        sim.wait(lambda: sim.sent(kate) and sim.sent(kate)[0].text == answer, timeout=20)
        time.sleep(0.3)
        [card] = sim.sent(kate)
        assert card.msg_type == "interactive" and card.via == "create"
        patches = [c for c in sim.calls("patch") if c.path.endswith(card.message_id)]
        assert len(card.updates) == len(patches) >= 3  # it grew, in the same message
        texts = ["".join(e["content"] for e in content["elements"]) for _, content in card.updates]
        assert all(answer.startswith(t) for t in texts) and texts[-1] == answer
        times = [at for at, _ in card.updates]
        assert all(sum(1 for t in times if s <= t < s + 1) <= 5 for s in times)  # <= 5 updates a second
        # A voice message is answered under a second context (the transcribed text): its card
        # still takes the final answer, which is not sent again as a message; and the next
        # user's answer goes to that user's chat only.
        luke, maya = user(), user()
        dify.stt_text = "语音里的问题"
        voice = message_event(luke, "audio", {"file_key": "file_voice_1", "duration": 1200})
        sim.add_resource(voice["message"]["message_id"], "file_voice_1", WAV)  # Opus on Feishu; WAV here
        spoken = "语音问题的回答，慢慢地写出来。" * 6
        dify.push_answer(spoken, chunk_size=6, chunk_delay=0.03)
        assert app.sender.send(voice).status == 200
        try:
            sim.wait(lambda: sim.sent(luke) and sim.sent(luke)[0].text == spoken, timeout=20)
        except TimeoutError:
            raise AssertionError(str(sim.texts(luke)) + app.daemon.stderr()[-3000:])
        app.sender.send(text_event(maya, "我是下一个"))
        sim.wait(lambda: sim.texts(maya) == ["echo: 我是下一个"], timeout=15)
        time.sleep(0.4)
        [voice_card] = sim.sent(luke)
        assert voice_card.msg_type == "interactive" and voice_card.text == spoken and voice_card.updates
        assert sim.texts(maya) == ["echo: 我是下一个"]
        # No group rule names groups here (ALL_GROUP): a group's name is not read at all.
        chat = group()
        asked = text_event(maya, "@_user_1 in a group", chat_id=chat, mentions=[at_bot(sim)])
        assert app.sender.send(asked).status == 200
        sim.wait(lambda: sim.texts(asked["message"]["message_id"]) == ["echo: in a group"], timeout=15)
        assert not [c for c in sim.calls("chat") if c.path.endswith(chat)]
        sim.wait(lambda: sim.sent(nora) and sim.sent(nora)[0].text == limited, timeout=15)
        time.sleep(0.2)
        [limited_card] = sim.sent(nora)
        assert limited_card.msg_type == "interactive"
    finally:
        app.kill()


def test_a_message_acknowledged_before_a_crash_is_answered_once_after_the_restart(tmp_path, sim, dify):
    # Plain mode (no Encrypt Key): the challenge and events come as plaintext JSON.
    app = App(tmp_path, sim, dify, encrypt_key="", dify_read_timeout=60, dify_answer_timeout=60,
              dify_stream_reply=True).start()
    try:
        assert app.sender.challenge("plain-1").json == {"challenge": "plain-1"}
        lena, mona = user(), user()
        dify.push_hang(30)
        asked = len(questions(dify))
        assert app.sender.send(text_event(lena, "do not lose me")).status == 200
        sim.wait(lambda: len(questions(dify)) > asked, timeout=15)
        # mona's answer is growing in its card when the process dies.
        dify.push_answer("A long answer, still being written when the daemon dies. " * 3, chunk_size=4,
                         chunk_delay=0.1)
        assert app.sender.send(text_event(mona, "write slowly")).status == 200
        # Updated once: the card's creation was answered, so the daemon knows it is in the chat.
        sim.wait(lambda: sim.sent(mona) and sim.sent(mona)[0].updates, timeout=15)
        app.daemon.proc.kill()  # SIGKILL: after the ack, before the answer
        app.daemon.proc.wait(10)
        app.start()
        assert texts_to(sim, lena, 1, timeout=20) == ["echo: do not lose me"]
        sim.wait(lambda: len(sim.sent(mona)) >= 2, timeout=20)
        time.sleep(0.5)
        assert sim.texts(lena) == ["echo: do not lose me"]
        # The part of mona's answer in the chat is not given again: Dify is not asked a second
        # time, and she is told the answer was cut off.
        assert questions(dify).count("write slowly") == 1
        card, note = sim.sent(mona)
        assert card.msg_type == "interactive" and card.text
        assert note.text == refusal_text(INTERRUPTED_TEXT_ZH, INTERRUPTED_TEXT_EN, "write slowly")
    finally:
        app.kill()


def test_the_long_connection_takes_a_message_and_it_is_answered(tmp_path, sim, dify):
    app = App(tmp_path, sim, dify, feishu_event_mode="websocket").start()
    try:
        sim.wait(lambda: sim.ws is not None and sim.ws.connected.is_set(), timeout=20)
        mia = user()
        event = text_event(mia, "over the long connection")
        answer = sim.push_event(envelope(event, ""))
        assert answer["code"] == 200
        assert sim.push_event(envelope(event, ""))["code"] == 200  # pushed again: answered once
        assert texts_to(sim, mia, 1) == ["echo: over the long connection"]
        time.sleep(0.3)
        assert len(sim.sent(mia)) == 1
        sim.ws.drop()  # the gateway goes away: the client asks for the endpoint again and reconnects
        sim.wait(lambda: sim.ws.accepted == 2 and sim.ws.connected.is_set(), timeout=15)
        assert sim.push_event(envelope(text_event(mia, "after the reconnect"), ""))["code"] == 200
        assert texts_to(sim, mia, 2) == ["echo: over the long connection", "echo: after the reconnect"]
        # The gateway refuses the reconnect (lark gives up for good on that code):
        # the daemon opens the connection again itself, with a back-off.
        sim.fail_next("ws_endpoint", 1000040350, "exceed connection limit", status=200)
        sim.ws.drop()
        sim.wait(lambda: sim.ws.accepted == 3 and sim.ws.connected.is_set(), timeout=15)
        assert sim.push_event(envelope(text_event(mia, "after the refusals"), ""))["code"] == 200
        assert texts_to(sim, mia, 3)[2] == "echo: after the refusals"
        app.daemon.wait_for_log("the daemon opens it again")
        if sys.platform.startswith("linux"):  # a message the store cannot take gets an error answer: pushed again
            import resource

            kept = text_event(mia, "keep me too")
            soft, hard = resource.prlimit(app.daemon.proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(app.daemon.proc.pid, resource.RLIMIT_FSIZE, (0, hard))
            try:
                assert sim.push_event(envelope(kept, ""))["code"] == 500
            finally:
                resource.prlimit(app.daemon.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
            assert sim.push_event(envelope(kept, ""))["code"] == 200
            assert texts_to(sim, mia, 4)[3] == "echo: keep me too"
        app.daemon.proc.send_signal(signal.SIGTERM)  # a clean stop closes the connection
        assert app.daemon.wait(15) == 0
        stderr = app.daemon.stderr()
        assert "loop is closed" not in stderr and "was destroyed but it is pending" not in stderr
    finally:
        app.kill()


def test_missing_or_refused_credentials_stop_start_up_with_one_line(tmp_path, sim, dify):
    app = App(tmp_path, sim, dify)
    config = app.config()
    with open(config, encoding="utf-8") as f:
        data = json.load(f)
    data["feishu_token"] = ""
    with open(config, "w", encoding="utf-8") as f:
        json.dump(data, f)
    result = run_app(tmp_path, "--config", config, timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "feishu_token" in result.stderr
    data.update(feishu_token=TOKEN, feishu_app_secret="not-the-secret")
    with open(config, "w", encoding="utf-8") as f:
        json.dump(data, f)
    result = run_app(tmp_path, "--config", config, timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "feishu_app_secret" in result.stderr
