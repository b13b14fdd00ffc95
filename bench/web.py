"""Web channel benchmark: `python app.py` with `channel_type: web` against the Dify
simulator answering at once. N users each keep an SSE stream open and ask M questions
one after another (the next one when the previous answer arrived).

Prints replies per second and p50/p95 latency (POST sent -> answer event read) for
1x20, 8x10 and 32x5 users x questions, and checks every reply was delivered.

    python bench/web.py [--runs 1x20,8x10,32x5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402

from tests.e2e.daemon import Daemon, free_port, write_config  # noqa: E402


async def user(client: httpx.AsyncClient, name: str, questions: int, latencies: list[float]) -> int:
    got = 0
    async with client.stream("GET", f"/sse/{name}", timeout=None) as stream:
        lines = stream.aiter_lines()
        for i in range(questions):
            text = f"{name} question {i}"
            t0 = time.perf_counter()
            r = await client.post("/message", json={"user_id": name, "message": text})
            r.raise_for_status()
            while True:
                line = await asyncio.wait_for(lines.__anext__(), 30)
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if data["content"] == f"echo: {text}":
                        latencies.append(time.perf_counter() - t0)
                        got += 1
                        break
    return got


async def run(base: str, users: int, questions: int, tag: str) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=users * 2 + 10, max_keepalive_connections=users * 2 + 10)
    # TCP_NODELAY as browsers and `requests` set it: without it httpx's separate header and
    # body writes meet the server's delayed ACK and every POST waits ~40 ms (measured).
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(user(client, f"{tag}u{i}", questions, latencies) for i in range(users)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies, sum(counts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1x20,8x10,32x5", help="users x questions, comma separated")
    args = parser.parse_args()
    runs = [tuple(int(n) for n in item.split("x")) for item in args.runs.split(",")]
    folder = tempfile.mkdtemp(prefix="bench-web-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    failed = False
    # The simulator runs in its own process (as in bench/dify.py) so that it does not share
    # the asyncio client's GIL.
    sim_port = free_port()
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from sandbox.dify_server import DifyServer\n"
            "DifyServer(api_key='app-bench', mode='chat', port=%d).start()\n"
            "time.sleep(86400)\n") % (ROOT, sim_port)
    simulator = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim_base = f"http://127.0.0.1:{sim_port}/v1"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(sim_base + "/").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            simulator.kill()
            print("the Dify simulator did not start")
            return 1
        time.sleep(0.1)
    try:
        config = write_config(folder, channel_type="web", web_port=port, bot_type="", model="dify",
                              dify_api_base=sim_base, dify_api_key="app-bench")
        daemon = Daemon(folder, "--config", config)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    print("the daemon did not start:", daemon.stderr())
                    return 1
                time.sleep(0.1)
            print(f"{'users x questions':>18} {'replies/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'delivered':>10}")
            for n, (users, questions) in enumerate(runs):
                elapsed, latencies, delivered = asyncio.run(run(base, users, questions, f"r{n}"))
                expected = users * questions
                failed |= delivered != expected
                print(f"{f'{users} x {questions}':>18} {delivered / elapsed:>10.1f} {pct(latencies, 0.5) * 1000:>8.1f} "
                      f"{pct(latencies, 0.95) * 1000:>8.1f} {f'{delivered}/{expected}':>10}")
        finally:
            daemon.kill()
    finally:
        simulator.kill()
    if failed:
        print("NOT every reply was delivered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
