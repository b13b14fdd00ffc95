"""Per-user data that plugins mutate in place, kept durable without a clean stop.

The original returns a plain dict from `conf().get_user_data(user)` and pickles all
of them only from the signal handler, so a crash loses every change. Plugins
written for it do `conf().get_user_data(u)["k"] = v`, so the returned object must
stay a dict that is changed in place. A flusher thread therefore compares each
recently fetched user's dict with what was last written and saves what changed,
every `FLUSH_INTERVAL` seconds, in one store transaction. Only users fetched in the
last `WATCH_SECONDS` are compared, so the cost does not grow with the number of
users; direct writes (`d[k] = v`) on a dict the book handed out mark the entry dirty
at once. A stop or an explicit save (`conf().save_user_datas()`) compares every user,
so a change made long after the fetch, or to a plain dict a plugin stored itself
(`conf().user_datas[u] = {...}`, kept as that very object as in the original), is
saved then at the latest, as the original's save-on-stop did.

`conf().user_datas` is the book's table itself ({user: dict}, as in the original):
adding, replacing or removing a user there is saved (or deleted) the same way.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

from common.log import logger

FLUSH_INTERVAL = 0.25
WATCH_SECONDS = 30.0


class UserData(dict):
    """A dict that notices its own direct changes (nested changes are found by comparison)."""

    __slots__ = ("_book", "_user")

    def __init__(self, book: "UserDataBook", user: str, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._book = book
        self._user = user

    def _touch(self) -> None:
        book = self._book
        if book is not None:
            book.mark_dirty(self._user)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._touch()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._touch()

    def pop(self, *args: Any) -> Any:
        result = super().pop(*args)
        self._touch()
        return result

    def popitem(self) -> Any:
        result = super().popitem()
        self._touch()
        return result

    def clear(self) -> None:
        super().clear()
        self._touch()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._touch()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        result = super().setdefault(key, default)
        self._touch()
        return result

    def __reduce__(self):  # copy/pickle as a plain dict
        return (dict, (dict(self),))


_MISSING = object()


class UserDatas(dict):
    """{user: dict}, the book's table as plugins see it (`conf().user_datas`).

    Every change goes through the book, so it reaches the state store; reading a
    user counts as fetching it (its nested changes are then looked for). A dict
    stored here is kept as it is, so a plugin holding it keeps changing the
    user's data, as in the original."""

    def __init__(self, book: "UserDataBook") -> None:
        super().__init__()
        self._book = book

    def __getitem__(self, user: Any) -> dict:
        return self._book.fetch(user)

    def get(self, user: Any, default: Any = None) -> Any:
        try:
            return self._book.fetch(user)
        except KeyError:
            return default

    def __contains__(self, user: object) -> bool:
        return dict.__contains__(self, self._book._key(user))

    def __setitem__(self, user: Any, value: dict) -> None:
        self._book.put(user, value)

    def __delitem__(self, user: Any) -> None:
        self._book.remove(user)

    def pop(self, user: Any, default: Any = _MISSING) -> Any:
        try:
            return self._book.remove(user)
        except KeyError:
            if default is _MISSING:
                raise
            return default

    def popitem(self) -> tuple[str, dict]:
        with self._book._lock:
            if not dict.__len__(self):
                raise KeyError("popitem(): no user data")
            user = next(reversed(dict.keys(self)))
            return user, self._book.remove(user)

    def setdefault(self, user: Any, default: Any = None) -> Any:
        with self._book._lock:
            if user in self:
                return self[user]
            self[user] = {} if default is None else default
            return self[user]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for user, value in dict(*args, **kwargs).items():
            self[user] = value

    def clear(self) -> None:
        self._book.replace_all({})

    def __reduce__(self):  # copy/pickle as a plain dict
        return (dict, (dict(dict.items(self)),))


def _serialise(data: dict) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


