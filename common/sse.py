"""Bounds for Server-Sent Events read from a bot's API (Dify, OpenAI-compatible servers).

An SSE parser holds an event until its closing blank line: a server that sends one huge event
(or never a blank line) would fill memory. `capped_events` passes the raw chunks through and
raises EventTooLarge once one event is larger than the limit.
"""
from __future__ import annotations

import re
from typing import Iterator

from config import conf

_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventTooLarge(ValueError):
    """One event (or one whole answer) is larger than what is read."""


def max_answer_bytes() -> int:
    """Most bytes read for one streamed event or one blocking answer: room for
    `answer_max_chars` characters in the worst JSON escaping (a character as two
    "\\uXXXX" escapes: 12 bytes) and the event's other fields; at least 1 MiB."""
    return max(1024 * 1024, 16 * int(conf().get("answer_max_chars")))


def read_size(response) -> int | None:
    """The chunk_size for `response.iter_content` of a stream: a chunked body is read 64 KiB
    at a time (with None, urllib3 reads a whole chunk, whatever size the server declares);
    other bodies as they come (a fixed size would wait for that many bytes, holding events back)."""
    return 64 * 1024 if getattr(getattr(response, "raw", None), "chunked", False) is True else None


def capped_events(source: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """`source`, raising EventTooLarge once more than `limit` bytes came without an
    event ending (a blank line)."""
    since_end = 0  # bytes of the event in progress
    tail = b""  # the previous chunk's last bytes: a blank line may span two chunks
    for chunk in source:
        window = tail + chunk
        start: int | None = None  # where the last event ending in `window` ended
        for match in _BLANK_LINE.finditer(window):
            size = since_end + match.start() - len(tail) if start is None else match.start() - start
            if size > limit:
                raise EventTooLarge(f"one event is larger than {limit} bytes")
            start = match.end()
        since_end = since_end + len(chunk) if start is None else len(window) - start
        if since_end > limit:
            raise EventTooLarge(f"one event is larger than {limit} bytes")
        tail = window[-3:]
        yield chunk
