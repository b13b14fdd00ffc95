"""Text that can always be encoded, and answers of a bounded size.

A Python str may hold a lone surrogate (U+D800..U+DFFF without its pair): JSON's
``"\\ud800"`` escape, a platform's broken UTF-16, a plugin's slicing of an emoji all
produce one. It cannot be encoded to UTF-8, so the first write of it (an SSE event, a
log line, a database row) raises UnicodeEncodeError, far from where it came in. Text is
made safe once, where it enters the daemon (a channel's input, a bot's answer, the
pipeline after the plugins), with :func:`safe_text` / :func:`safe_data`.
"""
from __future__ import annotations

import re
from typing import Any

# Any surrogate code point: a lone one is replaced, a valid pair (which json.loads never
# leaves, but "\ud83d\ude00" typed in Python does) is joined into its character, see safe_text.
_SURROGATE = re.compile("[\ud800-\udfff]")

# Notes added to an answer cut at answer_max_chars (Chinese, English).
TOO_LONG_NOTE = ("（回答太长，后面的部分已省略）", "[The answer was too long; the rest was left out.]")


def safe_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD; a valid surrogate pair
    becomes the character it encodes. The same object when nothing needs changing."""
    if not _SURROGATE.search(text):
        return text
    # surrogatepass turns pairs into their 4-byte character and lone ones into 3 bytes
    # that are not valid UTF-8, which the decode then replaces.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def safe_data(value: Any, _depth: int = 0) -> Any:
    """`value` (JSON-like: dicts, lists, tuples, strings, numbers) with every string,
    keys included, made safe by :func:`safe_text`. Other objects are returned as they are."""
    if isinstance(value, str):
        return safe_text(value)
    if _depth > 200:  # deeper than any JSON a parser here accepts; leave it alone
        return value
    if isinstance(value, dict):
        return {safe_data(k, _depth + 1): safe_data(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_data(v, _depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(safe_data(v, _depth + 1) for v in value)
    return value


def too_long_note(chinese: bool) -> str:
    return TOO_LONG_NOTE[0] if chinese else TOO_LONG_NOTE[1]


def cut_text(text: str, max_chars: int, chinese: bool) -> str:
    """`text` when it has at most `max_chars` characters, else its beginning and a note
    saying the rest was left out, `max_chars` characters in all."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    note = "\n\n" + too_long_note(chinese)
    return text[: max(0, max_chars - len(note))] + note
