"""web_password: what the page sends in any script, and what a change of it revokes."""
from __future__ import annotations

import unicodedata

import httpx
import pytest

from tests.e2e.test_web_process import running_channel

pytestmark = pytest.mark.slow


def bearer(raw: bytes) -> dict:
    # httpx sends a bytes header value as it is: what a browser's fetch sends is the page's choice.
    return {"Authorization": b"Bearer " + raw}


def test_a_stream_token_dies_with_the_password_it_was_issued_under(settings):
    settings["web_password"] = "first-password"
    with running_channel(settings) as channel:
        base = channel.server.base_url
        token = httpx.post(base + "/token", json={"user_id": "eve"}, headers=bearer(b"first-password")).json()["token"]
        assert httpx.get(base + "/history/eve", params={"token": token}).status_code == 200
        settings["web_password"] = "second-password"  # what #reconf does with a new config.json
        r = httpx.get(base + "/history/eve", params={"token": token})
        assert r.status_code == 401 and r.json()["auth"] == "token"
        assert httpx.get(base + "/sse/eve", params={"token": token}).status_code == 401
        fresh = httpx.post(base + "/token", json={"user_id": "eve"}, headers=bearer(b"second-password")).json()["token"]
        assert httpx.get(base + "/history/eve", params={"token": fresh}).status_code == 200


@pytest.mark.parametrize("password", ["pässwörd", "口令-секрет-🔑", "Ångström"])
def test_a_password_in_any_script_works_in_utf8_in_either_normal_form(settings, password):
    settings["web_password"] = password
    with running_channel(settings) as channel:
        base = channel.server.base_url
        body = {"user_id": "zoe"}
        for form in ("NFC", "NFD"):
            given = unicodedata.normalize(form, password).encode("utf-8")
            r = httpx.post(base + "/token", json=body, headers=bearer(given))
            assert r.status_code == 200, (form, r.text)
        assert httpx.post(base + "/token", json=body, headers=bearer(b"wrong")).status_code == 401
        assert httpx.post(base + "/token", json=body,
                          headers=bearer(password[:-1].encode("utf-8"))).status_code == 401


def test_a_latin1_password_header_works_too(settings):
    settings["web_password"] = "pässwörd"
    with running_channel(settings) as channel:
        base = channel.server.base_url
        r = httpx.post(base + "/token", json={"user_id": "old-client"}, headers=bearer("pässwörd".encode("latin-1")))
        assert r.status_code == 200 and r.json()["token"]
