"""The runtime scratch folder ``./tmp/`` (relative to the working directory, as
in the original, because channels and plugins build paths with
``TmpDir().path() + name``), and its janitor.

Files land in tmp/ from everywhere (voice conversions, downloads, plugins) and the
original never removed most of them. The janitor deletes files older than
``tmp_max_age`` seconds, every few minutes, except the files the original's
contract keeps there (the WeCom contact and room lists, which users' scripts read)
and files someone holds (``hold``/``release``: a file the web page may still fetch).
A file open on Windows cannot be deleted and is skipped until the next sweep.
"""
from __future__ import annotations

import os
import threading
import time
import uuid

from common.allocator import return_free_memory
from common.log import logger
from config import conf

TMP_DIR = "./tmp/"


class TmpDir:
    def __init__(self) -> None:
        # exist_ok: several threads may create it at the same moment.
        os.makedirs(TMP_DIR, exist_ok=True)

    def path(self) -> str:
        """The folder, with a trailing slash, so ``path() + name`` works."""
        return TMP_DIR


# What the user is told when tmp/ cannot be written (Chinese, English).
UNWRITABLE_TEXT = ("暂时无法保存文件：tmp/ 文件夹不可写，请联系管理员。",
                   "Files cannot be saved right now: the tmp/ folder is not writable. Please tell the administrator.")


def is_tmp_write_error(error: BaseException) -> bool:
    """Whether `error` is a failure to create or write something in tmp/ (no permission,
    disk full, read-only, tmp/ not a folder), as opposed to a bug."""
    if not isinstance(error, OSError):
        return False
    top = os.path.abspath(TMP_DIR)
    for name in (error.filename, getattr(error, "filename2", None)):
        if isinstance(name, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(name))
            if path == top or path.startswith(top + os.sep):
                return True
    return False


def unique_tmp_path(suffix: str = "") -> str:
    """A fresh file name in tmp/, e.g. ``./tmp/<32 hex>.mp3`` for ``suffix=".mp3"``.

    Names derived from message ids or URLs collide when two messages arrive
    together (and may carry hostile characters); a uuid never does. The suffix
    is appended verbatim and must not contain a path separator.
    """
    if "/" in suffix or "\\" in suffix or "\x00" in suffix:
        raise ValueError(f"suffix must be a plain file-name ending, got {suffix!r}")
    try:
        TmpDir()
    except OSError:
        # Naming a file never fails: writing it will, where the failure is handled and the
        # user told (a message must not be dropped because tmp/ is broken when it arrives).
        pass
    return TMP_DIR + uuid.uuid4().hex + suffix


# Written by the wework channel at start (DESIGN §1): read by users' scripts, never expired.
# And .gitkeep, which keeps tmp/ in a git checkout: deleting it would change the checkout.
PROTECTED = frozenset({"wework_contacts.json", "wework_rooms.json", "wework_room_members.json", ".gitkeep"})
# Seconds between sweeps, at most (a short tmp_max_age sweeps more often).
SWEEP_INTERVAL = 300.0

# The one registry of files in use (absolute path -> holders), shared by every channel.
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def hold(path: str) -> None:
    """Keep `path` from the janitor until `release(path)` (calls nest)."""
    key = os.path.abspath(path)
    with _held_lock:
        _held[key] = _held.get(key, 0) + 1


def release(path: str) -> None:
    key = os.path.abspath(path)
    with _held_lock:
        count = _held.get(key, 0) - 1
        if count > 0:
            _held[key] = count
        else:
            _held.pop(key, None)


def _is_held(path: str) -> bool:
    with _held_lock:
        return os.path.abspath(path) in _held


def sweep(max_age: float, folder: str = TMP_DIR, now: float | None = None) -> tuple[int, int]:
    """Delete the files under `folder` last changed more than `max_age` seconds ago (and
    the folders they leave empty), except PROTECTED ones at its top and held ones.
    Returns (files removed, bytes freed)."""
    now = time.time() if now is None else now
    removed = freed = 0
    if not os.path.isdir(folder):
        return 0, 0
    top = os.path.abspath(folder)
    emptied: set[str] = set()  # folders this sweep removed something from
    for root, dirs, files in os.walk(top, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if (root == top and name in PROTECTED) or _is_held(path):
                continue
            try:
                info = os.lstat(path)
                if now - info.st_mtime <= max_age:
                    continue
                os.remove(path)
                removed += 1
                freed += info.st_size
                emptied.add(root)
            except OSError as e:  # gone meanwhile, open on Windows, no permission
                logger.debug(f"[tmp] could not remove {path}: {e}")
        if root != top:
            try:
                # Its mtime changed when its last file went: an old empty folder, or one emptied now.
                if not os.listdir(root) and (root in emptied or now - os.path.getmtime(root) > max_age):
                    os.rmdir(root)
                    emptied.add(os.path.dirname(root))
            except OSError:
                pass
    return removed, freed


def run_janitor(stopped: threading.Event) -> None:
    """Sweep tmp/ (and trim the allocator) now and then every few minutes until `stopped` is set."""
    while True:
        max_age = float(conf().get("tmp_max_age"))
        try:
            removed, freed = sweep(max_age)
            if removed:
                logger.info(f"[tmp] removed {removed} file(s) older than {max_age:g} s from tmp/ ({freed} bytes)")
        except Exception:  # never let a sweep end the janitor
            logger.exception("[tmp] sweeping tmp/ failed")
        return_free_memory()  # the allocator's free pages back to the system (common/allocator.py)
        if stopped.wait(min(SWEEP_INTERVAL, max(10.0, max_age / 4))):
            return
