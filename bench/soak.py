"""Soak: the daemon (web channel, Dify simulator with random latency and 5% errors) under steady
traffic with open SSE streams, for as long as asked. Prints the curves as it goes (one line per
sample: messages, replies, RSS, descriptors, threads, tmp/ and state.db sizes), then whether they
stopped growing after warm-up (the first third of the run, or longer with file answers) and, last,
`FIGURES {json}`. Two verdicts: "bounded" (the last third stays under a ceiling over the warm-up's
peak: growth_problems, what the CI soak asserts) and "flat" (the second half after warm-up is no
higher than the first half, within sampling noise: level_problems). A slow leak passes the first
and fails the second; the exit code is 1 unless both hold.

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
from tests.reliability.harness import (  # noqa: E402
    WebApp, chaos_dify, growth_problems, level_problems, new_folder, remove_folder, soak,
)


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
    warm_end = max(warmup, samples[-1].t / 3)
    try:
        still, level = level_problems(samples, warm_end)
    except ValueError as e:  # too short a run (or too rare samples) to tell a slope from noise
        still, level = [], {}
        print(f"flatness not judged: {e}")
    else:
        print("flat after warm-up" if not still else "NOT FLAT: " + "; ".join(still))
        show_levels(samples, warm_end, level)
    print("FIGURES " + json.dumps({f"soak {args.seconds:g} s, {args.users} users": {
        **counts, **figures, **level, "bounded": not problems, "flat": (not still) if level else None}}))
    return 1 if problems or still or counts["unanswered"] else 0


def show_levels(samples, warm_end: float, level: dict) -> None:
    """Start, end of warm-up and end of the run, and the growth per 100k messages after warm-up."""
    after = next(s for s in samples if s.t >= warm_end)
    print(f"{'':>22} {'s':>7} {'messages':>9} {'RSS MiB':>8} {'fds':>5} {'threads':>8} {'tmp KiB':>9} {'db KiB':>9}")
    for name, s in (("start", samples[0]), ("after warm-up", after), ("end", samples[-1])):
        print(f"{name:>22} {s.t:>7.0f} {s.messages:>9} {s.rss / 2**20:>8.1f} {s.fds:>5} {s.threads:>8} "
              f"{s.tmp / 1024:>9.0f} {s.db / 1024:>9.0f}")
    print(f"{'per 100k msgs after':>22} {'':>7} {level['messages_after_warmup']:>9} "
          f"{level['rss_per_100k_messages'] / 2**20:>+8.2f} {level['fds_per_100k_messages']:>+5} "
          f"{level['threads_per_100k_messages']:>+8} {level['tmp_per_100k_messages'] / 1024:>+9.0f} "
          f"{level['db_per_100k_messages'] / 1024:>+9.0f}")
    halves = level["rss_halves"]
    print(f"RSS median after warm-up: first half {halves[0] / 2**20:.1f} MiB, second half {halves[1] / 2**20:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
