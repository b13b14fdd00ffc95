"""Downloads of URLs that come from an answer or a message (images and files a bot links to,
IMAGE_URL / VIDEO_URL replies).

Such a URL is chosen by whoever wrote the answer or the message, so a download:

* is refused when the host resolves to an address that is not public (loopback, private,
  link-local, multicast, reserved...; checked with :mod:`ipaddress`), unless the host is
  named in ``allowed_internal_hosts`` or is the host of ``dify_api_base`` (often on a LAN).
  The connection goes to the very address that was checked (no second DNS lookup that a
  rebinding server could answer differently), and every redirect (at most
  :data:`MAX_REDIRECTS`) is checked the same way;
* ends after ``download_timeout`` seconds in total, however slowly the server trickles
  (:class:`common.deadline.Deadline`), and after ``max_bytes`` bytes;
* takes one of a limited number of slots: at most half the worker threads download at once.
  Past that a download fails at once with :class:`FetchBusy`, so slow servers can never hold
  the whole worker pool; callers then send the link as text.

Every failure is a :class:`FetchError` whose message says what happened; callers fall back to
sending the link. Downloads connect directly (no proxy): a proxy would resolve the name itself,
and the address check would mean nothing.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from common.deadline import Deadline
from common.log import logger
from common.masking import mask_urls
from config import conf

__all__ = [
    "FetchError", "FetchRefused", "FetchBusy", "FetchTooLarge", "FetchTimeout", "FetchHTTPError",
    "fetch_bytes", "fetch_with_headers", "fetch_to_file", "check_url", "download_slots_in_use",
]

MAX_REDIRECTS = 5
CONNECT_TIMEOUT = 10.0
_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_HEADERS = {"User-Agent": "dify-on-wechat", "Accept": "*/*", "Accept-Encoding": "identity"}


class FetchError(Exception):
    """A download failed; the message says why (never sent to users, who get the link)."""


class FetchRefused(FetchError):
    """The URL is not fetched: not http(s), or its host is an internal address."""


class FetchBusy(FetchError):
    """Every download slot is taken: the caller sends the link instead of waiting."""


class FetchTooLarge(FetchError):
    def __init__(self, size: int, limit: int, url: str = "") -> None:
        super().__init__(f"{mask_urls(url)}: {size} bytes or more, over the {limit} byte limit")
        self.size = size
        self.limit = limit


class FetchTimeout(FetchError):
    """No connection, or the whole download took longer than ``download_timeout``."""


class FetchHTTPError(FetchError):
    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"{mask_urls(url)} answered HTTP {status}")
        self.status = status


# --- where a URL may go -------------------------------------------------------------------------

def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class _Allowed:
    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def host(self, host: str) -> bool:
        return _normal_host(host) in self.names

    def address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def _allowed(extra_hosts: Iterable[str]) -> _Allowed:
    """allowed_internal_hosts (names, addresses or networks such as 10.0.0.0/8), the host of
    dify_api_base, and ``extra_hosts`` (e.g. the api base of a per-chat Dify app)."""
    entries = list(conf().get("allowed_internal_hosts") or [])
    dify_host = urlsplit(str(conf().get("dify_api_base") or "")).hostname
    entries += [h for h in (dify_host, *extra_hosts) if h]
    names, networks = set(), []
    for entry in entries:
        entry = _normal_host(str(entry))
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
        names.add(entry)
    return _Allowed(frozenset(names), tuple(networks))


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # the request target: path and query
    addresses: tuple[str, ...]  # resolved and checked, in the resolver's order

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str, extra_hosts: Iterable[str] = ()) -> _Target:
    """Resolve ``url``'s host and check every address; FetchRefused when it may not be fetched."""
    allowed = _allowed(extra_hosts)
    return _target(url, allowed)


def _target(url: str, allowed: _Allowed) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchRefused(f"not a valid URL: {mask_urls(url)} ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https links are fetched, not {scheme or 'a relative link'}: {mask_urls(url)}")
    host = _normal_host(parts.hostname or "")
    if not host:
        raise FetchRefused(f"no host in {mask_urls(url)}")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as e:
        raise FetchError(f"cannot resolve {host}: {e}") from None
    addresses: list[str] = []
    host_allowed = allowed.host(host)
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        address = ipaddress.ip_address(text)
        if not (host_allowed or _is_public(address) or allowed.address(address)):
            raise FetchRefused(
                f"{mask_urls(url)} points to the internal address {address}; "
                f"add {host} to allowed_internal_hosts to allow it"
            )
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(scheme, host, port, path, tuple(addresses))


# --- how many at once ---------------------------------------------------------------------------

