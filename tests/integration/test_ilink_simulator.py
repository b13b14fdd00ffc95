"""The iLink simulator checked on its own (plain HTTP, as the reference describes the platform),
and the product's QR login (channel/wechat/ilink_login.py) through each status of §1.3 against it."""
from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
import requests

from channel.wechat.ilink_api import IlinkClient, IlinkError
from channel.wechat.ilink_login import Credentials, QrLogin
from tests.fakes.ilink import IlinkSimulator, crypto


@pytest.fixture
def sim():
    simulator = IlinkSimulator(hold=0.2).start()
    yield simulator
    simulator.stop()


def bot_call(sim, endpoint, body, token):
    headers = {"AuthorizationType": "ilink_bot_token", "Authorization": f"Bearer {token}"}
    r = requests.post(f"{sim.api_url}/ilink/bot/{endpoint}", json={**body, "base_info": {}}, headers=headers,
                      timeout=5)
    return r.json()


def logged_in(sim) -> str:
    qr = requests.get(f"{sim.entry_url}/ilink/bot/get_bot_qrcode?bot_type=3", timeout=5).json()["qrcode"]
    return sim.confirm(qr)


def test_status_poll_is_held_then_follows_the_script(sim):
    qr = requests.get(f"{sim.entry_url}/ilink/bot/get_bot_qrcode", timeout=5).json()["qrcode"]
    status = f"{sim.entry_url}/ilink/bot/get_qrcode_status"
    assert requests.get(status, params={"qrcode": qr}, timeout=5).json()["status"] == "wait"
    sim.set_status(qr, "scaned")
    assert requests.get(status, params={"qrcode": qr}, timeout=5).json()["status"] == "scaned"
    token = sim.confirm(qr)
    answer = requests.get(status, params={"qrcode": qr}, timeout=5).json()
    assert answer["status"] == "confirmed" and answer["bot_token"] == token and answer["baseurl"] == sim.api_url


def test_bot_calls_need_a_live_token(sim):
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, "made-up")["ret"] == -14
    token = logged_in(sim)
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)["ret"] == 0
    sim.expire_token()
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)["ret"] == -14


def test_the_cursor_goes_on_where_it_was_and_an_empty_one_replays(sim):
    token = logged_in(sim)
    first = sim.push_text("u", "one")
    answer = bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)
    assert [m["message_id"] for m in answer["msgs"]] == [first["message_id"]]
    second = sim.push_text("u", "two")
    after = bot_call(sim, "getupdates", {"get_updates_buf": answer["get_updates_buf"]}, token)
    assert [m["message_id"] for m in after["msgs"]] == [second["message_id"]]
    again = bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)
    assert len(again["msgs"]) == 2 and sim.deliveries[str(first["message_id"])] == 2
    assert bot_call(sim, "getupdates", {"get_updates_buf": "forged"}, token)["ret"] != 0


def test_a_reply_must_carry_the_newest_context_token_delivered(sim):
    token = logged_in(sim)
    old = sim.push_text("u", "one")
    bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)
    text = [{"type": 1, "text_item": {"text": "hi"}}]

    def send(ctx, to="u", items=text):
        msg = {"to_user_id": to, "client_id": "c1", "message_type": 2, "message_state": 2, "item_list": items,
               "context_token": ctx}
        return bot_call(sim, "sendmessage", {"msg": msg}, token)

    assert send(old["context_token"])["ret"] == 0
    new = sim.push_text("u", "two")
    bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)
    assert send(old["context_token"])["ret"] != 0
    assert send(new["context_token"])["ret"] == 0
    assert send(new["context_token"], to="stranger")["ret"] != 0
    assert send(new["context_token"], items=[{"type": 1, "text_item": {"text": ""}}])["ret"] != 0
    sim.fail_next_send(ret=-2, errmsg="rate limited")
    assert send(new["context_token"])["ret"] == -2
    assert [s.texts for s in sim.sent_to("u")] == [["hi"], ["hi"]]


