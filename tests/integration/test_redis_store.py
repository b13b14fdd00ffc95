"""What only the Redis store has to get right (the shared contract is tests/unit/test_store.py,
run against Redis there too): a reply lost on the wire and the command retried applies the
change once; Redis lost and back without reopening the store; two stores (two instances)
sharing one Redis; prefixes keeping bots apart; a newer schema refused."""
from __future__ import annotations

import socket
import threading
import uuid

import pytest

from common.store import DedupKey, StoreError
from common.store.redis_store import RedisStore
from tests.e2e.daemon import wait_until
from tests.redis_server import RedisServer


class ReplyCuttingProxy:
    """A TCP proxy in front of Redis. Once armed, it drops the next reply coming back from
    Redis and closes that connection: the command ran, the client never hears of it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if replies and self.armed.is_set():
                    self.armed.clear()
                    self.cut += 1
                    break  # the reply is dropped on the floor
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            s.close()


@pytest.fixture
def prefix() -> str:
    return f"it:{uuid.uuid4().hex}:"


@pytest.fixture
def proxied(redis_server, prefix):
    proxy = ReplyCuttingProxy(redis_server.port)
    store = RedisStore(proxy.url, prefix)
    yield proxy, store
    store.close()
    proxy.close()


def test_a_lost_reply_does_not_apply_a_change_twice(proxied, redis_server, prefix) -> None:
    proxy, store = proxied
    direct = RedisStore(redis_server.url, prefix)
    try:
        # Each script run once first: a cut must hit a run of the script, not the NOSCRIPT
        # answer of its first use (the client then loads it and runs it for the first time).
        store.inbox_add("web", "u", {"warm": "up"})
        store.seen("warm", "up", ttl=60)
        store.push("warm", "up", 1)
        store.pop_all("warm", "up")

        key = DedupKey("dedup:web", "u/m1", 60)
        proxy.armed.set()
        item = store.inbox_add("web", "u", {"q": 1}, dedup=key)
        assert proxy.cut == 1
        # The retry is told the id the first (unheard) run gave, not "a duplicate".
        assert item is not None
        assert [i.record for i in direct.inbox_items("web")] == [{"warm": "up"}, {"q": 1}]
        assert store.inbox_add("web", "u", {"q": 1}, dedup=key) is None  # a real redelivery

        proxy.armed.set()
        assert store.seen("dedup:x", "m2", ttl=60) is False  # first sight, even though retried
        assert proxy.cut == 2 and store.seen("dedup:x", "m2", ttl=60) is True

        proxy.armed.set()
        store.push("reply", "u", "only once")
        assert proxy.cut == 3
        store.push("reply", "u", "second")
        proxy.armed.set()
        assert store.pop_all("reply", "u") == ["only once", "second"]  # retried: nothing lost
        assert proxy.cut == 4
        assert direct.pop_all("reply", "u") == []
    finally:
        direct.close()


def test_redis_lost_and_back_without_reopening_the_store(tmp_path, prefix) -> None:
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(server.url, prefix)
    try:
        first = store.inbox_add("web", "u", {"q": "before"})
        server.kill()
        with pytest.raises(StoreError) as info:
            store.inbox_add("web", "u", {"q": "while down"})
        assert f"Redis at {server.url} is unreachable (inbox_add)" in str(info.value)
        with pytest.raises(StoreError):
            store.put("ns", "k", 1)
        server.start()  # same port; the append-only file brings back what was written
        wait_until(lambda: _works(store), 10, "the store to reach Redis again")
        assert [(i.id, i.record) for i in store.inbox_items("web")] == [(first, {"q": "before"})]
        later = store.inbox_add("web", "u", {"q": "after"})
        assert later > first  # the id counter survived too: ids keep acceptance order
    finally:
        store.close()
        server.stop()


def _works(store: RedisStore) -> bool:
    try:
        store.put("ns", "probe", 1)
        return True
    except StoreError:
        return False


def test_two_stores_on_one_redis_share_state_and_dedup(redis_server, prefix) -> None:
    a, b = RedisStore(redis_server.url, prefix), RedisStore(redis_server.url, prefix)
    other = RedisStore(redis_server.url, prefix + "other-bot:")
    try:
        a.save_user_datas({"u": {"k": 1}})
        assert b.load_user_datas() == {"u": {"k": 1}}
        item = a.inbox_add("web", "s", "r", dedup=DedupKey("d", "m", 60))
        assert b.inbox_add("web", "s", "r", dedup=DedupKey("d", "m", 60)) is None
        assert [i.id for i in b.inbox_items("web")] == [item]
        barrier = threading.Barrier(16)
        results: list[bool] = []

        def racer(store: RedisStore) -> None:
            barrier.wait(10)
            results.append(store.seen("d", "race", ttl=60))

        threads = [threading.Thread(target=racer, args=(s,)) for s in (a, b) * 8]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [False] + [True] * 15
        # Another prefix is another bot: it sees none of it.
        assert other.load_user_datas() == {} and other.inbox_count() == 0 and not other.is_seen("d", "m")
    finally:
        for s in (a, b, other):
            s.close()


def test_state_of_a_newer_schema_is_refused(redis_server, prefix) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.set(prefix + "schema", 99)
    client.close()
    with pytest.raises(StoreError) as info:
        RedisStore(redis_server.url, prefix)
    assert "schema version '99'" in str(info.value) and "redis_key_prefix" in str(info.value)


def test_a_url_that_is_not_redis_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError) as info:
        RedisStore("http://user:secret@127.0.0.1:6379/0")
    assert "secret" not in str(info.value) and "scheme" in str(info.value)


def test_a_lease_is_held_by_one_owner_until_given_back_or_run_out(redis_server, prefix) -> None:
    a, b = RedisStore(redis_server.url, prefix), RedisStore(redis_server.url, prefix)
    try:
        assert a.take_lease("wx.lock", "host-a:/data", ttl=30) == "host-a:/data"
        assert b.take_lease("wx.lock", "host-b:/data", ttl=30) == "host-a:/data"  # held: told by whom
        assert a.take_lease("wx.lock", "host-a:/data", ttl=30) == "host-a:/data"  # the holder renews
        assert b.release_lease("wx.lock", "host-b:/data") is False  # not b's to give back
        assert a.release_lease("wx.lock", "host-a:/data") is True
        assert b.take_lease("wx.lock", "host-b:/data", ttl=0.05) == "host-b:/data"
        # Redis's own expiry ends a lease whose holder stopped renewing it (a dead host).
        wait_until(lambda: a.take_lease("wx.lock", "host-a:/data", ttl=30) == "host-a:/data", 10, "the lease to run out")
    finally:
        a.close()
        b.close()


def test_without_redis_server_the_tests_fail_under_ci_and_skip_elsewhere(monkeypatch, tmp_path) -> None:
    from tests.redis_server import require_redis_server

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named redis-server there
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        require_redis_server()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        require_redis_server()
