"""Median cost of the state store's hot writes on a temporary SQLite file.

Run: ``python bench/store.py [--ops N] [--synchronous FULL NORMAL ...]``.
Each message the daemon handles costs about one ``seen`` plus one ``put``, so
these figures show what durability adds per message. The default mode is the
one ``open_store`` uses (NORMAL); FULL is measured alongside for comparison.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.log import logger  # noqa: E402
from common.store import DedupKey, SQLiteStore  # noqa: E402


def median_us(op: Callable[[int], object], n: int) -> float:
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        op(i)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def run(mode: str, n: int, folder: str) -> dict[str, float]:
    store = SQLiteStore(os.path.join(folder, f"bench-{mode.lower()}.db"), synchronous=mode)
    try:
        user = {"openai_api_key": "sk-" + "x" * 40, "gpt_model": "gpt-4o", "conversation_count": 0}
        record = {"v": 1, "type": "TEXT", "content": "a question of some length " * 4, "kwargs": {
            "isgroup": False, "session_id": "user-1", "receiver": "user-1",
            "origin_ctype": {"$enum": "ContextType", "name": "TEXT"}}, "msg": {"msg_id": "user-1:abc", "content": "q"}}
        return {
            "put": median_us(lambda i: store.put("dify", f"session-{i % 100}", {"conversation_id": f"c{i}"}, ttl=3600), n),
            "seen": median_us(lambda i: store.seen("dedup", f"msg-{i}", ttl=600), n),
            "save_user_datas(1 user)": median_us(lambda i: store.save_user_datas({f"user-{i % 50}": user}), n),
            # What each accepted message costs: stored with its dedup key, deleted once answered.
            "inbox_add+done": median_us(lambda i: store.inbox_done(store.inbox_add(
                "web", f"user-{i % 100}", record, DedupKey("dedup:web", f"user/{i}", 600))), n),
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"])
    args = parser.parse_args()
    logger.setLevel(logging.WARNING)  # the open message is noise here

    with tempfile.TemporaryDirectory() as folder:
        print(f"state store bench: {args.ops} ops each, median microseconds per op, temp db in {folder}")
        for mode in args.synchronous:
            mode = mode.upper()
            figures = run(mode, args.ops, folder)
            label = "synchronous=" + mode + (" (default)" if mode == "NORMAL" else "")
            print(f"  {label:30}" + "  ".join(f"{name}: {us:8.1f} us" for name, us in figures.items()))


if __name__ == "__main__":
    main()
