"""Self-tests of the DingTalk simulator (tests/fakes/dingtalk), driven with plain requests and
websockets as a client would, so the channel's tests rest on a simulator that keeps the protocol."""
from __future__ import annotations

import json

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.fakes.dingtalk import DingTalkSimulator

APP, SECRET = "ding-app", "ding-secret"
SUBS = [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]


@pytest.fixture
def sim():
    with DingTalkSimulator({APP: SECRET}) as simulator:
        yield simulator


def open_ticket(sim, secret=SECRET):
    return requests.post(sim.http_url + "/v1.0/gateway/connections/open", timeout=5,
                         json={"clientId": APP, "clientSecret": secret, "subscriptions": SUBS, "ua": "t", "localIp": ""})


def token(sim):
    r = requests.post(sim.http_url + "/v1.0/oauth2/accessToken", json={"appKey": APP, "appSecret": SECRET}, timeout=5)
    assert r.status_code == 200 and r.json()["expireIn"] == 7200
    return r.json()["accessToken"]


def test_a_ticket_opens_one_connection_which_gets_callbacks_and_records_acks(sim):
    answer = open_ticket(sim).json()
    uri = f"{answer['endpoint']}?ticket={answer['ticket']}"
    with connect(uri) as ws:
        sim.wait_connected(APP)
        pushed = sim.push_text(APP, "alice", "hello")
        frame = json.loads(ws.recv(timeout=5))
        assert frame["type"] == "CALLBACK" and frame["headers"]["topic"] == "/v1.0/im/bot/messages/get"
        data = json.loads(frame["data"])
        assert data["msgId"] == pushed.msg_id and data["text"]["content"] == "hello"
        assert data["sessionWebhookExpiredTime"] > data["createAt"]
        ws.send(json.dumps({"code": 200, "headers": {"messageId": frame["headers"]["messageId"]}, "message": "OK",
                            "data": json.dumps({"response": "OK"})}))
        assert sim.wait_ack(pushed.message_id)["code"] == 200
        ping = sim.ping(APP)
        frame = json.loads(ws.recv(timeout=5))
        assert frame["type"] == "SYSTEM" and frame["headers"]["topic"] == "ping"
        ws.send(json.dumps({"code": 200, "headers": frame["headers"], "message": "OK", "data": frame["data"]}))
        sim.wait(lambda: sim.ping_echoed(ping), 5, "the echo")
    # The ticket is single use.
    with pytest.raises(InvalidStatus):
        connect(uri, open_timeout=5)


def test_wrong_secret_is_refused_at_the_gateway_and_the_token_call(sim):
    assert open_ticket(sim, "wrong").status_code == 401
    r = requests.post(sim.http_url + "/v1.0/oauth2/accessToken", json={"appKey": APP, "appSecret": "x"}, timeout=5)
    assert r.status_code == 400 and r.json()["code"] == "invalidClientIdOrSecret"


def test_webhook_honours_expiry_and_robot_api_needs_a_token(sim):
    live, _ = sim.session_webhook("cid-1")
    dead, _ = sim.session_webhook("cid-1", ttl_ms=-1000)
    body = {"msgtype": "text", "text": {"content": "hi"}, "at": {"atUserIds": ["u1"]}}
    assert requests.post(live, json=body, timeout=5).json()["errcode"] == 0
    assert requests.post(dead, json=body, timeout=5).json()["errcode"] != 0
    send = {"robotCode": APP, "userIds": ["u1"], "msgKey": "sampleText", "msgParam": json.dumps({"content": "x"})}
    assert requests.post(sim.http_url + "/v1.0/robot/oToMessages/batchSend", json=send, timeout=5).status_code == 401
    r = requests.post(sim.http_url + "/v1.0/robot/oToMessages/batchSend", json=send, timeout=5,
                      headers={"x-acs-dingtalk-access-token": token(sim)})
    assert r.status_code == 200 and "processQueryKey" in r.json()
    assert [d["via"] for d in sim.deliveries("cid-1")] == ["webhook"]
    assert sim.texts(sender="u1") == ["x"]


def test_files_uploads_and_cards(sim):
    tok = token(sim)
    headers = {"x-acs-dingtalk-access-token": tok}
    code = sim.add_file(b"PNGDATA")
    url = requests.post(sim.http_url + "/v1.0/robot/messageFiles/download", headers=headers, timeout=5,
                        json={"downloadCode": code, "robotCode": APP}).json()["downloadUrl"]
    assert requests.get(url, timeout=5).content == b"PNGDATA"
    up = requests.post(sim.oapi_url + "/media/upload", params={"access_token": tok, "type": "image"}, timeout=5,
                       files={"media": ("a.png", b"IMG", "image/png")}).json()
    assert up["errcode"] == 0 and sim.uploads[up["media_id"]]["data"] == b"IMG"
    create = {"cardTemplateId": "t", "outTrackId": "c1", "openSpaceId": "dtv1.card//IM_ROBOT.u1",
              "cardData": {"cardParamMap": {}}}
    assert requests.post(sim.http_url + "/v1.0/card/instances/createAndDeliver", json=create, headers=headers,
                         timeout=5).status_code == 200
    for text, final in (("a", False), ("ab", True), ("abc", False)):
        requests.put(sim.http_url + "/v1.0/card/streaming", headers=headers, timeout=5,
                     json={"outTrackId": "c1", "key": "msgContent", "content": text, "isFull": True, "isFinalize": final})
    assert [u["content"] for u in sim.cards["c1"]["updates"]] == ["a", "ab"]
    assert sim.errors and sim.errors[0][0] == "update after finalize"
    sim.fail_next("/v1.0/card/streaming", 503)
    assert requests.put(sim.http_url + "/v1.0/card/streaming", headers=headers, json={}, timeout=5).status_code == 503