class _Slots:
    """At most half the worker threads (at least one) download at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0

    @staticmethod
    def limit() -> int:
        return max(1, int(conf().get("worker_threads") or 8) // 2)

    def take(self, url: str) -> None:
        with self._lock:
            if self.active >= self.limit():
                raise FetchBusy(f"{self.active} downloads are running already; not fetching {mask_urls(url)}")
            self.active += 1

    def give_back(self) -> None:
        with self._lock:
            self.active -= 1


_slots = _Slots()  # shared by every caller: the limit is on the process's worker pool


def download_slots_in_use() -> int:
    return _slots.active


# --- the download ---------------------------------------------------------------------------------

def fetch_bytes(url: str, max_bytes: int, *, extra_hosts: Iterable[str] = (), timeout: float | None = None) -> tuple[bytes, str]:
    """(the body, its Content-Type) of ``url``; FetchError on any failure."""
    data, headers = fetch_with_headers(url, max_bytes, extra_hosts=extra_hosts, timeout=timeout)
    return data, headers.get("Content-Type", "")


def fetch_with_headers(url: str, max_bytes: int, *, extra_hosts: Iterable[str] = (),
                       timeout: float | None = None) -> tuple[bytes, Mapping[str, str]]:
    """(the body, the response headers) of ``url`` (a file's name is in its Content-Disposition)."""
    data = bytearray()
    headers = _fetch(url, max_bytes, data.extend, extra_hosts, timeout)
    return bytes(data), headers


def fetch_to_file(url: str, path: str, max_bytes: int, *, extra_hosts: Iterable[str] = (),
                  timeout: float | None = None) -> tuple[int, str]:
    """Write ``url``'s body to ``path``: (its size, its Content-Type). On failure the
    partial file is removed and FetchError raised."""
    size = 0
    try:
        with open(path, "wb") as f:
            def write(block: bytes) -> None:
                nonlocal size
                f.write(block)
                size += len(block)

            content_type = _fetch(url, max_bytes, write, extra_hosts, timeout).get("Content-Type", "")
    except BaseException:
        try:
            os.remove(path)
        except OSError:
            pass
        raise
    return size, content_type


def _fetch(url: str, max_bytes: int, write: Callable[[bytes], None], extra_hosts: Iterable[str],
           timeout: float | None) -> Mapping[str, str]:
    allowed = _allowed(extra_hosts)
    target = _target(url, allowed)  # refusals need no slot
    seconds = float(timeout if timeout is not None else conf().get("download_timeout") or 0) or None
    _slots.take(url)
    try:
        with Deadline(seconds) as deadline:
            try:
                return _follow(url, target, allowed, max_bytes, write, deadline)
            except FetchError:
                raise
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if deadline.expired:
                    raise FetchTimeout(f"{mask_urls(url)}: not done within download_timeout ({seconds:g} s)") from None
                if isinstance(e, urllib3.exceptions.NewConnectionError):
                    raise FetchError(f"{mask_urls(url)}: cannot connect: {e}") from None
                if isinstance(e, (urllib3.exceptions.TimeoutError, socket.timeout)):
                    raise FetchTimeout(f"{mask_urls(url)}: timed out: {e}") from None
                raise FetchError(f"{mask_urls(url)}: {e}") from None
            except (ValueError, http.client.HTTPException) as e:
                # http.client refuses a path with control characters, a malformed status line...
                raise FetchError(f"{mask_urls(url)}: {e}") from None
    finally:
        _slots.give_back()


def _follow(url: str, target: _Target, allowed: _Allowed, max_bytes: int, write: Callable[[bytes], None],
            deadline: Deadline) -> Mapping[str, str]:
    for hop in range(MAX_REDIRECTS + 1):
        conn, response = _open(target, deadline)
        try:
            if response.status in _REDIRECTS and response.headers.get("Location"):
                if hop == MAX_REDIRECTS:
                    raise FetchError(f"{mask_urls(url)}: more than {MAX_REDIRECTS} redirects")
                url = urljoin(url, response.headers["Location"])
                logger.debug(f"[fetch] redirected to {mask_urls(url)}")
                target = _target(url, allowed)  # every hop is checked again
                continue
            if response.status != 200:
                raise FetchHTTPError(response.status, url)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(int(declared), max_bytes, url)
            size = 0
            for block in response.stream(_CHUNK):
                size += len(block)
                if size > max_bytes:
                    raise FetchTooLarge(size, max_bytes, url)
                write(block)
            return response.headers
        finally:
            response.release_conn()
            conn.close()
    raise AssertionError("unreachable")


def _open(target: _Target, deadline: Deadline) -> tuple[HTTPConnection, urllib3.HTTPResponse]:
    """Connect to the checked address (the first that answers) and send the GET."""
    last_error: Exception | None = None
    for address in target.addresses:
        timeout = deadline.cap(CONNECT_TIMEOUT)
        if target.scheme == "https":
            conn: HTTPConnection = HTTPSConnection(
                address, target.port, timeout=timeout, server_hostname=target.host,
                assert_hostname=target.host, cert_reqs="CERT_REQUIRED", ca_certs=_ca_certs(),
            )
        else:
            conn = HTTPConnection(address, target.port, timeout=timeout)
        try:
            conn.connect()
        except (OSError, urllib3.exceptions.HTTPError) as e:
            conn.close()
            last_error = e
            continue
        except ValueError as e:  # urllib3's CertificateError: the certificate names another host
            conn.close()
            raise FetchError(f"https://{target.host_header}: {e}") from None
        deadline.attach(conn.sock)
        conn.timeout = deadline.cap(None)  # reads: the watchdog ends them at the deadline anyway
        try:
            conn.request("GET", target.path, headers={**_HEADERS, "Host": target.host_header},
                         preload_content=False, decode_content=True)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise
    assert last_error is not None
    raise last_error


def _ca_certs() -> str | None:
    try:
        import certifi  # requests' CA bundle: the same trust as every other HTTPS call

        return certifi.where()
    except ImportError:
        return None
