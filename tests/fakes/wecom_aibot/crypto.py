"""Long-connection media encryption (reference §2.4, §4.2): a per-URL 32-byte key sent as base64 in
`aeskey`, AES-256-CBC with IV = key[:16], PKCS#7 padded to 32 bytes, no other framing."""
from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeCom pads to 32 although AES blocks are 16


def new_aeskey(strip_padding: bool) -> tuple[bytes, str]:
    """(key, aeskey). Base64 of 32 bytes is 44 chars ending in one "="; real keys sometimes come
    without it (43 chars), so clients must re-pad before decoding."""
    key = os.urandom(32)
    text = base64.b64encode(key).decode()
    return key, text.rstrip("=") if strip_padding else text


def encrypt_media(key: bytes, data: bytes) -> bytes:
    pad = BLOCK - len(data) % BLOCK
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


def decrypt_media(aeskey: str, blob: bytes) -> bytes:
    """The inverse, for tests and drivers (never used by the server itself)."""
    key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(blob) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad PKCS#7/32 padding")
    return plain[:-pad]
