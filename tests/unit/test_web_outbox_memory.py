"""What the web channel keeps in memory per user: its numbering, and only the events an open
page has still to be given. The answers a user's record keeps for the history stay in the state
store. (Found by bench/soak.py: the daemon's memory crept up by the recent answers of every user
it had seen, for as long as the records of rare users were still filling.)

Measured with tracemalloc (Python's own count of live allocations, not timing): the memory
taken while more answers go to the same users, once each user's first answers are in."""
from __future__ import annotations

import gc
import tracemalloc

import pytest

from channel.web.history import WebJournal
from common.store import SQLiteStore

ANSWER = "x" * 1000
USERS = 60
# With the records still filling (history 50 entries), 15 more answers per user held in memory
# would be USERS * 15 * (ANSWER + its event and entry) > 1.2 MB.
LIMIT = 250 * 1024


def traced_growth(rounds_before: int, rounds_after: int, push_round) -> int:
    """Bytes still allocated after `rounds_after` more rounds than after `rounds_before`."""
    tracemalloc.start()
    try:
        for i in range(rounds_before):
            push_round(i)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(rounds_before, rounds_before + rounds_after):
            push_round(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(str(tmp_path / "state.db"))  # records on disk, not in Python's memory
    yield store
    store.close()


def test_answers_to_users_with_no_page_open_are_not_held_in_memory(settings, store):
    from channel.web.web_channel import WebChannel

    channel = WebChannel()
    channel.journal = WebJournal(store, 50)
    try:
        def one_round(i: int) -> None:
            for u in range(USERS):
                channel.push(f"user{u}", "TEXT", f"{i} {ANSWER}")

        grew = traced_growth(5, 15, one_round)
        # Still there for the page when it comes back: in the store.
        assert len(channel.journal.load("user7").events) == 20
    finally:
        channel.stop()
    assert grew < LIMIT, f"{grew} bytes more held after {USERS * 15} more answers"


def test_answers_given_to_open_pages_are_not_held_in_memory(settings, store):
    from tests.e2e.test_web_process import SSE, running_channel

    users = 20
    with running_channel(settings) as channel:
        channel.journal = WebJournal(store, 50)
        pages = [SSE(channel.server.port, f"page{u}") for u in range(users)]
        try:
            assert all(p.opened.wait(5) for p in pages)

            def one_round(i: int) -> None:
                for u in range(users):
                    channel.push(f"page{u}", "TEXT", f"{i} {ANSWER}")
                for page in pages:  # each page has its answer before the next round
                    assert page.next(10)["data"]["content"] == f"{i} {ANSWER}"

            grew = traced_growth(5, 15, one_round)
        finally:
            for page in pages:
                page.close()
    assert grew < users * 15 * len(ANSWER) / 3, f"{grew} bytes more held after {users * 15} more answers"


def test_a_page_behind_another_page_of_the_same_user_gets_everything(settings, store):
    """Two pages of one user at different places: events one page has written are still kept
    for the other, and a page that comes back with an older id gets what it missed."""
    from tests.e2e.test_web_process import SSE, running_channel

    with running_channel(settings) as channel:
        channel.journal = WebJournal(store, 50)
        ahead = SSE(channel.server.port, "ann")
        assert ahead.opened.wait(5)
        for text in ("a", "b", "c"):
            channel.push("ann", "TEXT", text)
        seen = [ahead.next(5) for _ in range(3)]
        behind = SSE(channel.server.port, "ann", last_id=seen[0]["id"])
        assert behind.opened.wait(5)
        channel.push("ann", "TEXT", "d")
        got_behind = [behind.next(5)["data"]["content"] for _ in range(3)]
        got_ahead = ahead.next(5)["data"]["content"]
        ahead.close()
        behind.close()
    assert [e["data"]["content"] for e in seen] == ["a", "b", "c"]
    assert got_behind == ["b", "c", "d"] and got_ahead == "d"
