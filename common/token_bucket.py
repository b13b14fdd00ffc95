"""A token bucket limiting requests per minute (``rate_limit_chatgpt`` etc.)."""
from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    """``tpm`` tokens per minute, at most ``tpm`` saved up.

    Unlike the original, no thread drips tokens in: the refill is computed from
    the clock whenever a token is asked for, so an idle bucket costs nothing
    and ``close()`` has no thread to stop. The bucket also starts full rather
    than empty: the original made the first request after start-up wait
    60/tpm seconds, while a bucket left idle could burst ``tpm`` anyway.
    """

    def __init__(
        self,
        tpm: int,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        burst: int | None = None,
    ) -> None:
        """`burst`: at most this many tokens saved up (default `tpm`): a per-second limit is
        `TokenBucket(60 * n, burst=n)`."""
        if int(tpm) <= 0:
            raise ValueError(f"tpm must be a positive number, got {tpm!r}")
        self.capacity = int(tpm) if burst is None else max(1, int(burst))
        self.rate = int(tpm) / 60.0  # tokens per second
        self.timeout = timeout
        self._clock = clock
        self._tokens = float(self.capacity)
        self._last = clock()
        self._closed = False
        self._cond = threading.Condition()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._last = now

    def get_token(self, timeout: float | None | object = ...) -> bool:
        """Take a token, waiting up to ``timeout`` seconds (forever if None; the bucket's
        ``timeout`` when not given).

        False when the wait timed out or the bucket was closed.
        """
        timeout = self.timeout if timeout is ... else timeout
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
                if deadline is not None:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return False
                    wait = min(wait, remaining)
                # Woken early only by close(); otherwise sleep until the next token is due.
                self._cond.wait(wait)
            return False

    def close(self) -> None:
        """Make every current and future ``get_token`` return False."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
