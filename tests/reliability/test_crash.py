"""Crash: `kill -9` at random moments during load, restart, five times. Every acknowledged message
is answered exactly once (before the kill or after the restart); a plugin's user data
(conf().get_user_data, through the Counter test plugin) and each user's Dify conversation survive."""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests.reliability.harness import (
    Figures, WebApp, WebUser, chaos_dify, close_users, web_load,
)

SESSIONS = int(os.environ.get("RELIABILITY_CRASH_SESSIONS", "40"))
MESSAGES = int(os.environ.get("RELIABILITY_CRASH_MESSAGES", "10"))
KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))


@pytest.fixture
def dify():
    server = chaos_dify(latency=0.1, error_rate=0.05, seed=23)
    yield server
    server.stop()


def conversations_of(dify, user: str, after: int = 0) -> set[str]:
    return {m["conversation_id"] for m in dify.messages[after:] if m["query"].startswith(user + " ")}


def test_kill_9_during_load_loses_nothing(tmp_path, dify):
    rng = random.Random(1123)
    app = WebApp(tmp_path, dify, plugins=("counter",), dify_conversation_max_messages=0).start()
    kills = 0

    async def main():
        loop = asyncio.get_running_loop()
        names = [f"c{i}" for i in range(SESSIONS)]
        users = {n: WebUser("127.0.0.1", app.port, n) for n in names}
        for user in users.values():
            user.open()
        # Warm-up before any kill: user data and a Dify conversation exist for every user.
        for n, user in users.items():
            for i, text in enumerate(("count", f"{n} hello")):
                status, _ = await user.post(text, msg_id=f"warm{i}")
                assert status == 200
        for n, user in users.items():
            assert await user.wait_replies(2, 60), f"{n}: warm-up not answered: {user.replies()}"
            assert [r["content"] for r in user.replies()] == ["count=1", f"echo: {n} hello"]
            user.events.clear()
        warm_conversation = {n: conversations_of(dify, n) for n in names}
        assert all(len(c) == 1 for c in warm_conversation.values()), warm_conversation
        warm_messages = len(dify.messages)

        async def killer():
            nonlocal kills
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                await loop.run_in_executor(None, app.restart)  # kill -9, then start again
                kills += 1

        tally, _ = await web_load("127.0.0.1", app.port, SESSIONS, MESSAGES, prefix="c", settle=20,
                                  users=users, pause=0.4, during=killer())
        # After the last restart: the counter continues and the conversation is the same.
        for n, user in users.items():
            user.events.clear()
            status, _ = await user.post("count", msg_id="count-after")
            assert status == 200
        counts = {}
        for n, user in users.items():
            await user.wait_replies(1, 30)
            counts[n] = [r["content"] for r in user.replies()]
        await close_users(users)
        later = {n: conversations_of(dify, n, warm_messages) for n in names}
        return tally, counts, warm_conversation, later

    try:
        tally, counts, warm, later = asyncio.run(main())
    finally:
        app.stop()
    lost_data = sorted(n for n, c in counts.items() if c != ["count=2"])
    new_conversations = sorted(n for n in later if later[n] - warm[n])
    Figures.add(f"crash web {SESSIONS}x{MESSAGES}", kills=kills, restarts=app.starts - 1, **tally.figures(),
                users_with_lost_user_data=len(lost_data), users_with_new_conversation=len(new_conversations))
    assert kills == KILLS
    tally.assert_clean()
    assert not lost_data, {n: counts[n] for n in lost_data[:5]}
    assert not new_conversations, {n: (warm[n], later[n]) for n in new_conversations[:5]}
