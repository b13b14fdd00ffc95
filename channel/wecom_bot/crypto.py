"""The WeCom AI bot's cryptography (reference/wecom-aibot.md §2.4, §4).

* Media (images, files, videos) arrive AES-256-CBC encrypted: in long-connection mode with the
  key sent next to each URL (`aeskey`), in callback mode with the callback EncodingAESKey. The IV
  is the key's first 16 bytes, the padding PKCS#7 to a 32-byte block, and there is no other
  framing: the plaintext is the file.
* Callback mode wraps JSON in WeCom's usual AES envelope (random bytes, length, message, receive
  id, which is empty for AI bots). wechatpy's PrpCrypto implements that envelope; only the JSON
  wrapping and the signature are ours.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeCom pads to 32-byte blocks, not AES's 16
RECEIVE_ID = ""  # enterprise-internal AI bots have an empty receive id


class CryptoError(ValueError):
    """Data that does not decrypt, or a signature that does not match."""


def decode_key(key: str) -> bytes:
    """A base64 key as WeCom sends it: 43 characters without the trailing '=', or 44 with."""
    text = str(key or "").strip()
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("the AES key is not base64") from None
    if len(raw) != 32:
        raise CryptoError(f"the AES key is {len(raw)} bytes, not 32")
    return raw


def decrypt_media(data: bytes, key: str | bytes) -> bytes:
    """The plaintext of a downloaded media file."""
    raw_key = key if isinstance(key, bytes) else decode_key(key)
    if not data or len(data) % 16:
        raise CryptoError(f"encrypted media of {len(data)} bytes is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(raw_key), modes.CBC(raw_key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise CryptoError("the media does not decrypt with its key (bad padding)")
    return plain[:-pad]


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode("utf-8")).hexdigest()


class CallbackCrypto:
    """Callback mode: check and open what WeCom POSTs, seal what we answer."""

    def __init__(self, token: str, encoding_aes_key: str) -> None:
        from wechatpy.crypto import PrpCrypto  # imported here: only callback mode needs wechatpy

        self.token = str(token)
        self.key = decode_key(encoding_aes_key)
        self._prp = PrpCrypto(self.key)

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypt)
        # Bytes: compare_digest raises TypeError on non-ASCII str (a forged header would make a 500).
        if not hmac.compare_digest(expected.encode(), str(msg_signature or "").lower().encode("utf-8")):
            raise CryptoError("the signature does not match")

    def open(self, encrypt: str) -> str:
        """The plaintext of an envelope; CryptoError when it is not ours."""
        try:
            text = self._prp.decrypt(encrypt, RECEIVE_ID)
        except Exception as e:  # wechatpy raises its own exceptions, ValueError, binascii.Error...
            raise CryptoError(f"the message does not decrypt ({type(e).__name__})") from None
        return text.decode("utf-8") if isinstance(text, bytes) else str(text)

    def seal(self, payload: Any, nonce: str, timestamp: str | None = None) -> dict:
        """The JSON reply envelope for `payload` (a dict, or a str already JSON)."""
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        encrypt = self._prp.encrypt(text, RECEIVE_ID)
        encrypt = encrypt.decode("ascii") if isinstance(encrypt, bytes) else str(encrypt)
        timestamp = timestamp or str(int(time.time()))
        return {"encrypt": encrypt, "msgsignature": signature(self.token, timestamp, nonce, encrypt),
                "timestamp": timestamp, "nonce": nonce}


def new_nonce() -> str:
    return secrets.token_hex(8)
