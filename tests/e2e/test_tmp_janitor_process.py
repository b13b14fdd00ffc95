"""`python app.py` cleans its tmp/ folder: old files go, the WeCom lists and fresh files stay."""
from __future__ import annotations

import os
import time

import pytest

from tests.e2e.daemon import Daemon, write_config

pytestmark = pytest.mark.slow


def make(path, age: float) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * 1000)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_the_daemon_removes_old_tmp_files_and_keeps_the_protected_ones(tmp_path):
    tmp = tmp_path / "tmp"
    old = [make(str(tmp / "old.mp3"), 7200), make(str(tmp / "ab12" / "answer.pdf"), 7200)]
    kept = [make(str(tmp / name), 7200) for name in ("wework_contacts.json", "wework_rooms.json",
                                                    "wework_room_members.json", ".gitkeep")]
    fresh = make(str(tmp / "fresh.wav"), 5)
    config = write_config(tmp_path, tmp_max_age=3600)
    daemon = Daemon(tmp_path, "--config", config)
    try:
        daemon.wait_for_log("[tmp] removed 2 file(s) older than 3600 s from tmp/ (2000 bytes)")
        assert not any(os.path.exists(p) for p in old)
        assert all(os.path.exists(p) for p in kept) and os.path.exists(fresh)
        daemon.ask("still here?")
        daemon.wait_for("echo: still here?")
    finally:
        daemon.kill()
