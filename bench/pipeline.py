"""Pipeline benchmark: many sessions through rules, queues, plugins and the Bridge
to an in-process bot that answers at once.

Prints messages per second, the latency the pipeline adds (from the platform
handing a message over to the channel's send() being called), peak RSS, and RSS
growth after 10,000 distinct sessions.

    python bench/pipeline.py [--sessions 100] [--messages 100] [--distinct 10000]
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
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
from channel.chat_channel import ChatChannel  # noqa: E402
from channel.chat_message import ChatMessage  # noqa: E402
from common.log import set_console_level  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from config import conf  # noqa: E402


class InstantBot(Bot):
    def reply(self, query, context=None):
        return Reply(ReplyType.TEXT, query)


class BenchChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = []

    def __init__(self):
        super().__init__()
        self.name = "Bot"
        self.user_id = "bot"
        self.latencies: list[float] = []
        self.count = 0
        self._lock = threading.Lock()

    def send(self, reply, context):
        done = time.perf_counter()
        with self._lock:
            self.latencies.append(done - context["msg"].t0)
            self.count += 1


def message(user: str, text: str) -> ChatMessage:
    msg = ChatMessage(None)
    msg.msg_id = text
    msg.ctype = ContextType.TEXT
    msg.content = text
    msg.from_user_id = msg.other_user_id = user
    msg.from_user_nickname = msg.other_user_nickname = user
    msg.to_user_id = "bot"
    return msg


def feed(channel: BenchChannel, user: str, text: str) -> None:
    msg = message(user, text)
    msg.t0 = time.perf_counter()
    context = channel._compose_context(ContextType.TEXT, text, isgroup=False, msg=msg)
    channel.produce(context)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb() -> float:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1e3 if sys.platform != "darwin" else peak / 1e6
    except ImportError:  # Windows
        return psutil.Process().memory_info().peak_wset / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--distinct", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    set_console_level(40)
    bot_factory.register_bot("bench-instant", InstantBot)
    config = conf()
    config["bot_type"] = "bench-instant"
    config["single_chat_prefix"] = [""]
    Bridge().reset_bot()
    tmp = tempfile.mkdtemp()
    store = SQLiteStore(os.path.join(tmp, "state.db"))
    config.user_data_book.attach(store)

    channel = BenchChannel()
    total = args.sessions * args.messages
    # Warm up (imports, plugin manager, bot creation).
    for i in range(200):
        feed(channel, f"warm-{i % 10}", f"w{i}")
    channel.wait_idle()

    rates, p50s, p99s = [], [], []
    for _ in range(args.rounds):
        channel.latencies.clear()
        channel.count = 0
        started = time.perf_counter()
        # Interleave sessions the way traffic arrives: one message per session per pass.
        for i in range(args.messages):
            for s in range(args.sessions):
                feed(channel, f"user-{s}", f"q{i}")
        channel.wait_idle()
        elapsed = time.perf_counter() - started
        assert channel.count == total, (channel.count, total)
        lat = sorted(channel.latencies)
        rates.append(total / elapsed)
        p50s.append(lat[len(lat) // 2] * 1e3)
        p99s.append(lat[int(len(lat) * 0.99)] * 1e3)
    print(f"pipeline: {args.sessions} sessions x {args.messages} messages, {args.rounds} rounds, "
          f"{conf().get('worker_threads')} workers")
    print(f"  messages/s   median {statistics.median(rates):8.0f}   (rounds: {', '.join(f'{r:.0f}' for r in rates)})")
    print(f"  added p50 ms median {statistics.median(p50s):8.3f}")
    print(f"  added p99 ms median {statistics.median(p99s):8.3f}")

    gc.collect()
    before = rss_mb()
    for s in range(args.distinct):
        feed(channel, f"distinct-{s}", "hello")
        if s % 500 == 499:
            channel.wait_idle()
    channel.wait_idle()
    gc.collect()
    after = rss_mb()
    print(f"  RSS before {args.distinct} distinct sessions {before:.1f} MB, after {after:.1f} MB, growth {after - before:.1f} MB")
    print(f"  peak RSS {peak_rss_mb():.1f} MB; live session queues after idle: {channel.dispatcher.session_count()}")
    channel.stop()
    config.user_data_book.close()
    store.close()


if __name__ == "__main__":
    main()
