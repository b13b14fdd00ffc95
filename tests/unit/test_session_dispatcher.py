"""SessionDispatcher on its own: bounds, the persist step, halting, stall relief."""
from __future__ import annotations

import threading
import time

import pytest

from channel.session_dispatcher import Admission, SessionDispatcher


class Recorder:
    """A handler that records what it handled; items named "block..." wait for `release`."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.release = threading.Event()
        self.blocked = threading.Event()
        self._lock = threading.Lock()
        self.all_done = threading.Condition(self._lock)

    def __call__(self, item: str) -> None:
        if item.startswith("block"):
            self.blocked.set()
            assert self.release.wait(20)
        with self._lock:
            self.handled.append(item)
            self.all_done.notify_all()

    def wait_for(self, item: str, timeout: float = 20) -> bool:
        with self._lock:
            return self.all_done.wait_for(lambda: item in self.handled, timeout)


@pytest.fixture
def made():
    dispatchers = []

    def make(handler, **kwargs) -> SessionDispatcher:
        d = SessionDispatcher(handler, **kwargs)
        dispatchers.append((d, handler))
        return d

    yield make
    for d, handler in dispatchers:
        if isinstance(handler, Recorder):
            handler.release.set()
        d.close()


def wait_until(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_global_bound_counts_every_session_and_kept_items_pass_it(made):
    rec = Recorder()
    d = made(rec, workers=1, max_pending=3, stall_seconds=3600)
    assert d.submit("a", "block-a") is Admission.ACCEPTED
    assert rec.blocked.wait(10)
    assert d.submit("b", "b1") and d.submit("c", "c1")
    # Three pending (one running, two waiting) in three sessions: a fourth session is refused.
    assert d.submit("d", "d1") is Admission.ALL_FULL
    assert not Admission.ALL_FULL
    assert d.submit("d", "#cmd", urgent=True) is Admission.ALL_FULL
    d.submit_kept([("d", "resumed", False)])  # accepted before a restart: past the bound
    assert d.pending() == 4
    rec.release.set()
    assert d.wait_idle(20)
    assert sorted(rec.handled) == ["b1", "block-a", "c1", "resumed"]
    assert d.submit("d", "d2") is Admission.ACCEPTED  # room again


def test_weight_bound_counts_text_until_handled_or_cancelled(made):
    rec = Recorder()
    d = made(rec, workers=1, max_pending_weight=100, stall_seconds=3600)
    assert d.submit("a", "block-a", weight=60) is Admission.ACCEPTED
    assert rec.blocked.wait(10)
    assert d.submit("b", "b1", weight=30) is Admission.ACCEPTED  # 90 of 100
    assert d.submit("c", "c1", weight=20) is Admission.ALL_FULL  # would be 110
    assert d.submit("c", "c2", weight=10) is Admission.ACCEPTED  # exactly 100
    assert d.submit("c", "c3", weight=1) is Admission.ALL_FULL
    assert d.cancel_session("b") == ["b1"]  # a cancelled item gives its weight back
    assert d.submit("c", "c4", weight=30) is Admission.ACCEPTED
    rec.release.set()
    assert d.wait_idle(20)
    assert rec.handled == ["block-a", "c2", "c4"]
    # Nothing pending: one item heavier than the whole bound is still taken (it could never be
    # otherwise), and while it waits nothing else weighing something is.
    rec.release.clear()
    assert d.submit("a", "block-big", weight=500) is Admission.ACCEPTED
    assert d.submit("b", "small", weight=1) is Admission.ALL_FULL
    assert d.submit("b", "weightless") is Admission.ACCEPTED
    rec.release.set()
    assert d.wait_idle(20)
    assert d.submit("b", "small-again", weight=1) is Admission.ACCEPTED  # all of it given back
    assert d.wait_idle(20) and d.pending_weight() == 0
    # Messages kept from before a restart are queued past the bound, and weigh against new ones.
    rec.release.clear()
    d.submit_kept([("a", "block-kept", False, 90), ("b", "kept", False, 5)])
    assert rec.blocked.wait(10) and d.pending_weight() == 95
    assert d.submit("c", "c5", weight=10) is Admission.ALL_FULL
    assert d.submit("c", "c6", weight=5) is Admission.ACCEPTED
    rec.release.set()
    assert d.wait_idle(20) and d.pending_weight() == 0


def test_session_bound_and_stopping_answers(made):
    rec = Recorder()
    d = made(rec, workers=1, queue_size=1, stall_seconds=3600)
    d.submit("a", "block")
    assert rec.blocked.wait(10)
    assert d.submit("a", "a1") is Admission.ACCEPTED
    assert d.submit("a", "a2") is Admission.SESSION_FULL
    d.stop_accepting()
    assert d.submit("b", "b1") is Admission.STOPPING


def test_a_failing_persist_queues_nothing(made):
    rec = Recorder()
    d = made(rec, workers=1, stall_seconds=3600)

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        d.submit("a", "lost", persist=broken)
    assert d.pending() == 0
    assert d.submit("a", "kept", persist=lambda: None)
    assert d.wait_idle(10)
    assert rec.handled == ["kept"]


def test_persisted_order_is_queue_order_under_concurrent_producers(made):
    persisted: list[str] = []
    handled: list[str] = []
    lock = threading.Lock()

    def handler(item: str) -> None:
        with lock:
            handled.append(item)

    d = made(handler, workers=4, queue_size=10_000, stall_seconds=3600)

    def producer(n: int) -> None:
        for i in range(200):
            item = f"p{n}-{i}"
            # One session: handled strictly in queue order (concurrency 1).
            d.submit("one", item, persist=lambda item=item: persisted.append(item))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.wait_idle(20)
    assert len(handled) == 800
    assert handled == persisted


def test_halt_starts_nothing_more_and_keeps_the_queue(made):
    rec = Recorder()
    d = made(rec, workers=1, stall_seconds=3600)
    d.submit("a", "block")
    assert rec.blocked.wait(10)
    d.submit("a", "a1")
    d.submit("b", "b1")
    assert d.halt() == 3  # one running, two waiting
    rec.release.set()
    assert rec.wait_for("block")
    assert not d.wait_idle(0.3)  # a1 and b1 stay queued
    assert rec.handled == ["block"]
    assert d.pending() == 2


def test_a_stalled_pool_gets_a_worker_and_the_extra_one_leaves_when_idle(made):
    rec = Recorder()
    d = made(rec, workers=1, stall_seconds=0.2, max_workers=2, extra_idle_seconds=3)
    d.submit("slow-user", "block")
    assert rec.blocked.wait(10)
    d.submit("other-user", "hello")
    # The only worker is pinned; the waiting session is still served.
    assert rec.wait_for("hello")
    assert "block" not in rec.handled
    assert d.worker_count() == 2
    d.submit("third-user", "block-2")  # pins the extra worker too: no third, the cap is 2
    d.submit("fourth-user", "waits")
    assert not rec.wait_for("waits", timeout=0.8)
    assert d.worker_count() == 2
    rec.release.set()
    assert d.wait_idle(20)
    assert sorted(rec.handled) == ["block", "block-2", "hello", "waits"]
    assert wait_until(lambda: d.worker_count() == 1)  # the added worker left after being idle


def test_no_worker_is_added_while_the_pool_makes_progress(made):
    def handler(item: str) -> None:
        time.sleep(0.003)

    # Busy for longer than stall_seconds in all, but always starting something.
    d = made(handler, workers=2, stall_seconds=1.0, max_workers=8, queue_size=10_000)
    for i in range(1000):
        d.submit(f"s{i % 10}", f"m{i}")
    assert d.wait_idle(30)
    assert d.worker_count() == 2


def test_kept_items_are_all_queued_before_any_starts(made):
    rec = Recorder()
    d = made(rec, workers=4, stall_seconds=3600)
    d.submit_kept([("a", "one", False), ("a", "two", False), ("a", "#cmd", True), ("b", "other", False)])
    assert d.wait_idle(10)
    assert [h for h in rec.handled if h != "other"] == ["#cmd", "one", "two"]
