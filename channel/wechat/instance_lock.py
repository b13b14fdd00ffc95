"""One daemon per WeChat login (DESIGN §4): the login lives in the state store of `appdata_dir`, and
two daemons polling it would split the user's messages between them. A lock file in that folder,
held with the operating system's file lock, which is released when the process ends however it
ends (a kill -9 included), so a stale lock never blocks a restart."""
from __future__ import annotations

import os


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file = None

    def acquire(self) -> None:
        """Raises AlreadyRunning when another process holds the lock."""
        handle = open(self.path, "a+b")
        try:
            if os.name == "nt":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise AlreadyRunning(self.path) from None
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases its lock
            self._file = None
