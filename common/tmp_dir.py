"""The runtime scratch folder ``./tmp/`` (relative to the working directory, as
in the original, because channels and plugins build paths with
``TmpDir().path() + name``)."""
from __future__ import annotations

import os
import uuid

TMP_DIR = "./tmp/"


class TmpDir:
    def __init__(self) -> None:
        # exist_ok: several threads may create it at the same moment.
        os.makedirs(TMP_DIR, exist_ok=True)

    def path(self) -> str:
        """The folder, with a trailing slash, so ``path() + name`` works."""
        return TMP_DIR


def unique_tmp_path(suffix: str = "") -> str:
    """A fresh file name in tmp/, e.g. ``./tmp/<32 hex>.mp3`` for ``suffix=".mp3"``.

    Names derived from message ids or URLs collide when two messages arrive
    together (and may carry hostile characters); a uuid never does. The suffix
    is appended verbatim and must not contain a path separator.
    """
    if "/" in suffix or "\\" in suffix or "\x00" in suffix:
        raise ValueError(f"suffix must be a plain file-name ending, got {suffix!r}")
    return TmpDir().path() + uuid.uuid4().hex + suffix
