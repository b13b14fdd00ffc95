"""`python app.py` with channel_type wechatcom_service (WeCom customer service, 微信客服): the
platform simulator plays WeCom (callbacks signed and encrypted by its own crypto, sync_msg with
cursors and paging, send_msg with the 48 h / 5-message budget), the Dify simulator is the bot."""
from __future__ import annotations

import os
import time

import pytest

from channel.wechatcs.kf_sync import CURSOR_NAMESPACE
from common.store import STATE_DB_NAME
from common.store.sqlite_store import SQLiteStore
from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, run_app, user_lines, write_config
from tests.fakes.wechat_platform import WeChatPlatformSimulator, WeComSender, hostile, random_aes_key
from tests.fakes.wechat_platform import xml_messages as X

pytestmark = pytest.mark.slow

CORP, SECRET, TOKEN = "wwCorpForKfTests", "kf-app-secret", "kf-callback-token"
KF = "wkKfAccount001"
TEXT_MAX = 2048


def settings(sim, dify, port: int, key: str, **extra) -> dict:
    return dict(channel_type="wechatcom_service", wechatcom_corp_id=CORP, wechatcomapp_secret=SECRET,
                wechatcomapp_token=TOKEN, wechatcomapp_aes_key=key, wechatcomapp_port=port,
                wechatcom_api_base=sim.base_url, bot_type="", model="dify", dify_api_base=dify.base_url,
                dify_api_key="app-test", image_recognition=True, shutdown_timeout=5, **extra)


def start(folder, config: str, sender: WeComSender) -> Daemon:
    """`python app.py` once its callback URL answers the verification."""
    process = Daemon(folder, "--config", config)
    deadline = time.monotonic() + 20
    while not sender.verify().ok:
        if process.proc.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the callback URL never came up: {process.stderr()[-3000:]}")
        time.sleep(0.05)
    return process


class World:
    def __init__(self, folder, sim, dify, sender, process) -> None:
        self.folder, self.sim, self.dify, self.sender, self.process = folder, sim, dify, sender, process

    def wait_texts(self, user: str, count: int, timeout: float = 15) -> list[str]:
        self.sim.wait(lambda: len(self.sim.texts(user)) >= count, timeout)
        return self.sim.texts(user)

    def settled_texts(self, user: str, count: int, quiet: float = 0.6) -> list[str]:
        """The user's texts once `count` arrived and nothing more came for `quiet` seconds."""
        self.wait_texts(user, count)
        time.sleep(quiet)
        return self.sim.texts(user)

    def log(self) -> str:
        with open(os.path.join(str(self.folder), "run.log"), encoding="utf-8") as f:
            return f.read()

    def retried(self, errcode: int) -> bool:
        """Whether the pipeline retried a send after the platform's `errcode`."""
        return any("send failed" in line and str(errcode) in line for line in self.log().splitlines())

    def sends_to(self, user: str):
        return [c for c in self.sim.calls("kf/send_msg") if isinstance(c.body, dict) and c.body.get("touser") == user]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wechatcs")
    key, port = random_aes_key(), free_port()
    with WeChatPlatformSimulator(wecom_apps={CORP: {SECRET: 1000002}}, kf_accounts={CORP: [KF]}) as sim, \
            DifyServer(api_key="app-test", mode="chat") as dify:
        sender = WeComSender(f"http://127.0.0.1:{port}/wxcomapp", TOKEN, key, CORP, agent_id=None, platform=sim)
        config = write_config(folder, **settings(sim, dify, port, key, voice_to_text="dify", speech_recognition=True))
        process = start(folder, config, sender)
        try:
            yield World(folder, sim, dify, sender, process)
        finally:
            process.kill()


def test_url_verification_answers_the_plaintext_and_refuses_a_forged_signature(world):
    assert world.sender.verify().ok
    forged = world.sender.verify(forge=True)
    assert forged.status == 403 and forged.body != forged.expected


def test_a_customer_text_is_answered_through_send_msg(world):
    _, exchange = world.sender.kf_customer_says(KF, "wmAlice", "你好")
    assert exchange.final is not None and exchange.final.status == 200
    assert world.settled_texts("wmAlice", 1) == ["echo: 你好"]
    [call] = world.sends_to("wmAlice")
    assert call.body["open_kfid"] == KF and call.body["msgtype"] == "text"


