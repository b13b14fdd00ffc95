"""Reading a `redis_url` setting without the redis package: config.py checks it at load."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

URL_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: Any) -> str | None:
    """None if `url` can be a Redis URL (redis://[[user]:password@]host[:port][/db],
    rediss:// for TLS, unix:///path.sock), else a short reason."""
    if not isinstance(url, str) or not url.strip():
        return "it is empty"
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError when not a number in range
    except ValueError as exc:
        return f"{exc} (the port must be 1-65535)"
    if parts.scheme not in URL_SCHEMES:
        return f"the scheme must be one of {', '.join(s + '://' for s in URL_SCHEMES)}"
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if not parts.hostname:
        return "it names no host"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"the database after the host must be a number, got {db!r}"
    return "the port must be 1-65535" if port == 0 else None


def safe_url(url: str) -> str:
    """`url` with its password hidden, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<a Redis URL that cannot be read>"
