"""Cost of the web channel's durable outbox: one event pushed to a user whose record (events
and conversation) is kept in a temporary SQLite state store, as each answer is.

Run: ``python bench/web_outbox.py [--ops N] [--sizes 200,4000]``. Prints the median and p95
of `WebChannel.push` (read the record, add the event, write it back) for answers of each size,
once the record is full, in two cases: the page is connected (each answer is given to it, so
the record holds about the history), and the page is away (nothing is delivered, so the record
also holds OUTBOX_MAX undelivered events: the most it can cost).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from channel.web import web_channel  # noqa: E402
from channel.web.history import WebJournal  # noqa: E402
from common.log import logger  # noqa: E402
from common.store import SQLiteStore  # noqa: E402


def run(size: int, ops: int, folder: str, history: int, connected: bool) -> tuple[float, float, int]:
    store = SQLiteStore(os.path.join(folder, f"outbox-{size}-{connected}.db"))
    channel = web_channel.WebChannel()
    channel.journal = WebJournal(store, history)
    text = "答" * (size // 3) if size >= 3 else "x"
    try:
        def push() -> None:
            seq = channel.push("bench", "TEXT", text)
            if connected:  # what an open stream does after writing the event to its page
                channel._outboxes["bench"].delivered = seq

        for _ in range(web_channel.OUTBOX_MAX):  # a full record first
            push()
        samples = []
        for _ in range(ops):
            t0 = time.perf_counter_ns()
            push()
            samples.append(time.perf_counter_ns() - t0)
        record_bytes = len(store._conn.execute("SELECT value FROM kv WHERE key = 'bench'").fetchone()[0].encode())
    finally:
        channel.stop()
        store.close()
    samples.sort()
    return statistics.median(samples) / 1e6, samples[int(len(samples) * 0.95)] / 1e6, record_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--sizes", default="200,4000", help="answer sizes in bytes (UTF-8), comma-separated")
    parser.add_argument("--history", type=int, default=50, help="web_history_size")
    args = parser.parse_args()
    logger.setLevel(logging.ERROR)  # the full record drops undelivered events: expected here
    print(f"web outbox push, SQLite (synchronous=NORMAL), {args.ops} pushes, web_history_size {args.history}, "
          f"OUTBOX_MAX {web_channel.OUTBOX_MAX}")
    print(f"{'page':>9} {'answer bytes':>12} {'p50 ms':>8} {'p95 ms':>8} {'record KiB':>11} {'pushes/s':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for connected in (True, False):
            for size in (int(s) for s in args.sizes.split(",")):
                p50, p95, record_bytes = run(size, args.ops, folder, args.history, connected)
                print(f"{'connected' if connected else 'away':>9} {size:>12} {p50:>8.3f} {p95:>8.3f} "
                      f"{record_bytes / 1024:>11.0f} {1000 / p50:>9.0f}")


if __name__ == "__main__":
    main()
