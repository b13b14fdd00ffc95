"""`python app.py` with channel_type wechatmp / wechatmp_service: the WeChat platform simulator
pushes signed (and in safe mode encrypted) callbacks with the platform's real 5-second cut and
three deliveries, and plays the API server; the Dify simulator is the bot."""
from __future__ import annotations

import os
import threading
import time

import pytest

from channel.chat_channel import INTERRUPTED_TEXT_EN, INTERRUPTED_TEXT_ZH, refusal_text
from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, plugins_dir, run_app, user_lines, wait_healthy, write_config
from tests.fakes.wechat_platform import OfficialAccountSender, WeChatPlatformSimulator, hostile, random_aes_key, \
    sha1_signature

pytestmark = pytest.mark.slow

APPID, SECRET, TOKEN, GH = "wx0123456789abcdef", "app-secret-1", "callback-token", "gh_0123456789ab"
CONTINUED_BYTES = len("\n（内容较长，回复任意文字查看下一段）".encode("utf-8"))


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


@pytest.fixture
def sim():
    platform = WeChatPlatformSimulator(oa_apps={APPID: SECRET}).start()
    yield platform
    platform.stop()


class OA:
    """A running daemon and the sender that plays WeChat to it."""

    def __init__(self, tmp_path, dify, sim, channel: str, aes_key: str | None, *args: str, **settings) -> None:
        self.tmp_path, self.dify, self.sim, self.channel, self.aes_key = tmp_path, dify, sim, channel, aes_key
        self.args, self.settings = args, settings
        self.process: Daemon | None = None
        self.start()

    def start(self) -> None:
        self.port = free_port()
        config = write_config(
            self.tmp_path, channel_type=self.channel, wechatmp_token=TOKEN, wechatmp_app_id=APPID,
            wechatmp_app_secret=SECRET, wechatmp_aes_key=self.aes_key or "", wechatmp_port=self.port,
            wechatmp_api_base=self.sim.base_url, bot_type="", model="dify", dify_api_base=self.dify.base_url,
            dify_api_key="app-test", shutdown_timeout=3, **self.settings)
        self.process = Daemon(self.tmp_path, "--config", config, *self.args)
        wait_healthy(f"http://127.0.0.1:{self.port}", daemon=self.process)
        self.oa = OfficialAccountSender(f"http://127.0.0.1:{self.port}/wx", TOKEN, APPID, self.aes_key,
                                        original_id=GH, platform=self.sim)

    def log(self) -> str:
        with open(os.path.join(str(self.tmp_path), "run.log"), encoding="utf-8") as f:
            return f.read()

    def questions(self) -> list[str]:
        return [m["query"] for m in self.dify.messages]

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


@pytest.fixture
def passive(tmp_path, dify, sim, request):
    daemon = OA(tmp_path, dify, sim, "wechatmp", None, **getattr(request, "param", {}))
    yield daemon
    daemon.stop()


