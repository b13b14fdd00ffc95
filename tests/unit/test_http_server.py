"""common/http_server: body cap, /healthz states, routes, start errors, clean stop."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from common.http_server import HttpServer, HttpServerError, shared_server


async def echo(request: Request):
    body = await request.body()
    return JSONResponse({"size": len(body)})


@pytest.fixture
def server():
    srv = HttpServer("127.0.0.1", 0, max_body=1000, channel="test")
    srv.add_route("/echo", echo, ["POST"])
    yield srv
    srv.stop(2)


def test_routes_and_healthz_while_running(server):
    server.set_queue_probe(lambda: 3)
    server.start()
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/echo", content=b"x" * 10).json() == {"size": 10}
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"state": "running", "channel": "test", "queue": 3}
        missing = client.get("/nothing")
        assert missing.status_code == 404 and missing.json()["status"] == "error"
        assert client.get("/echo").status_code == 405


def test_healthz_is_503_while_stopping(server):
    server.start()
    server.mark_stopping()
    health = httpx.get(server.base_url + "/healthz")
    assert health.status_code == 503
    assert health.json()["state"] == "stopping"


def test_body_cap_declared_and_chunked(server):
    server.start()
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/echo", content=b"x" * 1000).status_code == 200
        big = client.post("/echo", content=b"x" * 1001)
        assert big.status_code == 413
        assert big.json()["status"] == "error"

        def chunks():
            for _ in range(5):
                yield b"y" * 400

        chunked = client.post("/echo", content=chunks())
        assert chunked.status_code == 413


def test_routes_only_before_start_and_once(server):
    with pytest.raises(ValueError):
        server.add_route("/echo", echo, ["POST"])
    server.start()
    with pytest.raises(RuntimeError):
        server.add_route("/late", echo, ["GET"])


def test_port_in_use_is_one_clear_line():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(HttpServerError, match=f"port {port} .*already in use"):
            HttpServer("127.0.0.1", port).start()
    finally:
        holder.close()


def test_stop_lets_an_in_flight_request_finish():
    started = threading.Event()

    async def slow(request: Request):
        started.set()
        await asyncio.sleep(0.5)
        return JSONResponse({"done": True})

    srv = HttpServer("127.0.0.1", 0)
    srv.add_route("/slow", slow)
    srv.start()
    result: dict = {}

    def call():
        result["response"] = httpx.get(srv.base_url + "/slow", timeout=5)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(5)
    t0 = time.monotonic()
    srv.stop(5)
    caller.join(5)
    assert result["response"].json() == {"done": True}
    assert time.monotonic() - t0 < 4
    # The port is closed after the stop.
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base_url + "/healthz", timeout=1)


def test_stop_gives_up_on_a_request_that_outlives_the_timeout():
    async def hang(request: Request):
        await asyncio.sleep(30)
        return JSONResponse({})

    srv = HttpServer("127.0.0.1", 0)
    srv.add_route("/hang", hang)
    srv.start()
    threading.Thread(target=lambda: _ignore(lambda: httpx.get(srv.base_url + "/hang", timeout=10)), daemon=True).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.stop(0.5)
    assert time.monotonic() - t0 < 4
    assert srv.state == "stopped"


def test_shared_server_is_one_per_port():
    a = shared_server("127.0.0.1", 45999)
    b = shared_server("127.0.0.1", 45999)
    assert a is b


def _ignore(fn):
    try:
        fn()
    except Exception:
        pass
