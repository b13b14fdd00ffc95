"""Web channel benchmark: `python app.py` with `channel_type: web` against the Dify
simulator answering at once. N users each keep an SSE stream open and ask M questions
one after another (the next one when the previous answer arrived).

Prints replies per second, p50/p95 latency (POST sent -> answer event read) and the
daemon's CPU time per reply for 1x20, 8x10 and 32x5 users x questions, several rounds of
each (medians at the end), and checks every reply was delivered.

With no pause between a user's questions the run is a closed loop: with N questions in
flight, p50 is at least N / (replies per second) however fast one reply is (Little's law).

Then the same sizes once more with a pause (`--think`, 0.1 s) between a user's questions: the
latency of an answer when the daemon is not saturated.

    python bench/web.py [--runs 1x20,8x10,32x5] [--rounds 3] [--think 0.1] [--client lean|httpx]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.e2e.daemon import Daemon, free_port, write_config  # noqa: E402


class LeanClient:
    """A minimal HTTP/1.1 client on asyncio streams: one kept-alive connection for the POSTs
    and one for the SSE stream of each user. The bench runs on the daemon's machine, so its
    own CPU per reply is taken from the daemon; this client spends a fraction of httpx's."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host, self.port, self.name = host, port, name
        self.post_io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.sse_io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.pending = b""  # SSE bytes read but not yet split into lines

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        return status, headers

    async def open_stream(self) -> None:
        self.sse_io = await self._connect()
        reader, writer = self.sse_io
        writer.write(f"GET /sse/{self.name} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        status, headers = await self._head(reader)
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise RuntimeError(f"SSE answered {status} {headers}")

    async def post(self, payload: dict) -> int:
        if self.post_io is None:
            self.post_io = await self._connect()
        reader, writer = self.post_io
        body = json.dumps(payload).encode()
        writer.write(b"POST /message HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (self.host.encode(), len(body), body))
        status, headers = await self._head(reader)
        await reader.readexactly(int(headers.get("content-length", "0")))
        return status

    async def next_data(self) -> str:
        """The next `data:` line of the stream (its chunked framing removed)."""
        reader = self.sse_io[0]
        while True:
            line, sep, rest = self.pending.partition(b"\n")
            if sep:
                self.pending = rest
                if line.startswith(b"data: "):
                    return line[6:].decode()
                continue
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                raise RuntimeError("the SSE stream ended")
            self.pending += (await reader.readexactly(size + 2))[:-2]

    async def close(self) -> None:
        for io in (self.post_io, self.sse_io):
            if io is not None:
                io[1].close()


async def lean_user(host: str, port: int, name: str, questions: int, latencies: list[float],
                    think: float = 0.0) -> int:
    client = LeanClient(host, port, name)
    got = 0
    try:
        await client.open_stream()
        if think:
            await asyncio.sleep(random.uniform(0, think))  # users do not all ask at the same moment
        for i in range(questions):
            if i and think:
                await asyncio.sleep(think)
            text = f"{name} question {i}"
            t0 = time.perf_counter()
            status = await client.post({"user_id": name, "message": text})
            if status != 200:
                raise RuntimeError(f"POST /message answered {status}")
            while True:
                data = json.loads(await asyncio.wait_for(client.next_data(), 30))
                if data.get("content") == f"echo: {text}":  # partial events have none
                    latencies.append(time.perf_counter() - t0)
                    got += 1
                    break
    finally:
        await client.close()
    return got


async def httpx_user(client: httpx.AsyncClient, name: str, questions: int, latencies: list[float]) -> int:
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
                    if data.get("content") == f"echo: {text}":  # partial events have none
                        latencies.append(time.perf_counter() - t0)
                        got += 1
                        break
    return got


async def run(base: str, users: int, questions: int, tag: str, kind: str = "lean",
              think: float = 0.0) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    if kind == "lean":
        host, port = base.split("//", 1)[1].split(":")
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(lean_user(host, int(port), f"{tag}u{i}", questions, latencies, think)
                                        for i in range(users)))
        return time.perf_counter() - t0, latencies, sum(counts)
    limits = httpx.Limits(max_connections=users * 2 + 10, max_keepalive_connections=users * 2 + 10)
    # TCP_NODELAY as browsers and `requests` set it: without it httpx's separate header and
    # body writes meet the server's delayed ACK and every POST waits ~40 ms (measured).
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(httpx_user(client, f"{tag}u{i}", questions, latencies) for i in range(users)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies, sum(counts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1x20,8x10,32x5", help="users x questions, comma separated")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each size; the summary shows medians")
    parser.add_argument("--think", type=float, default=0.1,
                        help="seconds each user pauses between questions in the extra open runs (0: none)")
    parser.add_argument("--client", choices=("lean", "httpx"), default="lean",
                        help="the bench's HTTP client: lean asyncio streams (default) or httpx")
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
        settings = dict(channel_type="web", web_port=port, bot_type="", model="dify",
                        dify_api_base=sim_base, dify_api_key="app-bench")
        settings.update(json.loads(os.environ.get("BENCH_EXTRA", "{}")))
        config = write_config(folder, **settings)
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
            daemon_proc = psutil.Process(daemon.proc.pid)
            tags = iter(range(1, 1_000_000))

            def measure(users: int, questions: int, think: float) -> tuple[float, float, float, float]:
                nonlocal failed
                cpu0 = sum(daemon_proc.cpu_times()[:2])
                elapsed, latencies, delivered = asyncio.run(
                    run(base, users, questions, f"r{next(tags)}", args.client, think))
                cpu = (sum(daemon_proc.cpu_times()[:2]) - cpu0) / max(1, delivered) * 1000
                expected = users * questions
                failed |= delivered != expected
                row = (delivered / elapsed, pct(latencies, 0.5) * 1000, pct(latencies, 0.95) * 1000, cpu)
                print(f"{f'{users} x {questions}':>18} {row[0]:>10.1f} {row[1]:>8.1f} {row[2]:>8.1f} "
                      f"{row[3]:>20.2f} {f'{delivered}/{expected}':>10}")
                return row

            header = (f"{'users x questions':>18} {'replies/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
                      f"{'daemon CPU ms/reply':>20} {'delivered':>10}")
            print(f"client: {args.client}; closed loop (each next question when the answer came); "
                  f"each size {args.rounds} rounds, in turn")
            print(header)
            rows: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {run: [] for run in runs}
            for _ in range(args.rounds):
                for users, questions in runs:
                    rows[(users, questions)].append(measure(users, questions, 0.0))
            print("medians of the rounds:")
            for (users, questions), got in rows.items():
                med = [statistics.median(column) for column in zip(*got)]
                print(f"{f'{users} x {questions}':>18} {med[0]:>10.1f} {med[1]:>8.1f} {med[2]:>8.1f} {med[3]:>20.2f}")
            if args.think > 0 and args.client == "lean":
                print(f"the same sizes, each user pausing {args.think:g} s between questions (one round):")
                print(header)
                for users, questions in runs:
                    measure(users, questions, args.think)
        finally:
            daemon.kill()
    finally:
        simulator.kill()
    if failed:
        print("NOT every reply was delivered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
