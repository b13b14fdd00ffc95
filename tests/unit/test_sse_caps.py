"""common/sse.py: one event larger than the limit is refused, wherever the chunks split it."""
from __future__ import annotations

import pytest

from common.sse import EventTooLarge, capped_events


def read(chunks, limit=20) -> bytes:
    return b"".join(capped_events(iter(chunks), limit))


def test_events_within_the_limit_pass_through_whatever_the_chunking():
    chunks = [b"data: 12", b"34567\n", b"\ndata: 1\n\n"] * 5
    assert read(chunks) == b"".join(chunks)
    assert read([b"data: 1\r\n\r\ndata: 2\r\n", b"\r\n"]) == b"data: 1\r\n\r\ndata: 2\r\n\r\n"


@pytest.mark.parametrize("chunks", [
    [b"data: 12345678901234567890\n\n"],  # one chunk holding the whole event
    [b"data: 1\n\ndata: 12345678901234567890\n\ndata: 2\n\n"],  # a big one between small ones
    [b"data: 1234567", b"8901234", b"567890"],  # never ends
    [b"data: 123456789", b"0123456789\n", b"\n"],  # ends, but too late
])
def test_an_event_larger_than_the_limit_is_refused(chunks):
    with pytest.raises(EventTooLarge):
        read(chunks)
