"""The shared harness of the reliability proofs (tests/reliability) and of their long variants
(bench/reliability.py, bench/soak.py, bench/connections.py).

- `Figures`: what a proof measured, printed at the end of the pytest run and written as JSON.
- `WebApp`: a real `python app.py` with the web channel and the Dify bot, in a temporary folder;
  `crash()` is `kill -9`, `restart()` starts it again on the same port, folder and state.
- `WebUser`: one browser-like user over HTTP: POST /message with a client msg_id (retried until
  acknowledged), and an SSE stream read on its own task that reconnects with Last-Event-ID.
- `web_load` / `Tally`: N users x M messages; every acknowledged message must get exactly one
  reply (an answer or a clear error), in order per user.
- `WeworkApp` / `wework_load`: the same through the ntwork simulator (tests/fakes/ntwork).
- `process_figures`: RSS, descriptors and threads of the daemon (psutil).

Everything talks to the daemon through its real interfaces; nothing inside it is replaced.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from channel.chat_channel import BUSY_TEXT_EN, BUSY_TEXT_ZH, NOT_STORED_TEXT_EN, NOT_STORED_TEXT_ZH  # noqa: E402
from sandbox.dify_server import DifyServer  # noqa: E402
from tests.e2e.daemon import Daemon, free_port, plugins_dir, write_config  # noqa: E402
from tests.fakes.ntwork_control import DEFAULT_USER_ID, SimControl  # noqa: E402

API_KEY = "app-reliability"
# The reply types a web user sees as the end of one question: an answer or a clear error.
REPLY_TYPES = ("TEXT", "ERROR", "INFO", "IMAGE_URL", "IMAGE", "FILE", "VIDEO")


# ---------------------------------------------------------------------------------------------- figures
class Figures:
    """Named figures of the proofs, kept in one process-wide dict (pytest prints them at the end)."""

    data: dict[str, dict[str, Any]] = {}

    @classmethod
    def add(cls, proof: str, **values: Any) -> None:
        cls.data.setdefault(proof, {}).update(values)

    @classmethod
    def write(cls, path: str | None = None) -> str:
        path = path or os.environ.get("RELIABILITY_FIGURES") or os.path.join(
            tempfile.gettempdir(), f"reliability-figures-{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cls.data, f, ensure_ascii=False, indent=2, default=str)
        return path


# ---------------------------------------------------------------------------------------------- Dify
def chaos_dify(latency: float = 0.05, error_rate: float = 0.05, seed: int = 11, mode: str = "chat") -> DifyServer:
    """A started Dify simulator answering "echo: <query>" after a random latency, 5% of calls a 500."""
    server = DifyServer(api_key=API_KEY, mode=mode).start()
    server.set_chaos(latency=latency, error_rate=error_rate, seed=seed)
    return server


def restart_dify(server: DifyServer) -> None:
    """Start a stopped simulator again on the same port (its conversations are kept)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            server.start()
            return
        except OSError:
            server._httpd = None  # noqa: SLF001 - the port may take a moment to be free again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------- process
def process_figures(pid: int) -> dict[str, int]:
    import psutil

    proc = psutil.Process(pid)
    figures = {"rss": proc.memory_info().rss, "threads": proc.num_threads()}
    try:
        figures["fds"] = proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()
    except psutil.Error:
        figures["fds"] = -1
    return figures


