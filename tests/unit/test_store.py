"""Tests of common/store: both backends, durability across kill -9, safe pickle import."""
from __future__ import annotations

import io
import os
import pickle
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.fakes.clock import FakeClock
from common.store import (
    DedupKey,
    MemoryStore,
    SQLiteStore,
    StateStore,
    StoreError,
    import_user_datas_pickle,
    open_store,
)

REPO_ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SQLiteStore(str(tmp_path / "state.db"), clock=clock)
    elif request.param == "redis":
        from common.store.redis_store import RedisStore

        server = request.getfixturevalue("redis_server")
        # A prefix of its own per test: the session's one server starts every test empty.
        s = RedisStore(server.url, prefix=f"test:{uuid.uuid4().hex}:", clock=clock)
    else:
        s = MemoryStore(clock=clock)
    yield s
    s.close()


# -- user data ------------------------------------------------------------------

def test_user_datas_roundtrip(store: StateStore) -> None:
    assert store.load_user_datas() == {}
    store.save_user_datas({"u1": {"openai_api_key": "x", "n": 1}, "u2": {"gpt_model": "gpt-4"}})
    store.save_user_datas({"u1": {"openai_api_key": "y"}})  # upsert replaces the whole record
    assert store.load_user_datas() == {"u1": {"openai_api_key": "y"}, "u2": {"gpt_model": "gpt-4"}}
    store.save_user_datas({})
    store.delete_user_data("u2")
    store.delete_user_data("nobody")
    assert store.load_user_datas() == {"u1": {"openai_api_key": "y"}}


def test_returned_values_are_copies(store: StateStore) -> None:
    store.save_user_datas({"u": {"a": [1]}})
    store.load_user_datas()["u"]["a"].append(2)
    assert store.load_user_datas() == {"u": {"a": [1]}}
    store.put("ns", "k", {"t": (1, 2)})
    assert store.get("ns", "k") == {"t": [1, 2]}  # same JSON shape in both backends


def test_save_user_datas_is_all_or_nothing(store: StateStore) -> None:
    store.save_user_datas({"u1": {"v": 1}})
    with pytest.raises(TypeError):
        store.save_user_datas({"u1": {"v": 2}, "u2": {"bad": object()}})
    with pytest.raises(TypeError):
        store.save_user_datas({"u3": ["not", "a", "dict"]})  # type: ignore[dict-item]
    assert store.load_user_datas() == {"u1": {"v": 1}}


def test_user_data_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "dir" / "state.db")  # parent folders are created
    with SQLiteStore(path) as s:
        s.save_user_datas({"u1": {"openai_api_key": "x"}, "中文": {"k": "值"}})
        s.put("dify", "session", {"conversation_id": "c1", "count": 3})
        s.put("ttl", "k", 1, ttl=3600)
        s.push("q", "user", "a")
        assert s.seen("dedup", "m1", ttl=3600) is False
    with SQLiteStore(path) as s:
        assert s.load_user_datas() == {"u1": {"openai_api_key": "x"}, "中文": {"k": "值"}}
        assert s.get("dify", "session") == {"conversation_id": "c1", "count": 3}
        assert s.get("ttl", "k") == 1
        assert s.pop_all("q", "user") == ["a"]
        assert s.seen("dedup", "m1", ttl=3600) is True


# -- key/value --------------------------------------------------------------------

def test_kv_basics(store: StateStore) -> None:
    assert store.get("ns", "missing") is None
    assert store.get("ns", "missing", "dflt") == "dflt"
    store.put("ns", "b", [1, "two", None, True, 2.5])
    store.put("ns", "a", {"x": 1})
    store.put("other", "a", "elsewhere")
    store.put("ns", "nullish", None)
    assert store.get("ns", "nullish", "dflt") is None  # a stored None is not "missing"
    assert store.get("ns", "b") == [1, "two", None, True, 2.5]
    assert store.items("ns") == [("a", {"x": 1}), ("b", [1, "two", None, True, 2.5]), ("nullish", None)]
    store.put("ns", "a", {"x": 2})
    assert store.get("ns", "a") == {"x": 2}
    assert store.delete("ns", "a") is True
    assert store.delete("ns", "a") is False
    assert store.clear("ns") == 2
    assert store.items("ns") == []
    assert store.clear("ns") == 0
    assert store.items("other") == [("a", "elsewhere")]


