"""The iLink CDN's media scheme (reference/personal-wechat.md §1.7).

A file on the CDN is AES-128-ECB with PKCS#7 padding; the key travels with the message.
Keys arrive in three spellings, all of which must be accepted:

* `image_item.aeskey`: the 16-byte key as 32 hex characters;
* `media.aes_key`: base64 of the 16 raw bytes;
* `media.aes_key`: base64 of the 32-character hex string (what the official client sends,
  and what we send: base64 of the ASCII hex of the key).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


class MediaKeyError(ValueError):
    """A key that is none of the accepted spellings."""


class DecryptError(ValueError):
    """Bytes that are not an AES-128-ECB/PKCS#7 file under the given key."""


def new_key() -> bytes:
    return os.urandom(BLOCK)


def parse_key(text: object) -> bytes:
    """The 16-byte key from any of the spellings above. Raises MediaKeyError."""
    value = str(text or "").strip()
    if not value:
        raise MediaKeyError("no AES key")
    if _HEX32.match(value):
        return bytes.fromhex(value)
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MediaKeyError("the AES key is neither hex nor base64") from None
    if len(raw) == BLOCK:
        return raw
    if len(raw) == 2 * BLOCK:
        try:
            hex_text = raw.decode("ascii")
        except UnicodeDecodeError:
            hex_text = ""
        if _HEX32.match(hex_text):
            return bytes.fromhex(hex_text)
    raise MediaKeyError(f"the AES key decodes to {len(raw)} bytes, not a 16-byte key")


def key_for_message(key: bytes) -> str:
    """How a key is written into `media.aes_key` of a message we send."""
    return base64.b64encode(key.hex().encode("ascii")).decode("ascii")


def cipher_size(plain_size: int) -> int:
    """The size of the encrypted file: PKCS#7 always adds 1 to 16 bytes."""
    return (plain_size // BLOCK + 1) * BLOCK


def encrypt(plain: bytes, key: bytes) -> bytes:
    padder = padding.PKCS7(BLOCK * 8).padder()
    data = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - the platform's scheme
    return encryptor.update(data) + encryptor.finalize()


def decrypt(cipher: bytes, key: bytes) -> bytes:
    """Raises DecryptError when the bytes are not a whole number of blocks or the padding is wrong
    (the usual sign of a wrong key or a damaged file)."""
    if len(key) != BLOCK:
        raise DecryptError(f"a {len(key)}-byte key; AES-128 takes 16")
    if not cipher or len(cipher) % BLOCK:
        raise DecryptError(f"{len(cipher)} bytes is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305
    data = decryptor.update(cipher) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK * 8).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise DecryptError("the padding is wrong (wrong key or damaged file)") from None


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the platform's checksum, not security
