"""Feishu channel under open-loop load: encrypted, signed `im.message.receive_v1` events against
`python app.py` (channel_type feishu, Encrypt Key mode) with an instant in-process bot
(tests.fakes.bots:EchoBot), at rising arrival rates, a fixed number of events each. The replies go
to the Feishu OpenAPI simulator (tests/fakes/feishu), run in its own process so it does not share a
GIL with the load.

Open loop: event n is sent at start + n / rate whatever happened to the earlier ones (each on its
own keep-alive connection from a pool; a late acknowledgement never delays the next send). Per
rate: events acknowledged (200) per second, p50/p99 of the acknowledgement time, p50/p99 of the
time from sending the event to the reply reaching the API simulator, the daemon's CPU per event;
last, a line `FIGURES {json}` for bench/report.py.

    python bench/feishu.py [--rates 50,100,200,400] [--count 500]

Events are encrypted and signed before the clock starts (this generator's cost is not the daemon's).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.webhook import CONNECTIONS, _exchange, pct  # noqa: E402
from tests.e2e.daemon import Daemon, free_port, wait_healthy, write_config  # noqa: E402
from tests.fakes.feishu import EventSender, envelope, text_event  # noqa: E402

APP_ID, SECRET, TOKEN, ENCRYPT_KEY = "cli_bench0000001", "bench-secret", "bench-token", "bench-encrypt-key"
USERS = 500  # replies spread over many people, as a company's traffic would be


# ------------------------------------------------------------------ the API simulator, in its own process
def _simulator(port_out, stop_in, replies_out) -> None:
    from tests.fakes.feishu import FeishuSimulator

    sim = FeishuSimulator(APP_ID, SECRET).start()
    port_out.send(sim.base_url)
    stop_in.recv()
    arrived = {}
    for sent in sim.sent():
        if sent.text.startswith("echo: q-"):
            arrived[sent.text[len("echo: "):]] = sent.at
    replies_out.send(arrived)
    sim.stop()


# ------------------------------------------------------------------ the load
def build_requests(host: str, sender: EventSender, count: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for n in range(count):
        key = f"q-{tag}-{n}"
        body, headers = sender.seal(envelope(text_event(f"ou_user{n % USERS:04d}", key), TOKEN))
        head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        out.append((key, head.encode("ascii") + body))
    return out


async def run_rate(host: str, port: int, requests: list[tuple[str, bytes]], rate: float) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait((None, None))
    loop = asyncio.get_running_loop()
    results: dict[str, tuple[float, float, int]] = {}

    async def one(key: str, raw: bytes, due: float) -> None:
        await asyncio.sleep(max(0.0, due - loop.time()))
        sent_wall, sent = time.time(), loop.time()
        status = await _exchange(pool, host, port, raw)
        results[key] = (sent_wall, loop.time() - sent, status)

    start = loop.time() + 0.2
    await asyncio.gather(*(one(key, raw, start + n / rate) for n, (key, raw) in enumerate(requests)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--count", type=int, default=500, help="events per rate")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop_in, stop_out = ctx.Pipe(duplex=False)
    replies_in, replies_out = ctx.Pipe(duplex=False)
    simulator = ctx.Process(target=_simulator, args=(port_out, stop_in, replies_out), daemon=True)
    simulator.start()
    api_base = port_in.recv()

    folder = tempfile.mkdtemp(prefix="bench-feishu-")
    port = free_port()
    config = write_config(folder, channel_type="feishu", feishu_app_id=APP_ID, feishu_app_secret=SECRET,
                          feishu_token=TOKEN, feishu_encrypt_key=ENCRYPT_KEY, feishu_port=port,
                          feishu_api_base=api_base, bot_type="tests.fakes.bots:EchoBot", max_pending_messages=100000)
    daemon = Daemon(folder, "--config", config)
    sender = EventSender(f"http://127.0.0.1:{port}/", TOKEN, ENCRYPT_KEY)
    host = f"127.0.0.1:{port}"
    figures: dict[str, dict] = {}
    sent_at: dict[str, float] = {}
    per_rate: list[tuple[float, dict, float, float]] = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=30, daemon=daemon)
        cpu = psutil.Process(daemon.proc.pid)
        # Warm-up, not reported: the token, the first connections, imports on first use.
        asyncio.run(run_rate("127.0.0.1", port, build_requests(host, sender, 50, "warm"), 50))
        time.sleep(1)
        for rate in rates:
            requests = build_requests(host, sender, args.count, f"{rate:g}")
            cpu_before = sum(cpu.cpu_times()[:2])
            results = asyncio.run(run_rate("127.0.0.1", port, requests, rate))
            # From the first send to the last acknowledgement (not counting the lead-in before the first).
            seconds = max(w + e for w, e, _ in results.values()) - min(w for w, _, _ in results.values())
            time.sleep(2)  # let the last replies reach the simulator
            cpu_used = sum(cpu.cpu_times()[:2]) - cpu_before
            for k, (wall, _, _) in results.items():
                sent_at[k] = wall
            per_rate.append((rate, results, seconds, cpu_used))
    finally:
        stop_out.send(True)
        arrived = replies_in.recv() if simulator.is_alive() else {}
        simulator.join(10)
        daemon.kill()
        sender.close()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'rate/s':>7} {'sent':>6} {'ok':>6} {'acked/s':>8} {'ack p50':>8} {'ack p99':>8} "
          f"{'reply p50':>10} {'reply p99':>10} {'replies':>8} {'CPU ms/ev':>9}")
    for rate, results, seconds, cpu_used in per_rate:
        ok = [r for r in results.values() if r[2] == 200]
        ack = [r[1] for r in ok]
        to_reply = [arrived[k] - sent_at[k] for k, r in results.items() if r[2] == 200 and k in arrived]
        acked = len(ok) / seconds if seconds else 0.0
        row = {"sent": len(results), "ok": len(ok), "acked_per_s": round(acked, 1),
               "ack_p50_ms": round(pct(ack, .5) * 1000, 1), "ack_p99_ms": round(pct(ack, .99) * 1000, 1),
               "reply_p50_ms": round(pct(to_reply, .5) * 1000, 1), "reply_p99_ms": round(pct(to_reply, .99) * 1000, 1),
               "replies": len(to_reply), "cpu_ms_per_event": round(cpu_used * 1000 / max(len(results), 1), 2)}
        figures[f"feishu open loop {rate:g}/s, {args.count} events"] = row
        print(f"{rate:>7g} {row['sent']:>6} {row['ok']:>6} {row['acked_per_s']:>8} {row['ack_p50_ms']:>6}ms "
              f"{row['ack_p99_ms']:>6}ms {row['reply_p50_ms']:>8}ms {row['reply_p99_ms']:>8}ms {row['replies']:>8} "
              f"{row['cpu_ms_per_event']:>9}")
    print("(acked/s counts events answered 200 over the time from the first send to the last acknowledgement; "
          "a rate is saturated when acked/s falls below it or the ack p99 climbs)")
    print("FIGURES " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
