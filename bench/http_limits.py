"""HTTP server limits benchmark: how many idle connections `python app.py` (web channel)
holds while new users are still answered, and what slowloris costs it.

The daemon starts with an open-file limit of `--files` (default 1,024, the common default).
The benchmark opens idle connections (connect, say nothing) in steps up to `--idle`, and
after each step times a new user's request (`GET /healthz`, a fresh connection). It prints,
per step: connections opened, how many the daemon still holds (those it has not closed),
its open descriptors, and the new user's latency (or "refused"/"timeout").
Then `--slow` slowloris connections trickle a byte a second: how long until they are cut.

    python bench/http_limits.py [--files 1024] [--idle 5000] [--step 1000] [--slow 200]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402
import psutil  # noqa: E402

from common.http_guard import raise_fd_limit  # noqa: E402
from tests.e2e.daemon import Daemon, free_port, wait_healthy, write_config  # noqa: E402


def still_open(socks: list[socket.socket]) -> int:
    """How many of `socks` the server has not closed (no EOF or reset is waiting)."""
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK):
                alive += 1  # an answer waits: open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        finally:
            s.setblocking(True)
    return alive


def descriptors(proc: psutil.Process) -> int:
    return proc.num_handles() if sys.platform == "win32" else proc.num_fds()


def new_user(base: str) -> str:
    t0 = time.perf_counter()
    try:
        r = httpx.get(base + "/healthz", timeout=10)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as e:
        return f"failed ({type(e).__name__})"
    if r.status_code != 200:
        return f"refused ({r.status_code})"
    return f"{(time.perf_counter() - t0) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1024, help="the daemon's open-file limit")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to open")
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200, help="slowloris connections")
    args = parser.parse_args()
    mine = raise_fd_limit()
    if mine is not None and mine < args.idle + args.slow + 100:
        sys.exit(f"this process may open {mine} files; it needs {args.idle + args.slow + 100} (ulimit -n)")

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (args.files, args.files))

    with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
        port = free_port()
        config = write_config(folder, channel_type="web", web_port=port, web_host="127.0.0.1")
        daemon = Daemon(folder, "--config", config, preexec_fn=limit if sys.platform != "win32" else None)
        base = f"http://127.0.0.1:{port}"
        idle: list[socket.socket] = []
        slow: list[socket.socket] = []
        try:
            wait_healthy(base)
            proc = psutil.Process(daemon.proc.pid)
            print(f"daemon open-file limit {args.files}; python {sys.version.split()[0]} on {sys.platform}")
            print(f"{'idle opened':>12} {'held by daemon':>15} {'daemon fds':>11}  new user")
            print(f"{0:>12} {0:>15} {descriptors(proc):>11}  {new_user(base)}")
            while len(idle) < args.idle:
                for _ in range(min(args.step, args.idle - len(idle))):
                    idle.append(socket.create_connection(("127.0.0.1", port)))
                time.sleep(0.5)  # let the daemon accept what is in its backlog
                answer = new_user(base)
                print(f"{len(idle):>12} {still_open(idle):>15} {descriptors(proc):>11}  {answer}")
            for s in idle:
                s.close()
            idle.clear()

            if not args.slow:
                return
            for _ in range(args.slow):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            t0 = time.monotonic()
            answers = []
            while still_open(slow) and time.monotonic() - t0 < 60:
                for s in slow:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
                answers.append(new_user(base))
                time.sleep(1)
            left = still_open(slow)
            served = sum(a.endswith("ms") for a in answers)
            print(f"slowloris: {args.slow} connections trickling 1 byte/s; all cut after {time.monotonic() - t0:.0f} s"
                  if not left else f"slowloris: {left} of {args.slow} still open after 60 s")
            print(f"new users during the slowloris: {served} of {len(answers)} answered")
        finally:
            for s in idle + slow:
                s.close()
            daemon.kill()


if __name__ == "__main__":
    main()
