"""How many idle connections it takes to stop new users being served.

Starts the daemon (web channel, Dify simulator), then opens idle TCP connections to its port in
steps (they connect and send nothing, or half a request with --half-open) and after each step checks
that a new user still gets an answer within --timeout seconds. Prints each step and, last,
`FIGURES {json}` with the first count at which a new user was not served (or none up to --max).

    python bench/connections.py [--max 5000] [--step 500] [--daemon-fd-limit 1024] [--timeout 15]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.reliability.harness import WebApp, WebUser, chaos_dify, new_folder, remove_folder  # noqa: E402


async def served(port: int, name: str, timeout: float) -> bool:
    user = WebUser("127.0.0.1", port, name)
    user.open()
    try:
        status, _ = await user.post(f"{name} hello", timeout=timeout, retry=False)
        return status == 200 and await user.wait_replies(1, timeout)
    except Exception:
        return False
    finally:
        await user.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=5000)
    parser.add_argument("--step", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds a new user may wait for the answer")
    parser.add_argument("--daemon-fd-limit", type=int, default=0, help="set the daemon's descriptor limit (Linux)")
    parser.add_argument("--half-open", action="store_true", help="send half a request line on each connection")
    args = parser.parse_args()
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.max + 500)), hard))
    except (ImportError, ValueError, OSError):
        resource = None
    dify = chaos_dify(latency=0.0, error_rate=0.0)
    folder = new_folder("bench-conn-")
    preexec = None
    if resource is not None and args.daemon_fd_limit:
        fd_limit = args.daemon_fd_limit

        def limit_descriptors() -> None:
            # The daemon starts under the limit, as under a service manager or `ulimit -n`, and
            # sizes its connection cap from it (lowering it after the start, as this bench did
            # before, measured a daemon sized for another limit).
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
        preexec = limit_descriptors
    app = WebApp(folder, dify, plugins=()).start(preexec_fn=preexec)
    limit = "inherited"
    if resource is not None:
        if hasattr(resource, "prlimit"):
            limit = resource.prlimit(app.pid(), resource.RLIMIT_NOFILE)[0]
    sockets: list[socket.socket] = []
    broke_at = None
    print(f"daemon descriptor limit: {limit}")
    print(f"{'idle connections':>17} {'new user served':>16} {'seconds':>8}")
    try:
        target = 0
        while target < args.max:
            target = min(args.max, target + args.step)
            while len(sockets) < target:
                try:
                    s = socket.create_connection(("127.0.0.1", app.port), timeout=5)
                    if args.half_open:
                        s.sendall(b"GET /chat HTTP/1.1\r\n")
                except OSError:
                    break
                sockets.append(s)
            t0 = time.monotonic()
            ok = asyncio.run(served(app.port, f"probe{target}", args.timeout))
            print(f"{len(sockets):>17} {('yes' if ok else 'NO'):>16} {time.monotonic() - t0:>8.2f}", flush=True)
            if not ok:
                broke_at = len(sockets)
                break
    finally:
        for s in sockets:
            s.close()
        app.stop()
        dify.stop()
        remove_folder(folder)
    name = f"idle connections (daemon fd limit {limit}{', half-open' if args.half_open else ''})"
    print("FIGURES " + json.dumps({name: {"new_users_stop_at": broke_at if broke_at is not None else f"> {args.max}",
                                         "tried_up_to": args.max}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
