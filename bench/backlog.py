"""Backlog benchmark: many users write while the bot is stalled (issue 11, defect 3).

Every message waits, so memory would follow the number of writers without a global bound.
Prints how many messages were taken and refused with the busy answer, RSS growth, and the
size of the state database's inbox (what a crash would keep).

    python bench/backlog.py [--users 20000] [--chars 8000] [--max-pending 10000] [--max-chars 10000000]
"""
from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from bot import bot_factory  # noqa: E402
from bot.bot import Bot  # noqa: E402
from bridge.bridge import Bridge  # noqa: E402
from bridge.context import ContextType  # noqa: E402
from bridge.reply import Reply, ReplyType  # noqa: E402
from channel.chat_channel import BUSY_TEXT_EN, BUSY_TEXT_ZH, ChatChannel  # noqa: E402
from channel.chat_message import ChatMessage  # noqa: E402
from common.log import set_console_level  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from config import conf  # noqa: E402

GATE = threading.Event()


class StalledBot(Bot):
    """Dify stalled: no answer until the gate opens."""

    def reply(self, query, context=None):
        GATE.wait()
        return Reply(ReplyType.TEXT, "ok")


class CountingChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = []

    def __init__(self):
        super().__init__()
        self.busy = 0
        self.answered = 0
        self._lock = threading.Lock()

    def send(self, reply, context):
        with self._lock:
            if str(reply.content).startswith((BUSY_TEXT_EN[:20], BUSY_TEXT_ZH[:8])):
                self.busy += 1
            else:
                self.answered += 1


_ids = itertools.count()


def message(user: str, text: str) -> ChatMessage:
    msg = ChatMessage(None)
    msg.msg_id = f"m{next(_ids)}"
    msg.ctype = ContextType.TEXT
    msg.content = text
    msg.from_user_id = msg.other_user_id = msg.from_user_nickname = msg.other_user_nickname = user
    msg.to_user_id = "bot"
    return msg


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--chars", type=int, default=8000)
    parser.add_argument("--max-pending", type=int, default=10000)
    parser.add_argument("--max-chars", type=int, default=10_000_000)
    args = parser.parse_args()

    set_console_level(40)
    bot_factory.register_bot("bench-stalled", StalledBot)
    config = conf()
    config["bot_type"] = "bench-stalled"
    config["single_chat_prefix"] = [""]
    config["max_pending_messages"] = args.max_pending
    config["max_pending_chars"] = args.max_chars
    Bridge().reset_bot()
    folder = tempfile.mkdtemp()
    store = SQLiteStore(os.path.join(folder, "state.db"))
    config.user_data_book.attach(store)
    channel = CountingChannel()
    text = ("长" * (args.chars // 2)) + ("x" * (args.chars - args.chars // 2))

    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    taken = 0
    for n in range(args.users):
        own = f"{n} {text}"  # a string of its own, as each arriving message is
        context = channel._compose_context(ContextType.TEXT, own, msg=message(f"user-{n}", own), isgroup=False)
        taken += bool(channel.produce(context))
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    inbox = store.inbox_count()
    db_mb = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20
    print(f"backlog: {args.users} users x {args.chars} chars with the bot stalled, max_pending_messages {args.max_pending}, "
          f"max_pending_chars {args.max_chars}")
    print(f"  taken {taken}, refused with the busy answer {channel.busy} ({elapsed:.1f} s, {args.users / elapsed:.0f} messages/s offered)")
    print(f"  RSS before {before:.1f} MiB, after {after:.1f} MiB, growth {after - before:.1f} MiB")
    print(f"  inbox rows {inbox}, state.db with WAL {db_mb:.1f} MiB")
    GATE.set()
    channel.wait_idle(120)
    print(f"  after the bot came back: answered {channel.answered}, inbox rows {store.inbox_count()}")
    channel.stop()
    config.user_data_book.close()
    store.close()


if __name__ == "__main__":
    main()
