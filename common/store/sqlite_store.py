"""SQLite StateStore: the embedded default, one file ``<appdata_dir>/state.db``.

Durability choices:
- WAL journal: readers never block the writer and a commit is one append to
  the -wal file.
- ``synchronous=NORMAL`` (the default here): in WAL mode a COMMIT has written
  the WAL into the OS before it returns, so a process crash or ``kill -9``
  loses nothing committed (DESIGN §4 asks for exactly that; tested by a real
  kill -9). Only an OS crash or power cut can roll back the last commits; the
  file stays consistent either way. FULL adds an fsync per commit: measured
  with bench/store.py (Linux, ext4) ~0.15-0.2 ms per write against ~0.02 ms,
  and since every message writes a dedup key on the platform's thread,
  bench/pipeline.py fell from ~28,000 to ~3,200 messages/s with a 30 ms p50
  under load. `SQLiteStore(path, synchronous="FULL")` remains available. Since
  issue 11 an accepted message also costs an inbox add (one transaction with its
  dedup key) and a delete once answered: bench/store.py "inbox_add+done".
- Autocommit connection (``isolation_level=None``) with explicit
  ``BEGIN IMMEDIATE``/``COMMIT`` around multi-statement writes: the write lock
  is taken up front, so a read-then-write (``seen``, ``pop_all``) is atomic even
  against another process sharing the file, and can never fail half-way with a
  lock-upgrade deadlock.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from common.log import logger
from common.store.base import (
    Clock,
    DedupKey,
    InboxItem,
    StateStore,
    StoreError,
    check_inbox_item,
    check_key,
    check_ttl,
    decode,
    encode,
    encode_users,
)

SCHEMA_VERSION = 3
SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
# Another process (a second instance, a backup tool) may hold the write lock
# briefly; wait for it rather than fail the user's message.
BUSY_TIMEOUT_MS = 10_000

_SCHEMA_V1 = (
    """CREATE TABLE user_data (
        user TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE kv (
        namespace  TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE seen (
        namespace  TEXT NOT NULL,
        key        TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX seen_expires ON seen (expires_at)",
    # The integer primary key grows monotonically, which is what gives FIFO order.
    """CREATE TABLE queue (
        id        INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        key       TEXT NOT NULL,
        value     TEXT NOT NULL
    )""",
    "CREATE INDEX queue_key ON queue (namespace, key, id)",
)
# v2: the inbox of accepted messages not yet answered. AUTOINCREMENT: an id is never
# reused, even after the newest item is deleted, so id order stays acceptance order
# across restarts.
_SCHEMA_V2 = (
    """CREATE TABLE inbox (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        session TEXT NOT NULL,
        record  TEXT NOT NULL,
        created REAL NOT NULL
    )""",
    "CREATE INDEX inbox_channel ON inbox (channel, id)",
)
# v3: whether a reply to an inbox item went out already (InboxItem.replied).
_SCHEMA_V3 = ("ALTER TABLE inbox ADD COLUMN replied TEXT",)
_OUR_TABLES = {"user_data", "kv", "seen", "queue", "inbox"}


def check_not_truncated(path: str) -> None:
    """Refuse an existing state file of 0 bytes, or a -wal file without its database.

    SQLite would take either for a new, empty database and write a fresh schema: every
    user's data would be gone without a word, and the -wal file (which may still hold the
    last commits) replaced. Checked before SQLite touches anything, so the files stay as
    they are."""
    wal = path + "-wal"
    if not os.path.lexists(path) and os.path.isfile(wal) and os.path.getsize(wal) > 0:
        # SQLite would start a new database and could replay these pages into it.
        raise StoreError(
            f"the state store {path} is missing but {os.path.basename(wal)} (its last commits) is there. "
            f"Nothing was changed. Put the database back (or restore it from a backup), or move "
            f"{os.path.basename(wal)} aside to start with empty state."
        )
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # absent (a first start) or unreadable (the open then says why)
    if size == 0 and os.path.isfile(path):
        kept = f" and {os.path.basename(wal)}" if os.path.exists(wal) else ""
        raise StoreError(
            f"the state store {path} is empty (0 bytes): it was truncated, and starting would "
            f"lose every user's data. Nothing was changed. Stop the bot and restore the file{kept} "
            f"from a backup (python app.py --backup-state makes one), or move it{kept} aside to "
            f"start with empty state."
        )


class SQLiteStore(StateStore):
    def __init__(self, path: str, clock: Clock = time.time, synchronous: str = "NORMAL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        self.path = os.path.abspath(path)
        self.synchronous = synchronous
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.journal_mode = ""

        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {parent} for the state store: {exc}") from exc

        check_not_truncated(self.path)
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            self._prepare(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        self._conn = conn
        try:
            purged = self.purge_expired()
        except StoreError:
            self.close()
            raise
        logger.info(
            "[store] state store %s opened (schema v%d, journal=%s, synchronous=%s, %d expired rows purged)",
            self.path, SCHEMA_VERSION, self.journal_mode, self.synchronous, purged,
        )

    # -- opening ------------------------------------------------------------------
    def _open_error(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"cannot open the state store {self.path}: {exc}. The file is unreadable or not an "
            f"SQLite database (corrupt?). Nothing was changed. Check its permissions, or stop the "
            f"bot and restore the file from a backup, or move it aside (with its -wal and -shm files, "
            f"if any) to start with empty state."
        )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The first real read: a file that is not a database fails here, before
        # anything is written to it.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreError(
                f"the state store {self.path} is corrupt ({'; '.join(problems[:3])}). Nothing was "
                f"changed. Stop the bot and restore the file from a backup, or move it aside to "
                f"start with empty state."
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the state store {self.path} has schema version {version}, newer than this program "
                f"understands ({SCHEMA_VERSION}). Upgrade the program, or point appdata_dir elsewhere."
            )
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        self.journal_mode = mode
        if mode != "wal":
            # Some network file systems cannot do WAL; the rollback journal is
            # still transactional, only slower, so warn instead of refusing.
            logger.warning("[store] %s: WAL journal unavailable, using %s", self.path, mode)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        if version < SCHEMA_VERSION:
            self._migrate(conn, version)

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                tables = {
                    row[0]
                    for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
                if tables:
                    # Refuse to add our tables to somebody else's database.
                    raise StoreError(
                        f"{self.path} is an SQLite database but not a state store (it holds tables "
                        f"{', '.join(sorted(tables))}). Point appdata_dir elsewhere or move the file aside."
                    )
                for statement in _SCHEMA_V1:
                    conn.execute(statement)
            if version < 2:
                for statement in _SCHEMA_V2:
                    conn.execute(statement)
            if version < 3:
                for statement in _SCHEMA_V3:
                    conn.execute(statement)
            # Later schema versions add their steps here, one `if version < N` each.
            # PRAGMA user_version is transactional, so the schema and its
            # version number land together or not at all.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- plumbing -----------------------------------------------------------------
    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the state store {self.path} is closed")
        return self._conn

    @contextmanager
    def _locked(self, op: str) -> Iterator[sqlite3.Connection]:
        # For reads and single-statement writes (autocommit makes a single
        # statement its own transaction). One connection is shared by all
        # threads; the lock serialises its use.
        with self._lock:
            conn = self._require_open()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"state store {self.path}: {op} failed: {exc}") from exc

    @contextmanager
    def _write(self, op: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._require_open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error is the one worth reporting
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"state store {self.path}: {op} failed: {exc}") from exc
                raise

    # -- user data ----------------------------------------------------------------
    def load_user_datas(self) -> dict[str, dict]:
        with self._locked("load_user_datas") as conn:
            rows = conn.execute("SELECT user, data FROM user_data").fetchall()
        return {user: decode(data) for user, data in rows}

    def save_user_datas(self, changed: dict[str, dict]) -> None:
        encoded = encode_users(changed)
        if not encoded:
            return
        with self._write("save_user_datas") as conn:
            # OR REPLACE rather than ON CONFLICT: same effect on this two-column
            # table, and it works on the older SQLite some Linux Pythons link.
            conn.executemany("INSERT OR REPLACE INTO user_data (user, data) VALUES (?, ?)", encoded.items())

    def delete_user_data(self, user: str) -> None:
        check_key("user", user)
        with self._write("delete_user_data") as conn:
            conn.execute("DELETE FROM user_data WHERE user = ?", (user,))

    # -- key/value ------------------------------------------------------------------
    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._locked("get") as conn:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, self._clock()),
            ).fetchone()
        return default if row is None else decode(row[0])

    def put(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl)
        text = encode(value)
        # A single statement is its own transaction in autocommit mode.
        with self._locked("put") as conn:
            expires_at = None if ttl is None else self._clock() + ttl
            conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)",
                (namespace, key, text, expires_at),
            )

    def delete(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._write("delete") as conn:
            row = conn.execute(
                "SELECT expires_at FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
            return row[0] is None or row[0] > self._clock()

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        check_key("namespace", namespace)
        with self._locked("items") as conn:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE namespace = ? "
                "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
                (namespace, self._clock()),
            ).fetchall()
        return [(key, decode(value)) for key, value in rows]

    def clear(self, namespace: str) -> int:
        check_key("namespace", namespace)
        with self._write("clear") as conn:
            live = conn.execute(
                "SELECT COUNT(*) FROM kv WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, self._clock()),
            ).fetchone()[0]
            conn.execute("DELETE FROM kv WHERE namespace = ?", (namespace,))
            return live

    # -- dedup ------------------------------------------------------------------------
    def seen(self, namespace: str, key: str, ttl: float) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl, required=True)
        # One upsert statement is its own transaction, so check-and-record is atomic
        # across threads and processes: it changes a row only when the key is new
        # or its old record has expired, and the change count says which.
        with self._locked("seen") as conn:
            now = self._clock()
            cursor = conn.execute(
                "INSERT INTO seen (namespace, key, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE seen.expires_at <= ?",
                (namespace, key, now + ttl, now),
            )
            return cursor.rowcount == 0

    def is_seen(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._locked("is_seen") as conn:
            row = conn.execute(
                "SELECT 1 FROM seen WHERE namespace = ? AND key = ? AND expires_at > ?",
                (namespace, key, self._clock()),
            ).fetchone()
        return row is not None

    # -- inbox --------------------------------------------------------------------------
    def inbox_add(self, channel: str, session: str, record: Any, dedup: DedupKey | None = None) -> int | None:
        check_inbox_item(channel, session, dedup)
        text = encode(record)
        # One transaction: the dedup key exists exactly when its message is in the inbox (or
        # was answered), so a crash between the two can never leave a key that blocks a retry.
        with self._write("inbox_add") as conn:
            now = self._clock()
            if dedup is not None:
                cursor = conn.execute(
                    "INSERT INTO seen (namespace, key, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (namespace, key) DO UPDATE SET expires_at = excluded.expires_at "
                    "WHERE seen.expires_at <= ?",
                    (dedup.namespace, dedup.key, now + dedup.ttl, now),
                )
                if cursor.rowcount == 0:
                    return None
            cursor = conn.execute(
                "INSERT INTO inbox (channel, session, record, created) VALUES (?, ?, ?, ?)",
                (channel, session, text, now),
            )
            return int(cursor.lastrowid)

    def inbox_mark(self, item_id: int, replied: str) -> bool:
        check_key("replied", replied)
        with self._locked("inbox_mark") as conn:
            return conn.execute("UPDATE inbox SET replied = ? WHERE id = ?", (replied, int(item_id))).rowcount > 0

    def inbox_done(self, item_id: int) -> bool:
        with self._locked("inbox_done") as conn:
            return conn.execute("DELETE FROM inbox WHERE id = ?", (int(item_id),)).rowcount > 0

    def inbox_items(self, channel: str) -> list[InboxItem]:
        check_key("channel", channel)
        with self._locked("inbox_items") as conn:
            rows = conn.execute(
                "SELECT id, session, record, created, replied FROM inbox WHERE channel = ? ORDER BY id", (channel,)
            ).fetchall()
        return [InboxItem(item_id, channel, session, decode(record), created, replied)
                for item_id, session, record, created, replied in rows]

    def inbox_count(self, channel: str | None = None) -> int:
        with self._locked("inbox_count") as conn:
            if channel is None:
                return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
            check_key("channel", channel)
            return conn.execute("SELECT COUNT(*) FROM inbox WHERE channel = ?", (channel,)).fetchone()[0]

    # -- queues -------------------------------------------------------------------------
    def push(self, namespace: str, key: str, value: Any) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        text = encode(value)
        with self._locked("push") as conn:
            conn.execute(
                "INSERT INTO queue (namespace, key, value) VALUES (?, ?, ?)", (namespace, key, text)
            )

    def pop_all(self, namespace: str, key: str) -> list:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._write("pop_all") as conn:
            rows = conn.execute(
                "SELECT id, value FROM queue WHERE namespace = ? AND key = ? ORDER BY id",
                (namespace, key),
            ).fetchall()
            if rows:
                conn.execute(
                    "DELETE FROM queue WHERE namespace = ? AND key = ? AND id <= ?",
                    (namespace, key, rows[-1][0]),
                )
        return [decode(value) for _, value in rows]

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self) -> int:
        with self._write("purge_expired") as conn:
            now = self._clock()
            removed = conn.execute(
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount
            removed += conn.execute("DELETE FROM seen WHERE expires_at <= ?", (now,)).rowcount
            return removed

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                logger.warning("[store] closing %s: %s", self.path, exc)
