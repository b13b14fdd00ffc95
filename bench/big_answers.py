"""Memory of the daemon while Dify sends answers of 10 MB: `python app.py` (web channel, Dify
bot, streaming) against the Dify simulator in this process; the daemon's RSS is read before
and after, and what the page received is measured.

    python bench/big_answers.py [--answers 10] [--size-mb 10] [--mode streaming|blocking]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.e2e.daemon import web_daemon  # noqa: E402
from tests.e2e.test_web_process import SSE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--mode", choices=("streaming", "blocking"), default="streaming")
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    with tempfile.TemporaryDirectory() as folder:
        with web_daemon(folder, dify_response_mode=args.mode) as (daemon, server, port, base, _):
            rss = psutil.Process(daemon.proc.pid)
            stream = SSE(port, "bench")
            stream.opened.wait(5)
            httpx.post(base + "/message", json={"user_id": "bench", "message": "warm up"}, timeout=10)
            stream.next()
            before = rss.memory_info().rss
            received = []
            started = time.monotonic()
            for i in range(args.answers):
                server.push_answer("x" * size, chunk_size=256 * 1024)
                httpx.post(base + "/message", json={"user_id": "bench", "message": f"big {i}"}, timeout=10)
                received.append(len(stream.next(timeout=120)["data"]["content"]))
            elapsed = time.monotonic() - started
            after = rss.memory_info().rss
            stream.close()
    print(f"answers: {args.answers} x {args.size_mb:g} MB ({args.mode})")
    print(f"characters received per answer: max {max(received)}, min {min(received)}")
    print(f"daemon RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after "
          f"({(after - before) / 2**20:+.1f} MiB)")
    print(f"time: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
