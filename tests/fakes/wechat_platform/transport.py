"""One HTTP request with a hard deadline, as the platform's callback pusher makes it (reference §1.5).

The deadline covers everything (connect, sending the body, waiting, reading the answer): at the
deadline a watchdog shuts the socket down, so the daemon sees the connection go away exactly as
it would when WeChat gives up, however it is blocked. A per-read timeout would not do: a server
that trickles bytes could keep it alive forever.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote, urlencode, urlsplit


@dataclass
class RawResponse:
    status: int  # 0 when no complete answer arrived
    body: bytes
    elapsed: float
    dropped: bool  # we cut the connection at the deadline
    error: Optional[str] = None  # a transport failure before the deadline (refused, reset, ...)
    headers: dict = field(default_factory=dict)


def with_query(url: str, query: dict) -> str:
    # quote, not quote_plus, and nothing safe: base64's '+', '/', '=' must arrive percent-encoded.
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(query, quote_via=quote, safe='')}"


def request(method: str, url: str, body: bytes = b"", deadline: float = 5.0,
            headers: Optional[dict] = None) -> RawResponse:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = time.monotonic()
    cut = threading.Event()
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=deadline + 1)
    sock_holder: list[socket.socket] = []

    def watchdog() -> None:
        cut.set()
        for sock in sock_holder:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(deadline, watchdog)
    timer.daemon = True
    timer.start()
    try:
        conn.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=deadline + 1)
        sock_holder.append(conn.sock)
        if cut.is_set():  # the deadline passed while connecting
            raise TimeoutError("deadline reached while connecting")
        send_headers = {"User-Agent": "Mozilla/4.0", "Accept": "*/*", "Connection": "close"}
        if body or method == "POST":
            send_headers["Content-Type"] = "text/xml"
        send_headers.update(headers or {})
        try:
            conn.request(method, target, body=body or None, headers=send_headers)
        except OSError as exc:
            # The server may answer (413) and close before taking a huge body: read what it said.
            response = _late_response(conn.sock, method)
            if response is None or cut.is_set():
                raise exc
        else:
            response = conn.getresponse()
        data = response.read()
        if cut.is_set():
            raise TimeoutError("deadline reached while reading")
        return RawResponse(response.status, data, time.monotonic() - start, False,
                           headers={k.lower(): v for k, v in response.getheaders()})
    except (OSError, http.client.HTTPException) as exc:
        elapsed = time.monotonic() - start
        if cut.is_set():
            return RawResponse(0, b"", elapsed, True)
        return RawResponse(0, b"", elapsed, False, error=f"{type(exc).__name__}: {exc}")
    finally:
        timer.cancel()
        conn.close()


def _late_response(sock: Optional[socket.socket], method: str) -> Optional[http.client.HTTPResponse]:
    if sock is None:
        return None
    try:
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response
    except (OSError, http.client.HTTPException):
        return None
