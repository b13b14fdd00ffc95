"""A bot that waits at a gate the test opens: lets tests see queue order and limits."""
from __future__ import annotations

import threading

from bot.bot import Bot
from bridge.reply import Reply, ReplyType


class GatedBot(Bot):
    gate = threading.Event()
    started = threading.Event()
    running = 0
    max_running = 0
    _lock = threading.Lock()

    @classmethod
    def reset_counts(cls) -> None:
        with cls._lock:
            cls.running = 0
            cls.max_running = 0
        cls.started.clear()

    def reply(self, query, context=None):
        cls = type(self)
        with cls._lock:
            cls.running += 1
            cls.max_running = max(cls.max_running, cls.running)
        cls.started.set()
        try:
            if not cls.gate.wait(10):
                raise TimeoutError("gate never opened")
            return Reply(ReplyType.TEXT, "echo: " + query)
        finally:
            with cls._lock:
                cls.running -= 1


class SleepyBot(Bot):
    """Takes 30 s to answer: for tests of shutting down while a reply is running."""

    def reply(self, query, context=None):
        import time

        time.sleep(30)
        return Reply(ReplyType.TEXT, "echo: " + query)


class FileGatedBot(Bot):
    """For a daemon in its own process: a query starting with "slow" first creates the file
    named by the GATE_FILE environment variable + ".started", then waits (up to 30 s) until
    GATE_FILE exists. Answers "echo: <query>". Has sessions, so #reset works with it."""

    def __init__(self) -> None:
        from bot.session_manager import Session, SessionManager

        self.sessions = SessionManager(Session)

    def reply(self, query, context=None):
        import os
        import time

        gate = os.environ.get("GATE_FILE")
        if gate and query.startswith("slow"):
            with open(gate + ".started", "w", encoding="utf-8"):
                pass
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
        return Reply(ReplyType.TEXT, "echo: " + query)


class PartThenGateBot(Bot):
    """Sends "part: <query>" at once through the channel (as a bot sends the first parts of a
    long answer), then waits at `gate` and answers "echo: <query>". A query "quiet" gets no
    answer at all after its part."""

    gate = threading.Event()
    started = threading.Event()

    def reply(self, query, context=None):
        cls = type(self)
        context["channel"].deliver(context, Reply(ReplyType.TEXT, "part: " + query))
        cls.started.set()
        if not cls.gate.wait(10):
            raise TimeoutError("gate never opened")
        return Reply(ReplyType.TEXT, "" if query == "quiet" else "echo: " + query)