@pytest.fixture
def passive_voice(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp", None, voice_to_text="dify", speech_recognition=True)
    yield daemon
    daemon.stop()


@pytest.fixture
def service(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp_service", None)
    yield daemon
    daemon.stop()


def wait_until(predicate, timeout=10.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------- passive
def test_url_verification_echoes_and_a_forged_one_is_refused(passive):
    good = passive.oa.verify()
    assert good.ok, (good.status, good.body)
    forged = passive.oa.verify(forge=True)
    assert forged.status == 403 and forged.body != forged.expected


def test_plaintext_question_is_answered_in_the_first_response(passive, dify):
    dify.push_answer("Paris is the capital of France.")
    ex = passive.oa.text("user-1", "capital of France?")
    assert ex.answered_on == 1 and not ex.problems, ex.problems
    assert ex.shown == dify.messages[-1]["answer"] and passive.questions() == ["capital of France?"]
    assert ex.final.encrypted_reply is False


def test_safe_mode_round_trip(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp", random_aes_key())
    try:
        assert daemon.oa.verify().ok  # the echo stays plain in safe mode
        dify.push_answer("加密模式下的回答")
        ex = daemon.oa.text("user-aes", "你好")
        assert ex.answered_on == 1 and not ex.problems, ex.problems
        assert ex.final.encrypted_reply is True and ex.shown == dify.messages[-1]["answer"]
        # Another AppID in the envelope: refused, never processed.
        wrong = daemon.oa.send_xml(f"<xml><ToUserName>{GH}</ToUserName><FromUserName>user-aes</FromUserName>"
                                   f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
                                   f"<Content>other app</Content><MsgId>77</MsgId></xml>", receiveid="wxOTHERAPP000000")
        assert wrong.status == 403
        # A plaintext body under a correctly signed URL: the URL's signature does not cover the
        # body, so in safe mode only the envelope counts. Refused, never processed.
        plain = (f"<xml><ToUserName>{GH}</ToUserName><FromUserName>victim</FromUserName>"
                 f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
                 f"<Content>forged</Content><MsgId>78</MsgId></xml>")
        timestamp, nonce = str(int(time.time())), "4242"
        query = {"signature": sha1_signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        assert daemon.oa.post_raw(plain, query=query).status == 403
        assert daemon.questions() == ["你好"]
        # Compatible mode: the envelope and the plaintext elements side by side. Only the envelope
        # is believed: plaintext elements that say something else change nothing.
        compat = OfficialAccountSender(daemon.oa.url, TOKEN, APPID, daemon.aes_key, mode="compat",
                                       original_id=GH, platform=sim)
        ex = compat.text("user-compat", "兼容模式")
        assert ex.answered_on == 1 and not ex.problems, ex.problems
        assert ex.shown == dify.messages[-1]["answer"]
        genuine = (f"<xml><ToUserName>{GH}</ToUserName><FromUserName>user-compat</FromUserName>"
                   f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
                   f"<Content>真正的问题</Content><MsgId>79</MsgId></xml>")
        encrypt = compat.envelope.encrypt(genuine)
        lying = (f"<xml><ToUserName>{GH}</ToUserName><FromUserName>victim</FromUserName><MsgType>text</MsgType>"
                 f"<Content>forged</Content><MsgId>80</MsgId><Encrypt>{encrypt}</Encrypt></xml>").encode()
        assert compat.post_raw(lying).status == 200
        assert daemon.questions() == ["你好", "兼容模式", "真正的问题"]
    finally:
        daemon.stop()


def test_bad_requests_are_refused_and_good_ones_still_answered(passive, dify):
    oa = passive.oa
    forged = oa.forged_signature("user-2", "forged question")
    assert forged.status == 403
    assert oa.send_xml(hostile.entity_bomb(GH, "user-2")).status == 400
    assert oa.send_xml(hostile.external_entity(GH, "user-2")).status == 400
    assert oa.post_raw(hostile.NON_XML_BODY).status == 400
    assert oa.send_xml(hostile.huge_text(GH, "user-2")).status == 413
    # Correctly signed, but from an hour ago: a replay.
    old = str(int(time.time()) - 3600)
    stale = oa.post_raw(b"<xml/>", query={"signature": sha1_signature(TOKEN, old, "n1"), "timestamp": old,
                                          "nonce": "n1"})
    assert stale.status == 403
    unknown = oa.message("user-2", "hologram", [("Beam", "x")])
    assert unknown.final.outcome == "empty" and unknown.final.status == 200
    assert passive.questions() == []
    ex = oa.text("user-2", "still there?")
    assert ex.answered_on == 1 and ex.shown == dify.messages[-1]["answer"]
    assert passive.questions() == ["still there?"]
    # Plaintext mode signs the URL only: a seen URL with another body is refused, while the same
    # body again (WeChat delivering once more) is still taken, as a duplicate.
    seen = ex.deliveries[0]
    forged_body = seen.plaintext.replace("still there?", "transfer everything").replace("<MsgId>", "<MsgId>9")
    assert oa.post_raw(forged_body, query=seen.query).status == 403
    assert oa.post_raw(seen.plaintext, query=seen.query).status == 200
    assert passive.questions() == ["still there?"]


def test_a_replayed_msgid_is_processed_once(passive, dify):
    first = passive.oa.text("user-3", "only once", msg_id=24_000_000_000_123_456)
    assert first.answered_on == 1
    again = passive.oa.text("user-3", "only once", msg_id=24_000_000_000_123_456)
    assert again.shown is None and len(again.deliveries) == 1
    assert passive.questions() == ["only once"]


def test_long_answer_comes_in_pieces_one_per_message(passive, dify):
    answer = "".join(f"第{i}段内容，" for i in range(400))  # about 7 KB, no markdown
    dify.push_answer(answer)
    shown = [passive.oa.text("user-4", "长文").shown]
    while len(shown) < 10 and shown[-1] and shown[-1].endswith("查看下一段）"):
        shown.append(passive.oa.text("user-4", "继续").shown)
    assert len(answer.encode("utf-8")) > 2 * 2048 and len(shown) >= 3
    assert all(len(s.encode("utf-8")) <= 2048 for s in shown)
    rebuilt = "".join(s[:len(s) - len("\n（内容较长，回复任意文字查看下一段）")] for s in shown[:-1]) + shown[-1]
    assert rebuilt == answer
    assert passive.questions() == ["长文"]  # the "继续" messages only fetched
    assert passive.oa.text("user-4", "next question").shown == dify.messages[-1]["answer"]


def test_voice_with_recognition_is_asked_as_text(passive, dify):
    ex = passive.oa.voice("user-5", "media-voice-1", recognition="明天会下雨吗")
    assert ex.answered_on == 1 and ex.shown == dify.messages[-1]["answer"]
    assert passive.questions() == ["明天会下雨吗"]


@pytest.mark.parametrize("passive", [{"subscribe_msg": "感谢关注！直接发消息就能和我聊天"}], indirect=True)
def test_follow_gets_the_subscribe_message(passive):
    assert passive.oa.subscribe("user-6").shown == "感谢关注！直接发消息就能和我聊天"
    assert passive.oa.subscribe("user-7", scene="poster").shown == "感谢关注！直接发消息就能和我聊天"
    assert passive.questions() == []


def test_slow_answer_is_fetched_after_a_restart(passive, dify):
    """Three deliveries pass while Dify thinks; the third says to write again. The answer is
    finished while nobody asks, the daemon is killed, and the next message still gets it."""
    dify.push_answer("一个想了很久的回答", latency=15.5)
    ex = passive.oa.text("user-8", "难题")
    assert [d.outcome for d in ex.deliveries] == ["dropped", "dropped", "reply"]
    assert "继续" in ex.shown and ex.shown != dify_answer_so_far(dify)
    wait_until(lambda: "text answer for user-8 waits" in passive.log(), timeout=10, what="the answer")
    passive.process.kill()  # SIGKILL: nothing is flushed on the way out
    passive.start()
    later = passive.oa.text("user-8", "继续")
    assert later.answered_on == 1 and later.shown == "一个想了很久的回答"
    assert passive.questions() == ["难题"]


@pytest.mark.parametrize("passive", [{"dify_stream_reply": True}], indirect=True)
def test_a_crash_in_the_middle_of_a_streamed_answer_does_not_give_its_first_part_twice(passive, dify):
    """The first paragraph of a streamed answer waits for the user when the daemon is killed.
    After the restart the user gets that paragraph once, then a note that the answer was cut
    off; Dify is not asked again (its new answer would repeat the first paragraph)."""
    dify.push_events([{"event": "message", "answer": "第一段回答。\n\n"}, {"event": "message", "answer": "第二"}, 60])
    asking = threading.Thread(target=passive.oa.text, args=("user-14", "流式的问题"), daemon=True)
    asking.start()
    wait_until(lambda: "text answer for user-14 waits" in passive.log(), timeout=10, what="the first paragraph")
    passive.process.kill()  # SIGKILL in the middle of the stream
    passive.start()
    assert passive.oa.text("user-14", "继续").shown == "第一段回答。"
    note = refusal_text(INTERRUPTED_TEXT_ZH, INTERRUPTED_TEXT_EN, "流式的问题")
    assert passive.oa.text("user-14", "还有吗").shown == note
    assert passive.questions() == ["流式的问题"]
    assert passive.oa.text("user-14", "新问题").shown == dify.messages[-1]["answer"]


def made(daemon: OA, kind: str) -> bytes:
    """The bytes the media_reply test plugin answered with."""
    with open(os.path.join(str(daemon.tmp_path), "tmp", f"media_reply-{kind}.bin"), "rb") as f:
        return f.read()


def test_media_replies_are_uploaded_as_material_and_deleted_after_even_across_a_crash(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp", None, "--plugins-dir", plugins_dir(tmp_path, ("media_reply",)))
    try:
        shown = {kind: daemon.oa.text("user-11", kind).shown for kind in ("picture", "voice", "video")}
        assert [v[0] for v in shown.values()] == ["image", "voice", "video"], shown
        for kind, (_msgtype, media_id) in shown.items():
            media = sim.media(media_id)
            assert media.permanent and media.data == made(daemon, kind)
        # Killed before the material is due for deletion: the next run deletes it (the account's
        # material library is limited), some seconds after it was shown.
        daemon.process.kill()
        assert not any(sim.media(m).deleted for _, m in shown.values())
        daemon.start()
        wait_until(lambda: all(sim.media(m).deleted for _, m in shown.values()), timeout=20, what="the deletions")
        assert daemon.questions() == []
    finally:
        daemon.stop()


def test_a_material_refusal_in_passive_mode_is_explained_once(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp", None, "--plugins-dir", plugins_dir(tmp_path, ("media_reply",)))
    try:
        sim.fail_next("material/add_material", 48001)
        daemon.oa.text("user-13", "picture")
        wait_until(lambda: "48001" in daemon.log(), timeout=10, what="the log line")
        time.sleep(4)  # past the pipeline's first retry (3 s), which must not happen
        log = daemon.log()
        assert "verified" in log and "not uploaded" in log
        assert "send failed" not in log
        assert len([c for c in sim.calls("material/add_material")]) == 1
    finally:
        daemon.stop()


def test_voice_without_recognition_is_downloaded_and_transcribed(passive_voice, dify, sim):
    passive = passive_voice
    amr = b"#!AMR\n" + bytes([0x3C] + [0x55] * 31) * 50  # one second of AMR-NB 12.2 kbit/s frames
    media_id = sim.add_media(APPID, "voice", amr, "v.amr")
    dify.stt_text = "语音里的问题"
    ex = passive.oa.voice("user-12", media_id)
    assert ex.answered_on == 1 and ex.shown == dify.messages[-1]["answer"]
    assert passive.questions() == ["语音里的问题"]
    assert [c.query.get("media_id") for c in sim.calls("media/get")] == [media_id]
    assert dify.requests_to("/v1/audio-to-text")


def dify_answer_so_far(dify) -> str | None:
    return dify.messages[-1]["answer"] if dify.messages else None


def test_missing_settings_stop_start_up_with_one_line(tmp_path):
    config = write_config(tmp_path, channel_type="wechatmp", wechatmp_token="t")
    done = run_app(tmp_path, "--config", config, timeout=30)
    assert done.returncode == 2
    lines = user_lines(done.stderr)
    assert len(lines) == 1 and "wechatmp_app_id" in lines[0] and "wechatmp_app_secret" in lines[0], lines


# ---------------------------------------------------------------------------------------- service
def test_service_mode_answers_at_once_and_sends_pieces_in_order(service, dify, sim):
    answer = "".join(f"第{i}句。" for i in range(700))  # about 8 KB
    dify.push_answer(answer, latency=2.5)
    ex = service.oa.text("user-9", "写一篇长文")
    # "success" at once, long before the answer exists.
    assert ex.final.outcome == "empty" and ex.final.elapsed < 1.5 and len(ex.deliveries) == 1
    wait_until(lambda: "".join(sim.texts("user-9")) == answer, timeout=10, what="the whole answer")
    sends = [c for c in sim.calls("message/custom/send") if c.errcode == 0]
    sizes = [len(c.body["text"]["content"].encode("utf-8")) for c in sends]
    # Full pieces (a cut may step back over one character of up to 3 bytes), the rest last.
    assert len(sizes) > 2 and all(2045 <= n <= 2048 for n in sizes[:-1]) and sizes[-1] <= 2048, sizes


def test_service_mode_refetches_an_expired_token_and_explains_45015(service, dify, sim):
    assert service.oa.text("user-10", "first").final.outcome == "empty"
    wait_until(lambda: dify.messages and sim.texts("user-10") == [dify.messages[-1]["answer"]],
               what="the first answer")
    sim.expire_tokens()
    service.oa.text("user-10", "second")
    wait_until(lambda: len(sim.texts("user-10")) == 2, what="the answer after the token expired")
    assert len(sim.calls("token")) == 2
    sim.inject("message/custom/send", errcode=45015)
    service.oa.text("user-10", "third")
    wait_until(lambda: "45015" in service.log(), what="the 45015 line")
    line = next(l for l in service.log().splitlines() if "45015" in l)
    assert "48 hours" in line and "user-10" in line
    assert len(sim.texts("user-10")) == 2  # given up at once, not retried into the window
    service.oa.text("user-10", "fourth")
    wait_until(lambda: len(sim.texts("user-10")) == 3, what="the daemon answering after 45015")


def test_service_mode_sends_media(tmp_path, dify, sim):
    daemon = OA(tmp_path, dify, sim, "wechatmp_service", None, "--plugins-dir", plugins_dir(tmp_path, ("media_reply",)))
    try:
        for kind in ("picture", "voice", "video"):
            assert daemon.oa.text("user-13", kind).final.outcome == "empty"
        wait_until(lambda: len(sim.shown("user-13")) == 3, what="three media messages")
        shown = sim.shown("user-13")
        assert [s.msgtype for s in shown] == ["image", "voice", "video"]
        assert [s.media for s in shown] == [made(daemon, k) for k in ("picture", "voice", "video")]
        # Temporary media, except the WAV voice, which only material takes.
        assert [sim.media(s.media_id).permanent for s in shown] == [False, True, False]
    finally:
        daemon.stop()



def test_service_mode_retries_a_failed_piece_without_sending_the_earlier_ones_again(service, dify, sim):
    answer = "".join(f"第{i}句。" for i in range(700))  # about 8 KB: several pieces
    dify.push_answer(answer)
    sim.inject("message/custom/send", delay=0.01)  # the first piece goes through
    sim.inject("message/custom/send", errcode=-1, errmsg="system busy")  # the second is refused once
    service.oa.text("user-12", "再写一篇")
    wait_until(lambda: len("".join(sim.texts("user-12"))) >= len(answer), timeout=20, what="the whole answer")
    time.sleep(0.5)
    # Each piece once, in order: a piece sent twice would make the joined text differ.
    assert "".join(sim.texts("user-12")) == answer
