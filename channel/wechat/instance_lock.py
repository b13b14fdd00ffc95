"""One daemon per WeChat login (DESIGN §4): the login lives in the state store of `appdata_dir`, and
two daemons polling it would split the user's messages between them. A lock file in that folder,
held with the operating system's file lock, which is released when the process ends however it
ends (a kill -9 included), so a stale lock never blocks a restart. Only "someone else holds it"
reads as another daemon; a folder that cannot be written is said to be that.

With `state_store: redis`, instances on other machines (or with other folders) share the login
through Redis, so the lock is also taken there: a lease under redis_key_prefix, held while the
daemon runs and renewed by a thread. Its owner is this host and appdata_dir, so a daemon restarted
after a kill -9 on the same folder takes its lease back at once (the file lock already keeps two
processes of one folder apart), while another instance waits until the lease runs out (LEASE_TTL
seconds after the holder stopped renewing it)."""
from __future__ import annotations

import errno
import os
import socket
import threading

from common.log import logger

# What the OS answers when another process holds the lock (flock: EWOULDBLOCK/EAGAIN; Windows'
# locking: EACCES, or EDEADLOCK once its retries ran out).
_HELD = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


# The Redis lease runs out this long after its holder stopped renewing it (a host that died).
LEASE_TTL = 30.0


class AlreadyRunning(Exception):
    """Another daemon holds the lock. str(): who holds it; `advice`: how to run this one anyway."""

    def __init__(self, holder: str, advice: str = "give this one its own appdata_dir") -> None:
        super().__init__(holder)
        self.advice = advice


class LockUnavailable(Exception):
    """The lock file cannot be opened or locked for another reason than another holder."""


def _shared_store():
    """The state store when instances share it (Redis), else None."""
    from config import conf

    store = conf().state_store
    return store if hasattr(store, "take_lease") else None


class InstanceLock:
    def __init__(self, path: str, lease_ttl: float = LEASE_TTL) -> None:
        self.path = path
        self._file = None
        self.lease_ttl = lease_ttl
        self._store = None
        self._lease = os.path.basename(path)
        self._owner = f"{socket.gethostname()}:{os.path.dirname(os.path.abspath(path))}"
        self._stop_renewing = threading.Event()

    def acquire(self) -> None:
        """Raises AlreadyRunning when another process holds the lock, LockUnavailable when the
        lock file cannot be made (an unwritable or missing appdata_dir) or Redis cannot be asked."""
        self._acquire_file()
        store = _shared_store()
        if store is None:
            return
        try:
            holder = store.take_lease(self._lease, self._owner, self.lease_ttl)
        except Exception as e:  # noqa: BLE001 - a StoreError: Redis cannot be reached
            self._release_file()
            raise LockUnavailable(f"cannot take the lock {self._lease} in Redis: {e}") from None
        if holder != self._owner:
            self._release_file()
            raise AlreadyRunning(f"the instance on {holder} holds its lock {store.lease_key(self._lease)} in Redis",
                                 "give this one its own redis_key_prefix")
        self._store = store
        self._stop_renewing.clear()
        threading.Thread(target=self._renew, name=f"lock-{self._lease}", daemon=True).start()

    def _renew(self) -> None:
        # A third of the lease: two renewals may fail (Redis restarting) before it runs out.
        lost = False
        while not self._stop_renewing.wait(self.lease_ttl / 3):
            try:
                holder = self._store.take_lease(self._lease, self._owner, self.lease_ttl)
            except Exception as e:  # noqa: BLE001 - Redis away for a moment: try again
                logger.warning(f"[lock] cannot renew the lock {self._lease} in Redis: {e}")
                continue
            if holder != self._owner and not lost:
                logger.error(f"[lock] the lock {self._lease} in Redis was taken by the instance on {holder} "
                             f"while this one could not renew it: two daemons may now serve one login; stop one")
            lost = holder != self._owner

    def _acquire_file(self) -> None:
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
                raise AlreadyRunning(f"it holds {self.path}") from None
            raise LockUnavailable(f"cannot lock {self.path} ({e.strerror or e})") from None
        self._file = handle

    def release(self) -> None:
        self._stop_renewing.set()
        store, self._store = self._store, None
        if store is not None:
            try:
                store.release_lease(self._lease, self._owner)
            except Exception as e:  # noqa: BLE001 - it runs out by itself
                logger.warning(f"[lock] cannot give back the lock {self._lease} in Redis ({e}); "
                               f"it runs out in {self.lease_ttl:g} s")
        self._release_file()

    def _release_file(self) -> None:
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


def take_account_lock(lock_file: str, login: str = "WeChat") -> InstanceLock:
    """Take the account lock `lock_file` (in appdata_dir) at a channel's start-up; a lock that is
    held or cannot be taken stops start-up with the channel's one-line error."""
    from channel.channel_factory import ChannelError  # the factory imports the channels
    from config import get_appdata_dir

    lock = InstanceLock(os.path.join(get_appdata_dir(), lock_file))
    try:
        lock.acquire()
    except AlreadyRunning as e:
        raise ChannelError(f"another daemon is running with this {login} login ({e}); stop it first, "
                           f"or {e.advice}") from None
    except LockUnavailable as e:
        raise ChannelError(str(e)) from None
    return lock
