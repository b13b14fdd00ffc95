"""Connection limits for the shared HTTP server: what uvicorn's httptools protocol lacks.

- A request head must arrive within `head_timeout` seconds of the connection (or of its
  first byte on a kept-alive connection); else the connection is closed. A client that
  trickles its head (slowloris) or opens a socket and says nothing holds no descriptor
  for longer than that.
- A request head (request line and headers) may be at most `max_head` bytes: 431 and
  close. httptools itself buffers a header of any size.
- A request body must be complete within `body_timeout` seconds of its head, so a body
  trickled a byte at a time cannot hold a connection (and a request task) for ever.
- At most `max_connections` connections at once. When a new one would pass the cap, the
  connection that has waited longest for its request head (idle keep-alive included) is
  closed to make room, so idle sockets can never lock new users out; only when every
  connection is busy with a request is the newcomer refused (503).

`raise_fd_limit()` lifts the process's soft descriptor limit towards the hard one (POSIX).
"""
from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.log import logger

HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 10000
# Descriptors kept for everything that is not a client connection (the state database,
# logs, calls to Dify and the platforms, plugin files).
FD_RESERVE = 256


@dataclass
class ConnectionGuard:
    """The limits of one server and its table of connections waiting for a request head."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    head_timeout: float = HEAD_TIMEOUT
    max_head: int = MAX_HEAD
    body_timeout: float = BODY_TIMEOUT
    # protocol -> monotonic time it began waiting; insertion order is waiting order.
    waiting: OrderedDict = field(default_factory=OrderedDict, repr=False)
    evicted: int = 0
    refused: int = 0
    timed_out: int = 0
    body_timed_out: int = 0
    too_large: int = 0

    def start_waiting(self, protocol: "GuardedProtocol") -> None:
        self.waiting.pop(protocol, None)
        self.waiting[protocol] = time.monotonic()

    def stop_waiting(self, protocol: "GuardedProtocol") -> None:
        self.waiting.pop(protocol, None)

    def make_room(self, newcomer: "GuardedProtocol", connections: int) -> bool:
        """Close the longest-waiting connections until `connections` fits the cap. False
        when none can go (every other connection is serving a request)."""
        while connections > self.max_connections:
            victim = next((p for p in self.waiting if p is not newcomer), None)
            if victim is None:
                return False
            self.waiting.pop(victim)
            victim.close_quietly()
            self.evicted += 1
            connections -= 1
        return True

    def protocol_class(self) -> type:
        """An HttpToolsProtocol subclass bound to this guard, for uvicorn.Config(http=...)."""
        return type("GuardedProtocol", (GuardedProtocol,), {"guard": self})


class _HeadRefused(Exception):
    pass


def _error_response(status: bytes, message: str) -> bytes:
    body = json.dumps({"status": "error", "message": message}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedProtocol(HttpToolsProtocol):
    guard: ConnectionGuard  # set by ConnectionGuard.protocol_class()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer = None
        self._body_timer = None
        self._in_head = True  # between a request's first byte (or the connection) and its end of head
        self._head_bytes = 0
        self._exact_head = 0  # request line and headers of the current request, as parsed
        self._refused = False
        self._closed = False

    # -- connection
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()
        self.guard.start_waiting(self)
        if not self.guard.make_room(self, len(self.connections)):
            self.guard.refused += 1
            self.guard.stop_waiting(self)
            self._refuse(b"503 Service Unavailable", "too many connections; try again in a moment")

    def connection_lost(self, exc) -> None:
        self._closed = True
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.guard.stop_waiting(self)
        super().connection_lost(exc)

    def close_quietly(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- reading
    def data_received(self, data: bytes) -> None:
        if self._closed or self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after feeding: a read is bounded (~256 KiB), and a head that completed in
        # this read (its body following it) is not counted as head. A head that started in
        # the middle of a read is counted from the next read on; on_headers_complete
        # measures every head exactly once it is whole.
        if self._in_head and self._head_bytes > self.guard.max_head and not self.transport.is_closing():
            self.guard.too_large += 1
            self._refuse(b"431 Request Header Fields Too Large",
                         f"request head larger than {self.guard.max_head} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._exact_head = 0
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._exact_head += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._exact_head += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self.guard.stop_waiting(self)
        if self._exact_head > self.guard.max_head:
            self.guard.too_large += 1
            self._refuse(b"431 Request Header Fields Too Large", f"request head larger than {self.guard.max_head} bytes")
            # Stops the parser; uvicorn would answer 400 for it, which send_400_response skips.
            raise _HeadRefused()
        super().on_headers_complete()
        # Cancelled by on_message_complete, at once for a request without a body.
        self._body_timer = self.loop.call_later(self.guard.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            # Idle between requests (uvicorn's keep-alive timer runs): first to go when full.
            self.guard.start_waiting(self)

    # -- limits
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.guard.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.guard.timed_out += 1
            # No answer: a client this slow is gone or hostile, and writing could block.
            self.guard.stop_waiting(self)
            self.transport.close()

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            self.guard.body_timed_out += 1
            self.transport.close()  # the request sees a disconnect

    def _refuse(self, status: bytes, message: str) -> None:
        self._cancel_head_timer()
        self._in_head = False
        self._refused = True
        try:
            self.transport.write(_error_response(status, message))
        finally:
            self.transport.close()


def raise_fd_limit() -> int | None:
    """Raise the soft limit of open descriptors to the hard limit; the resulting soft limit,
    or None where there is no such limit to read (Windows)."""
    if sys.platform == "win32":
        return None
    try:
        import resource
    except ImportError:  # pragma: no cover - a POSIX without it
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # "unlimited" is refused by some kernels; a million is plenty
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:  # macOS caps at OPEN_MAX; keep what we have
            logger.debug(f"[http] could not raise the descriptor limit to {target}: {e}")
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(wanted: int, fd_limit: int | None) -> int:
    """`wanted` connections, lowered to what the descriptor limit leaves after FD_RESERVE."""
    if fd_limit is None:
        return wanted
    room = max(16, fd_limit - FD_RESERVE) if fd_limit > 2 * FD_RESERVE else max(16, fd_limit // 2)
    return min(wanted, room)
