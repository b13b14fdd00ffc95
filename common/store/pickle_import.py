"""One-time import of the original's ``user_datas.pkl``.

This is the only production module allowed to touch pickle. It never hands
file bytes to the stock ``pickle.load``/``pickle.loads``: unpickling can call
any importable function (``os.system`` included), so everything goes through
``RestrictedUnpickler``, whose ``find_class`` refuses every global. Plain
dict/list/tuple/str/int/float/bool/None/bytes are built by opcodes alone and
need no global, so the original's ``{user: {setting: value}}`` loads fine while
any object, class or callable is refused before it can be created.
"""
from __future__ import annotations

import json
import pickle
from typing import Any, NoReturn

from common.store.base import StoreError


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global at all."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def import_user_datas_pickle(path: str) -> dict[str, dict]:
    """Read an old ``user_datas.pkl`` safely; returns ``{user: data}`` ready for ``save_user_datas``."""
    try:
        with open(path, "rb") as f:
            data: Any = RestrictedUnpickler(f).load()
    except OSError as exc:
        raise StoreError(f"cannot read the old user data file {path}: {exc}") from exc
    except pickle.UnpicklingError as exc:
        raise StoreError(
            f"refusing to import {path}: it needs code to load ({exc}); user_datas.pkl of the "
            f"original holds only plain dicts, so this file is not one (or was tampered with)"
        ) from exc
    except Exception as exc:  # truncated or garbage files raise all sorts of errors
        raise StoreError(f"cannot import {path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc

    if not isinstance(data, dict):
        raise StoreError(
            f"refusing to import {path}: expected a dict of users at the top level, got {type(data).__name__}"
        )
    result: dict[str, dict] = {}
    for user, user_data in data.items():
        if not isinstance(user_data, dict):
            raise StoreError(
                f"refusing to import {path}: the data of user {user!r} is a "
                f"{type(user_data).__name__}, expected a dict"
            )
        # The store keeps JSON; check here so a bad value names its user
        # instead of failing later inside save_user_datas.
        try:
            json.dumps(user_data)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"refusing to import {path}: the data of user {user!r} is not plain data ({exc})") from exc
        result[str(user)] = user_data
    return result