def test_upload_then_download_round_trip_with_checks(sim):
    token = logged_in(sim)
    plain = b"file body " * 50
    key = crypto.new_key()
    blob = crypto.encrypt(plain, key)
    body = {"filekey": "fk", "media_type": 3, "to_user_id": "u", "rawsize": len(plain),
            "rawfilemd5": hashlib.md5(plain).hexdigest(), "filesize": len(blob), "aeskey": key.hex()}
    param = bot_call(sim, "getuploadurl", body, token)["upload_param"]
    r = requests.post(f"{sim.cdn_url}/upload", params={"encrypted_query_param": param, "filekey": "fk"}, data=blob,
                      timeout=5)
    assert r.status_code == 200
    download = r.headers["x-encrypted-param"]
    got = requests.get(f"{sim.cdn_url}/download", params={"encrypted_query_param": download}, timeout=5).content
    assert crypto.decrypt(got, key) == plain
    # A used upload address, or a body that does not match what was announced, is refused.
    again = requests.post(f"{sim.cdn_url}/upload", params={"encrypted_query_param": param, "filekey": "fk"},
                          data=blob, timeout=5)
    assert again.status_code == 400 and again.headers["x-error-message"]
    media = {"encrypt_query_param": download, "aes_key": base64.b64encode(key.hex().encode()).decode()}
    assert sim.media_of(media) == plain


def test_injected_answers_and_malformed_updates_come_out_as_they_are(sim):
    token = logged_in(sim)
    sim.inject_updates_answer(b"<html>")
    r = requests.post(f"{sim.api_url}/ilink/bot/getupdates", json={"base_info": {}}, timeout=5,
                      headers={"AuthorizationType": "ilink_bot_token", "Authorization": f"Bearer {token}"})
    assert r.content == b"<html>"
    sim.push("garbage")
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)["msgs"] == ["garbage"]
    assert json.loads(json.dumps(sim.push_image("u", b"img", broken=True)))  # a broken file is stored too


# ---------------------------------------------------------------------- the product's QR login
@pytest.fixture
def login(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # tmp/login.png lands here

    def run(script, read_code=lambda: "", refreshes=3, previous=None):
        threading.Thread(target=script, daemon=True).start()
        client = IlinkClient(sim.entry_url, sim.cdn_url)
        return QrLogin(client, wait=1, timeout=15, refreshes=refreshes, read_code=read_code,
                       previous=previous).run()

    return run


def test_login_with_a_verification_code_typed_in_the_terminal(sim, login, tmp_path):
    def script():
        qr = sim.wait_qr()
        sim.set_status(qr, "need_verifycode", code="4321")
        while sim.qrs[-1].status != "scaned":
            threading.Event().wait(0.02)
        sim.confirm(qr)

    creds = login(script, read_code=lambda: "4321")
    assert creds is not None and creds.base_url == sim.api_url and creds.user_id == sim.owner
    assert (tmp_path / "tmp" / "login.png").read_bytes()[:4] == b"\x89PNG"


def test_a_blocked_verification_or_an_expired_qr_brings_a_new_qr(sim, login):
    def script():
        first = sim.wait_qr()
        sim.set_status(first, "need_verifycode", code="1111")
        second = sim.wait_qr(after=1)  # the wrong code blocked the first QR
        sim.set_status(second, "expired")
        third = sim.wait_qr(after=2)
        sim.confirm(third)

    creds = login(script, read_code=lambda: "9999")
    assert creds is not None and len(sim.qrs) == 3


def test_a_redirect_moves_the_status_poll_to_the_named_host(sim, login):
    def script():
        qr = sim.wait_qr()
        sim.set_status(qr, "scaned_but_redirect", redirect_host=sim.base_url + "/moved")
        while ("/moved", "get_qrcode_status") not in sim.calls:
            threading.Event().wait(0.02)
        sim.confirm(qr)

    assert login(script) is not None
    assert sim.calls[-1] == ("/moved", "get_qrcode_status")


def test_an_already_bound_bot_goes_on_with_the_token_offered(sim, login):
    # Reference §1.3: the QR is asked for with local_token_list; `binded_redirect` carries no
    # token, so the client goes on with the one it offered.
    old = logged_in(sim)
    sim.expire_token()
    previous = Credentials(old, sim.api_url, sim.bot_id, sim.owner)

    def script():
        qr = sim.wait_qr(after=1)
        assert sim.local_tokens(qr) == [old]
        sim.set_status(qr, "binded_redirect")

    creds = login(script, previous=previous)
    assert creds is previous
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, old)["ret"] == 0  # valid again


