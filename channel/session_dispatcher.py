"""Per-session FIFO queues served by a bounded pool of worker threads.

Rules (DESIGN §3): one queue per session; at most `concurrency` items of a
session run at once (1 keeps replies in question order); an urgent item
(a `#` command) goes before the ordinary items of its session, after the urgent
ones already waiting (commands keep their order); a full queue is
refused so the caller can tell the user; workers sleep on a condition until
work exists (the original walked every session every 0.2 s).

A session is "ready" when it has queued items and a free slot. Ready sessions
wait in one FIFO, so sessions are served round-robin and a chatty session
cannot starve the others. A session's entry is deleted as soon as it is idle,
so memory follows the number of active sessions, not of all sessions ever seen.

Every item gets a sequence number when it is submitted. A handler that cancels
(`#reset`) drops only what was submitted before the item it is handling, so a
question the user sent after the command survives.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from common.log import logger


# `#` commands that may wait in one session besides its `queue_size` ordinary messages.
URGENT_QUEUE_SIZE = 10


class _SessionState:
    __slots__ = ("urgent", "items", "running", "ready")

    def __init__(self) -> None:
        # (sequence number, item), each deque in submission order.
        self.urgent: collections.deque = collections.deque()
        self.items: collections.deque = collections.deque()
        self.running = 0
        self.ready = False

    def waiting(self) -> int:
        return len(self.urgent) + len(self.items)

    def pop(self) -> tuple[int, Any]:
        return (self.urgent or self.items).popleft()

    def drop(self, before: int | None) -> list[tuple[int, Any]]:
        """Remove the waiting entries submitted before `before` (all when None)."""
        dropped = []
        for queue in (self.urgent, self.items):
            kept = []
            for entry in queue:
                (dropped if before is None or entry[0] < before else kept).append(entry)
            queue.clear()
            queue.extend(kept)
        return dropped


class SessionDispatcher:
    def __init__(
        self,
        handler: Callable[[Any], None],
        workers: int = 8,
        concurrency: int = 1,
        queue_size: int = 100,
        name: str = "worker",
    ) -> None:
        self._handler = handler
        self._concurrency = max(1, int(concurrency))
        self._queue_size = max(1, int(queue_size))
        self._sessions: dict[str, _SessionState] = {}
        self._ready: collections.deque[str] = collections.deque()
        lock = threading.Lock()
        # Two conditions on one lock: workers wait for work, wait_idle() waits for
        # quiet, and a notify meant for one never wakes the other.
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)
        self._accepting = True
        self._closed = False
        self._queued = 0
        self._running = 0
        self._next_seq = 1
        # The sequence number of the item a worker thread is handling (see current_seq).
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(max(1, int(workers)))
        ]
        for thread in self._threads:
            thread.start()

    # -- producing
    def submit(self, session_id: str, item: Any, urgent: bool = False) -> bool:
        """Queue `item` for `session_id`. False when refused (queue full or stopping)."""
        with self._cond:
            if not self._accepting:
                return False
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = _SessionState()
            # Commands have their own small allowance: a full queue is when #reset is needed most.
            if (len(state.urgent) >= URGENT_QUEUE_SIZE) if urgent else (state.waiting() >= self._queue_size):
                return False
            entry = (self._next_seq, item)
            self._next_seq += 1
            (state.urgent if urgent else state.items).append(entry)
            self._queued += 1
            self._mark_ready(session_id, state)
            return True

    def _mark_ready(self, session_id: str, state: _SessionState) -> None:
        # Caller holds the lock.
        if not state.ready and state.waiting() and state.running < self._concurrency:
            state.ready = True
            self._ready.append(session_id)
            self._cond.notify()

    # -- cancelling
    def current_seq(self) -> int | None:
        """The sequence number of the item the calling worker thread is handling, else None."""
        return getattr(self._local, "seq", None)

    def cancel_session(self, session_id: str, before: int | None = None) -> list[Any]:
        """Drop the items of `session_id` that have not started and were submitted before
        sequence number `before` (all when None). Returns them, oldest first."""
        with self._cond:
            state = self._sessions.get(session_id)
            if state is None:
                return []
            dropped = state.drop(before)
            self._queued -= len(dropped)
            self._forget_if_idle(session_id, state)
            self._idle.notify_all()
            return [item for _, item in sorted(dropped, key=lambda entry: entry[0])]

    def cancel_all(self, before: int | None = None) -> list[Any]:
        """cancel_session for every session. Returns the dropped items, oldest first."""
        with self._cond:
            dropped = []
            for session_id in list(self._sessions):
                state = self._sessions[session_id]
                dropped.extend(state.drop(before))
                self._forget_if_idle(session_id, state)
            self._queued -= len(dropped)
            self._idle.notify_all()
            return [item for _, item in sorted(dropped, key=lambda entry: entry[0])]

    def _forget_if_idle(self, session_id: str, state: _SessionState) -> None:
        if not state.waiting() and state.running == 0 and not state.ready:
            self._sessions.pop(session_id, None)

    # -- working
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._cond.wait()
                if self._closed and not self._ready:
                    return
                session_id = self._ready.popleft()
                state = self._sessions[session_id]
                state.ready = False
                if not state.waiting():  # cancelled while it waited
                    self._forget_if_idle(session_id, state)
                    continue
                seq, item = state.pop()
                self._queued -= 1
                state.running += 1
                self._running += 1
                self._mark_ready(session_id, state)
            self._local.seq = seq
            try:
                self._handler(item)
            except BaseException:  # a handler must never kill a worker
                logger.exception(f"[Dispatcher] handling a message of session {session_id} failed")
            finally:
                self._local.seq = None
                with self._cond:
                    state.running -= 1
                    self._running -= 1
                    self._mark_ready(session_id, state)
                    self._forget_if_idle(session_id, state)
                    if not self._queued and not self._running:
                        self._idle.notify_all()

    # -- lifecycle
    def stop_accepting(self) -> None:
        with self._cond:
            self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    def pending(self) -> int:
        """Items queued or running."""
        with self._cond:
            return self._queued + self._running

    def session_count(self) -> int:
        with self._cond:
            return len(self._sessions)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queued or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def close(self) -> None:
        """Stop the workers once the queues are empty (call wait_idle first to let them finish)."""
        with self._cond:
            self._accepting = False
            self._closed = True
            self._cond.notify_all()
