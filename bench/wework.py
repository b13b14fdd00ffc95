"""WeCom channel benchmark, against the ntwork simulator (tests/fakes/ntwork) in this process.

A: time from the WeCom login to the channel being ready (contacts, rooms and room members read,
   the three JSON files written), with the client's data readable at once and with it readable
   only after a delay. The original always slept 60 s after the login.
B: messages per second answered with ``wework_reply_delay`` 0: --conversations private chats send
   --messages questions each, as fast as the hook delivers them; every message goes the whole way
   (hook callback thread -> WeworkMessage -> intake -> rules, dedup in a SQLite state store ->
   queues -> bot -> send_text through the simulated hook). The bot is the in-process EchoBot
   (``tests.fakes.bots:EchoBot``, answers at once) unless --dify is given, which puts the Dify
   simulator (sandbox/dify_server.py, real HTTP on 127.0.0.1) behind the Dify bot.

    python bench/wework.py [--conversations 200] [--messages 5] [--rounds 3] [--dify]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "fakes")
sys.path.insert(0, ROOT)
sys.path.insert(0, FAKES)  # `import ntwork` finds the simulator
os.environ["NTWORK_LOG"] = "ERROR"
os.environ.pop("NTWORK_SIM_DIR", None)

from ntwork.simulator import SIM  # noqa: E402

from bridge.bridge import Bridge  # noqa: E402
from channel.wework.wework_channel import WeworkChannel  # noqa: E402
from common.log import set_console_level  # noqa: E402
from common.store import SQLiteStore  # noqa: E402
from config import conf  # noqa: E402
from tests.fakes import ntwork_control as nc  # noqa: E402

BOT_ID = nc.DEFAULT_USER_ID
ROOMS = [{"conversation_id": f"R:{10000 + i}", "nickname": f"群{i}"} for i in range(20)]


def scenario(**more):
    return {
        "login_info": {"user_id": BOT_ID, "username": "Bot", "nickname": ""},
        "login_delay": 0.05,
        "rooms": ROOMS,
        "external_contacts": [{"user_id": f"7881{i:012d}", "username": f"u{i}"} for i in range(200)],
        "room_members": {r["conversation_id"]: [{"user_id": f"7881{i:012d}"} for i in range(30)] for r in ROOMS},
        **more,
    }


class Running:
    """A fresh WeworkChannel started on a thread; `login_to_ready` measured from the login."""

    def __init__(self, **scenario_keys):
        SIM.reset()
        SIM.configure(**scenario(**scenario_keys))
        self.channel = WeworkChannel.__wrapped__()
        self.channel.channel_type = "wework"
        self.thread = threading.Thread(target=self.channel.startup, daemon=True)
        self.thread.start()
        while not self.channel._logged_in.is_set():
            time.sleep(0.0005)
        logged_in = time.perf_counter()
        while not self.channel.inited:
            if not self.thread.is_alive():
                raise RuntimeError("the channel did not start")
            time.sleep(0.0005)
        self.login_to_ready = time.perf_counter() - logged_in

    def stop(self):
        self.channel.stop()
        self.thread.join(5)


def sends() -> int:
    return len(SIM.calls_of("send_text"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help="questions per conversation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dify", action="store_true", help="answer with the Dify bot and the Dify simulator")
    args = parser.parse_args()

    set_console_level(40)
    work = tempfile.mkdtemp(prefix="bench-wework-")
    os.chdir(work)  # tmp/ and the JSON files go here
    config = conf()
    config.update(
        single_chat_prefix=[""], wework_reply_delay=0, wework_init_wait=10, group_name_white_list=["ALL_GROUP"],
        # a deep pool and queues so the figure is the channel's, not a queue limit
        worker_threads=16, session_queue_size=1000,
    )
    dify = None
    if args.dify:
        from sandbox.dify_server import DifyServer

        dify = DifyServer(api_key="app-bench", mode="chat").start()
        config.update(bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-bench")
        bot_name = f"Dify bot -> Dify simulator at {dify.base_url}"
    else:
        config["bot_type"] = "tests.fakes.bots:EchoBot"
        bot_name = "EchoBot (in-process, answers at once)"
    Bridge().reset_bot()
    store = SQLiteStore(os.path.join(work, "state.db"))
    config.user_data_book.attach(store)

    # A: login -> ready
    ready_now = []
    for _ in range(5):
        running = Running(data_ready_after=0)
        ready_now.append(running.login_to_ready)
        running.stop()
    ready_late = []
    for _ in range(3):
        running = Running(data_ready_after=1.5)
        ready_late.append(running.login_to_ready)
        running.stop()

    # B: throughput
    running = Running(data_ready_after=0)
    conversations = [f"S:{BOT_ID}_7881{i:012d}" for i in range(args.conversations)]
    for c in conversations[:20]:  # warm up: bot creation, imports, first SQLite writes
        SIM.inject(nc.text(c, c[-16:], "warm", "warm up"))
    while sends() < 20:
        time.sleep(0.005)
    total = args.conversations * args.messages
    rates = []
    for _ in range(args.rounds):
        base = sends()
        started = time.perf_counter()
        for n in range(args.messages):
            for c in conversations:
                SIM.inject(nc.text(c, c[-16:], "user", f"q{n}"))
        deadline = time.monotonic() + 120
        while sends() < base + total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sends() - base} of {total} answers arrived")
            time.sleep(0.002)
        rates.append(total / (time.perf_counter() - started))
    running.stop()
    if dify is not None:
        dify.stop()
    store.close()

    print(f"bot: {bot_name}")
    print("A. login -> ready (contacts, 20 rooms and their members read, 3 JSON files written)")
    print(f"   client data readable at once:    median {statistics.median(ready_now) * 1e3:7.1f} ms "
          f"(5 runs; goal < 3 s; the original slept 60 s)")
    print(f"   client data readable after 1.5 s: median {statistics.median(ready_late) * 1e3:7.1f} ms (3 runs)")
    print(f"B. {args.conversations} conversations x {args.messages} questions, wework_reply_delay 0")
    print(f"   answered: median {statistics.median(rates):8.0f} messages/s over {args.rounds} rounds "
          f"({', '.join(f'{r:.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
