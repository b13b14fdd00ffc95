"""The ``@singleton`` class decorator plugins and channels use."""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def singleton(cls: type[T]) -> Callable[..., T]:
    """Replace ``cls`` by a function that always returns the same instance.

    As in the original, the decorated name becomes a function (so
    ``isinstance(x, Decorated)`` does not work; use ``Decorated.__wrapped__``),
    and the arguments of the first call build the instance; later arguments are
    ignored. Unlike the original, two threads racing on the first call cannot
    build two instances.
    """
    instance: list[T] = []  # empty until built; a list so the closure can fill it
    # Re-entrant so a constructor that (indirectly) asks for another singleton
    # built by the same thread does not deadlock.
    lock = threading.RLock()

    # updated=() keeps the class __dict__ (methods, descriptors) off the function.
    @functools.wraps(cls, updated=())
    def get_instance(*args: Any, **kwargs: Any) -> T:
        if instance:  # fast path, no lock once built
            return instance[0]
        with lock:
            if not instance:
                instance.append(cls(*args, **kwargs))
            return instance[0]

    return get_instance