def folder_size(path: str) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------------------------- web daemon
class WebApp:
    """`python app.py` with the web channel in `folder`, the Dify bot pointed at `dify`."""

    def __init__(self, folder: str, dify: DifyServer, plugins: tuple[str, ...] = ("counter",), **settings: Any):
        self.folder = str(folder)
        self.dify = dify
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = dict(
            channel_type="web", web_port=self.port, web_host="127.0.0.1", bot_type="", model="dify",
            dify_api_base=dify.base_url, dify_api_key=API_KEY, shutdown_timeout=5,
            # backoffs of a few seconds would make the CI run long; the retries are what matters
            dify_max_retries=2,
        )
        config.update(settings)
        self.config = write_config(self.folder, **config)
        self.args = ["--config", self.config]
        if plugins:
            self.args += ["--plugins-dir", plugins_dir(self.folder, plugins)]
        self.daemon: Daemon | None = None
        self.starts = 0

    @property
    def appdata(self) -> str:
        return os.path.join(self.folder, "data")

    def start(self, timeout: float = 30, preexec_fn=None) -> "WebApp":
        """`preexec_fn`: run in the daemon's process before it starts (POSIX), e.g. to set its limits."""
        self.daemon = Daemon(self.folder, *self.args, preexec_fn=preexec_fn)
        self.starts += 1
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.daemon.proc.returncode}: {self.daemon.stderr()[-3000:]}")
            try:
                r = httpx.get(self.base + "/healthz", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the web channel never became healthy")

    def health(self) -> tuple[int, dict]:
        import httpx

        r = httpx.get(self.base + "/healthz", timeout=5)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, {}

    def crash(self) -> None:
        """kill -9: no handler runs, nothing is flushed."""
        if self.daemon is not None:
            self.daemon.kill()

    def restart(self) -> None:
        self.crash()
        self.start()

    def stop(self) -> int | None:
        if self.daemon is None:
            return None
        self.daemon.kill()
        return self.daemon.proc.returncode

    def pid(self) -> int:
        return self.daemon.proc.pid

    def run_log(self) -> str:
        try:
            with open(os.path.join(self.folder, "run.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


# ---------------------------------------------------------------------------------------------- web user
@dataclass
class Event:
    id: str
    name: str
    data: dict


class WebUser:
    """One user of the web page, on asyncio streams (hundreds of them cost no thread)."""

    def __init__(self, host: str, port: int, user_id: str) -> None:
        self.host, self.port, self.user_id = host, port, user_id
        self.events: list[Event] = []
        self.last_id = ""
        self.new_event = asyncio.Event()
        self.reconnects = 0
        self._task: asyncio.Task | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False

    # -- the stream
    def open(self) -> None:
        self._task = asyncio.ensure_future(self._read_forever())

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _read_forever(self) -> None:
        from urllib.parse import quote

        while not self._closing:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self._writer = writer
                head = f"GET /sse/{quote(self.user_id, safe='')} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
                if self.last_id:
                    head += f"Last-Event-ID: {self.last_id}\r\n"
                writer.write((head + "\r\n").encode())
                status, headers = await _read_head(reader)
                if status != 200:
                    await _read_body(reader, headers)
                    raise ConnectionError(f"SSE answered {status}")
                await self._read_events(reader)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
            finally:
                if self._writer is not None:
                    self._writer.close()
            if self._closing:
                return
            self.reconnects += 1
            await asyncio.sleep(0.2)

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        pending = b""
        block: dict[str, str] = {}
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                return
            pending += (await reader.readexactly(size + 2))[:-2]
            while True:
                line, sep, rest = pending.partition(b"\n")
                if not sep:
                    break
                pending = rest
                text = line.decode("utf-8", "replace").rstrip("\r")
                if text == "":
                    if "data" in block:
                        self._take(block)
                    block = {}
                elif not text.startswith(":"):
                    key, _, value = text.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    block[key] = block[key] + "\n" + value if key in block and key == "data" else value

    def _take(self, block: dict[str, str]) -> None:
        try:
            data = json.loads(block["data"])
        except ValueError:
            data = {"type": "UNPARSABLE", "content": block["data"]}
        if block.get("id"):
            self.last_id = block["id"]
        self.events.append(Event(block.get("id", ""), block.get("event", ""), data))
        self.new_event.set()

    def replies(self) -> list[dict]:
        """Events that end a question (not the growing partial answers)."""
        return [e.data for e in self.events if not e.name and e.data.get("type") in REPLY_TYPES]

    # -- messages
    async def post(self, message: str, msg_id: str | None = None, timeout: float = 60.0,
                   retry: bool = True) -> tuple[int, dict]:
        """POST /message; retried (same msg_id) on connection errors and 503 until `timeout`
        when `retry`. Returns the last (status, JSON body)."""
        payload: dict[str, Any] = {"user_id": self.user_id, "message": message}
        if msg_id is not None:
            payload["msg_id"] = msg_id
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = await http_request(self.host, self.port, "POST", "/message", payload)
                if status != 503 or not retry:
                    return status, body
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                status, body = 0, {"error": repr(e)}
                if not retry:
                    return status, body
            if time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.2 + random.random() * 0.3)

    async def wait_replies(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.replies()) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.new_event.clear()
            try:
                await asyncio.wait_for(self.new_event.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return True


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def http_request(host: str, port: int, method: str, path: str, payload: Any = None,
                       raw_body: bytes | None = None, headers: dict[str, str] | None = None,
                       timeout: float = 30.0) -> tuple[int, dict]:
    """One request on its own connection (Connection: close); (status, JSON body or {"text": ...})."""
    body = raw_body if raw_body is not None else (b"" if payload is None else json.dumps(payload).encode())
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    if payload is not None and raw_body is None:
        head += "Content-Type: application/json\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"

    async def go() -> tuple[int, dict]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head.encode("latin-1") + b"\r\n" + body)
            await writer.drain()
            status, response_headers = await _read_head(reader)
            raw = await _read_body(reader, response_headers)
        finally:
            writer.close()
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            parsed = {"text": raw[:500].decode("utf-8", "replace")}
        return status, parsed if isinstance(parsed, dict) else {"value": parsed}

    return await asyncio.wait_for(go(), timeout)


# ---------------------------------------------------------------------------------------------- tally
def _refusal_pattern(template: str) -> "re.Pattern[str]":
    before, _, after = template.partition("{quote}")
    return re.compile(re.escape(before) + "(.*)" + re.escape(after), re.S)


# The daemon's refusals (busy, not saved); each names the message it refuses.
REFUSALS = [_refusal_pattern(t) for t in (BUSY_TEXT_EN, BUSY_TEXT_ZH, NOT_STORED_TEXT_EN, NOT_STORED_TEXT_ZH)]


def refused_question(reply: str) -> str | None:
    """The question a refusal names, or None when `reply` is not a refusal."""
    for pattern in REFUSALS:
        match = pattern.search(reply)
        if match:
            return match.group(1)
    return None


@dataclass
class Tally:
    """Counts of one load run. A reply is matched to its question by the echoed text; a refusal
    (busy, not saved) by the question it quotes: it comes at once, ahead of the answers still
    owed, and the question counts as refused, not acknowledged; an error reply (which names no
    question) stands for the oldest acknowledged question not answered yet."""

    sent: int = 0
    acknowledged: int = 0
    refused: int = 0  # clear refusals (4xx/503 after the retries): not acknowledged, not lost
    answered: int = 0
    errors: int = 0  # clear error replies counted in `answered`
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    problems: list[str] = field(default_factory=list)

    def add_session(self, name: str, acked: list[str], replies: list[str], error_replies: set[int]) -> None:
        """`acked`: texts of the acknowledged questions in the order they were sent; `replies`:
        reply texts in the order received; `error_replies`: indexes in `replies` that are errors."""
        index = {text: i for i, text in enumerate(acked)}
        answered: dict[int, int] = {}
        refused: set[int] = set()
        for n, reply in enumerate(replies):
            quoted = refused_question(reply) if n in error_replies else None
            if quoted is None:
                continue
            i = index.get(quoted)
            if i is None or i in refused:
                self.unexpected += 1
                self._problem(f"{name}: a refusal of no question sent (or refused twice): {reply[:80]!r}")
            else:
                refused.add(i)
                self.refused += 1
                self.acknowledged -= 1
        last = -1
        for n, reply in enumerate(replies):
            if n in error_replies and refused_question(reply) is not None:
                continue
            if n in error_replies:
                pending = [i for i in range(len(acked)) if i not in answered and i not in refused]
                if not pending:
                    self.duplicated += 1
                    self._problem(f"{name}: an error reply with every question already answered: {reply[:80]!r}")
                    continue
                i = pending[0]
            else:
                question = reply[len("echo: "):] if reply.startswith("echo: ") else None
                i = index.get(question) if question is not None else None
                if i is None:
                    self.unexpected += 1
                    self._problem(f"{name}: a reply to no acknowledged question: {reply[:80]!r}")
                    continue
                if i in answered or i in refused:
                    self.duplicated += 1
                    self._problem(f"{name}: question {i} answered twice")
                    continue
            if i < last:
                self.out_of_order += 1
                self._problem(f"{name}: answer to question {i} came after the answer to {last}")
            last = max(last, i)
            answered[i] = n
            self.answered += 1
            self.errors += n in error_replies
        missing = [i for i in range(len(acked)) if i not in answered and i not in refused]
        self.lost += len(missing)
        if missing:
            self._problem(f"{name}: {len(missing)} acknowledged question(s) never answered: {missing[:10]}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)

    def figures(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("sent", "acknowledged", "refused", "answered", "errors", "lost",
                                              "duplicated", "out_of_order", "unexpected")}

    def merge(self, other: "Tally") -> None:
        for key in self.figures():
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.problems.extend(other.problems[: max(0, 30 - len(self.problems))])

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicated, self.out_of_order, self.unexpected) == (0, 0, 0, 0), \
            f"{self.figures()}; first problems: {self.problems[:10]}"
        assert self.answered == self.acknowledged, self.figures()


def split_replies(replies: list[dict]) -> tuple[list[str], set[int]]:
    texts = [str(r.get("content", "")) for r in replies]
    errors = {i for i, r in enumerate(replies) if not (r.get("type") == "TEXT" and texts[i].startswith("echo: "))}
    return texts, errors


# ---------------------------------------------------------------------------------------------- web load
async def web_session(app_host: str, port: int, user: str, messages: int, tally_acked: dict,
                      users: dict, pause: float = 0.0, post_timeout: float = 90.0, tag: str = "") -> None:
    """One user: open the stream, send `messages` questions back to back (each retried with its
    msg_id until acknowledged or refused)."""
    client = users.get(user)
    if client is None:
        client = users[user] = WebUser(app_host, port, user)
        client.open()
    acked = tally_acked.setdefault(user, [])
    for i in range(messages):
        text = f"{user} {tag}q{i}"
        status, body = await client.post(text, msg_id=f"{tag}m{i}", timeout=post_timeout)
        tally_acked.setdefault("_sent", []).append(1)
        # "Message received" is the acknowledgement, also with handled: false (a retry of a
        # msg_id the daemon already has): from then on the user is owed one reply.
        if status == 200:
            acked.append(text)
        else:
            tally_acked.setdefault("_refused", []).append((user, status, body))
        if pause:
            await asyncio.sleep(random.uniform(0, pause))


async def web_load(host: str, port: int, sessions: int, messages: int, prefix: str = "u",
                   settle: float = 120.0, users: dict | None = None, pause: float = 0.0,
                   during: Any = None) -> tuple[Tally, dict]:
    """`sessions` users x `messages` questions; waits until every acknowledged question has a reply
    or `settle` seconds pass with no new reply. `during`: a coroutine run beside the load (kills)."""
    users = {} if users is None else users
    acked: dict[str, list] = {}
    names = [f"{prefix}{i}" for i in range(sessions)]
    load = asyncio.gather(*(web_session(host, port, n, messages, acked, users, pause) for n in names))
    if during is not None:
        await asyncio.gather(load, during)
    else:
        await load
    await settle_replies(users, {n: len(acked.get(n, [])) for n in names}, settle)
    tally = Tally()
    tally.sent = len(acked.get("_sent", []))
    tally.refused = len(acked.get("_refused", []))
    for n in names:
        tally.acknowledged += len(acked.get(n, []))
        texts, errors = split_replies(users[n].replies())
        tally.add_session(n, acked.get(n, []), texts, errors)
    for user, status, body in acked.get("_refused", [])[:5]:
        tally._problem(f"{user}: refused with {status} {body}")
    return tally, users


async def settle_replies(users: dict, expected: dict[str, int], quiet: float) -> None:
    """Wait until each user has at least its expected replies, or nothing new came for `quiet` s."""
    last_total, last_change = -1, time.monotonic()
    while True:
        total = sum(len(users[n].replies()) for n in expected)
        if all(len(users[n].replies()) >= c for n, c in expected.items()):
            await asyncio.sleep(0.5)  # a duplicate right behind the last answer is still counted
            return
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.1)


async def close_users(users: dict) -> None:
    await asyncio.gather(*(u.close() for u in users.values()))


# ---------------------------------------------------------------------------------------------- WeCom
class WeworkApp:
    """`python app.py` with channel_type wework, driven through the ntwork simulator."""

    def __init__(self, folder: str, dify: DifyServer, **settings: Any) -> None:
        self.folder = str(folder)
        self.ctl = SimControl(os.path.join(self.folder, "sim"))
        self.ctl.write_scenario(login_info={"user_id": DEFAULT_USER_ID, "username": "Bot", "nickname": "Bot"},
                                data_ready_after=0.1)
        config = dict(
            channel_type="wework", bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key=API_KEY,
            wework_reply_delay=0, wework_init_wait=5, single_chat_prefix=[""], shutdown_timeout=5,
        )
        config.update(settings)
        self.config = write_config(self.folder, **config)
        self.daemon: Daemon | None = None

    def start(self) -> "WeworkApp":
        self.daemon = Daemon(self.folder, "--config", self.config, env=self.ctl.env())
        self.daemon.wait_for_log("[wework] ready", 30)
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()


def wework_load(app: WeworkApp, sessions: int, messages: int, settle: float = 120.0) -> Tally:
    """`sessions` private chats x `messages` questions, injected as the hook delivers them;
    every message must get one send_text to its conversation, in order."""
    ctl = app.ctl
    conversations = {}
    for s in range(sessions):
        sender = f"7881{s:012d}"
        conversations[f"S:{ctl.user_id}_{sender}"] = sender
    acked: dict[str, list[str]] = {c: [] for c in conversations}
    tally = Tally()
    for i in range(messages):
        for conversation, sender in conversations.items():
            text = f"w{sender[-6:]} q{i}"
            ctl.inject(ctl.text(conversation, sender, f"user{sender[-4:]}", text))
            acked[conversation].append(text)  # the hook delivers every injected message
            tally.sent += 1
    tally.acknowledged = tally.sent
    expected = tally.sent
    last, last_change = -1, time.monotonic()
    while True:
        sends = [c for c in ctl.calls() if c["method"] == "send_text"]
        if len(sends) >= expected:
            time.sleep(0.5)
            sends = [c for c in ctl.calls() if c["method"] == "send_text"]
            break
        if len(sends) != last:
            last, last_change = len(sends), time.monotonic()
        elif time.monotonic() - last_change > settle:
            break
        time.sleep(0.2)
    by_conversation: dict[str, list[str]] = {c: [] for c in conversations}
    for call in sends:
        conversation = call["data"].get("conversation_id")
        if conversation in by_conversation:
            by_conversation[conversation].append(str(call["data"].get("content", "")))
        else:
            tally.unexpected += 1
    for conversation, texts in by_conversation.items():
        errors = {i for i, t in enumerate(texts) if not t.startswith("echo: ")}
        tally.add_session(conversation, acked[conversation], texts, errors)
    return tally


def new_folder(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


def remove_folder(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)



# ---------------------------------------------------------------------------------------------- files
class FileServer:
    """A plain HTTP server for links in answers: `/slow.png` trickles one byte every `trickle`
    seconds, `/huge.bin` streams `huge_bytes` fast, `/secret.png` stands for an internal service
    (every request to it is counted in `hits`), `/small.png` is a small PNG."""

    PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
           b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")

    def __init__(self, host: str = "127.0.0.1", trickle: float = 5.0, huge_bytes: int = 200 * 1024 * 1024) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.hits: dict[str, int] = {}
        self.trickle = trickle
        self.huge_bytes = huge_bytes
        self._stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = self.path.split("?")[0]
                owner.hits[path] = owner.hits.get(path, 0) + 1
                try:
                    if path == "/slow.png":
                        self._head("image/png", 10_000)
                        for _ in range(10_000):
                            self.wfile.write(b"\x89")
                            self.wfile.flush()
                            if owner._stop.wait(owner.trickle):
                                return
                    elif path == "/huge.bin" or path == "/huge.png":
                        self._head("image/png" if path.endswith(".png") else "application/octet-stream", owner.huge_bytes)
                        block = FileServer.PNG + b"\0" * (1024 * 1024 - len(FileServer.PNG))
                        for _ in range(owner.huge_bytes // len(block)):
                            if owner._stop.is_set():
                                return
                            self.wfile.write(block)
                    elif path in ("/secret.png", "/small.png"):
                        self._head("image/png", len(FileServer.PNG))
                        self.wfile.write(FileServer.PNG)
                    else:
                        self.send_error(404)
                except OSError:
                    pass

            def _head(self, ctype: str, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(length))
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.httpd = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------- soak
@dataclass
class SoakSample:
    t: float
    messages: int
    replies: int
    rss: int
    fds: int
    threads: int
    tmp: int
    db: int


def db_size(appdata: str) -> int:
    return sum(os.path.getsize(os.path.join(appdata, n)) for n in ("state.db", "state.db-wal")
               if os.path.exists(os.path.join(appdata, n)))


async def soak(app: WebApp, seconds: float, users: int = 40, sample_every: float = 3.0, think: float = 0.3,
               file_every: int = 0, on_sample: Any = None) -> tuple[list[SoakSample], dict[str, int]]:
    """Steady traffic for `seconds`: `users` users with open streams ask, wait for the reply, pause;
    one more user opens and closes its stream around every question (connection churn); with
    `file_every`, every so many answers link a file (tmp/ and the media store: see growth_problems
    for when tmp/ can level off). Samples the daemon's RSS, fds,
    threads, tmp/ and state.db sizes every `sample_every` s."""
    dify = app.dify
    dify.add_file("/files/soak.txt", b"soak file\n" * 1000, "text/plain")
    counts = {"messages": 0, "replies": 0, "unanswered": 0}
    stop = asyncio.Event()
    samples: list[SoakSample] = []
    started = time.monotonic()

    async def ask(user: WebUser, text: str) -> None:
        before = len(user.replies())
        counts["messages"] += 1
        if file_every and counts["messages"] % file_every == 0:
            dify.push_answer(f"a file [soak.txt]({dify.host_url}/files/soak.txt)")
        status, _ = await user.post(text, timeout=30)
        if status != 200 or not await user.wait_replies(before + 1, 30):
            counts["unanswered"] += 1
        counts["replies"] += len(user.replies()) - before

    async def steady(name: str) -> None:
        user = WebUser("127.0.0.1", app.port, name)
        user.open()
        n = 0
        try:
            while not stop.is_set():
                await ask(user, f"{name} {n}")
                user.events.clear()  # a long run must not keep every event in the test's memory
                n += 1
                await asyncio.sleep(random.uniform(0, 2 * think))
        finally:
            await user.close()

    async def churn() -> None:
        n = 0
        while not stop.is_set():
            user = WebUser("127.0.0.1", app.port, f"churn{n % 500}")
            user.open()
            try:
                await ask(user, f"churn {n}")
            finally:
                await user.close()
            n += 1

    async def sampler() -> None:
        while True:
            figures = process_figures(app.pid())
            sample = SoakSample(time.monotonic() - started, counts["messages"], counts["replies"], figures["rss"],
                                figures["fds"], figures["threads"], folder_size(os.path.join(app.folder, "tmp")),
                                db_size(app.appdata))
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            if sample.t >= seconds:
                stop.set()
                return
            await asyncio.sleep(sample_every)

    await asyncio.gather(sampler(), churn(), *(steady(f"soak{i}") for i in range(users)))
    return samples, counts


def growth_problems(samples: list[SoakSample], warmup_fraction: float = 1 / 3,
                    warmup_seconds: float = 0.0) -> tuple[list[str], dict[str, Any]]:
    """Bounded growth after warm-up: the last third of the run against the warm-up's highest values.
    The warm-up is the first third of the run, or `warmup_seconds` when longer (files linked from
    answers stay in tmp/ as long as the web page may fetch them, plus tmp_max_age: tmp/ can only
    level off after that). The database keeps dedup keys for hours by design, so it is held to
    bytes per message instead."""
    end = samples[-1].t
    if warmup_seconds > end * (1 - warmup_fraction):
        raise ValueError(f"a warm-up of {warmup_seconds:g} s leaves no last third of a {end:g} s run to compare")
    warm = [s for s in samples if s.t <= max(end * warmup_fraction, warmup_seconds)] or samples[:1]
    late = [s for s in samples if s.t >= end * (1 - warmup_fraction)] or samples[-1:]
    peak = {k: max(getattr(s, k) for s in warm) for k in ("rss", "fds", "threads", "tmp")}
    last = {k: max(getattr(s, k) for s in late) for k in ("rss", "fds")}
    # Threads come and go with bursts (the HTTP server's thread pool, the workers added for a stall)
    # and tmp/ goes up and down with each sweep: one sample of the last third at a burst or just
    # before a sweep is no growth. Their typical value (the median) must stay under the bound.
    last.update({k: _median([getattr(s, k) for s in late]) for k in ("threads", "tmp")})
    limits = {"rss": peak["rss"] * 1.25 + 16 * 1024 * 1024, "fds": peak["fds"] + 16,
              "threads": peak["threads"] + 4, "tmp": peak["tmp"] + 1024 * 1024}
    problems = [f"{k} grew after warm-up: {peak[k]} -> {last[k]} (limit {int(limits[k])})"
                for k in limits if last[k] > limits[k]]
    messages = max(1, samples[-1].messages - warm[-1].messages)
    db_per_message = (samples[-1].db - warm[-1].db) / messages
    if db_per_message > 2048:
        problems.append(f"state.db grew {db_per_message:.0f} bytes per message after warm-up")
    first = samples[0]
    figures = {f"{k}_start": getattr(first, k) for k in ("rss", "fds", "threads", "tmp", "db")}
    figures.update({f"{k}_end": getattr(samples[-1], k) for k in ("rss", "fds", "threads", "tmp", "db")})
    figures["db_bytes_per_message_after_warmup"] = round(db_per_message, 1)
    return problems, figures


# How much the level of the last half after warm-up may exceed that of the first half (medians, so
# one sample at a busy moment does not count): about the sampling noise of each figure.
LEVEL_TOLERANCE = {"rss": 1024 * 1024, "fds": 4, "threads": 4, "tmp": 1024 * 1024}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def level_problems(samples: list[SoakSample], warmup_seconds: float,
                   tolerance: dict[str, float] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Whether the curves are flat after warm-up, not only below a ceiling: the samples after
    `warmup_seconds` are split in two halves by time, and the median of the later half may exceed
    the median of the earlier one by `tolerance` (LEVEL_TOLERANCE) at most. A curve that levels
    off passes however high it went during warm-up; one that keeps climbing fails however slowly
    (growth_problems allows 25% + 16 MiB of RSS over the warm-up's peak, which a leak of a few MiB
    an hour passes). Needs a run long enough for each half to hold several samples (bench/soak.py).

    Figures: the value at the end of warm-up, at the end, the two halves' medians, and the growth
    per 100,000 messages from the end of warm-up to the end."""
    tolerance = {**LEVEL_TOLERANCE, **(tolerance or {})}
    post = [s for s in samples if s.t >= warmup_seconds]
    if len(post) < 6:
        raise ValueError(f"only {len(post)} samples after a warm-up of {warmup_seconds:g} s: run longer or sample more often")
    middle = post[0].t + (post[-1].t - post[0].t) / 2
    early = [s for s in post if s.t < middle]
    late = [s for s in post if s.t >= middle]
    messages = max(1, post[-1].messages - post[0].messages)
    problems: list[str] = []
    figures: dict[str, Any] = {"messages_after_warmup": post[-1].messages - post[0].messages}
    for key in ("rss", "fds", "threads", "tmp", "db"):
        first_half = _median([getattr(s, key) for s in early])
        second_half = _median([getattr(s, key) for s in late])
        figures[f"{key}_after_warmup"] = getattr(post[0], key)
        figures[f"{key}_halves"] = [first_half, second_half]
        figures[f"{key}_per_100k_messages"] = round((getattr(post[-1], key) - getattr(post[0], key)) * 100_000 / messages)
        if key in tolerance and second_half - first_half > tolerance[key]:
            unit, scale = (" MiB", 2**20) if key in ("rss", "tmp", "db") else ("", 1)
            problems.append(f"{key} still growing after warm-up: median {first_half / scale:.1f}{unit} in the first "
                            f"half, {second_half / scale:.1f}{unit} in the second (tolerance {tolerance[key] / scale:g}{unit})")
    return problems, figures
