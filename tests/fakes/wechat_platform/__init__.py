"""Loopback fakes of the WeChat Official Account and WeCom (self-built app, customer service)
platforms, built from reference/channel-protocols.md §1-§3, never from product code.

- server.py  `WeChatPlatformSimulator`: the HTTP APIs (tokens, sends, media, material, kf) under
  one base URL, with recording, error injection and the platform's limits.
- sender.py  `OfficialAccountSender` / `WeComSender`: sign, encrypt and push callbacks to the
  daemon with the 5-second cut and three deliveries; URL verification; hostile variants.
- hostile.py: bodies for bad-input tests (entity bomb, XXE, 10 MB, non-XML).
"""
from . import errors, hostile
from .crypto import Envelope, random_aes_key, sha1_signature
from .records import Call, Fault, Shown
from .sender import (
    SERVICE_UNAVAILABLE,
    Delivery,
    Exchange,
    OfficialAccountSender,
    VerifyResult,
    WeComSender,
)
from .server import WeChatPlatformSimulator
from .xml_messages import Inbound, ParsedReply, UNSUPPORTED_TEXT

__all__ = [
    "Call",
    "Delivery",
    "Envelope",
    "Exchange",
    "Fault",
    "Inbound",
    "OfficialAccountSender",
    "ParsedReply",
    "SERVICE_UNAVAILABLE",
    "Shown",
    "UNSUPPORTED_TEXT",
    "VerifyResult",
    "WeChatPlatformSimulator",
    "WeComSender",
    "errors",
    "hostile",
    "random_aes_key",
    "sha1_signature",
]
