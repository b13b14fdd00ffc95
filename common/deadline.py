"""A total time limit for one outbound HTTP exchange.

Per-read timeouts do not bound a server that trickles: one byte every few seconds keeps
every read within its timeout while the answer never ends, pinning the worker thread.
A :class:`Deadline` is given the socket of the exchange; when the time is up a single
watchdog thread shuts that socket down, which wakes the blocked read at once (closing
the socket from another thread would not, on Linux). The reader then sees a broken
connection and asks :attr:`Deadline.expired` to tell it from a real network failure.

One watchdog thread serves every deadline of the process (a heap of expiry times), so
a deadline costs no thread of its own.
"""
from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any, Callable

__all__ = ["Deadline", "socket_of"]


class _Watchdog:
    """Calls each scheduled function once its time has come, on one daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, fn: Callable[[], None]) -> int:
        with self._cond:
            ident = next(self._ids)
            heapq.heappush(self._heap, (when, ident, fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return ident

    def cancel(self, ident: int) -> None:
        with self._cond:
            # Dropped lazily when it reaches the top; the set never holds more than the heap.
            if any(entry[1] == ident for entry in self._heap):
                self._cancelled.add(ident)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][1] in self._cancelled:
                        self._cancelled.discard(heapq.heappop(self._heap)[1])
                    if not self._heap:
                        # Idle: the thread ends and the next deadline starts a new one.
                        if not self._cond.wait(30.0) and not self._heap:
                            self._thread = None
                            return
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        _, ident, fn = heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            try:
                fn()
            except Exception:  # a deadline's action must never kill the watchdog
                pass


_watchdog = _Watchdog()  # the process's one watchdog thread (see the module docstring)


def socket_of(response: Any) -> socket.socket | None:
    """The socket under a requests or urllib3 response (None when already released)."""
    raw = getattr(response, "raw", response)  # requests.Response -> urllib3.HTTPResponse
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        # A "Connection: close" answer: http.client has let go of the connection's socket and
        # only the response's file still holds it (http.client.HTTPResponse.fp -> SocketIO).
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class Deadline:
    """``seconds`` from now (None or <= 0: no limit), shut down the attached sockets.

    Use as a context manager, or call :meth:`cancel` when the exchange is over."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = float(seconds) if seconds and seconds > 0 else None
        self.expires = time.monotonic() + self.seconds if self.seconds else None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._done = False
        self._ident = _watchdog.call_at(self.expires, self._fire) if self.expires is not None else None

    @property
    def expired(self) -> bool:
        return self._expired or (self.expires is not None and time.monotonic() >= self.expires)

    def remaining(self) -> float | None:
        """Seconds left (never below 0), None without a limit."""
        if self.expires is None:
            return None
        return max(0.0, self.expires - time.monotonic())

    def cap(self, timeout: float | None) -> float | None:
        """``timeout`` shortened to the time left (for connect/read timeouts of one call)."""
        left = self.remaining()
        if left is None:
            return timeout
        left = max(left, 0.001)  # 0 would mean "non-blocking" to a socket
        return left if timeout is None else min(timeout, left)

    def attach(self, target: Any) -> None:
        """Watch a socket, or the socket of a requests/urllib3 response."""
        sock = target if isinstance(target, socket.socket) else socket_of(target)
        if sock is None:
            return
        with self._lock:
            if not (self._expired or self._done):
                self._sockets.append(sock)
                return
            fired = self._expired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            self._sockets = []
        if self._ident is not None:
            _watchdog.cancel(self._ident)
            self._ident = None

    def __enter__(self) -> "Deadline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
