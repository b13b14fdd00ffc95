"""The simulator's own AES-128-ECB (reference/personal-wechat.md §1.7), written apart from the
product's so that a mistake in one is not mirrored in the other."""
from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def new_key() -> bytes:
    return os.urandom(16)


def encrypt(plain: bytes, key: bytes) -> bytes:
    pad = 16 - len(plain) % 16
    data = plain + bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt(cipher: bytes, key: bytes) -> bytes:
    """Raises ValueError on a wrong size or padding."""
    if not cipher or len(cipher) % 16:
        raise ValueError("not whole AES blocks")
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    data = dec.update(cipher) + dec.finalize()
    pad = data[-1]
    if not 1 <= pad <= 16 or data[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    return data[:-pad]


def spell_key(key: bytes, style: str) -> str:
    """The key as a message spells it: `hex` (image_item.aeskey), `b64raw` (base64 of the 16
    bytes) or `b64hex` (base64 of the 32-character hex string)."""
    if style == "hex":
        return key.hex()
    if style == "b64raw":
        return base64.b64encode(key).decode()
    if style == "b64hex":
        return base64.b64encode(key.hex().encode()).decode()
    raise ValueError(style)


def read_key(text: str) -> bytes:
    """A key as a sender wrote it into media.aes_key (either base64 spelling)."""
    raw = base64.b64decode(text)
    if len(raw) == 16:
        return raw
    return bytes.fromhex(raw.decode("ascii"))
