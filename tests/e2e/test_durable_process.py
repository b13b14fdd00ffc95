"""Nothing acknowledged is lost: `python app.py` killed with kill -9 (or stopped with a backlog)
while Dify is stalled answers every acknowledged message exactly once after the restart."""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, run_app, web_daemon, write_config
from tests.e2e.test_web_process import SSE, running_channel, wait_idle

pytestmark = pytest.mark.slow


def post(base: str, user: str, text: str, msg_id: str | None = None) -> httpx.Response:
    body = {"user_id": user, "message": text}
    if msg_id is not None:
        body["msg_id"] = msg_id
    return httpx.post(base + "/message", json=body, timeout=10)


def inbox_rows(folder) -> int:
    """Messages the daemon keeps in its state database (read beside the running daemon)."""
    path = os.path.join(str(folder), "data", "state.db")
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def answers(stream: SSE, count: int) -> list[str]:
    return [stream.next(timeout=30)["data"]["content"] for _ in range(count)]


def test_web_kill_9_with_dify_stalled_answers_every_acknowledged_message_once(tmp_path):
    asked = {"alice": ["a1", "a2", "a3"], "bob": ["b1", "b2"], "carol": ["c1"]}
    with web_daemon(tmp_path, max_pending_messages=6) as (daemon, server, port, base, health):
        for _ in asked:
            server.push_hang(60)  # the first question of each user hangs in Dify
        for user, texts in asked.items():
            for text in texts:
                r = post(base, user, text, msg_id=text)
                assert r.status_code == 200 and "handled" not in r.json(), r.text
        # The seventh pending message is over max_pending_messages: refused, not acknowledged.
        refused = post(base, "dave", "d1", msg_id="d1")
        assert refused.status_code == 503 and "too many messages" in refused.json()["message"], refused.text
        assert post(base, "dave", "d1", msg_id="d1").status_code == 503  # the page retries: still refused
        assert post(base, "alice", "a1", msg_id="a1").json().get("handled") is False  # a retried POST
        daemon.kill()  # kill -9: no stop handler runs

    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        streams = {user: SSE(port, user) for user in [*asked, "dave"]}
        try:
            for stream in streams.values():
                assert stream.opened.wait(5)
            # A retry of an acknowledged id is a duplicate (it is answered from the store);
            # the refused one was never taken, so its retry is.
            assert post(base, "alice", "a1", msg_id="a1").json().get("handled") is False
            retry = post(base, "dave", "d1", msg_id="d1")
            assert retry.status_code == 200 and "handled" not in retry.json(), retry.text
            for user, texts in asked.items():
                assert answers(streams[user], len(texts)) == [f"echo: {t}" for t in texts]
            # dave was told by the 503 before the kill, and only there: no busy reply on the stream.
            assert answers(streams["dave"], 1) == ["echo: d1"]
            wait_idle(base)
            for stream in streams.values():
                assert stream.none_within(0.5)  # exactly once
            # The history shows each question once: not the refused tries, not the retried POST.
            for user, texts in [*asked.items(), ("dave", ["d1"])]:
                history = httpx.get(f"{base}/history/{user}", timeout=10).json()["messages"]
                assert [e["content"] for e in history if e["role"] == "user"] == texts, history
        finally:
            for stream in streams.values():
                stream.close()
        assert inbox_rows(tmp_path) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_web_stop_with_a_backlog_keeps_it_for_the_next_start(tmp_path):
    with web_daemon(tmp_path, shutdown_timeout=1) as (daemon, server, port, base, health):
        server.push_hang(60)
        for text in ("e1", "e2", "e3"):
            assert post(base, "erin", text).status_code == 200
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    with open(os.path.join(str(tmp_path), "run.log"), encoding="utf-8") as f:
        log = f.read()
    assert "3 message(s) not answered after 1 s; they are kept in the state store" in log
    assert inbox_rows(tmp_path) == 3

    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        stream = SSE(port, "erin")
        try:
            assert answers(stream, 3) == ["echo: e1", "echo: e2", "echo: e3"]
            wait_idle(base)
            assert stream.none_within(0.5)
        finally:
            stream.close()
    assert inbox_rows(tmp_path) == 0


def test_terminal_kill_9_then_restart_answers_what_was_typed(tmp_path):
    with DifyServer(api_key="app-test", mode="chat") as stalled:
        stalled.push_hang(60)
        config = write_config(tmp_path, bot_type="", model="dify", dify_api_base=stalled.base_url, dify_api_key="app-test")
        daemon = Daemon(tmp_path, "--cmd", "--config", config)
        try:
            for text in ("first", "second", "third"):
                daemon.ask(text)
            deadline = time.monotonic() + 20
            while inbox_rows(tmp_path) < 3:
                assert time.monotonic() < deadline, "the daemon never stored the three questions"
                time.sleep(0.05)
        finally:
            daemon.kill()
        assert "echo:" not in "".join(daemon.stdout)

    with DifyServer(api_key="app-test", mode="chat") as server:
        config = write_config(tmp_path, bot_type="", model="dify", dify_api_base=server.base_url, dify_api_key="app-test")
        again = run_app(tmp_path, "--cmd", "--config", config, input="fourth\n")
    assert again.returncode == 0, again.stderr
    replies = [line for line in again.stdout.splitlines() if line.startswith("echo:")]
    assert replies == ["echo: first", "echo: second", "echo: third", "echo: fourth"]
    assert inbox_rows(tmp_path) == 0


