"""Personal WeChat (wx) with `state_store: redis`: a second `python app.py` on the same login
(another data folder, so the file lock cannot see it) refuses to start, told by the lock in
Redis; the first one restarted after a kill -9 takes its lock back at once; another
redis_key_prefix is another bot and starts."""
from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from tests.e2e.daemon import Daemon, user_lines, write_config
from tests.fakes.ilink import IlinkSimulator
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="Debian's redis-server")]


def start(folder, sim: IlinkSimulator, redis: RedisServer, prefix: str) -> Daemon:
    os.makedirs(folder, exist_ok=True)
    config = write_config(folder, channel_type="wx", wx_ilink_api_base=sim.entry_url, wx_ilink_cdn_base=sim.cdn_url,
                          wx_ilink_poll_timeout=2, wx_ilink_retry_delay=0.2, state_store="redis",
                          redis_url=redis.url, redis_key_prefix=prefix)
    return Daemon(folder, "--config", config)


def wait_log(folder, needle: str, count: int = 1, daemon: Daemon | None = None, timeout: float = 20) -> None:
    path = os.path.join(str(folder), "run.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8") as f:
                if f.read().count(needle) >= count:
                    return
        except FileNotFoundError:
            pass
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited: {daemon.stderr()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"run.log of {folder} never showed {needle!r}")


def refused(daemon: Daemon) -> str:
    try:
        assert daemon.wait(30) == 1, daemon.stderr()[-3000:]
    finally:
        daemon.kill()
    [line] = user_lines(daemon.stderr())
    return line


def test_a_second_instance_on_the_same_login_is_refused_by_the_lock_in_redis(tmp_path):
    sim = IlinkSimulator(hold=0.3).start()
    redis = RedisServer(tmp_path / "redis").start()
    prefix = f"lock:{uuid.uuid4().hex}:"
    daemons: list[Daemon] = []
    try:
        first = start(tmp_path / "a", sim, redis, prefix)
        daemons.append(first)
        wait_log(tmp_path / "a", "scan the QR with WeChat", daemon=first)

        line = refused(start(tmp_path / "b", sim, redis, prefix))
        assert line.startswith("start-up failed: another daemon is running with this WeChat login (the instance on "), line
        assert f"{prefix}lease:wx.lock in Redis); stop it first, or give this one its own redis_key_prefix" in line, line
        assert str(tmp_path / "a") in line  # names the holder: its host and folder
        assert first.proc.poll() is None

        first.kill()  # kill -9: its lease is still in Redis, but it is this folder's own
        again = start(tmp_path / "a", sim, redis, prefix)
        daemons.append(again)
        wait_log(tmp_path / "a", "scan the QR with WeChat", count=2, daemon=again)
        assert "in Redis" in refused(start(tmp_path / "b", sim, redis, prefix))

        other_bot = start(tmp_path / "c", sim, redis, prefix + "other:")
        daemons.append(other_bot)
        wait_log(tmp_path / "c", "scan the QR with WeChat", daemon=other_bot)
    finally:
        for daemon in daemons:
            daemon.kill()
        redis.stop()
        sim.stop()
