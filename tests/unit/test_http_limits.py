"""common/http_guard on a real server: head deadline, head size cap, connection cap."""
from __future__ import annotations

import socket
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from common.http_guard import FD_RESERVE, connection_cap, raise_fd_limit
from common.http_server import HttpServer


async def echo(request: Request):
    return JSONResponse({"size": len(await request.body())})


@pytest.fixture
def make_server():
    started = []

    def make(**kwargs) -> HttpServer:
        srv = HttpServer("127.0.0.1", 0, channel="test", **kwargs)
        srv.add_route("/echo", echo, ["POST"])
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop(2)


def closed_by_server(sock: socket.socket, within: float = 15.0) -> bool:
    """True when the server closes `sock` (EOF or reset) before `within` seconds pass."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_a_head_trickled_slowly_is_closed_while_others_are_served(make_server):
    server = make_server(head_timeout=0.5)
    slow = socket.create_connection(("127.0.0.1", server.port))
    silent = socket.create_connection(("127.0.0.1", server.port))  # connects and never says a word
    try:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(3):  # a byte now and then, never the end of the head
            slow.sendall(b"X")
            assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
            time.sleep(0.1)
        assert closed_by_server(slow)
        assert closed_by_server(silent)
        assert server.guard.timed_out >= 2
        assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
    finally:
        slow.close()
        silent.close()


def test_a_request_whose_head_arrives_in_time_is_served(make_server):
    server = make_server(head_timeout=2)
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.05)
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


@pytest.mark.parametrize("where", ["header", "url", "many headers"])
def test_a_huge_request_head_gets_431(make_server, where):
    server = make_server()  # the default cap, 64 KiB
    if where == "header":
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n"
    elif where == "url":
        head = b"GET /healthz?q=" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        head = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20000)) + b"\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the client finished sending
        sock.settimeout(10)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        assert b'"status": "error"' in answer
        assert closed_by_server(sock)
    finally:
        sock.close()
    assert httpx.get(server.base_url + "/healthz").status_code == 200


def test_a_big_body_is_not_mistaken_for_a_big_head(make_server):
    server = make_server(max_body=1 << 20)
    body = b"x" * 900_000
    r = httpx.post(server.base_url + "/echo", content=body, timeout=10)
    assert r.status_code == 200 and r.json() == {"size": len(body)}
    # And on a kept-alive connection, the next request's head is checked afresh.
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(3):
            assert client.post("/echo", content=body).status_code == 200
        assert client.get("/healthz", headers={"X-Big": "a" * 70_000}).status_code == 431


def test_idle_connections_past_the_cap_do_not_lock_new_users_out(make_server):
    limit = raise_fd_limit()
    if limit is not None and limit < 2 * 1100 + 100:
        pytest.skip(f"needs about 2,300 open files, the limit is {limit}")
    server = make_server(max_connections=1000)
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert client.post("/echo", content=b"hello").json() == {"size": 5}
        # The ones that waited longest went first; the newest are still open.
        assert closed_by_server(idle[0], within=10)
        assert server.guard.evicted >= 100
        idle[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        idle[-1].settimeout(10)
        assert idle[-1].recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in idle:
            sock.close()


def test_connections_busy_with_requests_are_not_evicted(make_server):
    server = make_server(max_connections=2)
    # Two requests in progress: their bodies are still coming, so neither is idle.
    busy = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        busy.append(sock)
    deadline = time.monotonic() + 10
    while server.guard.waiting and time.monotonic() < deadline:  # until the server has read both heads
        time.sleep(0.01)
    try:
        newcomer = socket.create_connection(("127.0.0.1", server.port))
        newcomer.settimeout(10)
        assert newcomer.recv(4096).startswith(b"HTTP/1.1 503")
        newcomer.close()
        for sock in busy:
            sock.sendall(b"world")
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in busy:
            sock.close()
    assert server.guard.refused == 1 and server.guard.evicted == 0


def test_connection_cap_leaves_descriptors_for_the_rest():
    assert connection_cap(10000, None) == 10000
    assert connection_cap(10000, 1024) == 1024 - FD_RESERVE
    assert connection_cap(500, 100000) == 500
    assert connection_cap(10000, 100) == 50


def test_shared_server_takes_its_cap_from_the_setting(settings):
    from common.http_server import shared_server

    settings["http_max_connections"] = 123
    server = shared_server("127.0.0.1", 0)
    assert server.guard.max_connections == 123


@pytest.mark.parametrize("value, message", [(0, "must be at least 1"), ("many", "must be a whole number")])
def test_a_bad_connection_cap_stops_start_up_with_one_line(tmp_path, value, message):
    import json

    from config import ConfigError, build_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"http_max_connections": value}), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"setting 'http_max_connections' {message}"):
        build_config(str(path), environ={}, dotenv_path="")


def test_a_body_trickled_slowly_is_cut_off_without_a_traceback(make_server, logs):
    server = make_server(body_timeout=0.5)
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        assert closed_by_server(sock)
        assert server.guard.body_timed_out == 1
        assert httpx.post(server.base_url + "/echo", content=b"x" * 100, timeout=5).json() == {"size": 100}
    finally:
        sock.close()
    assert not [m for m in logs.messages if "failed" in m]