def test_two_hash_commands_queued_back_to_back_run_in_the_order_sent(tmp_path):
    """Issue 11, defect 8 said they ran in reverse order (the original put each command at the
    head of the queue). Checked through a real daemon: they keep their order."""
    gate = str(tmp_path / "gate")
    config = write_config(tmp_path, bot_type="tests.fakes.gated_bot:FileGatedBot")
    daemon = Daemon(tmp_path, "--cmd", "--config", config, env={"GATE_FILE": gate})
    try:
        daemon.ask("slow question")
        deadline = time.monotonic() + 20
        while not os.path.exists(gate + ".started"):
            assert time.monotonic() < deadline, "the bot never started"
            time.sleep(0.02)
        daemon.ask("a question after")
        daemon.ask("#nosuchcommand1")  # both wait behind the slow question, then jump the queue
        daemon.ask("#nosuchcommand2")
        while inbox_rows(tmp_path) < 4:  # all four taken (the first still running)
            assert time.monotonic() < deadline, "the daemon never took the four lines"
            time.sleep(0.02)
        open(gate, "w").close()
        daemon.proc.stdin.close()
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    out = "".join(daemon.stdout)
    order = [out.index(text) for text in ("echo: slow question", "nosuchcommand1", "nosuchcommand2", "echo: a question after")]
    assert order == sorted(order), out


def test_web_refuses_with_503_what_the_store_cannot_save(settings, tmp_path):
    from common.store import SQLiteStore
    from config import conf

    settings["single_chat_prefix"] = [""]
    settings["bot_type"] = "tests.fakes.bots:EchoBot"
    store = SQLiteStore(str(tmp_path / "state.db"))
    book = conf().user_data_book
    book.attach(store)
    try:
        with running_channel(settings) as channel:
            base = channel.server.base_url
            store.close()  # every write fails from now on, as with a vanished disk
            r = httpx.post(base + "/message", json={"user_id": "zoe", "message": "hello", "msg_id": "z1"}, timeout=10)
            assert r.status_code == 503
            assert r.json()["status"] == "error" and "could not be saved" in r.json()["message"]
            assert channel.dispatcher.pending() == 0
    finally:
        book.close()
        book._store = None


def _inbox_snapshot(folder) -> list[tuple]:
    path = os.path.join(str(folder), "data", "state.db")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT * FROM inbox ORDER BY id").fetchall()
    finally:
        conn.close()


def test_web_a_message_answered_just_before_a_crash_is_not_answered_again(tmp_path):
    """The crash window between the web channel's final write (the answer is stored and marked
    answered) and the inbox delete: the next start finds the message answered and skips it."""
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        server.push_answer("echo: f1", latency=3)  # long enough to copy the stored row
        assert post(base, "frank", "f1", msg_id="f1").status_code == 200
        deadline = time.monotonic() + 20
        while inbox_rows(tmp_path) < 1:
            assert time.monotonic() < deadline, "the message was never stored"
            time.sleep(0.05)
        kept = _inbox_snapshot(tmp_path)  # the row as it was before the answer
        stream = SSE(port, "frank")
        try:
            first = stream.next(timeout=30)
            assert first["data"]["content"] == "echo: f1"
        finally:
            stream.close()
        wait_idle(base)
        daemon.kill()
    assert inbox_rows(tmp_path) == 0
    # Put the row back: the state a kill -9 leaves right after the final write.
    path = os.path.join(str(tmp_path), "data", "state.db")
    conn = sqlite3.connect(path, timeout=5)
    try:
        columns = len(kept[0])
        conn.executemany(f"INSERT INTO inbox VALUES ({','.join('?' * columns)})", kept)
        conn.commit()
    finally:
        conn.close()

    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        stream = SSE(port, "frank")
        try:
            assert stream.opened.wait(5)
            assert post(base, "frank", "f2", msg_id="f2").status_code == 200
            got = []
            while not got or got[-1]["data"]["content"] != "echo: f2":
                got.append(stream.next(timeout=30))
            wait_idle(base)
            assert stream.none_within(0.5)
            # f1 may be sent again if its delivery mark did not reach the disk before the kill,
            # but only as the same event (same id, which the page skips), never as a new answer.
            again = [e for e in got if e["data"].get("reply_to") == first["data"]["reply_to"]]
            assert all(e["id"] == first["id"] and e["data"] == first["data"] for e in again), got
            assert [e["data"]["content"] for e in got if e["data"].get("reply_to", "").endswith("f2")] == ["echo: f2"], got
        finally:
            stream.close()
        daemon.wait_for_log("1 found answered already")
    assert inbox_rows(tmp_path) == 0
