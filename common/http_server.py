"""The daemon's one HTTP server (starlette + uvicorn), shared by every channel that needs one.

A channel asks for the server of its host and port with `shared_server()`, registers its
routes, then calls `start()`. The server runs uvicorn in a thread with its own event loop;
the daemon keeps the signal handlers (uvicorn's are never installed). `start()` returns only
once the port is listening, or raises `HttpServerError` with one line for the user.

Every server answers `GET /healthz`: 200 `{"state": "running", "channel": ..., "queue": n}`
while running, 503 while starting or stopping, and 503 `"degraded"` while the store write probe
(`set_store_probe`) says the state store cannot write or, for a channel that dials out to its
platform, while its connection is down (`set_connection_probe`, also shown as "connection"). Request bodies are capped (413 JSON);
connections, request heads and their timing are limited by common/http_guard.
"""
from __future__ import annotations

import asyncio
import errno
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.http_guard import BODY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, HEAD_TIMEOUT, MAX_HEAD, ConnectionGuard, connection_cap, raise_fd_limit
from common.log import logger
from config import conf

try:  # libuv's event loop: less CPU per request and per SSE write. Not built for Windows.
    import uvloop
except ImportError:  # pragma: no cover - Windows, or installed without it
    uvloop = None

DEFAULT_MAX_BODY = 1024 * 1024

STARTING, RUNNING, STOPPING, STOPPED = "starting", "running", "stopping", "stopped"
DEGRADED = "degraded"  # running, but the state store cannot write


class HttpServerError(Exception):
    """The server cannot start. The message is one line meant for the user."""


class _BodyTooLarge(Exception):
    pass


def json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    """The one error shape of every route: `{"status": "error", "message": ...}`."""
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


class _BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, declared or streamed (chunked)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await json_error(400, "invalid Content-Length")(scope, receive, send)
                if declared > self.limit:
                    return await self._too_large(scope, receive, send)
        seen = 0

        async def limited_receive():
            # A body without Content-Length (chunked) is counted as it comes; the app's
            # handler for _BodyTooLarge answers 413.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, scope, receive, send):
        await json_error(413, f"request body larger than {self.limit} bytes")(scope, receive, send)


@dataclass
class _RouteSpec:
    path: str
    endpoint: Callable
    methods: tuple[str, ...]


