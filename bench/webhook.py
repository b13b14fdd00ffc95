"""Webhook channel under open-loop load: signed, encrypted WeCom app callbacks against
`python app.py` (channel_type wechatcom_app) with an instant in-process bot (tests.fakes.bots:
EchoBot), at rising arrival rates. The replies go to the WeCom API simulator
(tests/fakes/wechat_platform), run in its own process so it does not share a GIL with the load.

Open loop: callback n is sent at start + n / rate whatever happened to the earlier ones (each on
its own keep-alive connection from a pool; a late answer never delays the next send). Per rate:
callbacks handled per second, p50/p99 of the callback's response time, p50/p99 of the time from
sending the callback to the reply reaching the API simulator, errors, the daemon's CPU per
callback; last, a line `FIGURES {json}` for bench/report.py.

    python bench/webhook.py [--rates 50,100,200,400,800] [--seconds 10]

The callbacks are encrypted before the clock starts (this generator's cost is not the daemon's).
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
from urllib.parse import urlencode

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.e2e.daemon import Daemon, free_port, wait_healthy, write_config  # noqa: E402
from tests.fakes.wechat_platform import Envelope, random_aes_key, xml_messages  # noqa: E402
from tests.fakes.wechat_platform.crypto import new_nonce  # noqa: E402

CORP, SECRET, AGENT, TOKEN = "wwbench000000001", "bench-secret", 1000002, "bench-token"
USERS = 500  # replies spread over many members, as a company's traffic would be
CONNECTIONS = 64


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# ------------------------------------------------------------------ the API simulator, in its own process
def _simulator(port_out, stop_in, replies_out) -> None:
    from tests.fakes.wechat_platform import WeChatPlatformSimulator

    sim = WeChatPlatformSimulator(wecom_apps={CORP: {SECRET: AGENT}}, member_limits=()).start()
    port_out.send(sim.base_url)
    stop_in.recv()
    arrived = {}
    for call in sim.calls("message/send"):
        text = ((call.body or {}).get("text") or {}).get("content", "") if isinstance(call.body, dict) else ""
        if call.errcode == 0 and text.startswith("echo: q-"):
            arrived[text[len("echo: "):]] = call.at
    replies_out.send(arrived)
    sim.stop()


# ------------------------------------------------------------------ the load
def build_requests(url_path: str, host: str, envelope: Envelope, count: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for n in range(count):
        key = f"q-{tag}-{n}"
        plain = xml_messages.message(CORP, f"user{n % USERS}", "text", [("Content", key)], agent_id=AGENT).xml()
        encrypt = envelope.encrypt(plain)
        timestamp, nonce = str(int(time.time())), new_nonce()
        query = urlencode({"msg_signature": envelope.msg_signature(timestamp, nonce, encrypt),
                           "timestamp": timestamp, "nonce": nonce})
        body = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID>{AGENT}</AgentID>"
                f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode("utf-8")
        head = (f"POST {url_path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
        out.append((key, head + body))
    return out


async def _exchange(pool: asyncio.Queue, host: str, port: int, raw: bytes) -> int:
    reader, writer = await pool.get()
    try:
        if writer is None or writer.is_closing():
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        return int(status_line.split()[1])
    except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
        if writer is not None:
            writer.close()
        reader, writer = None, None
        return 0
    finally:
        pool.put_nowait((reader, writer))


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
    parser.add_argument("--rates", default="50,100,200,400,800")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of arrivals per rate")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop_in, stop_out = ctx.Pipe(duplex=False)
    replies_in, replies_out = ctx.Pipe(duplex=False)
    simulator = ctx.Process(target=_simulator, args=(port_out, stop_in, replies_out), daemon=True)
    simulator.start()
    api_base = port_in.recv()

    folder = tempfile.mkdtemp(prefix="bench-webhook-")
    port, key = free_port(), random_aes_key()
    config = write_config(folder, channel_type="wechatcom_app", wechatcom_corp_id=CORP, wechatcomapp_token=TOKEN,
                          wechatcomapp_aes_key=key, wechatcomapp_secret=SECRET, wechatcomapp_agent_id=str(AGENT),
                          wechatcomapp_port=port, wechatcom_api_base=api_base, bot_type="tests.fakes.bots:EchoBot",
                          max_pending_messages=100000)
    daemon = Daemon(folder, "--config", config)
    envelope = Envelope(TOKEN, key, CORP)
    figures: dict[str, dict] = {}
    sent_at: dict[str, float] = {}
    per_rate: list[tuple[float, dict, float, float]] = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=30, daemon=daemon)
        cpu = psutil.Process(daemon.proc.pid)
        # Warm-up, not reported: the access token, the first connections, imports on first use.
        asyncio.run(run_rate("127.0.0.1", port, build_requests("/wxcomapp", f"127.0.0.1:{port}", envelope, 50, "warm"), 50))
        time.sleep(1)
        for rate in rates:
            count = int(rate * args.seconds)
            requests = build_requests("/wxcomapp", f"127.0.0.1:{port}", envelope, count, f"{rate:g}")
            cpu_before = sum(cpu.cpu_times()[:2])
            results = asyncio.run(run_rate("127.0.0.1", port, requests, rate))
            # From the first send to the last answer (asyncio.run's own time adds a 0.2 s lead-in).
            seconds = (max(wall + took for wall, took, _ in results.values())
                       - min(wall for wall, _, _ in results.values()))
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
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'rate/s':>7} {'sent':>6} {'ok':>6} {'handled/s':>9} {'resp p50':>9} {'resp p99':>9} "
          f"{'reply p50':>10} {'reply p99':>10} {'replies':>8} {'CPU ms/cb':>9}")
    for rate, results, seconds, cpu_used in per_rate:
        ok = [r for r in results.values() if r[2] == 200]
        response = [r[1] for r in ok]
        to_reply = [arrived[k] - sent_at[k] for k, r in results.items() if r[2] == 200 and k in arrived]
        handled = len(ok) / seconds if seconds else 0.0
        row = {"sent": len(results), "ok": len(ok), "handled_per_s": round(handled, 1),
               "response_p50_ms": round(pct(response, .5) * 1000, 1), "response_p99_ms": round(pct(response, .99) * 1000, 1),
               "reply_p50_ms": round(pct(to_reply, .5) * 1000, 1), "reply_p99_ms": round(pct(to_reply, .99) * 1000, 1),
               "replies": len(to_reply), "cpu_ms_per_callback": round(cpu_used * 1000 / max(len(results), 1), 2)}
        figures[f"wechatcom_app open loop {rate:g}/s for {args.seconds:g} s"] = row
        print(f"{rate:>7g} {row['sent']:>6} {row['ok']:>6} {row['handled_per_s']:>9} {row['response_p50_ms']:>8}ms "
              f"{row['response_p99_ms']:>8}ms {row['reply_p50_ms']:>9}ms {row['reply_p99_ms']:>9}ms {row['replies']:>8} "
              f"{row['cpu_ms_per_callback']:>9}")
    print("(handled/s counts callbacks answered 200 over the time from the first send to the last answer; "
          "a rate is saturated when handled/s falls below it or the response p99 climbs)")
    print("FIGURES " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
