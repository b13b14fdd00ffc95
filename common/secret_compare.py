"""Comparing a password someone typed with the configured one.

Both sides are compared as NFC-normalised UTF-8 (an "é" typed as one code point or as "e"
plus a combining accent is the same password), through SHA-256 so the comparison takes the
same time whatever the length, and with hmac.compare_digest so it takes the same time
whatever the content.
"""
from __future__ import annotations

import hashlib
import hmac
import unicodedata


def _digest(text: str) -> bytes:
    return hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8", "surrogatepass")).digest()


def same_secret(given: str, expected: str) -> bool:
    """True when `given` is `expected` (NFC, UTF-8, constant time). An empty `expected`
    matches nothing."""
    if not expected:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


def header_candidates(value: str) -> list[str]:
    """The texts an HTTP header value may stand for. Servers hand headers over as latin-1
    text: a client that sent UTF-8 (browsers' fetch after our chat.js encodes it, curl)
    meant the UTF-8 reading; an old client that sent latin-1 meant the latin-1 one."""
    raw = value.encode("latin-1", "replace")
    candidates = [value]
    try:
        as_utf8 = raw.decode("utf-8")
    except UnicodeDecodeError:
        return candidates
    if as_utf8 != value:
        candidates.insert(0, as_utf8)
    return candidates


def header_matches(value: str, expected: str) -> bool:
    """True when the header value is `expected` in either reading. Both readings are
    compared every time, so the time taken does not tell which one was tried."""
    matched = False
    for candidate in header_candidates(value):
        matched |= same_secret(candidate, expected)
    return matched
