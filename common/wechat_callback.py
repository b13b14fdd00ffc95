"""What every WeChat-family XML callback needs before its content is trusted (reference/
channel-protocols.md §1.2–§1.4, §2.2–§2.3): the Official Account, WeCom app and WeCom customer
service channels all use it.

Order, for every request: the signature first (compared in constant time), then the timestamp,
then decryption (whose trailing receive id must be ours: the AppID or CorpID), and only then the
message XML. XML is parsed with entity declarations refused (xmltodict's default since 0.13) and
any DOCTYPE refused outright, and the HTTP server caps the body's size before any of this runs.

wechatpy supplies the AES envelope (PrpCrypto) and the message classes (parse_message); the
signature check, the clock check and the refusals are ours, because wechatpy compares signatures
with `!=` and has no clock check.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import xmltodict

from common.log import logger

MAX_CLOCK_SKEW = 300  # seconds a callback's timestamp may be from this machine's clock


class CallbackRefused(Exception):
    """A callback that must not be processed; `status` is the HTTP answer (403 or 400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sha1_signature(*parts: str) -> str:
    """The platform's signature: SHA-1 of the sorted parts joined, as lowercase hex."""
    return hashlib.sha1("".join(sorted(str(p) for p in parts)).encode("utf-8")).hexdigest()


def check_signature(given: str, *parts: str) -> None:
    # Bytes, not str: compare_digest refuses non-ASCII str with a TypeError (a 500 and a traceback).
    if not hmac.compare_digest(sha1_signature(*parts).encode(), str(given or "").strip().lower().encode("utf-8")):
        raise CallbackRefused(403, "the signature does not match")


def check_clock(timestamp: str, now: float | None = None) -> None:
    """Refuse a timestamp far from our clock (a replayed callback, or a broken clock here)."""
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        raise CallbackRefused(403, f"the timestamp {str(timestamp)[:20]!r} is not a number") from None
    skew = (time.time() if now is None else now) - sent
    if abs(skew) > MAX_CLOCK_SKEW:
        raise CallbackRefused(403, f"the timestamp is {skew:+.0f} s from this machine's clock (more than "
                                   f"{MAX_CLOCK_SKEW} s: a replay, or this machine's clock is wrong)")


def parse_xml(text: str | bytes) -> dict[str, Any]:
    """The children of the root `<xml>` element as a dict of strings; CallbackRefused(400) when
    the text is not such a document or declares a DOCTYPE or entities."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackRefused(400, "the body is not UTF-8") from None
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise CallbackRefused(400, "XML with a DOCTYPE or entity declaration")
    try:
        document = xmltodict.parse(text, disable_entities=True)
    except Exception as e:  # ExpatError, ValueError("entities are disabled"), ...
        raise CallbackRefused(400, f"the body is not XML ({type(e).__name__})") from None
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise CallbackRefused(400, "the XML has no <xml> root with fields")
    return root


class Envelope:
    """The AES envelope of safe mode / WeCom (random 16 bytes, length, message, receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        import base64
        import binascii

        from wechatpy.crypto import PrpCrypto

        key_text = str(encoding_aes_key or "").strip()
        try:
            key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("it is not base64") from None
        if len(key_text) != 43 or len(key) != 32:
            raise ValueError(f"it has {len(key_text)} characters, not 43")
        self.token = str(token)
        self.receive_id = str(receive_id)
        self._prp = PrpCrypto(key)

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """The plaintext of `encrypt`, after the signature, the clock and the receive id are checked
        (in that order: nothing is decrypted for a request that is not signed)."""
        check_signature(msg_signature, self.token, timestamp, nonce, encrypt)
        check_clock(timestamp)
        try:
            plain = self._prp.decrypt(encrypt, self.receive_id)
        except Exception as e:  # wechatpy raises InvalidAppIdException, ValueError, binascii.Error...
            name = type(e).__name__
            if "AppId" in name or "CorpId" in name:
                raise CallbackRefused(403, "the message is for another AppID / CorpID") from None
            raise CallbackRefused(400, f"the message does not decrypt ({name})") from None
        return plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)

    def seal(self, xml: str, nonce: str | None = None, timestamp: str | None = None) -> str:
        """An encrypted passive reply envelope for the reply XML `xml`."""
        encrypt = self._prp.encrypt(xml, self.receive_id)
        encrypt = encrypt.decode("ascii") if isinstance(encrypt, bytes) else str(encrypt)
        nonce = nonce or secrets.token_hex(8)
        timestamp = timestamp or str(int(time.time()))
        signature = sha1_signature(self.token, timestamp, nonce, encrypt)
        return (f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature><![CDATA[{signature}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")


def open_wecom_callback(envelope: Envelope, corp_id: str, query: Any, body: bytes) -> dict[str, str]:
    """The fields of a WeCom callback POST (`<xml><Encrypt>` with msg_signature, timestamp and
    nonce in the query; the WeCom app and customer service share it); CallbackRefused for anything
    that is not from WeCom for this corp id."""
    encrypt = parse_xml(body).get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise CallbackRefused(400, "no Encrypt element")
    inner = parse_xml(envelope.open(query.get("msg_signature", ""), query.get("timestamp", ""),
                                    query.get("nonce", ""), encrypt))
    if str(inner.get("ToUserName") or "") != corp_id:
        raise CallbackRefused(403, "the message is addressed to another corp id")
    return {k: v for k, v in inner.items() if isinstance(v, str)}


def log_refusal(channel: str, refusal: CallbackRefused, request_id: str = "") -> None:
    logger.warning(f"[{channel}] callback refused ({refusal.status}): {refusal.reason}{' ' + request_id if request_id else ''}")
