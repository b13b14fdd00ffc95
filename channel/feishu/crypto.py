"""What a Feishu event request must pass before its content is trusted (reference/channel-protocols.md
§4.2, §4.3).

Order, for every request: JSON (400 when it is not an object), then, when an Encrypt Key is set,
the signature headers (X-Lark-Request-Timestamp, -Nonce, -Signature; signature = hex SHA-256 of
timestamp + nonce + encrypt key + the raw body) compared in constant time, the timestamp against
this machine's clock, and decryption (AES-256-CBC, key = SHA-256 of the Encrypt Key, IV = the
first 16 bytes); last the Verification Token, in constant time, from `header.token` (schema 2.0)
or the top-level `token` (URL verification, schema 1.0).

All of it is written here rather than taken from lark-oapi (1.7.5, read for this): importing any
part of lark-oapi loads its whole package, every API module of it, which costs about 2 s of CPU
at each start (its long-connection client, only needed in websocket mode, is imported only
there); its EventDispatcherHandler compares signatures with `!=`, has no clock check, and with an
Encrypt Key set still takes a plaintext body (only the token then guards it). The decryption
matches lark-oapi's AESCipher byte for byte (tests/unit/test_feishu_crypto.py checks both ways).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from common.json_limits import loads_limited
from common.wechat_callback import CallbackRefused, check_clock

TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"
SIGNATURE_HEADER = "X-Lark-Signature"


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """The platform's request signature, lowercase hex."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def decrypt(encrypt_key: str, encrypted: str) -> str:
    """The plaintext of an `encrypt` field; ValueError when it is not one made with this key."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the encrypt field is not base64") from None
    if len(raw) < 32 or len(raw) % 16:
        raise ValueError("not decryptable with the Encrypt Key (wrong length)")
    key = hashlib.sha256(encrypt_key.encode("utf-8")).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not decryptable with the Encrypt Key (bad padding or not UTF-8)") from None


def _same(given: Any, expected: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str (a 500 with a traceback instead of a refusal).
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _json_object(raw: bytes | str, what: str) -> dict:
    try:
        # Bounded nesting: `[` * 200000 raised RecursionError (a 500) before any check.
        data = loads_limited(raw)
    except (ValueError, UnicodeDecodeError):  # JsonTooDeep is a ValueError
        raise CallbackRefused(400, f"the {what} is not JSON (or nested too deep)") from None
    if not isinstance(data, dict):
        raise CallbackRefused(400, f"the {what} is not a JSON object")
    return data


def _unsigned_challenge(data: dict, verification_token: str, encrypt_key: str) -> dict:
    if not isinstance(data.get("encrypt"), str):
        raise CallbackRefused(401, "the signature headers are missing")
    try:
        challenge = _json_object(decrypt(encrypt_key, data["encrypt"]), "decrypted body")
    except (ValueError, CallbackRefused):
        raise CallbackRefused(401, "the signature headers are missing") from None
    if challenge.get("type") != "url_verification":
        raise CallbackRefused(401, "the signature headers are missing")
    if not _same(challenge.get("token"), verification_token):
        raise CallbackRefused(401, "the verification token does not match")
    return {"type": "url_verification", "challenge": challenge.get("challenge")}


def open_event(body: bytes, headers: Any, verification_token: str, encrypt_key: str = "",
               now: float | None = None) -> dict:
    """The plaintext event (URL verification or an event envelope) of one request, checked;
    CallbackRefused (400 malformed, 401 unsigned or forged, 403 stale) when it must not be used.
    `headers` is any mapping with case-insensitive `get` (starlette's, or a dict with the
    platform's spelling)."""
    data = _json_object(body, "body")
    if encrypt_key:
        if "encrypt" not in data:
            # With an Encrypt Key the platform encrypts everything: a plaintext body is someone else's.
            raise CallbackRefused(401, "an Encrypt Key is set and this body is not encrypted")
        timestamp = str(headers.get(TIMESTAMP_HEADER) or "")
        nonce = str(headers.get(NONCE_HEADER) or "")
        given = str(headers.get(SIGNATURE_HEADER) or "").strip().lower()
        if not (timestamp or nonce or given):
            # The console's URL verification may come unsigned (lark-oapi answers it without
            # looking at the headers): only the challenge is taken so, after decryption with
            # the key and the token check; every event needs the signature.
            return _unsigned_challenge(data, verification_token, encrypt_key)
        if not (timestamp and nonce and given):
            raise CallbackRefused(401, "the signature headers are missing")
        if not _same(given, signature(timestamp, nonce, encrypt_key, body)):
            raise CallbackRefused(401, "the signature does not match")
        check_clock(timestamp, now)
        if not isinstance(data.get("encrypt"), str):
            raise CallbackRefused(400, "the encrypt field is not a string")
        try:
            plaintext = decrypt(encrypt_key, data["encrypt"])
        except ValueError as e:
            raise CallbackRefused(400, str(e)) from None
        data = _json_object(plaintext, "decrypted body")
    elif "encrypt" in data:
        raise CallbackRefused(400, "the body is encrypted and no feishu_encrypt_key is set")
    header = data.get("header")
    token = header.get("token") if isinstance(header, dict) else data.get("token")
    if not _same(token, verification_token):
        raise CallbackRefused(401, "the verification token does not match")
    return data
