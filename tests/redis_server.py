"""A real `redis-server` (Debian's package) on a free port, for the tests of `state_store: redis`.

Its files (the append-only log, the socket's nothing else) live in the folder the test gives
(pytest's tmp_path), never in the checkout. Persistence is on (appendonly, fsync always), as
README recommends, so a test can stop it and start it again on the same port with the data
it held.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.e2e.daemon import free_port

MISSING = ("redis-server is not installed: the Redis state-store tests need Debian's package "
           "(apt-get install -y redis-server; .ci/run installs it)")


def require_redis_server() -> str:
    """The redis-server program. Missing: the test fails under CI (CI=true), so a CI machine
    without it cannot pass by skipping; elsewhere the test is skipped with the reason."""
    path = shutil.which("redis-server")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(MISSING)
    pytest.skip(MISSING)


class RedisServer:
    def __init__(self, folder, port: int | None = None) -> None:
        self.program = require_redis_server()
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [
            self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.folder,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
            "--logfile", os.path.join(self.folder, "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.proc.stderr.read().decode(errors='replace')}"
                                   f" {self._log_tail()}")
            if self._answers_ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}: {self._log_tail()}")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.folder, "redis.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-1000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: Redis dies as in a crash (what was fsynced to the append-only log stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