def test_binded_redirect_without_an_earlier_login_brings_a_new_qr(sim, login):
    def script():
        sim.set_status(sim.wait_qr(), "binded_redirect")
        sim.confirm(sim.wait_qr(after=1))

    creds = login(script)
    assert creds is not None and len(sim.qrs) == 2 and sim.local_tokens(sim.qrs[0].qrcode) == []


def test_a_media_address_off_the_cdn_host_is_not_fetched(sim):
    media, key = sim.store_media(b"picture bytes")
    client = IlinkClient(sim.api_url, sim.cdn_url)
    # An update naming another host (here one nothing listens on) is read from the CDN instead.
    data = client.download({**media, "full_url": "http://127.0.0.2:9/steal"}, 1 << 20)
    assert crypto.decrypt(data, key) == b"picture bytes"
    with pytest.raises(IlinkError) as raised:
        client.download({"full_url": "http://127.0.0.2:9/steal"}, 1 << 20)
    assert "no address" in str(raised.value)


def test_a_cursor_belongs_to_its_bot(sim):
    first = logged_in(sim)
    cursor = bot_call(sim, "getupdates", {"get_updates_buf": ""}, first)["get_updates_buf"]
    sim.bot_id = "other@im.bot"
    second = logged_in(sim)
    assert bot_call(sim, "getupdates", {"get_updates_buf": cursor}, second)["ret"] == -1
    assert bot_call(sim, "getupdates", {"get_updates_buf": ""}, second)["ret"] == 0


def test_no_confirmation_after_every_refresh_gives_up(sim, login):
    def script():
        for n in range(3):
            sim.set_status(sim.wait_qr(after=n), "expired")

    assert login(script, refreshes=2) is None and len(sim.qrs) == 3


# ---------------------------------------------------------------------- the product's sends
def test_a_reply_file_that_cannot_be_read_is_not_sent_as_its_local_path(sim, settings, tmp_path):
    from bridge.context import Context, ContextType
    from bridge.reply import Reply, ReplyType
    from channel.wechat.wx_channel import READ_FAILED_TEXT, WxChannel
    from channel.wechat.wx_message import WxMessage, parts_of

    token = logged_in(sim)
    msg = sim.push_text("u@im.wechat", "send me the file")
    bot_call(sim, "getupdates", {"get_updates_buf": ""}, token)  # delivered: its context_token is the newest
    channel = WxChannel()
    try:
        channel.creds = Credentials(token, sim.api_url, sim.bot_id, sim.owner)
        channel.client = IlinkClient(sim.api_url, sim.cdn_url, token)
        channel._logged_in.set()
        cmsg = WxMessage(msg, parts_of(msg)[0], sim.bot_id, first=True)
        context = Context(ContextType.TEXT, "send me the file", {"receiver": "u@im.wechat", "msg": cmsg})
        missing = str(tmp_path / "gone" / "secret-report.pdf")
        channel.send(Reply(ReplyType.FILE, missing), context)
        channel.send(Reply(ReplyType.IMAGE_URL, "http://127.0.0.2:9/chart.png"), context)
    finally:
        channel.stop()
    texts = sim.texts_to("u@im.wechat")
    assert texts[0] == READ_FAILED_TEXT and missing not in texts[0]  # a path on this machine means nothing there
    assert texts[1] == "http://127.0.0.2:9/chart.png"  # a link the user can still open
    assert not sim.errors, sim.errors
