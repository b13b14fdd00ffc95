"""Load: N sessions x M messages through the web channel and through the WeCom simulator, with
the Dify simulator adding random latency and 5% errors. Every message gets exactly one reply (an
answer or a clear error), in order per session. CI size by default; bench/reliability.py runs
500 x 20 (or set RELIABILITY_SESSIONS / RELIABILITY_MESSAGES)."""
from __future__ import annotations

import asyncio
import os

import pytest

from tests.reliability.harness import (
    Figures, WebApp, WeworkApp, chaos_dify, close_users, process_figures, web_load, wework_load,
)

SESSIONS = int(os.environ.get("RELIABILITY_SESSIONS", "150"))
MESSAGES = int(os.environ.get("RELIABILITY_MESSAGES", "10"))
WEWORK_SESSIONS = int(os.environ.get("RELIABILITY_WEWORK_SESSIONS", str(max(1, SESSIONS // 3))))


@pytest.fixture
def dify():
    server = chaos_dify(latency=0.05, error_rate=0.05, seed=5)
    yield server
    server.stop()


def test_web_load_every_message_answered_once_in_order(tmp_path, dify):
    app = WebApp(tmp_path, dify, plugins=()).start()
    try:
        async def main():
            tally, users = await web_load("127.0.0.1", app.port, SESSIONS, MESSAGES, settle=60)
            await close_users(users)
            return tally

        tally = asyncio.run(main())
        Figures.add(f"load web {SESSIONS}x{MESSAGES}", **tally.figures(), dify_errors=dify.chaos_errors,
                    **{f"daemon_{k}": v for k, v in process_figures(app.pid()).items()})
    finally:
        app.stop()
    tally.assert_clean()
    assert tally.sent == SESSIONS * MESSAGES and tally.acknowledged == tally.sent, tally.figures()


def test_wework_load_every_message_answered_once_in_order(tmp_path, dify):
    # No retries here: the 5% Dify errors reach the users as error replies, which must come
    # one per failed question and in their place.
    app = WeworkApp(tmp_path, dify, dify_max_retries=0).start()
    try:
        tally = wework_load(app, WEWORK_SESSIONS, MESSAGES, settle=60)
        Figures.add(f"load wework {WEWORK_SESSIONS}x{MESSAGES}", **tally.figures(), dify_errors=dify.chaos_errors)
    finally:
        app.stop()
    tally.assert_clean()
