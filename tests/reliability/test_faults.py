"""Faults: Dify down then back; a stream cut mid-answer; a 10 MB answer; an endless stream; invalid
SSE; slow and huge files; internal URLs; tmp/ unwritable; the state database locked, truncated,
corrupted, read-only, or its disk full. Each must end in a clear message to the user (or a clear
refusal) and no loss: every acknowledged question gets its one reply, and the next user is answered.

How each fault ended is kept in the figures ("faults")."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from sandbox.dify_server import PING, DifyServer
from tests.e2e.daemon import free_port
from tests.reliability.harness import (
    API_KEY, FileServer, Figures, WebApp, WebUser, folder_size, restart_dify,
)

DOWN_SECONDS = float(os.environ.get("RELIABILITY_DIFY_DOWN", "5"))


@pytest.fixture
def dify():
    # on a port of its own (tests/e2e/daemon.free_port): test_dify_down_then_back starts it again there
    server = DifyServer(api_key=API_KEY, mode="chat", port=free_port()).start()
    yield server
    server.stop()


def outcome(name: str, text: str) -> None:
    Figures.add("faults", **{name: text[:300]})


async def exchange(user: WebUser, text: str, msg_id: str | None = None, timeout: float = 30.0,
                   quiet: float = 0.7) -> tuple[int, list[dict]]:
    """POST one question; its replies (those that come until `quiet` s pass without another)."""
    before = len(user.replies())
    status, body = await user.post(text, msg_id=msg_id, retry=False)
    if status != 200:
        return status, [{"type": "REFUSED", "content": f"{status} {body}"}]
    await user.wait_replies(before + 1, timeout)
    while True:
        count = len(user.replies())
        await asyncio.sleep(quiet)
        if len(user.replies()) == count:
            return status, user.replies()[before:]


async def answered(user: WebUser, text: str, timeout: float = 30.0) -> None:
    """Good traffic after the fault: a plain question gets its plain answer."""
    _, replies = await exchange(user, text, timeout=timeout)
    assert [r["content"] for r in replies] == [f"echo: {text}"], replies


def run(app: WebApp, scenario) -> None:
    async def main():
        user = WebUser("127.0.0.1", app.port, "f1")
        user.open()
        try:
            await scenario(user)
        finally:
            await user.close()

    asyncio.run(main())


@contextlib.contextmanager
def started(tmp_path, dify, **settings):
    app = WebApp(tmp_path, dify, plugins=("counter",), **settings).start()
    try:
        yield app
    finally:
        app.stop()


def clear(replies: list[dict]) -> bool:
    """A reply the user can read: some text, not an empty or raw traceback."""
    return bool(replies) and all(str(r.get("content", "")).strip() and "Traceback" not in str(r.get("content"))
                                 for r in replies)


# ---------------------------------------------------------------------------------------------- Dify side
def test_dify_down_then_back(tmp_path, dify):
    with started(tmp_path, dify, dify_max_retries=1) as app:
        async def scenario(user):
            await answered(user, "before")
            dify.stop()
            down_at = time.monotonic()
            replies = []
            for i in range(3):
                status, got = await exchange(user, f"while down {i}", msg_id=f"down{i}", timeout=60)
                assert status == 200 and len(got) == 1 and clear(got), got
                replies += got
            await asyncio.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
            restart_dify(dify)
            await answered(user, "after")
            outcome("dify down", f"{DOWN_SECONDS:g} s: 3 of 3 questions answered with: {replies[0]['content']!r}; "
                                 "answers again once back")
        run(app, scenario)


def test_stream_cut_mid_answer(tmp_path, dify):
    with started(tmp_path, dify, dify_max_retries=0) as app:
        async def scenario(user):
            dify.push_events([{"event": "message", "answer": "The first half of "}, "CUT"])
            _, got = await exchange(user, "cut me")
            assert len(got) == 1 and clear(got), got
            await answered(user, "next")
            outcome("stream cut", f"one reply: {got[0]['content']!r}")
        run(app, scenario)


def test_ten_megabyte_answer_is_bounded(tmp_path, dify):
    with started(tmp_path, dify) as app:
        async def scenario(user):
            dify.push_answer("长" * (10 * 1024 * 1024 // 3), chunk_size=64 * 1024)
            _, got = await exchange(user, "huge answer please", timeout=60)
            sizes = [len(str(r.get("content", ""))) for r in got]
            assert got and clear(got), [str(r)[:200] for r in got]
            # One SSE event of 10 MB (and all of it kept in memory) is the defect: a bound, said so.
            assert max(sizes) < 1024 * 1024, f"reply sizes {sizes}"
            await answered(user, "small again")
            outcome("10 MB answer", f"{len(got)} reply(s) of {sizes} characters; ends {str(got[-1]['content'])[-80:]!r}")
        run(app, scenario)


def test_endless_stream_ends_with_the_answer_deadline(tmp_path, dify):
    with started(tmp_path, dify, dify_answer_timeout=3, dify_max_retries=0) as app:
        async def scenario(user):
            # A ping every half second keeps a per-read timeout happy forever.
            dify.push_events([{"event": "message", "answer": "this never ends "}] + [PING, 0.5] * 2000)
            _, got = await exchange(user, "endless", timeout=60)
            assert len(got) == 1 and clear(got), got
            await answered(user, "after endless")
            outcome("endless stream", f"ended by the answer deadline: {got[0]['content']!r}")
        run(app, scenario)


INVALID_STREAMS = {
    "not JSON": [b"data: {not json\n\n"],
    "bad UTF-8": [b"data: {\"event\": \"message\", \"answer\": \"\xff\xfe\"}\n\n", {"event": "message_end"}],
    "lone surrogate": [b"data: {\"event\": \"message\", \"answer\": \"a\\ud800b\"}\n\n", {"event": "message_end"}],
    "no event": [b"event: message\nid: 1\n\n", b"data: [1, 2]\n\n"],
    "1 MB line": [b"data: " + b"x" * (1024 * 1024) + b"\n\n"],
}


def test_invalid_sse_each_ends_in_one_clear_reply(tmp_path, dify):
    with started(tmp_path, dify, dify_max_retries=0, dify_answer_timeout=10) as app:
        async def scenario(user):
            for i, (name, events) in enumerate(INVALID_STREAMS.items()):
                dify.push_events(events)
                _, got = await exchange(user, f"invalid {i}", timeout=30)
                assert len(got) == 1 and clear(got), (name, got)
                # the user's stream still works: a lone surrogate once silenced a user for good
                await answered(user, f"after invalid {i}")
                outcome(f"invalid SSE: {name}", f"one reply: {str(got[0]['content'])[:100]!r}")
        run(app, scenario)


# ---------------------------------------------------------------------------------------------- links in answers
@pytest.fixture
def files():
    server = FileServer(host="127.0.0.2", trickle=5.0, huge_bytes=200 * 1024 * 1024)
    yield server
    server.stop()


def test_slow_images_do_not_take_every_worker(tmp_path, dify, files):
    workers = 4
    with started(tmp_path, dify, worker_threads=workers, download_timeout=4, allowed_internal_hosts=["127.0.0.2"]) as app:
        async def scenario(user):
            slow_users = [WebUser("127.0.0.1", app.port, f"slow{i}") for i in range(workers)]
            for u in slow_users:
                u.open()
            for i, u in enumerate(slow_users):
                dify.push_answer(f"look ![pic]({files.url}/slow.png?{i})")
                assert (await u.post(f"slow {i}"))[0] == 200
            # The downloads have begun and every slow question has taken its scripted answer (else
            # the next question could take one of theirs).
            while files.hits.get("/slow.png", 0) < 1 or dify.pending_scripts():
                await asyncio.sleep(0.05)
            # Everybody else is still answered while the downloads trickle.
            await answered(user, "not stuck", timeout=20)
            for u in slow_users:
                assert await u.wait_replies(1, 60), "a slow download never ended"
                assert clear(u.replies()), u.replies()
            outcome("slow images", f"{workers} downloads trickling 1 byte / 5 s: other users answered; each ended with "
                                   f"{slow_users[0].replies()[-1]['content']!r}")
            for u in slow_users:
                await u.close()
        run(app, scenario)


def test_huge_file_is_capped(tmp_path, dify, files):
    with started(tmp_path, dify, download_timeout=30, allowed_internal_hosts=["127.0.0.2"]) as app:
        async def scenario(user):
            dify.push_answer(f"here [big.bin]({files.url}/huge.bin)")
            _, got = await exchange(user, "huge file", timeout=60)
            assert clear(got), got
            tmp_size = folder_size(os.path.join(app.folder, "tmp"))
            assert tmp_size < 100 * 1024 * 1024, f"tmp/ holds {tmp_size} bytes"
            await answered(user, "after huge")
            outcome("huge file (200 MB)", f"tmp/ {tmp_size} bytes; ended with {got[-1]['content']!r}")
        run(app, scenario)


def test_internal_url_in_an_answer_is_not_fetched(tmp_path, dify):
    secret = FileServer(host="127.0.0.3")
    try:
        with started(tmp_path, dify) as app:
            async def scenario(user):
                for name in ("secret.png", "secret.png?x=1"):
                    dify.push_answer(f"![x]({secret.url}/{name}) and [doc]({secret.url}/{name})")
                    _, got = await exchange(user, f"internal {name}")
                    assert clear(got), got
                assert secret.hits.get("/secret.png", 0) == 0, "the daemon fetched an internal address"
                await answered(user, "after internal")
                outcome("internal URLs", f"not fetched; ended with {got[-1]['content']!r}")
            run(app, scenario)
    finally:
        secret.stop()


# ---------------------------------------------------------------------------------------------- local disk
@contextlib.contextmanager
def small_filesystem(path: str, size: str = "4m"):
    """A tmpfs at `path` (root on Linux), else None: the caller uses permissions instead."""
    os.makedirs(path, exist_ok=True)
    mounted = False
    if sys.platform.startswith("linux") and os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                                 capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", path], capture_output=True)


def make_read_only(path: str, mounted: bool) -> None:
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", path], check=True)
    else:
        for folder, _, names in os.walk(path):
            for name in names:
                os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(path, 0o555)


def test_tmp_unwritable(tmp_path, dify, files):
    tmp = os.path.join(str(tmp_path), "tmp")
    with small_filesystem(tmp) as mounted:
        make_read_only(tmp, mounted)
        try:
            with started(tmp_path, dify, allowed_internal_hosts=["127.0.0.2"]) as app:
                async def scenario(user):
                    dify.push_answer(f"a file [small.png]({files.url}/small.png)")
                    _, got = await exchange(user, "file please")
                    assert clear(got), got
                    await answered(user, "text still works")
                    outcome("tmp/ unwritable", f"ended with {got[-1]['content']!r}")
                run(app, scenario)
        finally:
            if not mounted:
                os.chmod(tmp, 0o755)


def store_path(app: WebApp) -> str:
    return os.path.join(app.appdata, "state.db")


def test_state_db_locked(tmp_path, dify):
    """Another process (a backup tool, a curious admin with sqlite3) holds the database for 3 s."""
    with started(tmp_path, dify) as app:
        async def scenario(user):
            await answered(user, "before lock")
            locked, release = threading.Event(), threading.Event()

            def hold():
                holder = sqlite3.connect(store_path(app), timeout=1, isolation_level=None)
                holder.execute("BEGIN EXCLUSIVE")
                locked.set()
                release.wait(3)
                holder.execute("ROLLBACK")
                holder.close()

            thread = threading.Thread(target=hold)
            thread.start()
            locked.wait(10)
            try:
                results = await asyncio.gather(*(user.post(f"locked {i}", msg_id=f"lock{i}", retry=False)
                                                 for i in range(3)))
            finally:
                release.set()
                thread.join()
            acked = [i for i, (status, _) in enumerate(results) if status == 200]
            refused = [(status, body) for status, body in results if status != 200]
            # a refusal says why (503 and a reason), it does not hang or break the connection
            assert all(status in (429, 503) and (body.get("detail") or body.get("message")) for status, body in refused), refused
            assert await user.wait_replies(1 + len(acked), 60), user.replies()
            await asyncio.sleep(1)
            texts = [r["content"] for r in user.replies()[1:]]
            # each acknowledged question one reply; a refused one may be explained on the page too
            assert len(acked) <= len(texts) <= 3 and clear(user.replies()), texts
            await answered(user, "after lock")
            outcome("state db locked 3 s", f"{len(acked)} acknowledged and answered, {len(refused)} refused; "
                                           f"replies {texts[:1]!r}")
        run(app, scenario)


def damaged_start(tmp_path, dify, damage, name: str) -> None:
    """Start, keep a user's data, stop; damage state.db; start again: the daemon says so (start-up
    refused with one line, or a warning that names the file and keeps the old one) and never starts
    empty without a word."""
    app = WebApp(tmp_path, dify, plugins=("counter",))
    app.start()

    async def first(user):
        _, got = await exchange(user, "count")
        assert [r["content"] for r in got] == ["count=1"]
    run(app, first)
    app.stop()
    path = store_path(app)
    for extra in ("-wal", "-shm"):
        if os.path.exists(path + extra):
            os.remove(path + extra)
    damage(path)
    damaged = open(path, "rb").read()
    from tests.e2e.daemon import Daemon
    app.daemon = Daemon(app.folder, *app.args)
    deadline = time.monotonic() + 30
    while app.daemon.proc.poll() is None and time.monotonic() < deadline:
        try:
            app.wait_healthy(1)
            break
        except AssertionError:
            continue
    try:
        if app.daemon.proc.poll() is not None:
            err = app.daemon.stderr()
            lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
            assert app.daemon.proc.returncode not in (0, None) and "Traceback" not in err, err[-2000:]
            assert any("state" in line.lower() for line in lines), err[-2000:]
            outcome(name, f"start-up refused (exit {app.daemon.proc.returncode}): {lines[-1]!r}")
            return
        log = app.run_log()
        said = [line for line in log.splitlines() if ("WARNING" in line or "ERROR" in line) and "state" in line.lower()]
        assert said, f"{name}: the daemon started without a word about the damaged state.db"
        kept = [n for n in os.listdir(app.appdata) if n.startswith("state.db") and n not in
                ("state.db", "state.db-wal", "state.db-shm")]
        assert any(open(os.path.join(app.appdata, n), "rb").read() == damaged for n in kept), \
            f"{name}: the damaged file was not kept ({os.listdir(app.appdata)})"

        async def after(user):
            await answered(user, f"after {name}")
        run(app, after)
        outcome(name, f"started with a warning, old file kept as {kept[0]!r}: {said[0][-120:]!r}")
    finally:
        app.stop()


def test_state_db_truncated(tmp_path, dify):
    damaged_start(tmp_path, dify, lambda p: open(p, "wb").close(), "state db truncated to 0 bytes")


def test_state_db_corrupted(tmp_path, dify):
    def corrupt(path):
        data = bytearray(open(path, "rb").read())
        data[0:100] = b"this is not a database" + b"\x00" * 78
        data[100:4096] = os.urandom(3996)
        with open(path, "wb") as f:
            f.write(bytes(data))
    damaged_start(tmp_path, dify, corrupt, "state db corrupted")


def test_state_db_read_only(tmp_path, dify):
    data = os.path.join(str(tmp_path), "data")
    with small_filesystem(data) as mounted:
        app = WebApp(tmp_path, dify, plugins=("counter",)).start()

        async def first(user):
            _, got = await exchange(user, "count")
            assert [r["content"] for r in got] == ["count=1"]
        run(app, first)
        app.stop()
        make_read_only(data, mounted)
        try:
            from tests.e2e.daemon import Daemon
            app.daemon = Daemon(app.folder, *app.args)
            try:
                app.wait_healthy(30)
            except AssertionError:
                pass
            if app.daemon.proc.poll() is not None:
                err = app.daemon.stderr()
                assert app.daemon.proc.returncode not in (0, None) and "Traceback" not in err, err[-2000:]
                line = [x for x in err.splitlines() if "state" in x.lower()]
                assert line, err[-2000:]
                outcome("state db read-only", f"start-up refused (exit {app.daemon.proc.returncode}): {line[-1]!r}")
                return
            status, health = app.health()
            assert health.get("state") == "degraded", (status, health)

            async def after(user):
                _, got = await exchange(user, "count")
                assert clear(got), got
                outcome("state db read-only", f"running, /healthz {health}; a question got {got[-1]['content']!r}")
            run(app, after)
        finally:
            app.stop()
            if not mounted:
                os.chmod(data, 0o755)


def test_state_db_disk_full(tmp_path, dify):
    data = os.path.join(str(tmp_path), "data")
    with small_filesystem(data, size="3m") as mounted:
        if not mounted:
            pytest.skip("needs root on Linux to mount a small tmpfs (a full disk cannot be made otherwise safely)")
        with started(tmp_path, dify) as app:
            async def scenario(user):
                await answered(user, "before full")
                filler = os.path.join(data, "filler")
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    except OSError:
                        pass
                acked = 0
                for i in range(5):
                    status, body = await user.post(f"disk full {i} " + "x" * 2000, msg_id=f"full{i}", retry=False)
                    acked += status == 200
                    if status != 200:
                        assert body.get("detail") or body.get("message"), body
                # /healthz may answer from a check of a few seconds ago: a monitor polls it
                deadline = time.monotonic() + 20
                while True:
                    status, health = app.health()
                    if health.get("state") == "degraded" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                await user.wait_replies(1 + acked, 30)
                await asyncio.sleep(1)
                got = user.replies()[1:]
                # each acknowledged question one reply; a refused one may be explained on the page too
                assert acked <= len(got) <= 5 and clear(user.replies()), got
                assert len([r for r in got if r.get("type") != "ERROR"]) <= acked, got
                assert health.get("state") == "degraded", (status, health)
                os.remove(filler)
                await answered(user, "space again")
                outcome("state db disk full", f"{acked} of 5 acknowledged and answered; /healthz {health}")
            run(app, scenario)
