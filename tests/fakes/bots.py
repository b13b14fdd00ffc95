"""Bots for tests, usable from config as ``"bot_type": "tests.fakes.bots:EchoBot"``."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

from bot.bot import Bot
from bridge.context import Context
from bridge.reply import Reply, ReplyType


def _session_id(context: Context | None) -> Any:
    return context.get("session_id") if context is not None else None


class EchoBot(Bot):
    """Replies TEXT "echo: <query>"."""

    instances = 0
    _count_lock = threading.Lock()

    def __init__(self) -> None:
        with EchoBot._count_lock:
            EchoBot.instances += 1

    def reply(self, query: str, context: Context = None) -> Reply:
        return Reply(ReplyType.TEXT, f"echo: {query}")


class EmptyBot(Bot):
    """Answers a TEXT without content (as a model or app can)."""

    def reply(self, query: str, context: Context = None) -> Reply:
        return Reply(ReplyType.TEXT, "")


class SlowRandomBot(Bot):
    """Sleeps a random 0-20 ms, then echoes: replies finish out of order unless
    the pipeline keeps them in order."""

    def reply(self, query: str, context: Context = None) -> Reply:
        time.sleep(random.uniform(0, 0.020))
        return Reply(ReplyType.TEXT, f"echo: {query}")


class FailingBot(Bot):
    """Always raises RuntimeError (the message carries a fake secret, so tests can
    check it never reaches the user)."""

    MESSAGE = "FailingBot exploded (api_key=sk-secret-should-not-leak)"

    def reply(self, query: str, context: Context = None) -> Reply:
        raise RuntimeError(self.MESSAGE)


class RecordingBot(Bot):
    """Echoes and records (query, session_id) of every call, across instances."""

    calls: list[tuple[Any, Any]] = []
    lock = threading.Lock()

    def reply(self, query: str, context: Context = None) -> Reply:
        with RecordingBot.lock:
            RecordingBot.calls.append((query, _session_id(context)))
        return Reply(ReplyType.TEXT, f"echo: {query}")

    @classmethod
    def recorded(cls) -> list[tuple[Any, Any]]:
        with cls.lock:
            return list(cls.calls)

    @classmethod
    def clear(cls) -> None:
        with cls.lock:
            cls.calls.clear()
