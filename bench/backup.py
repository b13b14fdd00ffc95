"""Online backup of the state database while it is being written.

Run: ``python bench/backup.py [--users N] [--seconds S]``.
Fills a temporary state.db with N users' data, then keeps a writer committing (one
``put`` after another, as messages do) while ``--backup-state``'s function copies the
file. Prints the backup's duration and size, and the writer's commits per second and
slowest commit with and without a backup running: the backup must not stall the daemon.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.log import logger  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from common.store.backup import backup_state  # noqa: E402


def writer(store: SQLiteStore, stop: threading.Event, latencies: list[float]) -> None:
    i = 0
    while not stop.is_set():
        start = time.perf_counter()
        store.put("dify", f"session-{i % 1000}", {"conversation_id": f"c{i}"}, ttl=3600)
        latencies.append(time.perf_counter() - start)
        i += 1


def measure(store: SQLiteStore, seconds: float, during=None) -> tuple[float, float, object]:
    """(commits per second, slowest commit in ms, what `during` returned)."""
    stop = threading.Event()
    latencies: list[float] = []
    thread = threading.Thread(target=writer, args=(store, stop, latencies))
    start = time.perf_counter()
    thread.start()
    result = during() if during else None
    remaining = seconds - (time.perf_counter() - start)
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, max(latencies) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logger.setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "state.db")
        store = SQLiteStore(path)
        user = {"openai_api_key": "sk-" + "x" * 40, "gpt_model": "gpt-4o", "conversation_count": 7, "notes": "n" * 200}
        batch = 5_000
        for first in range(0, args.users, batch):
            store.save_user_datas({f"user-{i}": user for i in range(first, min(first + batch, args.users))})
        size = os.path.getsize(path) + os.path.getsize(path + "-wal")
        print(f"state backup bench: {args.users} users, database + wal {size / 2**20:.1f} MiB, temp folder {folder}")

        rate, slowest, _ = measure(store, args.seconds)
        print(f"  writer alone:           {rate:9.0f} commits/s, slowest commit {slowest:7.1f} ms")

        def backup():
            start = time.perf_counter()
            result = backup_state(path, os.path.join(folder, "copy.db"))
            return time.perf_counter() - start, result

        rate, slowest, (took, result) = measure(store, args.seconds, during=backup)
        print(f"  writer during a backup: {rate:9.0f} commits/s, slowest commit {slowest:7.1f} ms")
        print(f"  backup: {took * 1000:.0f} ms for {result.size / 2**20:.1f} MiB")
        store.close()


if __name__ == "__main__":
    main()
