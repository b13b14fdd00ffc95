"""The login QR codes waiting to be scanned in this process, for a page that shows them.

A channel that logs in by QR (`wx`) puts each QR here while it waits for the scan and takes it
away when the QR expires, is replaced or the login is done; the web channel's page shows what is
here (channel/web/web_channel.py, /login/...). It is transient on purpose (a QR lives minutes and
means nothing after a restart), so it lives in memory, not in the state store.

A QR is a login credential while it lives: this holds only its picture, which nobody logs.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoginQr:
    channel: str
    serial: int  # changes with every new QR, so a page knows when to fetch the picture again
    png: bytes = field(repr=False)


class LoginQrs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._qrs: dict[str, LoginQr] = {}
        self._channels: set[str] = set()
        self._serials = itertools.count(1)

    def expect(self, channel: str) -> None:
        """`channel` may show a login QR in this process (a page then keeps looking)."""
        with self._lock:
            self._channels.add(channel)

    def show(self, channel: str, png: bytes) -> LoginQr:
        with self._lock:
            self._channels.add(channel)
            qr = self._qrs[channel] = LoginQr(channel, next(self._serials), png)
            return qr

    def withdraw(self, channel: str) -> None:
        with self._lock:
            self._qrs.pop(channel, None)

    def get(self, channel: str) -> LoginQr | None:
        with self._lock:
            return self._qrs.get(channel)

    def waiting(self) -> list[LoginQr]:
        with self._lock:
            return sorted(self._qrs.values(), key=lambda qr: qr.channel)

    def channels(self) -> list[str]:
        """The channels that log in by QR in this process (whether or not one waits now)."""
        with self._lock:
            return sorted(self._channels)


# The one board of the process (a registry, like the HTTP servers of common/http_server).
LOGIN_QRS = LoginQrs()
