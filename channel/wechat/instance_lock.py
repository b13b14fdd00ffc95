"""One daemon per WeChat login (DESIGN §4): the login lives in the state store of `appdata_dir`, and
two daemons polling it would split the user's messages between them. A lock file in that folder,
held with the operating system's file lock, which is released when the process ends however it
ends (a kill -9 included), so a stale lock never blocks a restart. Only "someone else holds it"
reads as another daemon; a folder that cannot be written is said to be that."""
from __future__ import annotations

import errno
import os

# What the OS answers when another process holds the lock (flock: EWOULDBLOCK/EAGAIN; Windows'
# locking: EACCES, or EDEADLOCK once its retries ran out).
_HELD = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


class AlreadyRunning(Exception):
    pass


class LockUnavailable(Exception):
    """The lock file cannot be opened or locked for another reason than another holder."""


class InstanceLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file = None

    def acquire(self) -> None:
        """Raises AlreadyRunning when another process holds the lock, LockUnavailable when the
        lock file cannot be made (an unwritable or missing appdata_dir)."""
        try:
            handle = open(self.path, "a+b")
        except OSError as e:
            raise LockUnavailable(f"cannot create the lock file {self.path} ({e.strerror or e}); "
                                  f"check that appdata_dir exists and can be written") from None
        try:
            if os.name == "nt":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            if e.errno in _HELD:
                raise AlreadyRunning(self.path) from None
            raise LockUnavailable(f"cannot lock {self.path} ({e.strerror or e})") from None
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        try:
            if os.name == "nt":
                import msvcrt

                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass  # closing below releases it anyway
        finally:
            self._file.close()
            self._file = None
