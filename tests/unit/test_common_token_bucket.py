import threading
import time

import pytest

from common.token_bucket import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_starts_full_and_refills_lazily():
    clock = FakeClock()
    bucket = TokenBucket(60, timeout=0, clock=clock)  # 1 token per second
    assert all(bucket.get_token() for _ in range(60))
    assert not bucket.get_token()  # empty, timeout 0 returns at once
    clock.now += 0.5
    assert not bucket.get_token()
    clock.now += 0.5
    assert bucket.get_token()
    assert not bucket.get_token()
    clock.now += 3600  # capacity caps the refill
    assert sum(bucket.get_token() for _ in range(100)) == 60


def test_blocks_until_token_then_times_out():
    bucket = TokenBucket(1200, timeout=0.2)  # one token every 0.05 s
    while bucket._tokens >= 1:
        bucket._tokens -= 1
    started = time.monotonic()
    assert bucket.get_token()  # waits ~0.05 s for the next token
    assert time.monotonic() - started < 0.2

    slow = TokenBucket(1, timeout=0.1)  # one token a minute
    assert slow.get_token()
    started = time.monotonic()
    assert not slow.get_token()
    assert 0.09 <= time.monotonic() - started < 0.5


def test_close_wakes_waiters():
    bucket = TokenBucket(1, timeout=None)
    assert bucket.get_token()
    result = []
    waiter = threading.Thread(target=lambda: result.append(bucket.get_token()))
    waiter.start()
    time.sleep(0.02)
    bucket.close()
    waiter.join(1)
    assert result == [False]
    assert not bucket.get_token()


def test_invalid_tpm():
    with pytest.raises(ValueError):
        TokenBucket(0)
