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

Bounds: `queue_size` per session, `max_pending` items (queued + running) over all
sessions and `max_pending_weight` over all sessions (each submit says what its item
weighs: the chat channel gives the length of the message text, which is most of
what a waiting message costs), so memory has a ceiling whatever the number of users
and however long their messages.

Durability is the caller's: `submit(..., persist=fn)` calls `fn` (the store write)
after the item is known to fit and before it is queued, one submit at a time, so
what is persisted is exactly what is queued, in queue order.

Stall relief: when work waits, every worker is busy and no worker has started an
item for `stall_seconds`, one more worker is added (at most `max_workers` in all);
an added worker leaves after `extra_idle_seconds` without work. A few slow items
(an endless stream, a slow download) then cannot silence every other session.
"""
from __future__ import annotations

import collections
import enum
import threading
import time
from typing import Any, Callable

from common.log import logger


# `#` commands that may wait in one session besides its `queue_size` ordinary messages.
URGENT_QUEUE_SIZE = 10
# Stall relief defaults (see the module docstring).
STALL_SECONDS = 5.0
EXTRA_IDLE_SECONDS = 30.0
MAX_WORKERS_FACTOR = 4


class Admission(enum.Enum):
    """What submit() did with an item. Only ACCEPTED is true."""

    ACCEPTED = "accepted"
    SESSION_FULL = "session_full"  # the session's queue is full
    ALL_FULL = "all_full"  # max_pending items (or max_pending_weight) are queued or running
    STOPPING = "stopping"

    def __bool__(self) -> bool:
        return self is Admission.ACCEPTED


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
        max_pending: int | None = None,
        max_pending_weight: int | None = None,
        stall_seconds: float = STALL_SECONDS,
        max_workers: int | None = None,
        extra_idle_seconds: float = EXTRA_IDLE_SECONDS,
    ) -> None:
        self._handler = handler
        self._concurrency = max(1, int(concurrency))
        self._queue_size = max(1, int(queue_size))
        self._max_pending = None if max_pending is None else max(1, int(max_pending))
        self._max_weight = None if max_pending_weight is None else max(1, int(max_pending_weight))
        # Weight of the items queued or running, and each one's by sequence number (only
        # items that weigh something are listed).
        self._weight = 0
        self._weights: dict[int, int] = {}
        self._sessions: dict[str, _SessionState] = {}
        self._ready: collections.deque[str] = collections.deque()
        lock = threading.Lock()
        # Three conditions on one lock: workers wait for work, wait_idle() waits for
        # quiet, the stall watch waits for a stall, and a notify meant for one never
        # wakes the others.
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)
        self._watch = threading.Condition(lock)
        # One submit at a time (its store write included): persisted order is queue order.
        self._submit_lock = threading.Lock()
        self._accepting = True
        self._closed = False
        self._halted = False
        self._queued = 0
        self._running = 0
        self._next_seq = 1
        # The sequence number of the item a worker thread is handling (see current_seq).
        self._local = threading.local()
        self._name = name
        base = max(1, int(workers))
        self._base_workers = base
        self._max_workers = max(base, int(max_workers) if max_workers is not None else base * MAX_WORKERS_FACTOR)
        self._stall_seconds = float(stall_seconds)
        self._extra_idle_seconds = float(extra_idle_seconds)
        self._workers = 0  # threads alive
        self._waiting_workers = 0  # of them, waiting for work
        self._extra_started = 0
        self._last_start = time.monotonic()  # when a worker last took an item
        self._watch_asleep = False  # the stall watch waits for a notify (not on a timer)
        for i in range(base):
            self._spawn(f"{name}-{i}", extra=False)
        if self._max_workers > base:
            threading.Thread(target=self._watch_stalls, name=f"{name}-stall-watch", daemon=True).start()

    def _spawn(self, thread_name: str, extra: bool) -> None:
        # Counted before it runs, so the stall watch never adds two for one stall.
        self._workers += 1
        threading.Thread(target=self._work, args=(extra,), name=thread_name, daemon=True).start()

    # -- producing
    def submit(self, session_id: str, item: Any, urgent: bool = False,
               persist: Callable[[], None] | None = None, weight: int = 0) -> Admission:
        """Queue `item` for `session_id`; see Admission for the answers.

        `persist`, when given, runs once the item is known to fit and before it is queued;
        if it raises, nothing is queued and the exception propagates. `weight` counts
        against max_pending_weight until the item is handled or cancelled (an item alone
        is always taken when nothing else is pending, however much it weighs)."""
        weight = max(0, int(weight))
        with self._submit_lock:
            with self._cond:
                if not self._accepting:
                    return Admission.STOPPING
                refused = self._check_room(session_id, urgent, weight)
                if refused is not None:
                    return refused
            # Outside the dispatcher's lock: workers go on while the store writes. No other
            # submit runs meanwhile and workers only free room, so the item still fits.
            if persist is not None:
                persist()
            with self._cond:
                state = self._sessions.get(session_id)
                if state is None:
                    state = self._sessions[session_id] = _SessionState()
                entry = (self._next_seq, item)
                if weight:
                    self._weights[self._next_seq] = weight
                    self._weight += weight
                self._next_seq += 1
                (state.urgent if urgent else state.items).append(entry)
                self._queued += 1
                self._mark_ready(session_id, state)
                return Admission.ACCEPTED

    def submit_kept(self, entries: list[tuple]) -> None:
        """Queue (session_id, item, urgent[, weight]) entries accepted before a restart, all at
        once and past the bounds: no worker starts one before the others are queued, so
        commands among them go first, as they did when they were received. Their weight counts
        against new submits until they are handled."""
        with self._submit_lock, self._cond:
            for session_id, item, urgent, *rest in entries:
                state = self._sessions.get(session_id)
                if state is None:
                    state = self._sessions[session_id] = _SessionState()
                (state.urgent if urgent else state.items).append((self._next_seq, item))
                weight = max(0, int(rest[0])) if rest else 0
                if weight:
                    self._weights[self._next_seq] = weight
                    self._weight += weight
                self._next_seq += 1
                self._queued += 1
            for session_id, *_ in entries:
                self._mark_ready(session_id, self._sessions[session_id])

    def _check_room(self, session_id: str, urgent: bool, weight: int = 0) -> Admission | None:
        # Caller holds the lock.
        if self._max_pending is not None and self._queued + self._running >= self._max_pending:
            return Admission.ALL_FULL
        # Past the weight bound only what weighs nothing (a picture, a file: count-bound only) is taken.
        if self._max_weight is not None and weight and self._weight and self._weight + weight > self._max_weight:
            return Admission.ALL_FULL
        state = self._sessions.get(session_id)
        if state is None:
            return None
        # Commands have their own small allowance: a full queue is when #reset is needed most.
        if (len(state.urgent) >= URGENT_QUEUE_SIZE) if urgent else (state.waiting() >= self._queue_size):
            return Admission.SESSION_FULL
        return None

    def _mark_ready(self, session_id: str, state: _SessionState) -> None:
        # Caller holds the lock.
        if not state.ready and state.waiting() and state.running < self._concurrency:
            state.ready = True
            self._ready.append(session_id)
            self._cond.notify()
            if not self._waiting_workers and self._watch_asleep:
                # Woken once per stall, not once per message: a busy pool would otherwise
                # wake the watch for every submit.
                self._watch_asleep = False
                self._watch.notify()

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
            self._unweigh(seq for seq, _ in dropped)
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
            self._unweigh(seq for seq, _ in dropped)
            self._idle.notify_all()
            return [item for _, item in sorted(dropped, key=lambda entry: entry[0])]

    def _unweigh(self, seqs) -> None:
        # Caller holds the lock.
        for seq in seqs:
            self._weight -= self._weights.pop(seq, 0)

    def _forget_if_idle(self, session_id: str, state: _SessionState) -> None:
        if not state.waiting() and state.running == 0 and not state.ready:
            self._sessions.pop(session_id, None)

    # -- working
    def _work(self, extra: bool) -> None:
        try:
            self._work_loop(extra)
        finally:
            with self._cond:
                self._workers -= 1

    def _work_loop(self, extra: bool) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closed and not self._halted:
                    self._waiting_workers += 1
                    try:
                        woken = self._cond.wait(self._extra_idle_seconds if extra else None)
                    finally:
                        self._waiting_workers -= 1
                    if extra and not woken and not self._ready:
                        return  # an added worker with nothing to do for a while leaves
                if self._halted or (self._closed and not self._ready):
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
                self._last_start = time.monotonic()
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
                    self._unweigh((seq,))
                    self._mark_ready(session_id, state)
                    self._forget_if_idle(session_id, state)
                    if not self._queued and not self._running:
                        self._idle.notify_all()

    def _watch_stalls(self) -> None:
        """Add a worker when work has waited `stall_seconds` with every worker busy."""
        with self._cond:
            while not self._closed and not self._halted:
                stalled = self._ready and not self._waiting_workers and self._workers < self._max_workers
                if not stalled:
                    self._watch_asleep = True
                    self._watch.wait()
                    self._watch_asleep = False
                    continue
                waited = time.monotonic() - self._last_start
                if waited < self._stall_seconds:
                    self._watch.wait(self._stall_seconds - waited)
                    continue
                self._extra_started += 1
                logger.warning(
                    f"[Dispatcher] every worker has been busy for {waited:.0f} s with messages waiting; "
                    f"adding a worker ({self._workers + 1} of at most {self._max_workers})"
                )
                self._spawn(f"{self._name}-extra-{self._extra_started}", extra=True)
                self._last_start = time.monotonic()  # the next one only after another stall

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

    def pending_weight(self) -> int:
        """The weight of the items queued or running."""
        with self._cond:
            return self._weight

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

    def worker_count(self) -> int:
        """Worker threads alive (the pool plus any added for stall relief)."""
        with self._cond:
            return self._workers

    def halt(self) -> int:
        """Start nothing more: what is queued stays queued (the caller keeps it for the next
        start). Returns how many items are queued or still running."""
        with self._cond:
            self._halted = True
            self._cond.notify_all()
            self._watch.notify_all()
            return self._queued + self._running

    def close(self) -> None:
        """Stop the workers once the queues are empty (call wait_idle first to let them finish)."""
        with self._cond:
            self._accepting = False
            self._closed = True
            self._cond.notify_all()
            self._watch.notify_all()