def test_empty_names_are_names_too(store: StateStore, clock: FakeClock) -> None:
    store.put("", "", "empty", ttl=10)
    store.put("", "k", "kept")
    assert store.items("") == [("", "empty"), ("k", "kept")] and store.items("k") == []
    assert store.seen("", "", ttl=10) is False and store.seen("", "", ttl=10) is True
    item = store.inbox_add("", "", {"q": 1})
    assert [i.record for i in store.inbox_items("")] == [{"q": 1}] and store.inbox_count("") == 1
    clock.advance(10)
    assert store.purge_expired() == 2  # the value and the dedup key under ""
    assert store.items("") == [("k", "kept")] and store.seen("", "", ttl=10) is False
    assert store.inbox_done(item) is True and store.inbox_count() == 0


def test_kv_rejects_bad_input(store: StateStore) -> None:
    with pytest.raises(TypeError):
        store.put("ns", "k", {1, 2})
    with pytest.raises(TypeError):
        store.put("ns", 5, "v")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.put("ns", "k", "v", ttl=0)
    with pytest.raises(ValueError):
        store.put("ns", "k", "v", ttl=-1)
    with pytest.raises(ValueError):
        store.seen("ns", "k", ttl=0)
    assert store.get("ns", "k") is None


def test_ttl_expiry(store: StateStore, clock: FakeClock) -> None:
    store.put("ns", "short", "s", ttl=10)
    store.put("ns", "long", "l", ttl=100)
    store.put("ns", "forever", "f")
    clock.advance(9.9)
    assert store.get("ns", "short") == "s"
    clock.advance(0.1)  # exactly at expires_at: gone
    assert store.get("ns", "short", "gone") == "gone"
    assert store.items("ns") == [("forever", "f"), ("long", "l")]
    assert store.delete("ns", "short") is False  # expired counts as missing
    store.put("ns", "short2", "s", ttl=10)
    clock.advance(10)
    assert store.clear("ns") == 2  # only the live ones are counted
    store.put("ns", "x", 1, ttl=5)
    store.put("ns", "y", 1)
    store.seen("d", "m", ttl=5)
    clock.advance(5)
    store.put("ns", "x", 2)  # rewriting an expired key makes it live again, without TTL
    store.put("ns", "z", 1, ttl=1)
    clock.advance(1)
    assert store.purge_expired() == 2  # z and the dedup key
    assert store.purge_expired() == 0
    assert store.items("ns") == [("x", 2), ("y", 1)]


def test_ttl_survives_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "state.db")
    with SQLiteStore(path, clock=clock) as s:
        s.put("ns", "k", "v", ttl=60)
        s.seen("d", "m", ttl=60)
    clock.advance(30)
    with SQLiteStore(path, clock=clock) as s:
        assert s.get("ns", "k") == "v"
        assert s.seen("d", "m", ttl=60) is True
    clock.advance(30)
    with SQLiteStore(path, clock=clock) as s:  # opening purges what has expired
        assert s.get("ns", "k") is None
        assert s.purge_expired() == 0
        assert s.seen("d", "m", ttl=60) is False


# -- dedup --------------------------------------------------------------------------

def test_seen(store: StateStore, clock: FakeClock) -> None:
    assert store.seen("msg", "id1", ttl=60) is False
    assert store.seen("msg", "id1", ttl=60) is True
    assert store.seen("other", "id1", ttl=60) is False  # namespaces are separate
    clock.advance(59)
    assert store.seen("msg", "id1", ttl=60) is True  # a hit does not extend the window
    clock.advance(1)
    assert store.seen("msg", "id1", ttl=60) is False
    assert store.seen("msg", "id1", ttl=60) is True
    assert store.items("msg") == []  # dedup keys do not leak into key/value


def _race(seen_calls: list[Callable[[], bool]]) -> list[bool]:
    barrier = threading.Barrier(len(seen_calls))
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(call: Callable[[], bool]) -> None:
        try:
            barrier.wait(timeout=10)
            r = call()
            with lock:
                results.append(r)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in seen_calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_seen_race_16_threads(store: StateStore) -> None:
    for round_ in range(5):
        key = f"msg-{round_}"
        results = _race([lambda k=key: store.seen("dedup", k, ttl=60)] * 16)
        assert len(results) == 16
        assert results.count(False) == 1


def test_seen_race_across_connections(tmp_path: Path) -> None:
    # Two stores on one file stand in for two processes: only the database
    # lock (BEGIN IMMEDIATE), not the in-process mutex, keeps this correct.
    path = str(tmp_path / "state.db")
    with SQLiteStore(path) as a, SQLiteStore(path) as b:
        calls = [lambda s=s: s.seen("dedup", "same", ttl=60) for s in (a, b) * 8]
        results = _race(calls)
        assert results.count(False) == 1 and len(results) == 16