def test_two_messages_before_one_pull_are_both_answered_once_in_order(world):
    # The original pulled from an empty cursor and kept only the newest item.
    world.sim.kf_message(CORP, KF, "wmBob", "first question")
    world.sim.kf_message(CORP, KF, "wmBob", "second question")
    world.sender.kf_notify(KF)
    assert world.settled_texts("wmBob", 2) == ["echo: first question", "echo: second question"]
    assert [r["json"]["query"] for r in world.dify.requests_to("/v1/chat-messages")
            if r["json"]["user"] == "wmBob"] == ["first question", "second question"]


def test_a_repeated_notification_does_not_answer_again(world):
    world.sender.kf_customer_says(KF, "wmCarol", "only once")
    world.wait_texts("wmCarol", 1)
    syncs = len(world.sim.calls("kf/sync_msg"))
    world.sender.kf_notify(KF)
    world.sender.kf_notify(KF)
    world.sim.wait(lambda: len(world.sim.calls("kf/sync_msg")) >= syncs + 1)
    assert world.settled_texts("wmCarol", 1) == ["echo: only once"]
    # Pulled from the kept cursor, not from the start of the 3-day window.
    assert all(c.body.get("cursor") for c in world.sim.calls("kf/sync_msg")[syncs:])


def test_servicer_messages_events_and_stale_messages_are_not_answered(world):
    world.sim.kf_event(CORP, KF, "enter_session", "wmDave", welcome_code="WELCOME")
    world.sim.kf_message(CORP, KF, "wmDave", "a servicer typed this", origin=5, servicer_userid="zhangsan")
    world.sim.kf_message(CORP, KF, "wmDave", "sent long ago", send_time=time.time() - 49 * 3600)
    world.sim.kf_message(CORP, KF, "wmDave", msgtype="location",
                         payload={"latitude": 1, "longitude": 2, "name": "x"})
    world.sim.kf_message(CORP, KF, "wmDave", "the real question")
    world.sim.kf_message(CORP, KF, "wmDave", "the servicer again", origin=5, servicer_userid="zhangsan")
    world.sender.kf_notify(KF)
    assert world.settled_texts("wmDave", 1) == ["echo: the real question"]


def test_a_refused_sync_token_is_dropped_and_the_messages_still_pulled(world):
    world.sim.inject("kf/sync_msg", errcode=95007)
    world.sender.kf_customer_says(KF, "wmLeo", "token trouble")
    assert world.settled_texts("wmLeo", 1) == ["echo: token trouble"]
    world.process.wait_for_log("(95007)", timeout=1)
    calls = world.sim.calls("kf/sync_msg")
    refused = max(n for n, c in enumerate(calls) if c.injected)
    assert calls[refused].body.get("token") and not calls[refused + 1].body.get("token")


def test_a_backlog_longer_than_one_page_is_followed_to_its_end(world):
    # 1000 items fill the first page (the platform's maximum); the question is on page two.
    for n in range(1000):
        world.sim.kf_message(CORP, KF, "wmErin", f"servicer line {n}", origin=5, servicer_userid="lisi")
    world.sim.kf_message(CORP, KF, "wmErin", "am I on page two?")
    syncs = len(world.sim.calls("kf/sync_msg"))
    world.sender.kf_notify(KF)
    assert world.settled_texts("wmErin", 1) == ["echo: am I on page two?"]
    pages = world.sim.calls("kf/sync_msg")[syncs:]
    assert len(pages) >= 2 and pages[1].body.get("cursor")


