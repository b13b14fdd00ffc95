"""The web channel across a `kill -9` and a restart of `python app.py` (same appdata_dir):
answers written before the crash reach the page after it, once, with the ids they had,
and the ids go on."""
from __future__ import annotations

import sys
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.daemon import web_daemon
from tests.e2e.test_web_process import SSE, wait_idle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="kill -9"),
]


def ask(base: str, user: str, message: str, msg_id: str) -> None:
    r = httpx.post(base + "/message", json={"user_id": user, "message": message, "msg_id": msg_id}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "success", r.text


def history(base: str, user: str) -> dict:
    r = httpx.get(base + "/history/" + quote(user, safe=""), timeout=10)
    assert r.status_code == 200
    return r.json()


def drain(stream: SSE, quiet: float = 0.7) -> list[dict]:
    """Every unnamed event until none came for `quiet` seconds."""
    got = []
    while True:
        try:
            got.append(stream.events.get(timeout=quiet))
        except Exception:
            return got


def test_answers_written_before_a_kill_are_replayed_after_the_restart_with_their_ids(tmp_path):
    user = "durable 用户"
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        first = SSE(port, user)
        assert first.opened.wait(5)
        ask(base, user, "one", "m1")
        seen = first.next()
        assert seen["data"]["content"] == "echo: one"
        first.close()
        # Answered while the page is away, then the daemon dies.
        ask(base, user, "two", "m2")
        ask(base, user, "three", "m3")
        wait_idle(base)
        before = [m for m in history(base, user)["messages"] if m["role"] == "bot"]
        daemon.kill()
    assert [(m["content"], m["reply_to"], m["final"]) for m in before] == [
        ("echo: one", f"{user}:m1", True), ("echo: two", f"{user}:m2", True), ("echo: three", f"{user}:m3", True)]
    assert before[0]["id"] == seen["id"]

    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        # The page reconnects naming the last event it showed: exactly what it missed.
        again = SSE(port, user, last_id=seen["id"])
        missed = drain(again)
        again.close()
        assert [(e["id"], e["data"]["content"]) for e in missed] == [(m["id"], m["content"]) for m in before[1:]]
        assert all(e["data"]["id"] == e["id"] for e in missed)
        # The ids go on from where the first run stopped.
        epoch, _, last_seq = before[-1]["id"].partition("-")
        listener = SSE(port, user, last_id=before[-1]["id"])
        assert listener.opened.wait(5)
        ask(base, user, "four", "m4")
        new = listener.next()
        listener.close()
        assert new["data"]["content"] == "echo: four"
        new_epoch, _, new_seq = new["id"].partition("-")
        assert new_epoch == epoch and int(new_seq) > int(last_seq)
        assert new["data"]["reply_to"] == f"{user}:m4" and new["data"]["final"] is True
        assert [m["content"] for m in history(base, user)["messages"] if m["role"] == "bot"] == [
            "echo: one", "echo: two", "echo: three", "echo: four"]


def test_a_page_that_never_connected_gets_the_answers_after_the_restart_once(tmp_path):
    user = "away"
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        for i in range(3):
            ask(base, user, f"q{i}", f"m{i}")
        wait_idle(base)
        daemon.kill()
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        fresh = SSE(port, user)  # no Last-Event-ID: what was never written to a connection
        got = drain(fresh)
        fresh.close()
        assert [e["data"]["content"] for e in got] == ["echo: q0", "echo: q1", "echo: q2"]
        assert len({e["id"] for e in got}) == 3
        again = SSE(port, user)
        assert again.opened.wait(5) and again.none_within(0.5)  # delivered: not again
        again.close()
        daemon.kill()
    # What was written to a connection stays delivered across the next restart too.
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        fresh = SSE(port, user)
        assert fresh.opened.wait(5) and fresh.none_within(0.5)
        fresh.close()


def test_an_unknown_or_malformed_last_event_id_gets_every_event_kept(tmp_path):
    user = "lost-place"
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        stream = SSE(port, user)
        assert stream.opened.wait(5)
        ask(base, user, "kept", "k1")
        assert stream.next()["data"]["content"] == "echo: kept"
        stream.close()
        # Delivered, but a client whose place cannot be known (an id of another epoch: the
        # record was lost; or no id of ours at all) gets it again rather than nothing.
        for last_id in ["garbage", "\u00b2-3", "deadbeef-3", "1-99999999999999999999999999", "-", "a" * 5000]:
            stream = SSE(port, user, last_id=last_id)
            got = drain(stream)
            stream.close()
            assert stream.status == 200, last_id
            assert [e["data"]["content"] for e in got] == ["echo: kept"], last_id
        assert httpx.get(base + "/healthz").status_code == 200
        with open(daemon.folder + "/run.log", encoding="utf-8") as f:
            assert "Traceback" not in f.read()


def test_many_users_across_a_kill_see_every_answer_once_in_order(tmp_path):
    users = [f"crowd{i}" for i in range(12)]
    seen: dict[str, list[dict]] = {u: [] for u in users}

    def collect(stream: SSE, user: str, quiet: float = 0.7) -> None:
        seen[user].extend(drain(stream, quiet))

    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        streams = {u: SSE(port, u) for u in users}
        assert all(s.opened.wait(5) for s in streams.values())
        for i in range(5):
            for u in users:
                ask(base, u, f"{u} q{i}", f"a{i}")
        # Kill while the answers are still being written and read.
        first = streams[users[0]].next()
        seen[users[0]].append(first)
        daemon.kill()
        for u, s in streams.items():
            collect(s, u, quiet=0.05)  # the daemon is gone: what arrived is all there is
            s.close()
    with web_daemon(tmp_path) as (daemon, server, port, base, health):
        streams = {u: SSE(port, u, last_id=seen[u][-1]["id"] if seen[u] else None) for u in users}
        assert all(s.opened.wait(5) for s in streams.values())
        for i in range(5, 8):
            for u in users:
                ask(base, u, f"{u} q{i}", f"a{i}")
        wait_idle(base)
        for u, s in streams.items():
            collect(s, u, quiet=0.3)
            s.close()
        answered = {u: [m for m in history(base, u)["messages"] if m["role"] == "bot"] for u in users}
    for u in users:
        # What the page was sent is what the store says was answered: each once, in order, no gap.
        assert [(e["id"], e["data"]["content"], e["data"]["reply_to"]) for e in seen[u]] == [
            (m["id"], m["content"], m["reply_to"]) for m in answered[u]], u
        assert len({e["id"] for e in seen[u]}) == len(seen[u]), u
        seqs = [int(e["id"].split("-")[1]) for e in seen[u]]
        assert seqs == sorted(seqs), u
        assert all(e["data"]["final"] is True for e in seen[u]), u
        assert [e["data"]["content"] for e in seen[u]][-3:] == [f"echo: {u} q{i}" for i in range(5, 8)], u
