import copy
import json
import pickle
import threading

import pytest

from common.expired_dict import ExpiredDict
from tests.fakes.clock import FakeClock




@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_read_extends_ttl(clock):
    d = ExpiredDict(10, clock=clock)
    d["a"] = 1
    clock.advance(8)
    assert d["a"] == 1  # read at t+8 restarts the TTL
    clock.advance(8)
    assert d.get("a") == 1  # t+16: alive only because of the read
    clock.advance(8)
    assert "a" in d  # membership is a read too
    clock.advance(10.5)
    assert d.get("a", "gone") == "gone"
    with pytest.raises(KeyError):
        d["a"]


def test_listing_shows_only_live_keys_without_refreshing(clock):
    d = ExpiredDict(10, clock=clock)
    d["old"] = 1
    clock.advance(6)
    d["new"] = 2
    clock.advance(5)  # old expired, new alive
    assert d.keys() == ["new"]
    assert d.items() == [("new", 2)]
    assert d.values() == [2]
    assert list(d) == ["new"]
    assert len(d) == 1
    clock.advance(3)  # listing above must not have refreshed "new"
    d.keys(), d.items(), list(d)
    clock.advance(3)
    assert len(d) == 0


def test_expired_entries_are_purged_without_reads(clock):
    d = ExpiredDict(10, maxsize=None, clock=clock)
    for i in range(1000):
        d[f"k{i}"] = i
    clock.advance(11)
    d["fresh"] = 0  # a write purges the expired front
    assert dict.__len__(d) == 1


def test_memory_stays_bounded_with_many_distinct_keys(clock):
    d = ExpiredDict(60, maxsize=None, clock=clock)
    for i in range(100_000):
        d[i] = i
        clock.advance(0.01)  # ~6000 keys alive at any moment
    assert dict.__len__(d) <= 6001
    bounded = ExpiredDict(3600, maxsize=500, clock=clock)
    for i in range(100_000):
        bounded[i] = i
    assert dict.__len__(bounded) == 500


def test_lru_eviction_at_maxsize(clock):
    d = ExpiredDict(100, maxsize=3, clock=clock)
    d["a"], d["b"], d["c"] = 1, 2, 3
    assert d["a"] == 1  # a becomes most recently used
    d["d"] = 4  # evicts b, the least recently used
    assert sorted(d.keys()) == ["a", "c", "d"]
    d["c"] = 30  # overwrite refreshes recency
    d["e"] = 5  # evicts a
    assert sorted(d.keys()) == ["c", "d", "e"]
    assert d["c"] == 30


def test_mapping_helpers(clock):
    d = ExpiredDict(10, clock=clock)
    assert d.setdefault("x", []) == []
    d.setdefault("x", ["other"]).append(1)
    assert d["x"] == [1]
    assert d.pop("x") == [1]
    assert d.pop("x", None) is None
    with pytest.raises(KeyError):
        d.pop("x")
    d["y"] = 1
    clock.advance(11)
    assert d.pop("y", "expired") == "expired"
    d["z"] = 1
    clock.advance(11)
    del d["z"]  # an expired-but-stored key can still be deleted
    with pytest.raises(KeyError):
        del d["z"]
    d["w"] = 1
    d.clear()
    assert len(d) == 0
    with pytest.raises(ValueError):
        ExpiredDict(-1)
    with pytest.raises(ValueError):
        ExpiredDict(1, maxsize=0)


def test_thread_safety():
    d = ExpiredDict(60, maxsize=1000)

    def worker(n: int) -> None:
        for i in range(2000):
            d[(n, i)] = i
            d.get((n, i - 1))
            if i % 100 == 0:
                d.keys()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(d) == 1000


def test_it_is_a_dict_with_the_originals_api(clock):
    d = ExpiredDict(10, clock=clock)
    assert isinstance(d, dict)
    assert ExpiredDict(0).expires_in_seconds == 3600  # the original's "not set"
    assert ExpiredDict(None).expires_in_seconds == 3600
    d["a"] = 1
    d.update({"b": 2}, c=3)
    assert d["b"] == 2 and d["c"] == 3
    snapshot = d.copy()
    assert type(snapshot) is dict and snapshot == {"a": 1, "b": 2, "c": 3}
    snapshot["z"] = 26
    assert "z" not in d
    assert d == {"a": 1, "b": 2, "c": 3} and d != {"a": 1}
    assert dict(d) == {**d} == {"a": 1, "b": 2, "c": 3}
    assert json.dumps(d, sort_keys=True) == '{"a": 1, "b": 2, "c": 3}'
    assert d | {"d": 4} == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert d.popitem() == ("c", 3)
    clock.advance(11)  # everything expired: no dict view shows it any more
    assert d == {} and not d and d.copy() == {} and json.dumps(d) == "{}" and dict(d) == {}


def test_entries_added_by_update_expire_too(clock):
    d = ExpiredDict(10, clock=clock)
    d.update([("k", "v")])
    d |= {"m": "w"}
    clock.advance(11)
    assert d.get("k") is None and "m" not in d


def test_copy_module_keeps_the_type_and_the_remaining_time(clock):
    d = ExpiredDict(10, clock=clock)
    d["list"] = [1]
    clock.advance(6)
    shallow, deep = copy.copy(d), copy.deepcopy(d)
    assert isinstance(shallow, ExpiredDict) and shallow == d
    deep.values()[0].append(2)  # listing does not restart deep's TTL
    assert d["list"] == [1]  # the read restarts d's TTL only
    clock.advance(5)
    assert "list" not in shallow and "list" not in deep and d["list"] == [1]
    restored = pickle.loads(pickle.dumps(ExpiredDict(10)))
    assert isinstance(restored, ExpiredDict) and restored == {}