def test_a_long_answer_is_sent_in_2048_byte_pieces_in_order(world):
    answer = "".join(f"第{n}段内容。" for n in range(300))  # about 5 KB of UTF-8: three pieces
    world.dify.push_answer(answer, chunk_size=500)
    world.sender.kf_customer_says(KF, "wmFrank", "tell me everything")
    texts = world.settled_texts("wmFrank", 1, quiet=1.0)
    assert len(texts) >= -(-len(answer.encode("utf-8")) // TEXT_MAX) > 1
    assert all(len(t.encode("utf-8")) <= TEXT_MAX for t in texts)
    assert len(texts[0].encode("utf-8")) > TEXT_MAX - 4  # cut at the limit, not before
    assert "".join(texts) == answer


def test_the_five_message_budget_is_logged_clearly_and_not_retried(world):
    answer = "长" * 4000  # 12000 bytes: six pieces, one more than the platform allows
    world.dify.push_answer(answer, chunk_size=1000)
    world.sender.kf_customer_says(KF, "wmGrace", "a very long answer please")
    world.process.wait_for_log("(95001)", timeout=15)
    time.sleep(0.5)
    texts = world.sim.texts("wmGrace")
    assert len(texts) == 5 and "".join(texts) == answer[:len("".join(texts))]
    assert [c.errcode for c in world.sends_to("wmGrace")] == [0] * 5 + [95001]  # not retried
    assert not world.retried(95001)
    world.process.wait_for_log("5 messages per customer message", timeout=1)


def test_the_48_hour_window_refusal_is_logged_clearly(world):
    world.sim.inject("kf/send_msg", errcode=95002)
    world.sender.kf_customer_says(KF, "wmHeidi", "are you there?")
    world.process.wait_for_log("(95002)", timeout=15)
    world.process.wait_for_log("more than 48 hours old", timeout=1)
    time.sleep(0.5)
    assert [c.errcode for c in world.sends_to("wmHeidi")] == [95002]  # no pointless retries
    assert not world.retried(95002)


def test_forged_misaddressed_and_hostile_callbacks_are_refused_and_good_ones_still_answered(world):
    sender, sim = world.sender, world.sim
    notify = X.event(CORP, None, "kf_msg_or_event", [("Token", sim.kf_sync_token(CORP, KF)), ("OpenKfId", KF)])
    sim.kf_message(CORP, KF, "wmIvan", "must wait for a genuine callback")
    syncs = len(sim.calls("kf/sync_msg"))
    assert sender.send_once(notify, forge=True).status == 403
    assert sender.send_once(notify, receiveid="wwSomeoneElse0001").status == 403
    assert sender.send_xml(hostile.entity_bomb(CORP, "wmIvan")).status == 400
    assert sender.send_xml(hostile.external_entity(CORP, "wmIvan")).status == 400
    assert sender.post_raw(hostile.NON_XML_BODY).status == 400
    assert sender.post_raw(hostile.BINARY_BODY).status == 400
    big = sender.post_raw(hostile.huge_text(CORP, "wmIvan"), timeout=20)
    assert big.status == 413, (big.status, big.error)
    encrypt, stale, nonce = sender.envelope.encrypt(notify.xml()), str(int(time.time()) - 3600), "n0nce"
    replayed = {"msg_signature": sender.envelope.msg_signature(stale, nonce, encrypt), "timestamp": stale, "nonce": nonce}
    assert sender.post_raw(f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>", query=replayed).status == 403
    time.sleep(0.5)
    assert len(sim.calls("kf/sync_msg")) == syncs  # nothing refused reached the platform
    assert sim.texts("wmIvan") == []
    sender.kf_notify(KF)
    assert world.settled_texts("wmIvan", 1) == ["echo: must wait for a genuine callback"]


def test_messages_pulled_before_a_crash_are_answered_once_after_the_restart(tmp_path):
    key, port = random_aes_key(), free_port()
    with WeChatPlatformSimulator(wecom_apps={CORP: {SECRET: 1000002}}, kf_accounts={CORP: [KF]}) as sim, \
            DifyServer(api_key="app-test", mode="chat") as dify:
        sender = WeComSender(f"http://127.0.0.1:{port}/wxcomapp", TOKEN, key, CORP, agent_id=None, platform=sim)
        config = write_config(tmp_path, **settings(sim, dify, port, key))
        dify.push_hang(30)  # the first question is still being answered at the kill
        process = start(tmp_path, config, sender)
        try:
            sim.kf_message(CORP, KF, "wmJudy", "do not lose me")
            sim.kf_message(CORP, KF, "wmJudy", "nor me")
            sender.kf_notify(KF)
            deadline = time.monotonic() + 15
            while not dify.requests_to("/v1/chat-messages"):
                assert time.monotonic() < deadline, "the question never reached Dify"
                time.sleep(0.05)
            process.kill()  # SIGKILL: both messages were pulled and the cursor moved past them
            assert sim.texts("wmJudy") == []
            process = start(tmp_path, config, sender)
            world = World(tmp_path, sim, dify, sender, process)
            assert world.settled_texts("wmJudy", 2) == ["echo: do not lose me", "echo: nor me"]
            # A later notification reads from the kept cursor: nothing is pulled or answered twice.
            sender.kf_customer_says(KF, "wmJudy", "and a new one")
            assert world.settled_texts("wmJudy", 3) == ["echo: do not lose me", "echo: nor me", "echo: and a new one"]
            restarted = sim.calls("kf/sync_msg")[1:]
            assert restarted and all(c.body.get("cursor") for c in restarted)

            # Down again; a customer writes meanwhile (the callback finds nobody), and the kept
            # cursor is lost as if the crash had come between the inbox write and the cursor save.
            process.kill()
            sim.kf_message(CORP, KF, "wmJudy", "sent while you were down")
            assert sender.kf_notify(KF).final is None
            with SQLiteStore(os.path.join(str(tmp_path), "data", STATE_DB_NAME)) as store:
                store.put(CURSOR_NAMESPACE, KF, "")
            syncs = len(sim.calls("kf/sync_msg"))
            process = start(tmp_path, config, sender)
            world.process = process
            # Pulled again from the start at start-up: only the new message is answered (msgid dedup).
            assert world.settled_texts("wmJudy", 4, quiet=1.0) == [
                "echo: do not lose me", "echo: nor me", "echo: and a new one", "echo: sent while you were down"]
            assert any(not c.body.get("cursor") for c in sim.calls("kf/sync_msg")[syncs:])
        finally:
            process.kill()


def test_a_picture_is_fetched_when_the_next_question_needs_it(world):
    sim, png = world.sim, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    media_id = sim.add_media(CORP, "image", png)
    sim.kf_message(CORP, KF, "wmKate", msgtype="image", payload={"media_id": media_id})
    world.sender.kf_notify(KF)
    time.sleep(0.5)
    assert not [c for c in sim.calls("media/get") if c.query.get("media_id") == media_id]  # not before needed
    world.sender.kf_customer_says(KF, "wmKate", "what is in the picture?")
    assert world.settled_texts("wmKate", 1) == ["echo: what is in the picture?"]
    uploads = [u for u in world.dify.uploads.values() if u["user"] == "wmKate"]
    assert [u["content"] for u in uploads] == [png]
    [get] = [c for c in sim.calls("media/get") if c.query.get("media_id") == media_id]
    assert get.errcode is None  # served as a file


def test_a_voice_clip_is_downloaded_transcribed_and_answered(world):
    sim = world.sim
    amr = b"#!AMR\n" + bytes([0x3C] + [0x55] * 31) * 50  # one second of AMR-NB 12.2 kbit/s frames
    media_id = sim.add_media(CORP, "voice", amr, "v.amr")
    world.dify.stt_text = "语音里问的事"
    sim.kf_message(CORP, KF, "wmVoice", msgtype="voice", payload={"media_id": media_id})
    world.sender.kf_notify(KF)
    assert world.settled_texts("wmVoice", 1) == ["echo: 语音里问的事"]
    [get] = [c for c in sim.calls("media/get") if c.query.get("media_id") == media_id]
    assert get.errcode is None
    assert world.dify.requests_to("/v1/audio-to-text")


@pytest.mark.parametrize("missing", ["wechatcomapp_secret", "wechatcom_corp_id", "wechatcomapp_aes_key"])
def test_a_missing_setting_stops_start_up_with_one_line(tmp_path, missing):
    config = dict(channel_type="wechatcom_service", wechatcom_corp_id=CORP, wechatcomapp_secret=SECRET,
                  wechatcomapp_token=TOKEN, wechatcomapp_aes_key=random_aes_key(), wechatcomapp_port=free_port(),
                  bot_type="", model="dify", dify_api_base="http://127.0.0.1:9", dify_api_key="app-test")
    del config[missing]
    result = run_app(tmp_path, "--config", write_config(tmp_path, **config), timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = user_lines(result.stderr)
    assert line.startswith("config error: ") and missing in line, line


def test_a_failed_pull_is_tried_again_without_another_callback(world):
    # The callback was acknowledged, so WeCom will not call again for this message: the daemon
    # must pull again by itself when the platform failed the pull (here once, with a 502).
    world.sim.inject("kf/sync_msg", status=502)
    world.sender.kf_customer_says(KF, "wmRetry", "are you there?")
    assert world.wait_texts("wmRetry", 1, timeout=20) == ["echo: are you there?"]
    assert "pulling " + KF + " again in 5 s" in world.log()

