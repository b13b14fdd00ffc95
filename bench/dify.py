"""Dify benchmark: sessions asking questions through the whole pipeline (rules,
queues, plugins, Bridge, DifyBot, HTTP + SSE) to the Dify simulator on loopback,
answers streamed.

The simulator runs in its own process, so it does not share this process's GIL.
"Added" latency is the pipeline's time minus what a bare HTTP client needs for
the same streamed answer from the same simulator, measured in the same run.

    python bench/dify.py [--sessions 100] [--questions 50]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import requests  # noqa: E402

from bridge.bridge import Bridge  # noqa: E402
from bridge.context import ContextType  # noqa: E402
from bridge.reply import ReplyType  # noqa: E402
from channel.chat_channel import ChatChannel  # noqa: E402
from channel.chat_message import ChatMessage  # noqa: E402
from common.log import set_console_level  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from config import conf  # noqa: E402

SERVER_CODE = """
import sys, time
sys.path.insert(0, {root!r})
from sandbox.dify_server import DifyServer
server = DifyServer(api_key="app-bench", mode="chat").start()
print(server.base_url, flush=True)
while True:
    time.sleep(3600)
"""


class BenchChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = []

    def __init__(self):
        super().__init__()
        self.latencies: list[float] = []
        self.count = 0
        self.lock = threading.Lock()
        self.on_sent = None
        self.failures: list[str] = []

    def send(self, reply, context):
        done = time.perf_counter()
        # A failing bot must not pass for a fast one: only the simulator's echo counts.
        if reply.type != ReplyType.TEXT or not str(reply.content).startswith("echo: "):
            with self.lock:
                self.failures.append(f"{reply.type}: {str(reply.content)[:200]}")
        with self.lock:
            self.latencies.append(done - context["msg"].t0)
            self.count += 1
        if self.on_sent is not None:
            self.on_sent(context["msg"].from_user_id)


_ids = itertools.count()


def feed(channel, user, text):
    msg = ChatMessage(None)
    msg.msg_id = f"b{next(_ids)}"
    msg.ctype = ContextType.TEXT
    msg.content = text
    msg.from_user_id = msg.other_user_id = user
    msg.from_user_nickname = msg.other_user_nickname = user
    msg.to_user_id = "bot"
    msg.t0 = time.perf_counter()
    channel.produce(channel._compose_context(ContextType.TEXT, text, isgroup=False, msg=msg))


def direct_call(session, base_url, user, text):
    """What a bare client spends on one streamed answer (the simulator's own time)."""
    started = time.perf_counter()
    with session.post(
        base_url + "/chat-messages",
        json={"query": text, "user": user, "inputs": {}, "response_mode": "streaming"},
        headers={"Authorization": "Bearer app-bench"},
        stream=True,
        timeout=30,
    ) as response:
        response.raise_for_status()
        for _ in response.iter_lines():
            pass
    return time.perf_counter() - started


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def run_closed_loop(channel, sessions, questions):
    channel.latencies.clear()
    channel.count = 0
    asked = {f"user-{s}": 1 for s in range(sessions)}
    lock = threading.Lock()

    def next_question(user):
        with lock:
            n = asked[user]
            if n >= questions:
                return
            asked[user] = n + 1
        feed(channel, user, f"question {n} from {user}")

    channel.on_sent = next_question
    started = time.perf_counter()
    for user in list(asked):
        feed(channel, user, f"question 0 from {user}")
    total = sessions * questions
    while channel.count < total:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    channel.on_sent = None
    channel.wait_idle()
    return total / elapsed, list(channel.latencies)


def run_direct_concurrent(base_url, sessions, questions):
    latencies = []
    lock = threading.Lock()

    def worker(s):
        session = requests.Session()
        for n in range(questions):
            spent = direct_call(session, base_url, f"direct-{s}", f"question {n} from user-{s}")
            with lock:
                latencies.append(spent)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(sessions)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sessions * questions / (time.perf_counter() - started), latencies


def run_paced_pipeline(channel, sessions, total, rate):
    channel.latencies.clear()
    channel.count = 0
    interval = 1.0 / rate
    started = time.perf_counter()
    for i in range(total):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        feed(channel, f"paced-{i % sessions}", f"paced question {i}")
    channel.wait_idle()
    return list(channel.latencies)


def run_paced_direct(base_url, sessions, total, rate):
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    latencies = []
    lock = threading.Lock()

    def one(i):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        spent = direct_call(local.session, base_url, f"paced-direct-{i % sessions}", f"paced question {i}")
        with lock:
            latencies.append(spent)

    interval = 1.0 / rate
    futures = []
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        started = time.perf_counter()
        for i in range(total):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
    for future in futures:
        future.result()  # a failed request stops the bench instead of vanishing
    return latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--rate", type=int, default=200, help="messages/s of the paced runs")
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, "-c", SERVER_CODE.format(root=ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        set_console_level(40)
        config = conf()
        config["model"] = "dify"
        config["bot_type"] = ""
        config["dify_api_base"] = base_url
        config["dify_api_key"] = "app-bench"
        config["dify_response_mode"] = "streaming"
        config["dify_conversation_max_messages"] = 0
        config["single_chat_prefix"] = [""]
        config["worker_threads"] = 16
        Bridge().reset_bot()
        tmp = tempfile.mkdtemp()
        store = SQLiteStore(os.path.join(tmp, "state.db"))
        config.user_data_book.attach(store)
        channel = BenchChannel()

        # Warm up: connections, bot creation.
        for i in range(20):
            feed(channel, f"warm-{i}", "warm up")
        channel.wait_idle()

        # One at a time: pipeline vs bare client, paired.
        session = requests.Session()
        single_pipeline, single_direct = [], []
        for i in range(200):
            channel.latencies.clear()
            feed(channel, "single", f"single question {i}")
            channel.wait_idle()
            single_pipeline.append(channel.latencies[0])
            single_direct.append(direct_call(session, base_url, "single-direct", f"single question {i}"))
        added_single = [p - d for p, d in zip(single_pipeline, single_direct)]

        paced_total = args.rate * 10
        paced_pipeline = run_paced_pipeline(channel, args.sessions, paced_total, args.rate)
        paced_direct = run_paced_direct(base_url, args.sessions, paced_total, args.rate)
        rate, loop_latencies = run_closed_loop(channel, args.sessions, args.questions)
        direct_rate, direct_latencies = run_direct_concurrent(base_url, args.sessions, args.questions)

        print(f"dify: {args.sessions} sessions x {args.questions} questions, streaming answers, "
              f"simulator in its own process, {config.get('worker_threads')} workers, {os.cpu_count()} cores")
        print(f"  one at a time (200): pipeline p50 {pct(single_pipeline, .5):.2f} ms, bare client p50 "
              f"{pct(single_direct, .5):.2f} ms; added p50 {pct(added_single, .5):.2f} ms, p99 {pct(added_single, .99):.2f} ms")
        print(f"  paced at {args.rate}/s over {args.sessions} sessions ({paced_total} messages): pipeline p50 "
              f"{pct(paced_pipeline, .5):.2f} ms p99 {pct(paced_pipeline, .99):.2f} ms; bare client p50 "
              f"{pct(paced_direct, .5):.2f} ms p99 {pct(paced_direct, .99):.2f} ms; added p50 "
              f"{pct(paced_pipeline, .5) - pct(paced_direct, .5):.2f} ms, p99 {pct(paced_pipeline, .99) - pct(paced_direct, .99):.2f} ms")
        print(f"  all sessions at once: {rate:.0f} messages/s through the pipeline "
              f"(bare clients, same load: {direct_rate:.0f}/s)")
        print(f"  latency at saturation (queueing; the pipeline runs worker_threads requests at once, the bare clients 100):"
              f"\n    pipeline p50 {pct(loop_latencies, .5):.1f} ms p99 {pct(loop_latencies, .99):.1f} ms; "
              f"bare client p50 {pct(direct_latencies, .5):.1f} ms p99 {pct(direct_latencies, .99):.1f} ms")
        channel.stop()
        config.user_data_book.close()
        store.close()
        if channel.failures:
            print(f"NOT every answer was the simulator's echo: {len(channel.failures)} failed, "
                  f"the first: {channel.failures[0]}")
            return 1
        return 0
    finally:
        server.kill()


if __name__ == "__main__":
    sys.exit(main())
