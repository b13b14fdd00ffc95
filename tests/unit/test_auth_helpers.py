"""common/attempt_limiter, common/secret_compare, common/json_limits, common/store/write_probe."""
from __future__ import annotations

import sqlite3
import threading
import time
import unicodedata

import pytest

from common.attempt_limiter import AttemptLimiter
from common.json_limits import JsonTooDeep, depth, loads_limited
from common.secret_compare import header_candidates, header_matches, same_secret
from common.store import SQLiteStore
from common.store.write_probe import WriteProbe
from tests.fakes.clock import FakeClock


def test_failures_block_a_key_for_the_rest_of_the_window():
    clock = FakeClock()
    limiter = AttemptLimiter(3, 600, clock=clock)
    for _ in range(2):
        limiter.fail(["u"])
    assert limiter.wait(["u"]) == 0
    limiter.fail(["u"])
    assert limiter.wait(["u"]) == pytest.approx(600)
    assert limiter.wait(["other"]) == 0
    assert limiter.wait(["other", "u"]) == pytest.approx(600)  # any key blocked blocks
    clock.advance(599)
    assert limiter.wait(["u"]) == pytest.approx(1)
    clock.advance(1)
    assert limiter.wait(["u"]) == 0
    limiter.fail(["u"])
    limiter.forget("u")
    assert limiter.wait(["u"]) == 0


def test_the_failure_table_stays_bounded():
    limiter = AttemptLimiter(5, 600, max_keys=100, clock=FakeClock())
    for i in range(10_000):
        limiter.fail([f"user-{i}"])
    assert len(limiter) == 100
    for _ in range(5):
        limiter.fail(["attacker"])
    assert limiter.wait(["attacker"]) > 0  # the newest keys are the ones kept


def test_passwords_compare_as_nfc_utf8():
    composed = "Ångström"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert same_secret(decomposed, composed) and same_secret(composed, decomposed)
    assert not same_secret("Angstrom", composed)
    assert not same_secret("", "")  # no password set matches nothing
    assert same_secret("口令", "口令") and not same_secret("口", "口令")


def test_a_header_is_read_as_utf8_and_as_latin1():
    password = "pässwörd"
    as_utf8 = password.encode("utf-8").decode("latin-1")  # what the server hands over for UTF-8 bytes
    as_latin1 = password.encode("latin-1").decode("latin-1")
    assert header_candidates(as_utf8)[0] == password
    assert header_matches(as_utf8, password)
    assert header_matches(as_latin1, password)
    assert not header_matches("p\u00e4sswort", password)
    assert header_matches("plain", "plain") and not header_matches("plain", "other")


def test_json_nesting_is_bounded_without_recursion():
    assert loads_limited('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    assert depth({"a": [1, {"b": 2}]}) == 3
    loads_limited("[" * 32 + "]" * 32)
    for n in (33, 1000, 200_000):
        with pytest.raises(JsonTooDeep):
            loads_limited("[" * n + "]" * n)
    with pytest.raises(ValueError):
        loads_limited("{not json")


def test_write_probe_reports_a_store_that_cannot_write(tmp_path):
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "state.db"))
    probe = WriteProbe(store, interval=5, clock=clock)
    assert probe.problem() is None
    store.close()
    assert probe.problem() is None  # the last outcome, for `interval` seconds
    clock.advance(5)
    assert "cannot write" in probe.problem()


def test_write_probe_says_so_when_a_write_hangs(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    probe = WriteProbe(store, interval=0, stall=2, clock=clock)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    first: list = []
    writer = threading.Thread(target=lambda: first.append(probe.problem()))
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while probe._started is None and time.monotonic() < deadline:  # until the writer waits for the lock
            time.sleep(0.01)
        clock.advance(3)
        assert "waiting 3 s" in probe.problem()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        writer.join(20)
    assert first == [None]  # once the lock was free, the write went through
    store.close()
