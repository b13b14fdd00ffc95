"""Soak: the daemon (web channel, Dify simulator with random latency and 5% errors) under steady
traffic with open SSE streams, for as long as asked. Prints the curves as it goes (one line per
sample: messages, replies, RSS, descriptors, threads, tmp/ and state.db sizes), then whether they
stopped growing after warm-up (the first third of the run) and, last, `FIGURES {json}`.

    python bench/soak.py [--seconds 2400] [--users 50] [--every 10] [--file-every 25] [--set tmp_max_age=60]

A file linked from an answer stays in tmp/ while the web page may fetch it (10 minutes) and then
until the janitor's next sweep past tmp_max_age, so tmp/ can only level off after that: the run's
warm-up is at least that long (the soak sets tmp_max_age to its minimum, 60 s, unless told
otherwise; with the default of an hour the warm-up would be 70 minutes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from channel.web.web_channel import OUTBOX_TTL  # noqa: E402
from common.tmp_dir import SWEEP_INTERVAL  # noqa: E402
from tests.reliability.harness import WebApp, chaos_dify, growth_problems, new_folder, remove_folder, soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2400)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--file-every", type=int, default=25, help="every so many answers link a file (0: never)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="a setting for the daemon, e.g. tmp_max_age=60 (repeatable)")
    args = parser.parse_args()
    settings = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    settings.setdefault("tmp_max_age", 60)
    # Files stay while the page may fetch them, then until a sweep finds them older than tmp_max_age.
    warmup = 0.0
    if args.file_every:
        age = float(settings["tmp_max_age"])
        warmup = OUTBOX_TTL + age + min(SWEEP_INTERVAL, max(10.0, age / 4)) + 30
        if warmup > args.seconds * 2 / 3:
            parser.error(f"with file answers tmp/ levels off after {warmup:g} s: run at least {warmup * 1.5:g} s")
    print(f"soak {args.seconds:g} s, {args.users} users, settings {settings}, warm-up {max(warmup, args.seconds / 3):g} s")
    dify = chaos_dify(latency=0.05, error_rate=0.05, seed=9)
    folder = new_folder("bench-soak-")
    app = WebApp(folder, dify, plugins=(), **settings).start()
    print(f"{'s':>7} {'messages':>9} {'replies':>9} {'RSS MiB':>8} {'fds':>5} {'threads':>8} {'tmp KiB':>9} {'db KiB':>9}")

    def show(s) -> None:
        print(f"{s.t:>7.0f} {s.messages:>9} {s.replies:>9} {s.rss / 2**20:>8.1f} {s.fds:>5} {s.threads:>8} "
              f"{s.tmp / 1024:>9.0f} {s.db / 1024:>9.0f}", flush=True)

    try:
        samples, counts = asyncio.run(soak(app, args.seconds, users=args.users, sample_every=args.every,
                                         file_every=args.file_every, on_sample=show))
    finally:
        app.stop()
        dify.stop()
        remove_folder(folder)
    problems, figures = growth_problems(samples, warmup_seconds=warmup)
    print("bounded after warm-up" if not problems else "GREW: " + "; ".join(problems))
    print("FIGURES " + json.dumps({f"soak {args.seconds:g} s, {args.users} users": {**counts, **figures,
                                                                                     "bounded": not problems}}))
    return 1 if problems or counts["unanswered"] else 0


if __name__ == "__main__":
    sys.exit(main())