# -- inbox -------------------------------------------------------------------------------

def test_inbox_roundtrip_and_order(store: StateStore) -> None:
    assert store.inbox_items("web") == [] and store.inbox_count() == 0
    ids = [store.inbox_add("web", f"s{i % 2}", {"n": i}) for i in range(4)]
    other = store.inbox_add("terminal", "s0", "x")
    assert ids == sorted(ids) and len(set(ids + [other])) == 5
    assert [(i.id, i.session, i.record) for i in store.inbox_items("web")] == [
        (ids[n], f"s{n % 2}", {"n": n}) for n in range(4)
    ]
    assert store.inbox_count("web") == 4 and store.inbox_count() == 5
    assert store.inbox_done(ids[1]) is True
    assert store.inbox_done(ids[1]) is False
    assert [i.record for i in store.inbox_items("web")] == [{"n": 0}, {"n": 2}, {"n": 3}]
    # A new item after the newest was deleted still sorts last: ids are never reused.
    store.inbox_done(ids[3])
    newer = store.inbox_add("web", "s0", {"n": 4})
    assert newer > ids[3]
    assert [i.record for i in store.inbox_items("web")][-1] == {"n": 4}
    with pytest.raises(TypeError):
        store.inbox_add("web", "s0", {"bad": object()})
    assert store.inbox_count("web") == 3


def test_inbox_add_records_the_dedup_key_with_the_item(store: StateStore, clock: FakeClock) -> None:
    key = DedupKey("dedup:web", "u/m1", 60)
    assert store.is_seen("dedup:web", "u/m1") is False
    first = store.inbox_add("web", "u", {"q": 1}, dedup=key)
    assert first is not None
    assert store.is_seen("dedup:web", "u/m1") is True
    assert store.inbox_add("web", "u", {"q": 1}, dedup=key) is None  # a retry: nothing stored
    assert store.inbox_count("web") == 1
    assert store.seen("dedup:web", "u/m1", ttl=60) is True  # the same key seen() uses
    store.inbox_done(first)
    assert store.inbox_add("web", "u", {"q": 1}, dedup=key) is None  # answered: still a duplicate
    clock.advance(60)
    assert store.is_seen("dedup:web", "u/m1") is False
    assert store.inbox_add("web", "u", {"q": 1}, dedup=key) is not None


def test_inbox_add_dedup_race(store: StateStore) -> None:
    key = DedupKey("dedup", "same", 60)
    results = _race([lambda: store.inbox_add("web", "u", "r", dedup=key) is not None] * 16)
    assert results.count(True) == 1
    assert store.inbox_count("web") == 1


