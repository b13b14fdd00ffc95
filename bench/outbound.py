"""Outbound-call benchmark (issue 11): what the deadlines and checks cost and what they bound.

* download: median time of common.fetch (address check, pinned new connection, caps) against
  a plain requests.get, for a small and a 1 MiB file from the Dify simulator on loopback;
* answer deadline: how long a Dify answer that trickles forever holds a worker, for a given
  dify_answer_timeout (it should be that long, plus a little);
* pool: with 8 workers all asked for images that trickle 1 byte every 5 s, how long another
  user waits for an answer.

    python bench/outbound.py [--rounds 50] [--answer-timeout 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import requests  # noqa: E402

from bot.dify.dify_bot import DifyBot  # noqa: E402
from bot.dify.dify_client import close_clients  # noqa: E402
from bridge.bridge import Bridge  # noqa: E402
from bridge.context import Context, ContextType  # noqa: E402
from common import fetch  # noqa: E402
from config import conf  # noqa: E402
from sandbox.dify_server import DifyServer  # noqa: E402


def _median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_download(server: DifyServer, rounds: int) -> None:
    server.add_file("/small.png", b"x" * 1024, "image/png")
    server.add_file("/big.png", b"x" * (1024 * 1024), "image/png")
    for name in ("small", "big"):
        url = f"{server.host_url}/{name}.png"
        plain = _median_ms(lambda: requests.get(url, timeout=10).content, rounds)
        checked = _median_ms(lambda: fetch.fetch_bytes(url, 8 * 1024 * 1024), rounds)
        print(f"| download {name:5} | requests.get {plain:7.2f} ms | common.fetch {checked:7.2f} ms |")


def bench_answer_deadline(server: DifyServer, seconds: float) -> None:
    conf()["dify_answer_timeout"] = seconds
    server.push_trickle("la ", every=0.2)
    context = Context(ContextType.TEXT, "sing", {"session_id": "bench", "receiver": "bench"})
    started = time.perf_counter()
    DifyBot().reply("sing", context)
    print(f"| trickling answer, dify_answer_timeout {seconds:g} s | worker held {time.perf_counter() - started:.2f} s |")


def bench_pool(server: DifyServer) -> None:
    from tests.fakes.recording_channel import RecordingChannel, make_msg

    conf()["worker_threads"] = 8
    conf()["download_timeout"] = 60
    server.add_file("/slow.png", b"x" * 100, "image/png", byte_delay=5)
    for _ in range(8):
        server.push_answer("![chart](/slow.png)")
    Bridge().reset_bot()
    channel = RecordingChannel()
    try:
        for n in range(8):
            channel.receive(make_msg(f"chart {n}", sender=f"user-{n}"))
        while len(server.requests_to("/v1/chat-messages")) < 8:
            time.sleep(0.005)
        started = time.perf_counter()
        channel.receive(make_msg("hello", sender="other"))
        while not any(r == "other" for r, _, _ in channel.sent):
            time.sleep(0.001)
        waited = time.perf_counter() - started
        links = sum(1 for r, _, _ in channel.sent if r.startswith("user-"))
        print(f"| 8 slow image downloads (1 byte / 5 s) | another user answered in {waited * 1000:.1f} ms "
              f"| {links} of 8 sent the link at once, {fetch.download_slots_in_use()} downloading |")
    finally:
        server.stop()
        channel.wait_idle(70)
        channel.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--answer-timeout", type=float, default=2.0)
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="bench-outbound-"))  # tmp/ files land here, not in the checkout
    settings = conf()
    settings.update({"model": "dify", "bot_type": "", "dify_api_key": "app-bench", "single_chat_prefix": [""],
                     "state_store": "memory", "allowed_internal_hosts": []})
    with DifyServer(api_key="app-bench") as server:
        settings["dify_api_base"] = server.base_url
        bench_download(server, args.rounds)
        bench_answer_deadline(server, args.answer_timeout)
        bench_pool(server)
    close_clients()


if __name__ == "__main__":
    main()
