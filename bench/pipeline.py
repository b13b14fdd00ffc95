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
import itertools
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
from bot.session_manager import Session, SessionManager  # noqa: E402
from bridge.bridge import Bridge  # noqa: E402
from bridge.context import ContextType  # noqa: E402
from bridge.reply import Reply, ReplyType  # noqa: E402
from channel.chat_channel import ChatChannel  # noqa: E402
from channel.chat_message import ChatMessage  # noqa: E402
from common.log import set_console_level  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from config import conf  # noqa: E402


class BenchSession(Session):
    def calc_tokens(self):
        return sum(len(m["content"]) for m in self.messages)

    def discard_exceeding(self, max_tokens=None, cur_tokens=None):
        while len(self.messages) > 9:  # keep the system message and the last 4 turns
            del self.messages[1:3]
        return self.calc_tokens()


class InstantBot(Bot):
    """Answers at once but keeps history per session, as the chat bots do."""

    def __init__(self):
        self.sessions = SessionManager(BenchSession)

    def reply(self, query, context=None):
        session_id = context["session_id"]
        self.sessions.session_query(query, session_id)
        self.sessions.session_reply(query, session_id)
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
        self.on_sent = None  # closed-loop mode: called with the session's user after each reply

    def send(self, reply, context):
        done = time.perf_counter()
        with self._lock:
            self.latencies.append(done - context["msg"].t0)
            self.count += 1
        if self.on_sent is not None:
            self.on_sent(context["msg"].from_user_id)


_ids = itertools.count()


def message(user: str, text: str) -> ChatMessage:
    msg = ChatMessage(None)
    msg.msg_id = f"m{next(_ids)}"  # unique: ids seen before are dropped as redeliveries
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
    parser.add_argument("--rate", type=int, default=2000, help="messages/s of the paced run")
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

    total = args.sessions * args.messages
    # The burst puts every message in the queues at once: lift the global bound above it
    # (the per-session bound, 100 by default, already fits --messages 100).
    config["max_pending_messages"] = max(config.get("max_pending_messages", 0) or 0, 2 * total)
    config["session_queue_size"] = max(config.get("session_queue_size"), args.messages)
    channel = BenchChannel()
    # Warm up (imports, plugin manager, bot creation).
    for i in range(200):
        feed(channel, f"warm-{i % 10}", f"w{i}")
    channel.wait_idle()

    def pct(values, q):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3

    # A: burst throughput. Every message is handed over as fast as possible, so most
    # of its latency is waiting behind the others; the figure that counts is messages/s.
    rates, burst_p50 = [], []
    for _ in range(args.rounds):
        channel.latencies.clear()
        channel.count = 0
        started = time.perf_counter()
        for i in range(args.messages):  # one message per session per pass, as traffic arrives
            for s in range(args.sessions):
                feed(channel, f"user-{s}", f"q{i}")
        channel.wait_idle()
        elapsed = time.perf_counter() - started
        assert channel.count == total, (channel.count, total)
        rates.append(total / elapsed)
        burst_p50.append(pct(channel.latencies, 0.5))

    # B: closed loop. Each session sends its next question when its answer arrives
    # (100 conversations in flight): the latency the pipeline adds under load.
    loop_p50, loop_p99, loop_rates = [], [], []
    for _ in range(args.rounds):
        channel.latencies.clear()
        channel.count = 0
        sent_per_user = {f"loop-{s}": 1 for s in range(args.sessions)}
        lock = threading.Lock()

        def next_question(user):
            with lock:
                n = sent_per_user[user]
                if n >= args.messages:
                    return
                sent_per_user[user] = n + 1
            feed(channel, user, f"q{n}")

        channel.on_sent = next_question
        started = time.perf_counter()
        for user in list(sent_per_user):
            feed(channel, user, "q0")
        while channel.count < total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        channel.on_sent = None
        channel.wait_idle()
        loop_rates.append(total / elapsed)
        loop_p50.append(pct(channel.latencies, 0.5))
        loop_p99.append(pct(channel.latencies, 0.99))

    # C: one message at a time: the pipeline's own cost with nothing else going on.
    channel.latencies.clear()
    for i in range(1000):
        channel.count = 0
        feed(channel, "single", f"q{i}")
        channel.wait_idle()
    idle_p50, idle_p99 = pct(channel.latencies, 0.5), pct(channel.latencies, 0.99)

    # D: paced. 100 sessions send at a steady --rate messages/s in all (open loop),
    # the way a busy deployment sees traffic: the added latency at that load.
    paced_p50, paced_p99 = [], []
    for _ in range(args.rounds):
        channel.latencies.clear()
        channel.count = 0
        interval = 1.0 / args.rate
        started = time.perf_counter()
        for i in range(total):
            due = started + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            feed(channel, f"paced-{i % args.sessions}", f"q{i}")
        channel.wait_idle()
        paced_p50.append(pct(channel.latencies, 0.5))
        paced_p99.append(pct(channel.latencies, 0.99))

    med = statistics.median
    print(f"pipeline: {args.sessions} sessions x {args.messages} messages, {args.rounds} rounds each, "
          f"{conf().get('worker_threads')} workers, {os.cpu_count()} cores")
    print(f"  A burst:       {med(rates):8.0f} messages/s median (rounds {', '.join(f'{r:.0f}' for r in rates)}); "
          f"added latency p50 {med(burst_p50):.1f} ms (includes waiting behind the burst)")
    print(f"  B closed loop: {med(loop_rates):8.0f} messages/s; added latency p50 {med(loop_p50):.3f} ms, "
          f"p99 {med(loop_p99):.3f} ms (medians of rounds)")
    print(f"  D paced at {args.rate} messages/s: added latency p50 {med(paced_p50):.3f} ms, p99 {med(paced_p99):.3f} ms (medians of rounds)")
    print(f"  C one at a time: added latency p50 {idle_p50:.3f} ms, p99 {idle_p99:.3f} ms (1000 messages)")

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