def test_inbox_survives_reopen_and_v1_files_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    # A schema v1 file, as the previous release wrote it.
    from common.store.sqlite_store import _SCHEMA_V1

    conn = sqlite3.connect(path)
    for statement in _SCHEMA_V1:
        conn.execute(statement)
    conn.execute("INSERT INTO user_data (user, data) VALUES ('u1', '{\"k\": 1}')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SQLiteStore(str(path)) as s:
        assert s.load_user_datas() == {"u1": {"k": 1}}
        item = s.inbox_add("web", "u1", {"q": "hello"})
    with SQLiteStore(str(path)) as s:
        assert [(i.id, i.record, i.replied) for i in s.inbox_items("web")] == [(item, {"q": "hello"}, None)]
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == 3


def test_v2_inbox_rows_survive_the_v3_migration(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    from common.store.sqlite_store import _SCHEMA_V1, _SCHEMA_V2

    conn = sqlite3.connect(path)
    for statement in _SCHEMA_V1 + _SCHEMA_V2:
        conn.execute(statement)
    conn.execute("INSERT INTO inbox (channel, session, record, created) VALUES ('web', 'u1', '{\"q\": 1}', 5.0)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with SQLiteStore(str(path)) as s:
        [item] = s.inbox_items("web")
        assert (item.session, item.record, item.created, item.replied) == ("u1", {"q": 1}, 5.0, None)
        assert s.inbox_mark(item.id, "partial")
    with SQLiteStore(str(path)) as s:
        assert [i.replied for i in s.inbox_items("web")] == ["partial"]
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == 3


def test_inbox_mark_records_a_reply_until_the_item_is_done(store: StateStore) -> None:
    first = store.inbox_add("web", "u1", {"q": "a"})
    second = store.inbox_add("web", "u1", {"q": "b"})
    assert store.inbox_mark(first, "partial")
    assert [(i.id, i.replied) for i in store.inbox_items("web")] == [(first, "partial"), (second, None)]
    assert store.inbox_mark(first, "final")
    assert [(i.id, i.replied) for i in store.inbox_items("web")] == [(first, "final"), (second, None)]
    assert store.inbox_done(first)
    assert not store.inbox_mark(first, "final")  # gone: nothing to mark
    assert [(i.id, i.replied) for i in store.inbox_items("web")] == [(second, None)]
    with pytest.raises(TypeError):
        store.inbox_mark(second, 1)  # type: ignore[arg-type]


# -- queues -----------------------------------------------------------------------------

def test_push_pop_all(store: StateStore) -> None:
    assert store.pop_all("reply", "u1") == []
    for i in range(5):
        store.push("reply", "u1", {"n": i})
    store.push("reply", "u2", "other")
    assert store.pop_all("reply", "u1") == [{"n": i} for i in range(5)]
    assert store.pop_all("reply", "u1") == []
    store.push("reply", "u1", "later")
    assert store.pop_all("reply", "u1") == ["later"]
    assert store.pop_all("reply", "u2") == ["other"]


def test_pop_all_concurrent_no_loss_no_dup(store: StateStore) -> None:
    total = 200
    got: list[int] = []
    done = threading.Event()

    def producer() -> None:
        for i in range(total):
            store.push("q", "k", i)
        done.set()

    def consumer() -> None:
        while not done.is_set():
            got.extend(store.pop_all("q", "k"))
        got.extend(store.pop_all("q", "k"))

    p, c = threading.Thread(target=producer), threading.Thread(target=consumer)
    c.start()
    p.start()
    p.join()
    c.join()
    assert got == list(range(total))


# -- lifecycle ---------------------------------------------------------------------------

def test_close_is_idempotent_and_final(store: StateStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.get("ns", "k")
    with pytest.raises(StoreError):
        store.put("ns", "k", 1)


def test_open_store(tmp_path: Path) -> None:
    s = open_store("sqlite", str(tmp_path / "appdata"))
    try:
        assert isinstance(s, SQLiteStore)
        assert (tmp_path / "appdata" / "state.db").exists()
    finally:
        s.close()
    m = open_store(" Memory ", str(tmp_path))
    assert isinstance(m, MemoryStore)
    m.close()
    with pytest.raises(ValueError) as info:
        open_store("redis-cluster", str(tmp_path))
    assert "'sqlite'" in str(info.value) and "'memory'" in str(info.value)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with SQLiteStore(str(tmp_path / "state.db")) as s:
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: enough for kill -9 in WAL mode
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # v2: the inbox; v3: its replied mark
    with SQLiteStore(str(tmp_path / "full.db"), synchronous="full") as s:
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL on request


def test_corrupt_db_raises(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not an sqlite database\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as info:
        SQLiteStore(str(path))
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage  # never silently reset


def test_damaged_db_raises(tmp_path: Path) -> None:
    # A real database whose pages were later scribbled over.
    path = tmp_path / "state.db"
    with SQLiteStore(str(path)) as s:
        s.save_user_datas({f"u{i}": {"pad": "x" * 200} for i in range(200)})
    with sqlite3.connect(str(path)) as c:  # fold the WAL back so the damage hits the main file
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    assert len(data) > 2 * page_size
    for offset in range(page_size, len(data), page_size):  # the header of every page but the first
        data[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        SQLiteStore(str(path))
    assert str(path) in str(info.value)


def test_foreign_sqlite_db_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    c = sqlite3.connect(str(path))
    c.execute("CREATE TABLE stuff (x)")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="not a state store"):
        SQLiteStore(str(path))


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(str(path)).close()
    c = sqlite3.connect(str(path))
    c.execute("PRAGMA user_version = 99")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(str(path))


def test_directory_in_place_of_db_raises(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StoreError) as info:
        SQLiteStore(str(tmp_path / "state.db"))
    assert "state.db" in str(info.value)


# -- kill -9 durability -------------------------------------------------------------------

_CHILD = r"""
import sys, time
from common.store import SQLiteStore
s = SQLiteStore(sys.argv[1])
s.put("dify", "session-1", {"conversation_id": "conv-42"})
s.save_user_datas({"u1": {"openai_api_key": "k"}})
s.seen("dedup", "msg-1", ttl=3600)
s.push("pending", "u1", "reply-1")
print("written", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL does not exist on Windows")
def test_survives_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, path],
        cwd=str(REPO_ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def read_lines() -> None:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us during cleanup

    # readline() would block forever if the child died early; a reader thread
    # lets the wait time out instead.
    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("child never reported 'written'; stderr: " + (proc.stderr.read() if proc.poll() is not None else ""))  # type: ignore[union-attr]
            if line.strip() == "written":
                break
        assert proc.poll() is None, "child exited before being killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]

    with SQLiteStore(path) as s:
        assert s.get("dify", "session-1") == {"conversation_id": "conv-42"}
        assert s.load_user_datas() == {"u1": {"openai_api_key": "k"}}
        assert s.seen("dedup", "msg-1", ttl=3600) is True
        assert s.pop_all("pending", "u1") == ["reply-1"]


# -- pickle import --------------------------------------------------------------------------

def test_pickle_import_good(tmp_path: Path) -> None:
    path = tmp_path / "user_datas.pkl"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps({"u1": {"openai_api_key": "x"}}, protocol=protocol))
        assert import_user_datas_pickle(str(path)) == {"u1": {"openai_api_key": "x"}}
    nested = {"u1": {"k": [1, 2.5, None, True, ("t",)], "d": {"x": "中文"}}, 7: {}}
    path.write_bytes(pickle.dumps(nested))
    assert import_user_datas_pickle(str(path)) == {"u1": nested["u1"], "7": {}}


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        cmd = f'"{sys.executable}" -c "open(r\'{self.marker}\', \'w\').close()"'
        if os.name == "nt":
            cmd = f'"{cmd}"'  # cmd.exe strips one outer pair of quotes
        return (os.system, (cmd,))


class _OpenPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_SystemPayload, _OpenPayload])
@pytest.mark.parametrize("nested", [False, True])
def test_pickle_import_refuses_malicious(tmp_path: Path, payload: type, nested: bool) -> None:
    marker = tmp_path / "pwned"
    evil = payload(marker)
    obj = {"u1": {"openai_api_key": evil}} if nested else evil
    path = tmp_path / "user_datas.pkl"
    path.write_bytes(pickle.dumps(obj))

    with pytest.raises(StoreError, match="refusing"):
        import_user_datas_pickle(str(path))
    assert not marker.exists()

    # Control: the same bytes through a stock unpickler really do run the
    # payload, so the assertion above is meaningful.
    control = tmp_path / "control"
    path.write_bytes(pickle.dumps(payload(control)))
    result = pickle.Unpickler(io.BytesIO(path.read_bytes())).load()
    if hasattr(result, "close"):
        result.close()
    assert control.exists()


@pytest.mark.parametrize(
    "obj, why",
    [
        ([{"u1": {}}], "top level"),
        ({"u1": "just a string"}, "expected a dict"),
        ({"u1": {"raw": b"bytes"}}, "not plain data"),
        ({"u1": {"s": {1, 2}}}, "not plain data"),
    ],
)
def test_pickle_import_refuses_wrong_shape(tmp_path: Path, obj: object, why: str) -> None:
    path = tmp_path / "user_datas.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(StoreError, match=why):
        import_user_datas_pickle(str(path))


def test_pickle_import_refuses_class_instances(tmp_path: Path) -> None:
    import datetime

    path = tmp_path / "user_datas.pkl"
    path.write_bytes(pickle.dumps({"u1": {"when": datetime.date(2024, 1, 1)}}))
    with pytest.raises(StoreError, match="refusing"):
        import_user_datas_pickle(str(path))


def test_pickle_import_garbage_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "user_datas.pkl"
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(StoreError, match=str(path).replace("\\", "\\\\")):
        import_user_datas_pickle(str(path))
    with pytest.raises(StoreError):
        import_user_datas_pickle(str(tmp_path / "absent.pkl"))


def test_pickle_import_then_save(tmp_path: Path) -> None:
    path = tmp_path / "user_datas.pkl"
    path.write_bytes(pickle.dumps({"u1": {"openai_api_key": "x"}, "u2": {"gpt_model": "m"}}))
    with SQLiteStore(str(tmp_path / "state.db")) as s:
        s.save_user_datas(import_user_datas_pickle(str(path)))
        assert s.load_user_datas() == {"u1": {"openai_api_key": "x"}, "u2": {"gpt_model": "m"}}
