"""Self-tests of the WeChat OA / WeCom platform simulator (tests/fakes/wechat_platform).

The API server is driven over real HTTP with httpx, never through its internals. The callback
sender is run against tiny daemons written here on wechatpy (an implementation independent of the
sender's own crypto), so a mistake in either side's AES or signatures shows up as a failure, and
against deliberately slow servers to prove the 5-second cut and the re-deliveries.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto as OaCrypto
from wechatpy.enterprise import parse_message as parse_wecom_message
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from tests.e2e.daemon import free_port
from tests.fakes.clock import FakeClock
from tests.fakes.wechat_platform import (
    SERVICE_UNAVAILABLE,
    OfficialAccountSender,
    WeChatPlatformSimulator,
    WeComSender,
    errors as E,
    hostile,
    random_aes_key,
)
from tests.fakes.wechat_platform.media import AMR_MAGIC

APPID, APPSECRET = "wx0123456789abcdef", "oa-secret"
CORP, APP_SECRET, KF_SECRET, AGENT = "ww0123456789abcdef", "app-secret", "kf-secret", 1000002
KFID = "wkAAAAAA"
TOKEN = "callbacktoken"
GH = "gh_0123456789ab"
DAY = 24 * 3600.0


# ================================================================================ API client
class Api:
    """A bare HTTP client of the simulator, as a channel would talk to it."""

    def __init__(self, sim: WeChatPlatformSimulator) -> None:
        self.base = sim.api_base
        self.http = httpx.Client(timeout=5.0)

    def get(self, api: str, **params) -> httpx.Response:
        return self.http.get(self.base + api, params=params)

    def post(self, api: str, body=None, *, content: bytes | None = None, files=None, **params) -> httpx.Response:
        if content is not None:
            return self.http.post(self.base + api, params=params, content=content)
        if files is not None:
            return self.http.post(self.base + api, params=params, files=files)
        return self.http.post(self.base + api, params=params, json=body)

    def oa_token(self) -> str:
        return self.get("token", grant_type="client_credential", appid=APPID, secret=APPSECRET).json()["access_token"]

    def wecom_token(self, secret: str = APP_SECRET) -> str:
        return self.get("gettoken", corpid=CORP, corpsecret=secret).json()["access_token"]

    def custom_text(self, token: str, user: str, content: str) -> dict:
        return self.post("message/custom/send", {"touser": user, "msgtype": "text", "text": {"content": content}},
                         access_token=token).json()

    def upload(self, token: str, kind: str, filename: str, data: bytes) -> dict:
        return self.post("media/upload", files={"media": (filename, data)}, access_token=token, type=kind).json()


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def sim(clock):
    with WeChatPlatformSimulator(oa_apps={APPID: APPSECRET}, wecom_apps={CORP: {APP_SECRET: AGENT, KF_SECRET: 3010040}},
                                 kf_accounts={CORP: [KFID]}, clock=clock) as s:
        yield s


@pytest.fixture
def api(sim):
    client = Api(sim)
    yield client
    client.http.close()


def amr(seconds: float) -> bytes:
    frames = int(round(seconds / 0.02))
    return AMR_MAGIC + (bytes([7 << 3]) + b"\x00" * 31) * frames  # mode 7: 32 bytes a frame


# ================================================================================ tokens
def test_oa_token_errors_then_a_token_that_expires(api, clock):
    assert api.get("token", grant_type="password", appid=APPID, secret=APPSECRET).json()["errcode"] == E.INVALID_GRANT_TYPE
    assert api.get("token", grant_type="client_credential", secret=APPSECRET).json()["errcode"] == E.MISSING_APPID
    assert api.get("token", grant_type="client_credential", appid="wxnope", secret="x").json()["errcode"] == E.INVALID_APPID
    assert api.get("token", grant_type="client_credential", appid=APPID, secret="bad").json()["errcode"] == E.INVALID_CREDENTIAL
    assert api.post("token", grant_type="client_credential", appid=APPID, secret=APPSECRET).json()["errcode"] == E.REQUIRE_GET

    answer = api.get("token", grant_type="client_credential", appid=APPID, secret=APPSECRET).json()
    assert set(answer) == {"access_token", "expires_in"} and answer["expires_in"] == 7200  # OA: no errcode on success
    token = answer["access_token"]
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == 0
    clock.advance(7199)
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == 0
    clock.advance(1)
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == E.TOKEN_EXPIRED
    assert api.post("clear_quota", {"appid": APPID}, access_token="never-issued").json()["errcode"] == E.INVALID_TOKEN
    assert api.post("clear_quota", {"appid": APPID}).json()["errcode"] == E.MISSING_TOKEN


def test_a_new_token_makes_the_old_one_stale(api):
    old = api.oa_token()
    new = api.oa_token()
    assert old != new
    assert api.post("clear_quota", {"appid": APPID}, access_token=old).json()["errcode"] == E.INVALID_CREDENTIAL
    assert api.post("clear_quota", {"appid": APPID}, access_token=new).json()["errcode"] == 0


def test_stable_token_reuses_the_live_token_unless_forced(api):
    body = {"grant_type": "client_credential", "appid": APPID, "secret": APPSECRET}
    first = api.post("stable_token", body).json()["access_token"]
    assert api.post("stable_token", body).json()["access_token"] == first
    forced = api.post("stable_token", {**body, "force_refresh": True}).json()["access_token"]
    assert forced != first
    assert api.post("clear_quota", {"appid": APPID}, access_token=first).json()["errcode"] == E.INVALID_CREDENTIAL


def test_wecom_tokens_are_per_app_and_per_platform(api):
    assert api.get("gettoken", corpid="wwnope", corpsecret=APP_SECRET).json()["errcode"] == E.INVALID_APPID
    assert api.get("gettoken", corpid=CORP, corpsecret="bad").json()["errcode"] == E.INVALID_CREDENTIAL
    assert api.get("gettoken", corpid=CORP).json()["errcode"] == E.MISSING_SECRET
    answer = api.get("gettoken", corpid=CORP, corpsecret=APP_SECRET).json()
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok" and answer["expires_in"] == 7200
    app_token = answer["access_token"]
    kf_token = api.wecom_token(KF_SECRET)  # another app of the same corp: does not replace the first
    send = {"touser": "u1", "msgtype": "text", "agentid": AGENT, "text": {"content": "hi"}, "safe": 0}
    assert api.post("message/send", send, access_token=app_token).json()["errcode"] == 0
    # The kf app's token is for another agentid; an OA token is unknown on the WeCom host and vice versa.
    assert api.post("message/send", send, access_token=kf_token).json()["errcode"] == E.INVALID_AGENTID
    assert api.post("message/send", send, access_token=api.oa_token()).json()["errcode"] == E.INVALID_TOKEN
    oa_send = {"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}
    assert api.post("message/custom/send", oa_send, access_token=app_token).json()["errcode"] == E.INVALID_TOKEN


def test_expire_and_revoke_hold_until_a_new_token_is_fetched(sim, api):
    token = api.oa_token()
    assert sim.expire_tokens(APPID) == 1
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == E.TOKEN_EXPIRED
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == E.TOKEN_EXPIRED
    token = api.oa_token()
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == 0
    sim.revoke_tokens()
    assert api.post("clear_quota", {"appid": APPID}, access_token=token).json()["errcode"] == E.INVALID_CREDENTIAL
    assert api.post("clear_quota", {"appid": APPID}, access_token=api.oa_token()).json()["errcode"] == 0


# ================================================================================ injection, recording
def test_injected_errcodes_are_used_in_order_then_the_api_works_again(sim, api):
    token = api.oa_token()
    sim.touch(APPID, "o1")
    sim.fail_next("message/custom/send", E.QUOTA_REACHED, count=2)
    sim.fail_next("message/custom/send", E.INVALID_CREDENTIAL)
    codes = [api.custom_text(token, "o1", f"m{i}")["errcode"] for i in range(4)]
    assert codes == [E.QUOTA_REACHED, E.QUOTA_REACHED, E.INVALID_CREDENTIAL, 0]
    # An injected 40001 says the token is stale but does not make it so; nothing refused was shown.
    assert sim.texts("o1") == ["m3"]
    calls = sim.calls("message/custom/send")
    assert [c.injected for c in calls] == [True, True, True, False]
    assert [c.errcode for c in calls] == codes
    assert calls[0].body["text"]["content"] == "m0"
    assert api.custom_text(token, "o1", "m4")["errcode"] == 0  # the queue is empty


def test_injected_http_errors_drops_and_delays(sim, api):
    token = api.oa_token()
    sim.touch(APPID, "o1")
    sim.inject("message/custom/send", status=502)
    r = api.post("message/custom/send", {"touser": "o1", "msgtype": "text", "text": {"content": "x"}}, access_token=token)
    assert r.status_code == 502
    sim.inject("*", drop=True)
    with pytest.raises(httpx.TransportError):
        api.get("token", grant_type="client_credential", appid=APPID, secret=APPSECRET)
    sim.inject("message/custom/send", delay=0.4)
    started = time.monotonic()
    assert api.custom_text(token, "o1", "late")["errcode"] == 0  # a slow answer, otherwise normal
    assert time.monotonic() - started >= 0.4
    sim.inject("message/custom/send", delay=0.3, errcode=E.SYSTEM_BUSY)
    assert api.custom_text(token, "o1", "busy")["errcode"] == E.SYSTEM_BUSY
    assert sim.texts("o1") == ["late"]
    assert [c.status for c in sim.calls() if c.injected] == [502, 0, 200]


def test_daily_quota_and_clear_quota_v2(sim, api):
    sim.daily_quota = 2
    token = api.oa_token()
    sim.touch(APPID, "o1")
    assert [api.custom_text(token, "o1", "q")["errcode"] for _ in range(3)] == [0, 0, E.QUOTA_REACHED]
    assert api.post("clear_quota/v2", content=b"", appid=APPID, appsecret="wrong").json()["errcode"] == E.INVALID_CREDENTIAL
    # DoW posts appid and appsecret as a form body.
    r = api.http.post(api.base + "clear_quota/v2", data={"appid": APPID, "appsecret": APPSECRET})
    assert r.json()["errcode"] == 0
    assert api.custom_text(token, "o1", "again")["errcode"] == 0


def test_shown_keeps_each_users_messages_in_order(sim, api):
    token = api.oa_token()
    for user in ("o1", "o2"):
        sim.touch(APPID, user)
    for i in range(3):
        for user in ("o1", "o2"):
            assert api.custom_text(token, user, f"{user}-{i}")["errcode"] == 0
    assert sim.texts("o1") == ["o1-0", "o1-1", "o1-2"]
    assert sim.texts("o2") == ["o2-0", "o2-1", "o2-2"]
    assert [s.via for s in sim.shown()] == ["custom/send"] * 6
    assert sim.wait_shown("o2", 3, timeout=0.1)[-1].account == APPID


# ================================================================================ OA custom send
def test_custom_send_window_and_text_limits(sim, api, clock):
    token = api.oa_token()
    assert api.custom_text(token, "o1", "hi")["errcode"] == E.OUT_OF_WINDOW  # never wrote
    sim.touch(APPID, "o1")
    exactly = "中" * 682 + "ab"  # 2046 + 2 = 2048 UTF-8 bytes
    assert api.custom_text(token, "o1", exactly)["errcode"] == 0
    assert api.custom_text(token, "o1", exactly + "c")["errcode"] == E.CONTENT_TOO_LONG
    assert api.custom_text(token, "o1", "")["errcode"] == E.EMPTY_CONTENT
    assert api.post("message/custom/send", content=b"not json", access_token=token).json()["errcode"] == E.DATA_FORMAT_ERROR
    assert api.post("message/custom/send", {"touser": "o1", "msgtype": "hologram", "hologram": {}},
                    access_token=token).json()["errcode"] == E.INVALID_MSGTYPE
    assert api.get("message/custom/send", access_token=token).json()["errcode"] == E.REQUIRE_POST
    clock.advance(48 * 3600 + 1)
    token = api.oa_token()  # the old one expired long ago
    assert api.custom_text(token, "o1", "late")["errcode"] == E.OUT_OF_WINDOW
    assert sim.texts("o1") == [exactly]


def test_custom_send_media_must_exist_and_match(sim, api):
    token = api.oa_token()
    sim.touch(APPID, "o1")
    image = api.upload(token, "image", "cat.png", b"\x89PNG fake")["media_id"]
    voice = api.upload(token, "voice", "hi.amr", amr(1.0))["media_id"]

    def send(msgtype, media_id):
        return api.post("message/custom/send", {"touser": "o1", "msgtype": msgtype, msgtype: {"media_id": media_id}},
                        access_token=token).json()["errcode"]

    assert send("image", "no-such-id") == E.INVALID_MEDIA_ID
    assert send("image", voice) == E.INVALID_MEDIA_ID
    assert send("image", image) == 0
    assert send("voice", voice) == 0
    shown = sim.shown("o1")
    assert [(s.msgtype, s.media) for s in shown] == [("image", b"\x89PNG fake"), ("voice", amr(1.0))]


def test_uncertified_account_has_no_active_apis_but_has_material(sim, api):
    sim.oa_uncertified.add(APPID)
    token = api.oa_token()
    sim.touch(APPID, "o1")
    assert api.custom_text(token, "o1", "hi")["errcode"] == E.API_UNAUTHORIZED
    assert api.upload(token, "image", "a.png", b"pngdata")["errcode"] == E.API_UNAUTHORIZED
    added = api.post("material/add_material", files={"media": ("a.png", b"pngdata")}, access_token=token, type="image").json()
    assert "errcode" not in added and added["url"].endswith(added["media_id"])
    assert api.post("material/get_material", {"media_id": added["media_id"]}, access_token=token).content == b"pngdata"
    # media/get is for temporary media only.
    assert api.get("media/get", access_token=token, media_id=added["media_id"]).json()["errcode"] == E.INVALID_MEDIA_ID
    assert api.post("material/del_material", {"media_id": added["media_id"]}, access_token=token).json()["errcode"] == 0
    assert api.post("material/get_material", {"media_id": added["media_id"]},
                    access_token=token).json()["errcode"] == E.INVALID_MEDIA_ID
    assert sim.media(added["media_id"]).deleted


# ================================================================================ media
def test_media_upload_limits(api):
    oa = api.oa_token()
    assert api.upload(oa, "thumb", "t.jpg", b"j" * (64 * 1024))["type"] == "thumb"
    assert api.upload(oa, "thumb", "t.jpg", b"j" * (64 * 1024 + 1))["errcode"] == E.INVALID_THUMB_SIZE
    assert api.upload(oa, "voice", "v.amr", amr(60.0))["type"] == "voice"
    assert api.upload(oa, "voice", "v.amr", amr(60.02))["errcode"] == E.INVALID_VOICE_SIZE
    assert api.upload(oa, "voice", "v.mp3", b"m" * (2 * E.MB + 1))["errcode"] == E.INVALID_VOICE_SIZE
    assert api.upload(oa, "image", "notes.txt", b"text")["errcode"] == E.INVALID_FILE_TYPE
    assert api.upload(oa, "file", "a.pdf", b"%PDF-1.4")["errcode"] == E.INVALID_MEDIA_TYPE  # OA has no "file"
    assert api.upload(oa, "image", "a.png", b"")["errcode"] == E.INVALID_FILE_SIZE
    missing = api.post("media/upload", files={"file": ("a.png", b"png")}, access_token=oa, type="image").json()
    assert missing["errcode"] == E.MISSING_MEDIA
    wecom = api.wecom_token()
    answer = api.upload(wecom, "file", "report.pdf", b"%PDF-1.4 ...")
    assert answer["errcode"] == 0 and isinstance(answer["created_at"], str)
    assert api.upload(wecom, "file", "tiny.txt", b"12345")["errcode"] == E.INVALID_FILE_SIZE  # must exceed 5 bytes
    assert api.upload(wecom, "voice", "v.mp3", amr(1.0))["errcode"] == E.INVALID_FILE_TYPE  # WeCom voice is AMR only
    assert api.upload(wecom, "voice", "v.amr", amr(61.0))["errcode"] == E.INVALID_FILE_SIZE


def test_media_get_serves_bytes_for_three_days_to_the_owner_only(sim, api, clock):
    oa, wecom = api.oa_token(), api.wecom_token()
    media_id = api.upload(oa, "image", "猫.png", b"\x89PNG cat")["media_id"]
    r = api.get("media/get", access_token=oa, media_id=media_id)
    assert r.status_code == 200 and r.content == b"\x89PNG cat" and r.headers["content-type"] == "image/png"
    assert "UTF-8''%E7%8C%AB.png" in r.headers["content-disposition"]
    assert api.get("media/get", access_token=wecom, media_id=media_id).json()["errcode"] == E.INVALID_MEDIA_ID
    user_sent = sim.add_media(CORP, "voice", amr(2.0), "in.amr")  # a member's voice message
    assert api.get("media/get", access_token=wecom, media_id=user_sent).content == amr(2.0)
    clock.advance(3 * DAY + 1)
    oa = api.oa_token()
    assert api.get("media/get", access_token=oa, media_id=media_id).json()["errcode"] == E.INVALID_MEDIA_ID
    assert [c.errcode for c in sim.calls("media/get")][-1] == E.INVALID_MEDIA_ID


# ================================================================================ WeCom message/send
def test_wecom_message_send_truncates_and_addresses(sim, api):
    token = api.wecom_token()

    def send(**body):
        base = {"touser": "u1", "msgtype": "text", "agentid": AGENT, "text": {"content": "hi"}}
        base.update(body)
        return api.post("message/send", base, access_token=token).json()

    assert api.post("message/send", {"touser": "u1", "msgtype": "text", "text": {"content": "x"}},
                    access_token=token).json()["errcode"] == E.MISSING_AGENTID
    assert send(agentid=str(AGENT))["errcode"] == 0  # a numeric string is accepted too
    long = "中" * 1000  # 3000 bytes
    answer = send(text={"content": long})
    assert answer["errcode"] == 0 and set(answer) >= {"invaliduser", "msgid"}
    shown = sim.shown("u1")[-1]
    assert shown.truncated and shown.text == "中" * 682 and len(shown.text.encode()) <= 2048
    assert "truncated" in sim.calls("message/send")[-1].note
    assert send(text={"content": ""})["errcode"] == E.EMPTY_CONTENT
    assert send(touser="u2|u3")["errcode"] == 0
    assert sim.texts("u2") == ["hi"] and sim.texts("u3") == ["hi"]

    sim.wecom_members = {CORP: {"u1"}}
    answer = send(touser="u1|ghost")
    assert answer["errcode"] == 0 and answer["invaliduser"] == "ghost"
    assert send(touser="ghost")["errcode"] == E.NO_VALID_RECIPIENT


def test_wecom_rate_limit_drops_silently(sim, api, clock):
    token = api.wecom_token()
    sim.member_limits = [(3, 60.0)]
    body = {"touser": "u1", "msgtype": "text", "agentid": AGENT}
    codes = [api.post("message/send", {**body, "text": {"content": f"n{i}"}}, access_token=token).json()["errcode"]
             for i in range(4)]
    assert codes == [0, 0, 0, 0]  # the platform does not say
    assert sim.texts("u1") == ["n0", "n1", "n2"]
    assert "dropped by rate limit" in sim.calls("message/send")[-1].note
    clock.advance(60)
    api.post("message/send", {**body, "text": {"content": "later"}}, access_token=token)
    assert sim.texts("u1")[-1] == "later"


# ================================================================================ customer service
def _sync(api, access_token, **body):
    return api.post("kf/sync_msg", {"open_kfid": KFID, **body}, access_token=access_token).json()


def test_kf_sync_pages_with_cursor_and_has_more(sim, api):
    token = api.wecom_token(KF_SECRET)
    pushed = [sim.kf_message(CORP, KFID, "wmCUSTOMER", f"q{i}") for i in range(4)]
    pushed.append(sim.kf_message(CORP, KFID, "wmCUSTOMER", "typing in WeCom", origin=5, servicer_userid="zhangsan"))
    pushed.append(sim.kf_event(CORP, KFID, "enter_session", "wmCUSTOMER", welcome_code="WC1", scene="s"))
    seen, has_more, cursor, pages = [], 1, None, 0
    while has_more:
        body = {"limit": 2, "token": sim.kf_sync_token(CORP, KFID)}
        if cursor:
            body["cursor"] = cursor
        answer = _sync(api, token, **body)
        assert answer["errcode"] == 0
        seen += answer["msg_list"]
        has_more, cursor = answer["has_more"], answer["next_cursor"]
        pages += 1
    assert pages == 3 and [m["msgid"] for m in seen] == [p["msgid"] for p in pushed]
    assert [m["origin"] for m in seen] == [3, 3, 3, 3, 5, 4]
    assert seen[0]["text"] == {"content": "q0"} and seen[0]["external_userid"] == "wmCUSTOMER"
    assert seen[4]["servicer_userid"] == "zhangsan"
    event = seen[5]
    assert "external_userid" not in event and "open_kfid" not in event  # ids live inside `event`
    assert event["event"]["event_type"] == "enter_session" and event["event"]["welcome_code"] == "WC1"
    # The last cursor is stable: nothing new, same cursor; a new message comes alone.
    again = _sync(api, token, cursor=cursor)
    assert again["msg_list"] == [] and again["has_more"] == 0 and again["next_cursor"] == cursor
    later = sim.kf_message(CORP, KFID, "wmCUSTOMER", "one more")
    assert [m["msgid"] for m in _sync(api, token, cursor=cursor)["msg_list"]] == [later["msgid"]]
    # Without a cursor: everything of the last 3 days, and send_msg replies are never in it.
    api.post("kf/send_msg", {"touser": "wmCUSTOMER", "open_kfid": KFID, "msgtype": "text", "text": {"content": "a"}},
             access_token=token)
    assert len(_sync(api, token)["msg_list"]) == 7
    assert sim.calls("kf/sync_msg")[-1].note == "no sync token"


def test_kf_sync_refusals(sim, api, clock):
    token = api.wecom_token(KF_SECRET)
    sim.kf_message(CORP, KFID, "wmC", "old", send_time=clock() - 3 * DAY - 1)
    fresh = sim.kf_message(CORP, KFID, "wmC", "fresh")
    assert [m["msgid"] for m in _sync(api, token)["msg_list"]] == [fresh["msgid"]]  # 3-day window
    sync_token = sim.kf_sync_token(CORP, KFID)
    assert _sync(api, token, token=sync_token)["errcode"] == 0
    sim.kf_account(CORP, "wkOTHER")
    assert api.post("kf/sync_msg", {"open_kfid": "wkOTHER", "token": sync_token},
                    access_token=token).json()["errcode"] == E.KF_INVALID_SYNC_TOKEN
    clock.advance(601)
    assert _sync(api, token, token=sync_token)["errcode"] == E.KF_INVALID_SYNC_TOKEN
    assert _sync(api, token, cursor="forged")["errcode"] == E.INVALID_PARAMETER
    assert _sync(api, token, limit=1001)["errcode"] == E.INVALID_PARAMETER
    assert api.post("kf/sync_msg", {"open_kfid": "wkNOPE"}, access_token=token).json()["errcode"] == E.KF_OPEN_KFID_NOT_FOUND
    assert api.post("kf/sync_msg", {"open_kfid": "bad"}, access_token=token).json()["errcode"] == E.KF_INVALID_OPEN_KFID


def test_kf_send_budget_48h_and_5_replies(sim, api, clock):
    token = api.wecom_token(KF_SECRET)

    def reply(user, content="ok"):
        return api.post("kf/send_msg", {"touser": user, "open_kfid": KFID, "msgtype": "text", "text": {"content": content}},
                        access_token=token).json()

    assert reply("wmNEW")["errcode"] == E.KF_NO_CUSTOMER_MESSAGE
    sim.kf_message(CORP, KFID, "wmC", "hello")
    assert reply("wmC", "x" * 2049)["errcode"] == E.CONTENT_TOO_LONG  # refused, and costs nothing
    answers = [reply("wmC", f"r{i}") for i in range(6)]
    assert [a["errcode"] for a in answers] == [0] * 5 + [E.KF_COUNT_LIMIT]
    assert answers[0]["msgid"]
    assert sim.texts("wmC") == [f"r{i}" for i in range(5)]
    assert sim.shown("wmC")[0].account == f"{CORP}/{KFID}"
    sim.kf_message(CORP, KFID, "wmC", "again")  # a new customer message opens a new budget
    assert reply("wmC")["errcode"] == 0
    clock.advance(48 * 3600 + 1)
    token = api.wecom_token(KF_SECRET)
    assert reply("wmC")["errcode"] == E.KF_TIME_LIMIT
    assert api.post("kf/send_msg", {"touser": "wmC", "open_kfid": "wkNOPE", "msgtype": "text", "text": {"content": "a"}},
                    access_token=token).json()["errcode"] == E.KF_OPEN_KFID_NOT_FOUND


# ================================================================================ fake daemons
class Daemon:
    """A tiny callback server. `behave(request)` returns (status, body, delay): the handler waits
    `delay` seconds first, watching for the client to hang up (then it records when and answers
    nothing), or trickles the body with `trickle` seconds between bytes."""

    def __init__(self, behave: Callable[[dict], tuple], trickle: float = 0.0) -> None:
        self.behave = behave
        self.trickle = trickle
        self.requests: list[dict] = []
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_one()

            def do_POST(self) -> None:
                self.handle_one()

            def handle_one(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                record = {"method": self.command, "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                          "arrived": time.monotonic(), "closed_after": None, "length": length}
                if length > 1024 * 1024:  # refuse big bodies unread, as a well-behaved daemon would
                    daemon.requests.append(record)
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                record["body"] = self.rfile.read(length)
                daemon.requests.append(record)
                try:
                    status, body, delay = daemon.behave(record)
                except Exception as exc:  # noqa: BLE001 - a test's answer function failed: say so
                    record["error"] = repr(exc)
                    status, body, delay = 500, repr(exc).encode(), 0
                if delay:
                    closed = _wait_for_hangup(self.connection, delay)
                    if closed is not None:
                        record["closed_after"] = closed - record["arrived"]
                        self.close_connection = True
                        return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if daemon.trickle:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(daemon.trickle)
                else:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/wx"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait_for_hangup(sock: socket.socket, delay: float) -> Optional[float]:
    """When the peer closed the connection within `delay` seconds, else None."""
    end = time.monotonic() + delay
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], min(left, 0.02))
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return time.monotonic()
            except OSError:
                return time.monotonic()
    return None


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def make(behave, trickle: float = 0.0) -> Daemon:
        d = Daemon(behave, trickle)
        started.append(d)
        return d

    yield make
    for d in started:
        d.close()


def oa_daemon_behaviour(aes_key: Optional[str], answer: Callable, appid: str = APPID):
    """A correct OA daemon on wechatpy: checks `signature`, decrypts in safe mode, answers
    `answer(msg, record)` (a wechatpy reply, a string, or None for "success"), encrypted back."""
    crypto = OaCrypto(TOKEN, aes_key, appid) if aes_key else None

    def behave(record):
        q = record["query"]
        try:
            check_signature(TOKEN, q.get("signature", ""), q["timestamp"], q["nonce"])
        except InvalidSignatureException:
            return 403, b"forbidden", 0
        if record["method"] == "GET":
            return 200, q["echostr"].encode(), 0
        if q.get("encrypt_type") == "aes":
            try:
                plain = crypto.decrypt_message(record["body"], q["msg_signature"], q["timestamp"], q["nonce"])
            except Exception:  # noqa: BLE001 - any failure is a refusal for this daemon
                return 403, b"forbidden", 0
        else:
            plain = record["body"].decode()
        record["plain"] = plain
        msg = parse_message(plain)
        record["msg"] = msg
        out = answer(msg, record)
        if out is None:
            return 200, b"success", 0
        if isinstance(out, tuple):  # (status, raw body, delay) straight through
            return out
        xml = out.render() if hasattr(out, "render") else out
        if crypto is not None:
            xml = crypto.encrypt_message(xml, q["nonce"], q["timestamp"])
        return 200, xml.encode(), 0

    return behave


def wecom_daemon_behaviour(answer: Callable = lambda msg, record: None, corp_id: str = CORP):
    crypto = WeComCrypto(TOKEN, AES, corp_id)

    def behave(record):
        q = record["query"]
        try:
            if record["method"] == "GET":
                return 200, crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]).encode(), 0
            plain = crypto.decrypt_message(record["body"], q["msg_signature"], q["timestamp"], q["nonce"])
        except Exception:  # noqa: BLE001 - signature or corp id mismatch
            return 403, b"forbidden", 0
        record["plain"] = plain
        out = answer(parse_message(plain), record)
        if out is None:
            return 200, b"success", 0
        xml = out.render() if hasattr(out, "render") else out
        return 200, crypto.encrypt_message(xml, q["nonce"], q["timestamp"]).encode(), 0

    return behave


AES = random_aes_key()


# ================================================================================ OA sender
def test_oa_plain_mode_round_trip_and_platform_link(daemons, sim, api):
    d = daemons(oa_daemon_behaviour(None, lambda msg, r: create_reply(f"echo: {msg.content}", msg)))
    oa = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH, platform=sim)
    assert oa.timeout == 5.0 and oa.deliveries == 3  # the platform's numbers by default
    ex = oa.text("o1", "你好")
    assert ex.shown == "echo: 你好" and ex.answered_on == 1 and len(ex.deliveries) == 1
    assert d.requests[0]["query"]["openid"] == "o1" and "encrypt_type" not in d.requests[0]["query"]
    assert d.requests[0]["msg"].id == ex.message.msg_id and ex.message.msg_id > 2**32
    # The user wrote, so the 48 h window is open on the API side; the passive reply is on record.
    assert api.custom_text(api.oa_token(), "o1", "active")["errcode"] == 0
    assert sim.texts("o1") == ["echo: 你好", "active"] and sim.shown("o1")[0].via == "passive"
    assert oa.verify().ok
    forged = oa.verify(forge=True)
    assert forged.status == 403 and not forged.ok
    assert oa.forged_signature("o1").status == 403


@pytest.mark.parametrize("kind", ["text", "voice_recognised", "voice_bare", "image", "video", "subscribe", "scan"])
def test_oa_safe_mode_messages_decrypt_with_wechatpy(daemons, kind):
    d = daemons(oa_daemon_behaviour(AES, lambda msg, r: create_reply("got it", msg)))
    oa = OfficialAccountSender(d.url, TOKEN, APPID, AES, original_id=GH)
    ex = {
        "text": lambda: oa.text("o1", "x]]>y"),  # "]]>" must survive the CDATA
        "voice_recognised": lambda: oa.voice("o1", "MEDIA1", recognition="今天天气"),
        "voice_bare": lambda: oa.voice("o1", "MEDIA1"),
        "image": lambda: oa.image("o1", "IMG1", "http://pic/1"),
        "video": lambda: oa.video("o1", "VID1", "THUMB1"),
        "subscribe": lambda: oa.subscribe("o1"),
        "scan": lambda: oa.subscribe("o1", scene="42"),
    }[kind]()
    assert ex.shown == "got it" and ex.final.encrypted_reply is True
    q = d.requests[0]["query"]
    assert q["encrypt_type"] == "aes" and "msg_signature" in q
    assert b"<Content>" not in d.requests[0]["body"]  # safe mode: only ToUserName and Encrypt
    msg = d.requests[0]["msg"]
    assert msg.source == "o1" and msg.target == GH
    if kind == "text":
        assert msg.content == "x]]>y"
    elif kind == "voice_recognised":
        assert (msg.media_id, msg.format, msg.recognition) == ("MEDIA1", "amr", "今天天气")
    elif kind == "voice_bare":
        assert msg.recognition is None and "Recognition" not in d.requests[0]["plain"]
    elif kind == "image":
        assert (msg.media_id, msg.image) == ("IMG1", "http://pic/1")
    elif kind == "video":
        assert (msg.media_id, msg.thumb_media_id) == ("VID1", "THUMB1")
    elif kind == "subscribe":
        assert msg.type == "event" and msg.event == "subscribe" and "<MsgId>" not in d.requests[0]["plain"]
    else:
        assert msg.event == "subscribe_scan" and msg.scene_id == "42"


def test_oa_compat_mode_carries_both_forms(daemons):
    d = daemons(oa_daemon_behaviour(AES, lambda msg, r: create_reply("plain is fine in compat", msg)))
    oa = OfficialAccountSender(d.url, TOKEN, APPID, AES, mode="compat", original_id=GH)
    ex = oa.text("o1", "both")
    body = d.requests[0]["body"]
    assert b"<Content><![CDATA[both]]></Content>" in body and b"<Encrypt>" in body
    assert ex.shown == "plain is fine in compat"


@pytest.mark.parametrize("fault", ["bad_signature", "plaintext_in_safe_mode", "wrong_addressee", "other_appid",
                                   "not_xml", "http_500", "doctype"])
def test_oa_sender_refuses_bad_passive_replies(daemons, fault):
    other = OaCrypto(TOKEN, AES, "wxSOMEONEELSE0000")

    def answer(msg, record):
        q = record["query"]
        reply = create_reply("hi", msg).render()
        if fault == "bad_signature":
            good = OaCrypto(TOKEN, AES, APPID).encrypt_message(reply, q["nonce"], q["timestamp"])
            return 200, good.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0").encode(), 0
        if fault == "plaintext_in_safe_mode":
            return 200, reply.encode(), 0
        if fault == "wrong_addressee":
            return reply.replace("<ToUserName><![CDATA[o1]]>", "<ToUserName><![CDATA[o2]]>")
        if fault == "other_appid":
            return 200, other.encrypt_message(reply, q["nonce"], q["timestamp"]).encode(), 0
        if fault == "not_xml":
            return 200, b'{"reply": "json?"}', 0
        if fault == "http_500":
            return 500, b"boom", 0
        return 200, b'<!DOCTYPE xml [<!ENTITY a "b">]><xml><Content>&a;</Content></xml>', 0

    d = daemons(oa_daemon_behaviour(AES, answer))
    ex = OfficialAccountSender(d.url, TOKEN, APPID, AES, original_id=GH).text("o1", "hello")
    assert len(ex.deliveries) == 1  # an answer, even a bad one, is not retried
    assert ex.final.outcome == "invalid" and ex.problems
    assert ex.shown == SERVICE_UNAVAILABLE and ex.reply is None


def test_success_means_no_reply_and_long_text_is_flagged(daemons):
    replies = iter([None, "长" * 700])
    d = daemons(oa_daemon_behaviour(None, lambda msg, r: (lambda t: t and create_reply(t, msg))(next(replies))))
    oa = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH)
    quiet = oa.text("o1", "a")
    assert quiet.final.outcome == "empty" and quiet.shown is None and len(quiet.deliveries) == 1
    long = oa.text("o1", "b")
    assert long.shown == "长" * 700 and long.final.warnings == ["passive text is 2100 bytes > 2048"]


# ================================================================================ WeCom sender
def test_wecom_callbacks_decrypt_with_wechatpy(daemons, sim):
    d = daemons(wecom_daemon_behaviour(lambda msg, r: create_reply(f"re {getattr(msg, 'content', msg.type)}", msg)))
    wc = WeComSender(d.url, TOKEN, AES, CORP, AGENT, platform=sim)
    assert wc.verify().ok and not wc.verify(forge=True).ok
    assert wc.verify(receiveid="wwSOMEONEELSE").status == 403  # echostr for another corp
    ex = wc.text("zhangsan", "在吗")
    assert ex.shown == "re 在吗" and sim.texts("zhangsan") == ["re 在吗"]
    request = d.requests[-1]
    assert set(request["query"]) == {"msg_signature", "timestamp", "nonce"}
    assert b"<AgentID><![CDATA[1000002]]></AgentID>" in request["body"]
    msg = parse_wecom_message(request["plain"])
    assert (msg.source, msg.target, msg.agent) == ("zhangsan", CORP, AGENT)
    assert wc.wrong_corp_id("zhangsan").status == 403
    assert wc.forged_signature("zhangsan").status == 403
    voice = wc.voice("zhangsan", "VOICE1")
    assert "<Recognition>" not in d.requests[-1]["plain"] and voice.shown == "re voice"


def test_kf_callback_carries_only_a_token_that_sync_msg_accepts(daemons, sim, api):
    d = daemons(wecom_daemon_behaviour())
    wc = WeComSender(d.url, TOKEN, AES, CORP, AGENT, platform=sim)
    item, ex = wc.kf_customer_says(KFID, "wmCUSTOMER", "我要退货")
    assert ex.final.outcome == "empty"
    plain = d.requests[-1]["plain"]
    assert "<FromUserName>" not in plain and "<MsgId>" not in plain
    msg = parse_wecom_message(plain)
    assert msg._data["MsgType"] == "event"
    sync_token = msg._data["Token"]
    assert msg._data["Event"] == "kf_msg_or_event" and msg._data["OpenKfId"] == KFID
    answer = _sync(api, api.wecom_token(KF_SECRET), token=sync_token)
    assert answer["errcode"] == 0 and answer["msg_list"][-1]["msgid"] == item["msgid"]


# ================================================================================ the 5-second rule
def test_cut_at_the_deadline_and_redelivered_with_the_same_msgid(daemons):
    d = daemons(lambda record: (200, b"success", 3.0))  # always far too slow
    oa = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH, timeout=0.3)
    started = time.monotonic()
    ex = oa.text("o1", "slow?")
    assert time.monotonic() - started < 2.0
    assert [dl.outcome for dl in ex.deliveries] == ["dropped"] * 3 and [dl.attempt for dl in ex.deliveries] == [1, 2, 3]
    assert ex.shown == SERVICE_UNAVAILABLE  # WeChat gives up after the third cut
    assert len(d.requests) == 3
    # The daemon really saw the connection go, at the deadline, each time (its handler notices
    # within its 20 ms poll, possibly after the sender has returned: give it a moment).
    deadline = time.monotonic() + 2.0
    while any(r["closed_after"] is None for r in d.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [0.2 <= (r["closed_after"] or 0) <= 1.0 for r in d.requests] == [True] * 3, d.requests
    bodies = [r["body"] for r in d.requests]
    assert len(set(bodies)) == 1 and str(ex.message.msg_id).encode() in bodies[0]  # same MsgId, same CreateTime
    assert len({r["query"]["nonce"] for r in d.requests}) == 3  # fresh signatures per delivery


def test_answer_on_the_third_delivery(daemons):
    attempts = iter([1, 2, 3])
    d = daemons(oa_daemon_behaviour(None, lambda msg, r: (lambda n: create_reply("thinking...", msg) if n == 3
                                                          else (200, b"success", 2.0))(next(attempts))))
    ex = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH, timeout=0.25).text("o1", "hard question")
    assert [dl.outcome for dl in ex.deliveries] == ["dropped", "dropped", "reply"]
    assert ex.answered_on == 3 and ex.shown == "thinking..."


def test_a_trickling_answer_is_cut_too(daemons):
    # Headers at once, then one byte every 50 ms: a per-read timeout would never fire.
    d = daemons(lambda record: (200, b"x" * 40, 0), trickle=0.05)
    ex = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH, timeout=0.3, deliveries=1).text("o1", "hi")
    assert ex.deliveries[0].dropped and 0.25 <= ex.deliveries[0].elapsed < 1.5


def test_refused_connection_is_retried_then_given_up():
    port = free_port()  # nothing listens there, and no other test takes it meanwhile
    oa = OfficialAccountSender(f"http://127.0.0.1:{port}/wx", TOKEN, APPID, timeout=0.5)
    ex = oa.text("o1", "anyone?")
    assert [dl.outcome for dl in ex.deliveries] == ["failed"] * 3 and ex.deliveries[0].error
    assert ex.shown == SERVICE_UNAVAILABLE


# ================================================================================ hostile input
def test_hostile_payloads_reach_the_parser_signed_and_encrypted(daemons):
    d = daemons(lambda record: (200, b"success", 0))
    oa = OfficialAccountSender(d.url, TOKEN, APPID, AES, original_id=GH)
    oa.send_xml(hostile.entity_bomb(GH, "o1"), user="o1")
    crypto = OaCrypto(TOKEN, AES, APPID)
    q = d.requests[-1]["query"]
    plain = crypto.decrypt_message(d.requests[-1]["body"], q["msg_signature"], q["timestamp"], q["nonce"])
    assert "<!ENTITY e9" in plain and plain.count("&e8;") == 10 and "<Content>&e9;</Content>" in plain
    oa.send_xml(hostile.external_entity(GH, "o1", "http://127.0.0.1:9/canary"))
    q = d.requests[-1]["query"]
    plain = crypto.decrypt_message(d.requests[-1]["body"], q["msg_signature"], q["timestamp"], q["nonce"])
    assert 'SYSTEM "http://127.0.0.1:9/canary"' in plain

    raw = oa.post_raw(hostile.NON_XML_BODY)
    assert d.requests[-1]["body"] == hostile.NON_XML_BODY and raw.outcome == "empty"
    check_signature(TOKEN, d.requests[-1]["query"]["signature"], d.requests[-1]["query"]["timestamp"],
                    d.requests[-1]["query"]["nonce"])  # the URL is genuinely signed

    oa.message("o1", "hologram", {"Content": "?"})
    assert "<MsgType><![CDATA[hologram]]></MsgType>" in crypto.decrypt_message(
        d.requests[-1]["body"], d.requests[-1]["query"]["msg_signature"], d.requests[-1]["query"]["timestamp"],
        d.requests[-1]["query"]["nonce"])


def test_ten_megabyte_body_gets_the_daemons_refusal(daemons):
    d = daemons(lambda record: (200, b"success", 0))
    body = hostile.huge_text(GH, "o1").encode()
    assert 10 * 1024 * 1024 - 64 <= len(body) <= 10 * 1024 * 1024
    delivery = OfficialAccountSender(d.url, TOKEN, APPID, original_id=GH, timeout=3.0).post_raw(body)
    # The daemon answered 413 without reading: either the answer arrives or the send is reset.
    assert d.requests[-1]["length"] == len(body)
    assert delivery.status == 413 or delivery.outcome == "failed"