class UserDataBook:
    """All users' data in memory, written through to a StateStore when one is attached."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.data: UserDatas = UserDatas(self)
        self._store = None
        self._saved: dict[str, str] = {}  # user -> JSON last written
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()  # users removed since the last flush
        self._watched: dict[str, float] = {}  # user -> monotonic time of last fetch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Users whose data a thread fetched or changed since it called track() (see flush_tracked).
        self._tracked = threading.local()

    @staticmethod
    def _key(user: Any) -> str:
        return user if isinstance(user, str) else str(user)

    def get(self, user: Any) -> dict:
        key = self._key(user)
        with self._lock:
            entry = dict.get(self.data, key)
            if entry is None:
                entry = UserData(self, key)
                dict.__setitem__(self.data, key, entry)
            self._watched[key] = time.monotonic()
            self._note(key)
            return entry

    def fetch(self, user: Any) -> dict:
        """The user's data (watched for nested changes); KeyError when there is none."""
        key = self._key(user)
        with self._lock:
            entry = dict.get(self.data, key)
            if entry is None:
                raise KeyError(user)
            self._watched[key] = time.monotonic()
            self._note(key)
            return entry

    def put(self, user: Any, value: dict) -> None:
        """Set a user's whole data (saved at the next flush)."""
        if not isinstance(value, dict):
            raise TypeError(f"user data of {user!r} must be a dict, got {type(value).__name__}")
        key = self._key(user)
        with self._lock:
            dict.__setitem__(self.data, key, value)
            self._deleted.discard(key)
            self._dirty.add(key)
            self._watched[key] = time.monotonic()
            self._note(key)
        self._wake.set()

    def remove(self, user: Any) -> dict:
        """Forget a user's data (deleted from the store at the next flush); KeyError when absent."""
        key = self._key(user)
        with self._lock:
            if not dict.__contains__(self.data, key):
                raise KeyError(user)
            entry = dict.pop(self.data, key)
            self._deleted.add(key)
            self._dirty.discard(key)
            self._watched.pop(key, None)
        self._wake.set()
        return entry

    def replace_all(self, datas: dict) -> None:
        """Make `datas` every user's data (`conf().user_datas = {...}`)."""
        if not isinstance(datas, dict):
            raise TypeError(f"user_datas must be a dict of dicts, got {type(datas).__name__}")
        for user, value in datas.items():
            if not isinstance(value, dict):
                raise TypeError(f"user data of {user!r} must be a dict, got {type(value).__name__}")
        with self._lock:
            new_keys = {self._key(user) for user in datas}
            for key in [k for k in dict.keys(self.data) if k not in new_keys]:
                self.remove(key)
            for user, value in list(datas.items()):
                self.put(user, value)

    @property
    def store(self):
        return self._store

    def peek(self, user: Any) -> dict | None:
        """The user's data if there is any, without creating an entry."""
        return dict.get(self.data, self._key(user))

    def mark_dirty(self, user: str) -> None:
        with self._lock:
            self._dirty.add(user)
        self._note(user)
        self._wake.set()

    def attach(self, store: Any) -> None:
        """Use `store` from now on: load what it holds (merged under anything set already)."""
        with self._lock:
            self._store = store
            self._merge(store.load_user_datas())
        self.start_autoflush()

    def load(self) -> None:
        if self._store is not None:
            with self._lock:
                self._merge(self._store.load_user_datas())

    def _merge(self, stored: dict[str, dict]) -> None:
        for user, values in stored.items():
            entry = dict.get(self.data, user)
            if entry is None:
                entry = UserData(self, user)
                dict.__setitem__(self.data, user, entry)
            for k, v in values.items():
                dict.setdefault(entry, k, v)
            self._saved[user] = _serialise(values)

    def import_datas(self, imported: dict[str, dict]) -> int:
        """Add users from an old user_datas.pkl; existing values win. Returns users added."""
        added = 0
        with self._lock:
            for user, values in imported.items():
                entry = self.get(user)
                for k, v in values.items():
                    if k not in entry:
                        dict.__setitem__(entry, k, v)
                        added += 1
                self._dirty.add(user)
        self.flush()
        return added

    # -------------------------------------------------- per-message durability
    # The flusher saves changes within FLUSH_INTERVAL; a message whose handling changed a user's
    # data must not be marked answered before that change is saved, or a kill -9 in between
    # would lose the change while the message counts as done. The pipeline therefore calls
    # track() before handling a message and flush_tracked() before marking it done: only the
    # users that handling touched are compared, so the cost does not grow with the user count.
    def _note(self, key: str) -> None:
        touched = getattr(self._tracked, "users", None)
        if touched is not None:
            touched.add(key)

    def track(self) -> None:
        """Start noting, for this thread, the users whose data is fetched or changed."""
        self._tracked.users = set()

    def flush_tracked(self) -> int:
        """Save now what changed for the users noted since track() on this thread; stop noting."""
        users = getattr(self._tracked, "users", None)
        self._tracked.users = None
        if not users:
            return 0
        return self.flush(only=users)

    def flush(self, everyone: bool = False, only: set[str] | None = None) -> int:
        """Write every changed user in one transaction. Returns how many were written.

        `everyone` compares all users, not only the recently fetched ones (at a stop);
        `only` compares just those users (flush_tracked)."""
        with self._lock:
            if self._store is None:
                return 0
            deleted = self._delete_removed()
            if only is not None:
                candidates = set(only)
            else:
                now = time.monotonic()
                candidates = set(self._dirty)
                if everyone:
                    candidates.update(dict.keys(self.data))
                for user, seen in list(self._watched.items()):
                    if now - seen > WATCH_SECONDS:
                        del self._watched[user]
                    candidates.add(user)
            changed: dict[str, dict] = {}
            snapshots: dict[str, str] = {}
            for user in candidates:
                entry = dict.get(self.data, user)
                if entry is None:
                    continue
                try:
                    text = _serialise(entry)
                except (TypeError, ValueError) as e:
                    logger.warning(f"[UserData] data of user {user} cannot be saved: {e}")
                    continue
                if user not in self._saved and not entry:
                    continue  # fetched but never written: nothing worth a row
                if self._saved.get(user) != text:
                    changed[user] = json.loads(text)
                    snapshots[user] = text
            self._dirty.difference_update(candidates)
            if not changed:
                return deleted
            try:
                self._store.save_user_datas(changed)
            except Exception as e:  # keep them dirty and try again next time
                self._dirty.update(changed)
                logger.error(f"[UserData] saving user data failed, will retry: {e}")
                return 0
            self._saved.update(snapshots)
            return len(changed) + deleted

    def _delete_removed(self) -> int:
        """Delete the removed users from the store (lock held); those that fail stay for the next flush."""
        done = 0
        for user in list(self._deleted):
            try:
                self._store.delete_user_data(user)
            except Exception as e:
                logger.error(f"[UserData] deleting the data of user {user} failed, will retry: {e}")
                continue
            self._deleted.discard(user)
            self._saved.pop(user, None)
            done += 1
        return done

    def start_autoflush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="user-data-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            # Let a burst of writes land before saving them together.
            time.sleep(0.02)
            try:
                self.flush()
            except Exception as e:  # the flusher must never die
                logger.error(f"[UserData] flush error: {e}")

    def close(self) -> None:
        """Final flush and stop the flusher (the store stays open; its owner closes it)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.flush(everyone=True)
