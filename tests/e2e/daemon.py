"""Start `python app.py` as a real process with a temporary config, and talk to it."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN_DIRS = os.path.join(ROOT, "tests", "fakes", "plugin_dirs")


def write_config(folder, **settings) -> str:
    base = {
        "channel_type": "terminal",
        "bot_type": "tests.fakes.bots:EchoBot",
        "single_chat_prefix": [""],
        "appdata_dir": os.path.join(str(folder), "data"),
    }
    base.update(settings)
    path = os.path.join(str(folder), "config.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(base, f, ensure_ascii=False)
    return path


def plugins_dir(folder, names=("counter",)) -> str:
    """A plugins folder holding copies of the named test plugins (tests/fakes/plugin_dirs)."""
    target = os.path.join(str(folder), "plugins")
    os.makedirs(target, exist_ok=True)
    for name in names:
        if not os.path.isdir(os.path.join(target, name)):
            shutil.copytree(os.path.join(PLUGIN_DIRS, name), os.path.join(target, name))
    return target


def _own_plugin_files(folder, args: tuple[str, ...]) -> list[str]:
    """`args` with `--plugins-dir` added when absent: the daemon then writes plugins.json
    into the test's folder, not into the checkout (the bundled plugins still load)."""
    if "--plugins-dir" in args:
        return list(args)
    home = os.path.join(str(folder), "plugin-home")
    os.makedirs(home, exist_ok=True)
    return [*args, "--plugins-dir", home]


class Daemon:
    """`python app.py ...` with piped stdin/stdout, read on a thread."""

    def __init__(self, folder, *args: str, env: dict | None = None, preexec_fn=None):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONIOENCODING"] = "utf-8"
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "app.py"), *_own_plugin_files(folder, args)],
            cwd=str(folder),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
            encoding="utf-8",
            preexec_fn=preexec_fn,  # POSIX only: tests that set the daemon's resource limits
        )
        self.folder = str(folder)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stdout: list[str] = []
        # stderr is read as it comes too: logs go there, and an unread pipe that fills up
        # would block the daemon.
        self.err_lines: "queue.Queue[str]" = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)
            self.err_lines.put(line.rstrip("\n"))

    def ask(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait_for(self, expected: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {expected!r} within {timeout} s; stdout so far: {''.join(self.stdout)!r}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line == expected:
                return line

    def wait_for_log(self, needle: str, timeout: float = 20) -> None:
        """Wait until run.log (in the daemon's folder) contains `needle`."""
        path = os.path.join(self.folder, "run.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path, encoding="utf-8") as f:
                    if needle in f.read():
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"run.log never showed {needle!r}")

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def wait_for_stderr(self, needle: str, timeout: float = 20) -> str:
        """The first stderr line containing `needle`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.err_lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if needle in line:
                return line
        raise AssertionError(f"stderr never showed {needle!r}; so far: {''.join(self._stderr)!r}")

    def stderr(self) -> str:
        """Everything the daemon wrote to stderr (call after it exited)."""
        self._err_reader.join(10)
        return "".join(self._stderr)

    def stderr_so_far(self) -> str:
        """What the daemon wrote to stderr until now, while it runs."""
        return "".join(self._stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


_LOG_RECORD = re.compile(r"^\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\[")


def user_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not log records: what the program itself says (logs
    share stderr with them, so stdout stays free for the conversation)."""
    return [line for line in stderr.strip().splitlines() if not _LOG_RECORD.match(line)]


def app_env(extra: dict | None = None) -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    environment["PYTHONIOENCODING"] = "utf-8"
    environment.update(extra or {})
    return environment


def run_app(folder, *args: str, input: str = "", env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python app.py ARGS` to the end with `input` piped in."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "app.py"), *_own_plugin_files(folder, args)],
        cwd=str(folder), input=input, capture_output=True, text=True, encoding="utf-8",
        env=app_env(env), timeout=timeout,
    )


_PORTS_FROM = 10000  # the lowest port free_port() hands out
_next_port: int | None = None


def _ephemeral_ports_start() -> int:
    """Where the kernel's ephemeral ports begin (Linux; the IANA 49152 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1, for a daemon to take (or for a test to find closed).

    Taken below the kernel's ephemeral range, where neither bind(0) (the simulators) nor outgoing
    connections take theirs: a connection opened in the second before the daemon binds, or while
    a test restarts it on the same port, cannot hold it. Under pytest-xdist each worker hands out
    its own slice, in turn, so two tests running at once never get the same port."""
    import socket

    global _next_port
    end = max(_ephemeral_ports_start(), _PORTS_FROM + 1000)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    worker = int((os.environ.get("PYTEST_XDIST_WORKER") or "gw0").lstrip("gw") or 0) % workers
    size = (end - _PORTS_FROM) // workers
    low = _PORTS_FROM + worker * size
    if _next_port is None or not low <= _next_port < low + size:
        _next_port = low + (os.getpid() * 7919) % size  # another run's slice position differs
    for _ in range(size):
        port, _next_port = _next_port, low + (_next_port + 1 - low) % size
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{low + size - 1}")


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    """The first true value of `predicate()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def wait_healthy(base: str, timeout: float = 20, daemon: "Daemon | None" = None) -> dict:
    """Wait until `GET base/healthz` answers 200; return its JSON. With `daemon`, give up as soon
    as it exits, kill it on failure, and show its stderr."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (daemon is None or daemon.proc.poll() is None):
        try:
            r = httpx.get(base + "/healthz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    if daemon is not None:
        daemon.kill()
        raise AssertionError(f"the daemon's HTTP server never came up: {daemon.stderr()[-3000:]}")
    raise AssertionError("the web channel never became healthy")


@contextlib.contextmanager
def web_daemon(folder, port: int | None = None, *, preexec_fn=None, **settings):
    """`python app.py` with the web channel, the Dify bot and a Dify simulator, once healthy:
    yields (daemon, server, port, base_url, health). `port`: the web port (default: a free one),
    for a restart that an open page must find again. `preexec_fn` runs in the child before
    it starts (POSIX)."""
    from sandbox.dify_server import DifyServer

    port = port or free_port()
    with DifyServer(api_key="app-test", mode="chat") as server:
        config = write_config(
            folder, channel_type="web", web_port=port, bot_type="", model="dify",
            dify_api_base=server.base_url, dify_api_key="app-test", **settings,
        )
        daemon = Daemon(folder, "--config", config, preexec_fn=preexec_fn)
        base = f"http://127.0.0.1:{port}"
        try:
            health = wait_healthy(base)
            yield daemon, server, port, base, health
        finally:
            daemon.kill()


class RunLogReader:
    """For a test's environment object with `folder` (the daemon's folder) and `daemon` (a Daemon
    or None): read run.log, and wait until a line has appeared a number of times."""

    folder: "str | os.PathLike"
    daemon: "Daemon | None"

    def log(self) -> str:
        try:
            with open(os.path.join(str(self.folder), "run.log"), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log_count(self, needle: str, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(needle) >= count:
                return
            if self.daemon is not None and self.daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited: {self.daemon.stderr()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"run.log never showed {needle!r} {count} time(s); log tail: {self.log()[-3000:]}")
