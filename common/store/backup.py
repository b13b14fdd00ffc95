"""Online backup of the SQLite state store (`python app.py --backup-state PATH`).

SQLite's backup API copies a consistent snapshot page by page while the daemon keeps
running: in WAL mode a reader never blocks the writer, and the copy sees the database as
of one commit. Copying the file with `cp` instead can catch it mid-write, and misses
what is still in the -wal file.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass

from common.store.base import StoreError
from common.store.sqlite_store import check_not_truncated


@dataclass(frozen=True)
class BackupResult:
    path: str
    size: int


def backup_name(now: float | None = None) -> str:
    """The file name a backup gets inside a folder: state-YYYYmmdd-HHMMSS.db (local time)."""
    return time.strftime("state-%Y%m%d-%H%M%S.db", time.localtime(now))


def _target_path(source: str, target: str) -> str:
    path = os.path.abspath(target)
    if os.path.isdir(path):
        path = os.path.join(path, backup_name())
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise StoreError(f"cannot back up to {path}: the folder {folder} does not exist")
    live = {os.path.normcase(source + suffix) for suffix in ("", "-wal", "-shm", "-journal")}
    if os.path.normcase(path) in live or (os.path.exists(path) and os.path.samefile(path, source)):
        raise StoreError(f"cannot back up {source} onto itself; name another file")
    return path


def backup_state(source: str, target: str) -> BackupResult:
    """Copy the state database `source` to `target` (a file, replaced atomically if it
    exists, or a folder that gets a dated file). Raises StoreError with a one-line reason."""
    source = os.path.abspath(source)
    if not os.path.isfile(source):
        raise StoreError(f"there is no state database at {source} to back up")
    check_not_truncated(source)
    path = _target_path(source, target)
    try:
        # mode=rw: never create a database where there was none.
        src = sqlite3.connect(f"file:{_uri_path(source)}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the state database {source}: {exc}") from exc
    fd, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".partial", dir=os.path.dirname(path))
    os.close(fd)
    try:
        try:
            src.execute("PRAGMA busy_timeout = 10000")
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # all pages in one step: one consistent snapshot
                # A backup of a WAL database says "WAL" in its header; make it one
                # self-contained file instead.
                dst.execute("PRAGMA journal_mode = DELETE")
                problems = [row[0] for row in dst.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise StoreError(f"the copy of {source} does not check out ({'; '.join(problems[:3])}); "
                                     f"the state database itself may be damaged")
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise StoreError(f"backing up {source} failed: {exc}") from exc
        finally:
            src.close()
        os.replace(partial, path)
    except BaseException:
        try:
            os.remove(partial)
        except OSError:
            pass
        raise
    return BackupResult(path=path, size=os.path.getsize(path))


def _uri_path(path: str) -> str:
    # A file: URI of `path` (Windows drive letters and spaces, ? and # in names included).
    from urllib.request import pathname2url

    return pathname2url(path)
