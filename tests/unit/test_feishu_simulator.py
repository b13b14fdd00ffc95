"""tests/fakes/feishu: the simulator behaves like the reference says, independently of the product."""
from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.feishu import FeishuSimulator
from tests.fakes.feishu import crypto


@pytest.fixture
def sim():
    with FeishuSimulator("cli_a", "secret") as simulator:
        yield simulator


def token(sim) -> str:
    r = httpx.post(sim.base_url + "/open-apis/auth/v3/tenant_access_token/internal",
                   json={"app_id": "cli_a", "app_secret": "secret"})
    assert r.json()["code"] == 0 and r.json()["expire"] == 7200
    return r.json()["tenant_access_token"]


def test_tokens_are_checked_revoked_and_the_secret_too(sim):
    bad = httpx.post(sim.base_url + "/open-apis/auth/v3/tenant_access_token/internal",
                     json={"app_id": "cli_a", "app_secret": "wrong"})
    assert bad.json()["code"] != 0
    headers = {"Authorization": "Bearer " + token(sim)}
    assert httpx.get(sim.base_url + "/open-apis/bot/v3/info", headers=headers).json()["bot"]["open_id"] == sim.bot_open_id
    assert httpx.get(sim.base_url + "/open-apis/bot/v3/info").json()["code"] == 99991661
    sim.revoke_tokens()
    assert httpx.get(sim.base_url + "/open-apis/bot/v3/info", headers=headers).json()["code"] == 99991663


def test_messages_are_recorded_deduplicated_by_uuid_and_cards_patched(sim):
    headers = {"Authorization": "Bearer " + token(sim)}
    card = {"config": {"update_multi": True}, "elements": [{"tag": "markdown", "content": "a"}]}
    body = {"receive_id": "ou_x", "msg_type": "interactive", "content": json.dumps(card), "uuid": "u-1"}
    first = httpx.post(sim.base_url + "/open-apis/im/v1/messages", params={"receive_id_type": "open_id"},
                       json=body, headers=headers).json()
    again = httpx.post(sim.base_url + "/open-apis/im/v1/messages", params={"receive_id_type": "open_id"},
                       json=body, headers=headers).json()
    assert first["data"]["message_id"] == again["data"]["message_id"] and len(sim.sent("ou_x")) == 1
    card["elements"][0]["content"] = "ab"
    message_id = first["data"]["message_id"]
    assert httpx.patch(f"{sim.base_url}/open-apis/im/v1/messages/{message_id}", json={"content": json.dumps(card)},
                       headers=headers).json()["code"] == 0
    assert sim.texts("ou_x") == ["ab"]
    sim.fail_next("reply", 230011, "withdrawn")
    r = httpx.post(f"{sim.base_url}/open-apis/im/v1/messages/{message_id}/reply",
                   json={"msg_type": "text", "content": json.dumps({"text": "x"})}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == 230011


def test_uploads_and_resources(sim):
    headers = {"Authorization": "Bearer " + token(sim)}
    r = httpx.post(sim.base_url + "/open-apis/im/v1/images", data={"image_type": "message"},
                   files={"image": ("a.png", b"\x89PNG")}, headers=headers).json()
    assert sim.images[r["data"]["image_key"]] == b"\x89PNG"
    sim.add_resource("om_1", "img_1", b"bytes")
    got = httpx.get(sim.base_url + "/open-apis/im/v1/messages/om_1/resources/img_1", params={"type": "image"},
                    headers=headers)
    assert got.content == b"bytes"


def test_the_event_crypto_round_trips():
    sealed = crypto.encrypt("k", '{"a": 1}')
    assert crypto.decrypt("k", sealed) == '{"a": 1}' and crypto.decrypt("k", crypto.encrypt("k", "")) == ""
