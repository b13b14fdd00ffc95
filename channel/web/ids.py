"""User ids and message ids as web clients send them.

The original takes any `user_id` (missing: "default_user") and uses it as it is in
URL paths, logs and dict keys. We take any text too, and make it safe where it is
used instead of refusing it: percent-encoded in URLs we build, control characters
escaped in logs, text (never HTML) on the page. Refused only: no text at all,
more than MAX_ID_CHARS characters (the original had no cap), text that cannot
be stored (lone surrogates from a JSON `\\ud800`), and NUL (PostgreSQL, where Dify keeps
its users, refuses it in text, so such a user could never be answered; C code downstream
cuts text at it).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

DEFAULT_USER = "default_user"  # the original's user when a request names none
MAX_ID_CHARS = 256  # room for any e-mail address (254) and then some


class BadId(ValueError):
    """The id cannot be used; the message says why, for the client."""


DOT_SEGMENTS = (".", "..")


def parse_id(value: Any, what: str) -> str:
    """`value` as an id: text as given (numbers become their decimal text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadId(f"{what} must be text")
    text = str(value)
    if not text.strip():
        raise BadId(f"{what} must not be empty")
    if len(text) > MAX_ID_CHARS:
        raise BadId(f"{what} is longer than {MAX_ID_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadId(f"{what} is not valid Unicode text") from None
    if "\0" in text:
        raise BadId(f"{what} must not contain NUL characters")
    if what == "user_id" and text in DOT_SEGMENTS:
        # A user id is a URL path segment (/sse/<id>, /history/<id>, /media/<id>/...), and
        # browsers resolve "." and ".." away before sending, encoded or not: such a user
        # could post but never see an answer.
        raise BadId(f"{what} must not be '.' or '..'")
    return text


def url_part(text: str) -> str:
    """`text` as one URL path segment: every reserved character percent-encoded ('/' too)."""
    return quote(text, safe="")


def for_log(text: str) -> str:
    """`text` for a log line: newlines and other control characters escaped, so a
    crafted id cannot forge log lines or move the cursor of a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