class HttpServer:
    """One uvicorn server in a thread. Routes are added before `start()`."""

    def __init__(self, host: str, port: int, *, max_body: int = DEFAULT_MAX_BODY, channel: str = "",
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, head_timeout: float = HEAD_TIMEOUT,
                 max_head: int = MAX_HEAD, body_timeout: float = BODY_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.max_body = max_body
        self.channel = channel
        self.guard = ConnectionGuard(max_connections=max_connections, head_timeout=head_timeout, max_head=max_head,
                                     body_timeout=body_timeout)
        self.state = STOPPED
        self._routes: list[_RouteSpec] = []
        self._status: Callable[[], int] | None = None
        self._store_probe: Callable[[], str | None] | None = None
        self._connection_probe: Callable[[], tuple[str, str, bool]] | None = None
        self._stopping_hooks: list[Callable[[], None]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    def add_route(self, path: str, endpoint: Callable, methods: tuple[str, ...] | list[str] = ("GET",)) -> None:
        """Register `endpoint` (an async starlette endpoint) for `path` (starlette syntax)."""
        with self._lock:
            if self.state != STOPPED:
                raise RuntimeError("routes must be added before the server starts")
            if any(r.path == path and set(r.methods) & set(methods) for r in self._routes):
                raise ValueError(f"route {path} is registered twice")
            self._routes.append(_RouteSpec(path, endpoint, tuple(m.upper() for m in methods)))

    def set_queue_probe(self, probe: Callable[[], int]) -> None:
        """`/healthz` reports `probe()` as the number of pending messages."""
        self._status = probe

    def set_store_probe(self, probe: Callable[[], str | None]) -> None:
        """`/healthz` answers 503 "degraded" while `probe()` names a problem (None: fine).
        It runs in a worker thread: it may write to disk."""
        self._store_probe = probe

    def set_connection_probe(self, probe: Callable[[], tuple[str, str, bool]]) -> None:
        """`/healthz` reports the platform connection of a channel that dials out: `probe()`
        gives (state, reason, usable); 503 "degraded" while it is not usable."""
        self._connection_probe = probe

    def watch_store(self, store: Any) -> None:
        """`/healthz` answers 503 "degraded" while `store` cannot write (every channel that
        takes messages over this server calls it; None: no store to watch)."""
        if store is not None:
            from common.store.write_probe import WriteProbe

            self.set_store_probe(WriteProbe(store).problem)

    def on_stopping(self, hook: Callable[[], None]) -> None:
        """Called (in the stopping thread) once the server stops taking requests, before it
        waits for those in flight: long-lived responses (SSE) end themselves there."""
        self._stopping_hooks.append(hook)

    def _build_app(self):
        routes = [Route("/healthz", self._healthz, methods=["GET"])]
        routes += [Route(r.path, r.endpoint, methods=list(r.methods)) for r in self._routes]

        async def not_found(request: Request, exc: Exception) -> Response:
            return json_error(404, "not found")

        async def not_allowed(request: Request, exc: Exception) -> Response:
            return json_error(405, "method not allowed")

        async def crashed(request: Request, exc: Exception) -> Response:
            logger.exception(f"[http] {request.method} {request.url.path} failed")
            return json_error(500, "internal error")

        async def gone(request: Request, exc: Exception) -> Response:
            # The client left (or was cut off by the body deadline) while its body was read:
            # nobody reads this answer, and it is no error of ours to log.
            return json_error(400, "the client disconnected")

        async def too_large(request: Request, exc: Exception) -> Response:
            return json_error(413, f"request body larger than {self.max_body} bytes")

        app = Starlette(routes=routes, exception_handlers={
            404: not_found, 405: not_allowed, _BodyTooLarge: too_large, ClientDisconnect: gone, Exception: crashed,
        })
        return _BodyLimit(app, self.max_body)

    async def _healthz(self, request: Request) -> Response:
        queue = 0
        if self._status is not None:
            try:
                queue = int(self._status())
            except Exception:
                queue = -1
        body: dict[str, Any] = {"state": self.state, "channel": self.channel, "queue": queue}
        if self._connection_probe is not None:
            try:
                connection, reason, usable = self._connection_probe()
            except Exception as e:  # noqa: BLE001 - a broken probe is a problem too
                connection, reason, usable = "unknown", f"the connection probe failed: {e}", False
            body["connection"] = connection
            if not usable:
                body["connection_reason"] = reason
                if self.state == RUNNING:
                    body["state"] = DEGRADED
        if self.state == RUNNING and self._store_probe is not None:
            try:
                problem = await run_in_threadpool(self._store_probe)
            except Exception as e:  # noqa: BLE001 - a broken probe is a problem too
                problem = f"the store probe failed: {e}"
            if problem:
                body.update(state=DEGRADED, store=problem)
        return JSONResponse(body, status_code=200 if body["state"] == RUNNING else 503)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> "HttpServer":
        with self._lock:
            if self.state != STOPPED:
                return self
            self.state = STARTING
        try:
            self._sock = _listen(self.host, self.port)
        except HttpServerError:
            self.state = STOPPED
            raise
        self.port = self._sock.getsockname()[1]
        wanted = self.guard.max_connections
        self.guard.max_connections = connection_cap(wanted, raise_fd_limit())
        if self.guard.max_connections < wanted:
            logger.warning(
                f"[http] at most {self.guard.max_connections} connections at once, not {wanted} "
                "(http_max_connections): the process may not open more files; raise its limit (ulimit -n)"
            )
        config = uvicorn.Config(
            self._build_app(), http=self.guard.protocol_class(), log_level="warning", access_log=False, lifespan="off",
            timeout_keep_alive=5, timeout_graceful_shutdown=None, server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # older uvicorn; the daemon owns signals
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as e:  # noqa: BLE001 - reported to start() or logged
                failure.append(e)
                if ready.is_set():
                    logger.error(f"[http] server on {self.host}:{self.port} ended: {e!r}")
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        if failure or not self._server.started:
            self.state = STOPPED
            self._close_sock()
            reason = failure[0] if failure else "timed out"
            raise HttpServerError(f"HTTP server on {self.host}:{self.port} did not start: {reason}")
        self.state = RUNNING
        logger.info(f"[http] listening on {self.host}:{self.port}")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        server = self._server
        task = asyncio.ensure_future(server.serve(sockets=[self._sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        ready.set()
        await task

    def mark_stopping(self) -> None:
        """`/healthz` answers 503 from now on; requests are still served."""
        with self._lock:
            if self.state == RUNNING:
                self.state = STOPPING

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking connections, end long-lived responses, let requests in flight finish
        for up to `timeout` seconds, then end the server thread."""
        with self._lock:
            if self.state == STOPPED or self._server is None:
                self.state = STOPPED
                return
            self.state = STOPPING
        for hook in self._stopping_hooks:
            try:
                hook()
            except Exception as e:
                logger.error(f"[http] stopping hook failed: {e}")
        server = self._server
        server.config.timeout_graceful_shutdown = max(0.1, float(timeout))
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout + 5)
            if self._thread.is_alive():
                server.force_exit = True
                self._thread.join(2)
        self._close_sock()
        self.state = STOPPED
        with _registry_lock:
            if _servers.get((self.host, self.port)) is self:
                del _servers[(self.host, self.port)]
        logger.info(f"[http] server on {self.host}:{self.port} stopped")

    def _close_sock(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio turns on TCP_NODELAY for accepted connections
    # only when the listening socket says so. Without it every keep-alive response waited
    # ~40 ms for the client's delayed ACK (measured with bench/web.py: p50 44 ms -> ~1 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # SO_REUSEADDR lets a restarted daemon bind while old connections sit in TIME_WAIT;
    # on Windows it would let two servers share a port, so it is POSIX only.
    if hasattr(socket, "SO_REUSEPORT") or not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            raise HttpServerError(f"port {port} on {host} is already in use; free it or choose another port") from None
        raise HttpServerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


# (host, port) -> the server: the one registry, so two channels share one server per port.
_servers: dict[tuple[str, int], HttpServer] = {}
_registry_lock = threading.Lock()


def shared_server(host: str, port: int, **kwargs: Any) -> HttpServer:
    """The server for host:port, created on first use (with `http_max_connections` unless
    `max_connections` is given)."""
    with _registry_lock:
        server = _servers.get((host, port))
        if server is None:
            if "max_connections" not in kwargs:
                kwargs["max_connections"] = int(conf().get("http_max_connections"))
            server = HttpServer(host, port, **kwargs)
            if port:
                _servers[(host, port)] = server
        return server
