"""WeCom AI bot channel (long connection) under load: `python app.py` with channel_type wecom_bot
against the AI bot simulator (tests/fakes/wecom_aibot), USERS users x QUESTIONS questions, closed
loop (each user asks again when the answer is finished). Two runs:

* instant bot (tests.fakes.bots:EchoBot): each answer is one markdown reply;
* the Dify simulator streaming its answer (dify_stream_reply): each answer grows in a bubble.

Prints answers/s, p50/p99 of the time to the first stream frame and to the finished answer
(from the moment the simulator pushed the question), frames per answer and the daemon's CPU time
per answer; last, a line `FIGURES {json}` for bench/report.py.

    python bench/wecom_bot.py [--users 200] [--questions 5]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sandbox.dify_server import DifyServer  # noqa: E402
from tests.e2e.daemon import Daemon, write_config  # noqa: E402
from tests.fakes.wecom_aibot import AibotSimulator  # noqa: E402

BOT, SECRET = "bench-bot", "bench-secret"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run(label: str, users: int, questions: int, streaming: bool) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-wecom-bot-")
    sim = AibotSimulator(bots={BOT: SECRET}, bot_name="Bench", rate_limit=None, rate_limit_hourly=None).start()
    dify = DifyServer(api_key="app-bench", mode="chat").start() if streaming else None
    settings = dict(channel_type="wecom_bot", wecom_bot_id=BOT, wecom_bot_secret=SECRET, wecom_bot_ws_url=sim.ws_url,
                    max_pending_messages=100000)
    if streaming:
        dify.set_chaos(latency=0.0)
        settings.update(bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-bench",
                        dify_stream_reply=True)
    else:
        settings.update(bot_type="tests.fakes.bots:EchoBot")
    daemon = Daemon(folder, "--config", write_config(folder, **settings))
    first_frame, finished, frames = [], [], []
    lock = threading.Lock()
    try:
        sim.wait_subscribed(BOT, timeout=30)

        def user(n: int) -> None:
            for q in range(questions):
                text = f"user {n} question {q}: tell me something about the number {q}"
                if streaming:
                    dify.push_answer("A streamed answer for " + text + ". " + "More words follow here. " * 6,
                                     chunk_size=8, chunk_delay=0.01)
                asked = time.monotonic()
                pushed = sim.push_text(BOT, f"u{n}", text)
                if streaming:
                    [bubble] = sim.wait_finished(pushed.req_id, timeout=120)
                    with lock:
                        first_frame.append(bubble.created_at - asked)
                        finished.append(bubble.updated_at - asked)
                        frames.append(len(bubble.frames))
                else:
                    sim.wait(lambda: sim.replies(pushed.req_id), timeout=120)
                    with lock:
                        finished.append(time.monotonic() - asked)

        cpu = psutil.Process(daemon.proc.pid)
        cpu_before = sum(cpu.cpu_times()[:2])
        started = time.monotonic()
        threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        cpu_ms = (sum(cpu.cpu_times()[:2]) - cpu_before) * 1000
        answers = len(finished)
        print(f"{label}: {users} users x {questions} questions, closed loop: {answers} answers in {seconds:.1f} s, "
              f"{answers / seconds:.0f} answers/s")
        if first_frame:
            print(f"  first stream frame p50 {pct(first_frame, .5) * 1000:.0f} ms, p99 {pct(first_frame, .99) * 1000:.0f} ms")
        print(f"  finished answer    p50 {pct(finished, .5) * 1000:.0f} ms, p99 {pct(finished, .99) * 1000:.0f} ms")
        if frames:
            print(f"  frames per answer  median {statistics.median(frames):.0f}, max {max(frames)}")
        print(f"  daemon CPU         {cpu_ms / max(answers, 1):.1f} ms per answer (user + system)")
        print(f"  errors acked by the simulator: {len(sim.errors)}")
        figures = {"answers": answers, "answers_per_s": round(answers / seconds, 1),
                   "finished_p50_ms": round(pct(finished, .5) * 1000), "finished_p99_ms": round(pct(finished, .99) * 1000),
                   "cpu_ms_per_answer": round(cpu_ms / max(answers, 1), 1), "error_acks": len(sim.errors)}
        if first_frame:
            figures.update(first_frame_p50_ms=round(pct(first_frame, .5) * 1000),
                           first_frame_p99_ms=round(pct(first_frame, .99) * 1000),
                           frames_per_answer=statistics.median(frames))
        return figures
    finally:
        daemon.kill()
        sim.stop()
        if dify is not None:
            dify.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    figures = {}
    for label, streaming in (("instant bot", False), ("Dify streaming", True)):
        figures[f"{label}, {args.users}x{args.questions} closed loop"] = run(label, args.users, args.questions, streaming)
    print("FIGURES " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
