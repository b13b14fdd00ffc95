"""Callback signatures and safe-mode encryption as the platform computes them (reference §1.2, §1.4,
§2.2, §2.3).

The AES framing (random 16 | length | msg | receiveid, AES-256-CBC, IV = key[:16], PKCS#7 to 32
bytes) is the one the WeCom AI bot driver already implements on `cryptography` primitives, written
from the reference and cross-checked against wechatpy there; it is reused, not repeated. The
product's own crypto (wechatpy) is never used here, so a shared mistake cannot hide.
"""
from __future__ import annotations

import hashlib
import secrets
import string
import time
from typing import Optional

from tests.fakes.wecom_aibot.callback_driver import CallbackCrypto

_DIGITS = string.digits


def sha1_signature(*parts: str) -> str:
    """sha1 of the parts sorted as strings and joined with nothing: both `signature` (token,
    timestamp, nonce) and `msg_signature` (token, timestamp, nonce, Encrypt)."""
    return hashlib.sha1("".join(sorted(str(p) for p in parts)).encode("utf-8")).hexdigest()


def new_timestamp() -> str:
    return str(int(time.time()))


def new_nonce() -> str:
    # The platform's nonces are digits; a daemon must not care, but we look like the real thing.
    return "".join(secrets.choice(_DIGITS) for _ in range(10))


def random_aes_key() -> str:
    """A valid EncodingAESKey (43 characters)."""
    return CallbackCrypto.random_aes_key()


class Envelope:
    """Seals and opens `Encrypt` values for one account (receiveid = AppID or CorpID)."""

    def __init__(self, token: str, aes_key: str, receiveid: str) -> None:
        self.token = token
        self.aes_key = aes_key
        self.receiveid = receiveid
        self._crypto = CallbackCrypto(token, aes_key, receiveid)

    def encrypt(self, plaintext: str, receiveid: Optional[str] = None) -> str:
        """Base64 ciphertext; `receiveid` overrides the tail (the wrong-corp-id attack)."""
        crypto = self._crypto if receiveid is None else CallbackCrypto(self.token, self.aes_key, receiveid)
        return crypto.encrypt_text(plaintext)

    def decrypt(self, encrypt: str) -> str:
        """Plaintext; ValueError on bad base64, padding, length or a receiveid that is not ours."""
        return self._crypto.decrypt(encrypt)

    def msg_signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return sha1_signature(self.token, timestamp, nonce, encrypt)
