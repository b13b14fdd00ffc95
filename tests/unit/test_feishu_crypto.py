"""channel/feishu/crypto.py: what a Feishu event request passes before its content is used."""
from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest

from channel.feishu.crypto import decrypt, open_event, signature
from common.wechat_callback import CallbackRefused
from tests.fakes.feishu import crypto as platform
from tests.fakes.feishu.events import EventSender, envelope, text_event

TOKEN, KEY = "vt-1", "ek-1"


def sealed(payload: dict, key: str = KEY, **seal) -> tuple[bytes, dict]:
    return EventSender("http://unused/", TOKEN, key).seal(payload, **seal)


def test_the_signature_is_sha256_of_timestamp_nonce_key_and_body():
    body = b'{"encrypt":"abc"}'
    expected = hashlib.sha256(b"1700000000" + b"n0nce" + KEY.encode() + body).hexdigest()
    assert signature("1700000000", "n0nce", KEY, body) == expected == platform.sign("1700000000", "n0nce", KEY, body)


def test_decryption_matches_the_platform_and_lark_oapi_both_ways():
    from lark_oapi.core.utils.decryptor import AESCipher  # lark-oapi's own, as its handler uses it

    for text in ("{}", '{"challenge":"x"}', "中文" * 100, "a" * 16, "b" * 15):
        encrypted = platform.encrypt(KEY, text)
        assert decrypt(KEY, encrypted) == text == AESCipher(KEY).decrypt_str(encrypted)
    # A known vector: key "test key", IV of zeros (lark-oapi decrypts what we were given).
    vector = platform.encrypt("test key", "hello", iv=bytes(16))
    assert decrypt("test key", vector) == "hello" == AESCipher("test key").decrypt_str(vector)


@pytest.mark.parametrize("encrypted", [
    base64.b64encode(b"short").decode(), "not base64!!", base64.b64encode(bytes(48)).decode(),
    platform.encrypt("another key", "{}"),
], ids=["short", "not-base64", "bad-padding", "other-key"])
def test_what_the_key_did_not_make_is_refused(encrypted):
    with pytest.raises(ValueError):
        result = decrypt(KEY, encrypted)
        json.loads(result)  # another key may, once in 256, end in valid padding: never valid JSON


def test_a_sealed_event_opens_to_its_envelope():
    payload = envelope(text_event("ou_a", "hi"), TOKEN)
    body, headers = sealed(payload)
    assert open_event(body, headers, TOKEN, KEY) == payload
    # Plain mode: the token alone is checked.
    body, headers = sealed(payload, key="")
    assert open_event(body, headers, TOKEN, "") == payload


def refusal(body, headers, token=TOKEN, key=KEY, now=None) -> int:
    with pytest.raises(CallbackRefused) as refused:
        open_event(body, headers, token, key, now=now)
    return refused.value.status


def test_forged_stale_and_malformed_requests_are_refused():
    payload = envelope(text_event("ou_a", "hi"), TOKEN)
    body, headers = sealed(payload)
    assert refusal(body, {**headers, "X-Lark-Signature": "0" * 64}) == 401
    assert refusal(body, {**headers, "X-Lark-Signature": "签名"}) == 401  # non-ASCII: a refusal, not a crash
    assert refusal(body, {k: v for k, v in headers.items() if k != "X-Lark-Signature"}) == 401
    assert refusal(body + b" ", headers) == 401  # the body is covered by the signature
    assert refusal(body, headers, now=time.time() + 3600) == 403
    assert refusal(*sealed(payload, forge_signature=True)) == 401
    assert refusal(*sealed(envelope(text_event("ou_a", "hi"), "guessed"))) == 401
    assert refusal(*sealed({"challenge": "c", "token": "guessed", "type": "url_verification"})) == 401
    plain = json.dumps(payload).encode()
    signed = {**headers, "X-Lark-Signature": signature(headers["X-Lark-Request-Timestamp"],
                                                       headers["X-Lark-Request-Nonce"], KEY, plain)}
    assert refusal(plain, signed) == 401  # plaintext while a key is set, even signed with it
    assert refusal(body, headers, key="") == 400  # encrypted while no key is set
    assert refusal(b"{not json", headers) == 400
    assert refusal(b"[1, 2]", headers, key="") == 400
    assert refusal(json.dumps(payload).encode(), {}, token="") == 401  # no token configured matches nothing


def test_a_challenge_with_the_right_token_opens():
    challenge = {"challenge": "c-1", "token": TOKEN, "type": "url_verification"}
    assert open_event(*sealed(challenge), TOKEN, KEY) == challenge
