"""Loopback fake of Tencent's iLink bot API for personal WeChat and its CDN, built from
reference/personal-wechat.md §1.9: QR login with its states, getupdates long-poll with an opaque
cursor, sendmessage with context_token checks, upload URL and CDN with the AES-128-ECB scheme,
and error injection (-14 expired token, -2 closed window, failed sends, malformed updates)."""
from .crypto import decrypt, encrypt, new_key, read_key, spell_key
from .server import IlinkSimulator, Sent

__all__ = ["IlinkSimulator", "Sent", "decrypt", "encrypt", "new_key", "read_key", "spell_key"]
