"""Run every benchmark in bench/ and write one Markdown report, bench/REPORT.md: the machine's
description and the date, one table of the figures, and each benchmark's printed output.

A benchmark that ends with a line `FIGURES {json}` ({run: {figure: value}}) gets one table row per
run; the others get one row pointing at their output below the table.

    python bench/report.py [--full] [--only soak,connections] [--out bench/REPORT.md]

Without --full the sizes are chosen so the whole report takes some minutes; --full runs each
benchmark with its own defaults (the sizes of issue 11: 500 x 20, five kills, 5,000 connections,
a 40-minute soak with file answers, the shortest in which tmp/ can be seen to level off).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))

# Arguments of each benchmark for the standard (shorter) report; --full uses none.
STANDARD_ARGS: dict[str, list[str]] = {
    "pipeline.py": ["--rounds", "1"],
    "dify.py": ["--sessions", "50", "--questions", "20"],
    "store.py": [],
    "wework.py": ["--rounds", "1"],
    "web.py": ["--rounds", "1"],
    "reliability.py": ["--sessions", "200", "--messages", "10", "--crash-sessions", "50"],
    "connections.py": ["--max", "3000", "--step", "300", "--daemon-fd-limit", "1024", "--timeout", "10"],
    "soak.py": ["--seconds", "180", "--users", "40", "--every", "10", "--file-every", "0"],
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    except ImportError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical CPUs{memory}, "
            f"Python {platform.python_version()}")


def figures_of(output: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith("FIGURES "):
            try:
                return json.loads(line[len("FIGURES "):])
            except ValueError:
                return {}
    return {}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each benchmark with its own default sizes")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (e.g. soak,connections)")
    parser.add_argument("--out", default=os.path.join(BENCH, "REPORT.md"))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one benchmark may take")
    args = parser.parse_args()
    only = {n if n.endswith(".py") else n + ".py" for n in args.only.split(",") if n}
    scripts = sorted(n for n in os.listdir(BENCH) if n.endswith(".py") and n != "report.py"
                     and not n.startswith("_") and (not only or n in only))
    rows: list[tuple[str, str, str]] = []
    outputs: list[tuple[str, str, str, float, int]] = []
    for name in scripts:
        extra = [] if args.full else STANDARD_ARGS.get(name, [])
        command = [sys.executable, os.path.join(BENCH, name), *extra]
        print(f"running {' '.join(['python', 'bench/' + name, *extra])} ...", flush=True)
        started = time.monotonic()
        # Each runs in a scratch folder: whatever it writes (tmp/, run.log) stays out of the checkout.
        scratch = tempfile.mkdtemp(prefix="bench-report-")
        try:
            result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace",
                                    timeout=args.timeout, cwd=scratch)
            output, code = result.stdout + (("\n" + result.stderr[-3000:]) if result.returncode else ""), result.returncode
        except subprocess.TimeoutExpired as e:
            output, code = f"(stopped after {args.timeout:g} s)\n{e.stdout or ''}", -1
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        seconds = time.monotonic() - started
        shown = " ".join(["python", "bench/" + name, *extra])
        figures = figures_of(output)
        if figures:
            for run, values in figures.items():
                rows.append((name, run, ", ".join(f"{k}={v}" for k, v in values.items())))
        else:
            rows.append((name, "(see its output below)", f"exit {code}, {seconds:.0f} s"))
        outputs.append((name, shown, output, seconds, code))
    lines = [
        "# Benchmark report",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Commit: {git_commit()}; made by `python bench/report.py{' --full' if args.full else ''}`",
        "",
        "| benchmark | run | figures |",
        "|---|---|---|",
    ]
    lines += [f"| {b} | {r} | {f.replace('|', '/')} |" for b, r, f in rows]
    for name, shown, output, seconds, code in outputs:
        lines += ["", f"## {name}", "", f"`{shown}` ({seconds:.0f} s, exit {code})", "", "```",
                  "\n".join(line for line in output.strip().splitlines() if not line.startswith("FIGURES ")), "```"]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
