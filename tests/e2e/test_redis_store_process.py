"""`state_store: redis` in a real `python app.py` (the web channel) against a real redis-server:
answers; Redis lost while running -> /healthz degraded and new messages refused (503, never a
200 that loses them); Redis back -> answered again without a restart; kill -9 of the daemon
with a message accepted -> answered once after the restart (the inbox is in Redis); Redis
down at start-up -> one clear line and a non-zero exit."""
from __future__ import annotations

import os
import sys
import uuid

import httpx
import pytest

from common.store.redis_store import RedisStore
from tests.e2e.daemon import run_app, wait_until, web_daemon, write_config
from tests.e2e.test_web_process import SSE, wait_idle
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="Debian's redis-server")]


def post(base: str, user: str, text: str, msg_id: str) -> httpx.Response:
    return httpx.post(base + "/message", json={"user_id": user, "message": text, "msg_id": msg_id}, timeout=20)


def bot_answers(base: str, user: str) -> list[str]:
    r = httpx.get(f"{base}/history/{user}", timeout=10)
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["messages"] if m["role"] == "bot"]


def health(base: str) -> tuple[int, dict]:
    r = httpx.get(base + "/healthz", timeout=10)
    return r.status_code, r.json()


def test_redis_lost_while_running_refuses_new_messages_and_recovers_when_it_is_back(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    prefix = f"e2e:{uuid.uuid4().hex}:"
    try:
        with web_daemon(tmp_path, state_store="redis", redis_url=redis.url, redis_key_prefix=prefix) as (
                daemon, server, port, base, first_health):
            assert first_health["state"] == "running"
            assert post(base, "ann", "one", "m1").status_code == 200
            wait_until(lambda: bot_answers(base, "ann") == ["echo: one"], 20, "the first answer")

            redis.kill()
            status, body = wait_until(lambda: (lambda h: h if h[1].get("state") == "degraded" else None)(health(base)),
                                      20, "/healthz to say degraded")
            assert status == 503 and "Redis at " + redis.url in body["store"] and "unreachable" in body["store"], body
            refused = post(base, "ann", "two", "m2")
            assert refused.status_code == 503, refused.text
            assert "could not be saved" in refused.json()["message"], refused.text

            redis.start()  # the same port, its append-only file: the daemon finds its state again
            wait_until(lambda: health(base)[0] == 200, 20, "/healthz to recover")
            # The page sends the refused message again: now it is taken and answered, once.
            again = post(base, "ann", "two", "m2")
            assert again.status_code == 200 and "handled" not in again.json(), again.text
            wait_until(lambda: bot_answers(base, "ann") == ["echo: one", "echo: two"], 20, "the answer after recovery")
            wait_idle(base)
            assert bot_answers(base, "ann") == ["echo: one", "echo: two"]
        # Nothing went to the SQLite file of appdata_dir: the state is in Redis.
        assert not os.path.exists(os.path.join(str(tmp_path), "data", "state.db"))
    finally:
        redis.stop()


def test_kill_9_with_a_message_accepted_answers_it_once_after_the_restart(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    prefix = f"e2e:{uuid.uuid4().hex}:"
    settings = dict(state_store="redis", redis_url=redis.url, redis_key_prefix=prefix)
    try:
        with web_daemon(tmp_path, **settings) as (daemon, server, port, base, _):
            server.push_hang(60)  # Dify never answers this run
            assert post(base, "bob", "kept", "k1").status_code == 200
            store = RedisStore(redis.url, prefix)
            try:
                assert store.inbox_count() == 1
            finally:
                store.close()
            daemon.kill()  # kill -9

        with web_daemon(tmp_path, **settings) as (daemon, server, port, base, _):
            stream = SSE(port, "bob")
            try:
                assert stream.next(timeout=30)["data"]["content"] == "echo: kept"
                # A redelivery of the same message id is recognised, not answered again.
                assert post(base, "bob", "kept", "k1").json().get("handled") is False
                wait_idle(base)
                assert stream.none_within(0.7)
            finally:
                stream.close()
            assert bot_answers(base, "bob") == ["echo: kept"]
        store = RedisStore(redis.url, prefix)
        try:
            assert store.inbox_count() == 0
        finally:
            store.close()
    finally:
        redis.stop()


def test_redis_down_at_start_up_is_one_clear_line_and_a_failed_start(tmp_path):
    closed = RedisServer(tmp_path / "redis")  # never started: its port is closed
    config = write_config(tmp_path, channel_type="web", web_port=closed.port, state_store="redis",
                          redis_url=closed.url)
    result = run_app(tmp_path, "--config", config, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("start-up failed")]
    assert lines == [f"start-up failed: cannot open the state store: Redis at {closed.url} is unreachable "
                     f"(open): Error 111 connecting to 127.0.0.1:{closed.port}. Connection refused. "
                     f"Start Redis, or correct redis_url."], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:6379", "the scheme must be one of redis://"),
    ("redis://127.0.0.1:70000/0", "the port must be 1-65535"),
    ("redis://127.0.0.1:6379/zero", "the database after the host must be a number"),
    ("redis://:6379/0", "it names no host"),
])
def test_a_bad_redis_url_is_a_config_error(tmp_path, url, why):
    config = write_config(tmp_path, state_store="redis", redis_url=url)
    result = run_app(tmp_path, "--config", config, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config error: setting 'redis_url' must be a Redis URL" in result.stderr and why in result.stderr, \
        result.stderr[-2000:]
