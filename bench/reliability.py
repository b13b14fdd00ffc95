"""The big reliability runs of issue 11 (tests/reliability runs the CI sizes of the same code).

load:  N sessions x M messages through the web channel (and the WeCom simulator), the Dify simulator
       adding random latency and 5% errors: sent, acknowledged, answered, lost, duplicated, out of order.
crash: the web load again with `kill -9` at random moments and a restart, K times: every acknowledged
       message must be answered exactly once; user data and conversations must survive.

    python bench/reliability.py [--sessions 500] [--messages 20] [--kills 5] [--only load|crash]

Prints one table and, last, a line `FIGURES {json}` (read by bench/report.py). Exit code 1 when a
message was lost or duplicated.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.reliability.harness import (  # noqa: E402
    WebApp, WebUser, WeworkApp, chaos_dify, close_users, new_folder, remove_folder, web_load, wework_load,
)


def load_web(sessions: int, messages: int) -> dict:
    dify = chaos_dify(latency=0.2, error_rate=0.05, seed=1)
    folder = new_folder("bench-rel-web-")
    app = WebApp(folder, dify, plugins=()).start()
    try:
        async def main():
            tally, users = await web_load("127.0.0.1", app.port, sessions, messages, settle=120)
            await close_users(users)
            return tally
        started = time.monotonic()
        tally = asyncio.run(main())
        return {**tally.figures(), "seconds": round(time.monotonic() - started, 1), "dify_errors": dify.chaos_errors}
    finally:
        app.stop()
        dify.stop()
        remove_folder(folder)


def load_wework(sessions: int, messages: int) -> dict:
    dify = chaos_dify(latency=0.2, error_rate=0.05, seed=2)
    folder = new_folder("bench-rel-wework-")
    app = WeworkApp(folder, dify, dify_max_retries=0).start()
    try:
        started = time.monotonic()
        tally = wework_load(app, sessions, messages, settle=120)
        return {**tally.figures(), "seconds": round(time.monotonic() - started, 1), "dify_errors": dify.chaos_errors}
    finally:
        app.stop()
        dify.stop()
        remove_folder(folder)


def crash(sessions: int, messages: int, kills: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    dify = chaos_dify(latency=0.2, error_rate=0.05, seed=3)
    folder = new_folder("bench-rel-crash-")
    app = WebApp(folder, dify, plugins=(), dify_conversation_max_messages=0).start()
    done = 0
    try:
        async def main():
            loop = asyncio.get_running_loop()
            users = {f"k{i}": WebUser("127.0.0.1", app.port, f"k{i}") for i in range(sessions)}
            for user in users.values():
                user.open()

            async def killer():
                nonlocal done
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(0.5, 4.0))
                    await loop.run_in_executor(None, app.restart)
                    done += 1

            tally, _ = await web_load("127.0.0.1", app.port, sessions, messages, prefix="k", settle=60,
                                      users=users, pause=0.5, during=killer())
            await close_users(users)
            return tally
        started = time.monotonic()
        tally = asyncio.run(main())
        return {**tally.figures(), "kills": done, "seconds": round(time.monotonic() - started, 1)}
    finally:
        app.stop()
        dify.stop()
        remove_folder(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--crash-sessions", type=int, default=100, help="sessions of the crash run")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--only", choices=("load", "crash"))
    args = parser.parse_args()
    results: dict[str, dict] = {}
    if args.only in (None, "load"):
        results[f"load web {args.sessions}x{args.messages}"] = load_web(args.sessions, args.messages)
        results[f"load wework {args.sessions}x{args.messages}"] = load_wework(args.sessions, args.messages)
    if args.only in (None, "crash"):
        results[f"crash web {args.crash_sessions}x{args.messages}, {args.kills} kills"] = crash(
            args.crash_sessions, args.messages, args.kills)
    columns = ["sent", "acknowledged", "answered", "errors", "lost", "duplicated", "out_of_order", "seconds"]
    print(f"{'run':<36}" + "".join(f"{c:>14}" for c in columns))
    for name, figures in results.items():
        print(f"{name:<36}" + "".join(f"{figures.get(c, ''):>14}" for c in columns))
    print("FIGURES " + json.dumps(results))
    bad = any(f["lost"] or f["duplicated"] or f["out_of_order"] for f in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
