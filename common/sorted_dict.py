"""A dict that iterates in the order of a sort key computed from each entry.

Third-party plugins see ``PluginManager().plugins`` as one of these (highest priority
first) and some import the class themselves, so the interface is the original's:
``SortedDict(sort_func=lambda k, v: k, init_dict=None, reverse=False)``, iteration,
``keys()`` and ``items()`` in sorted order, and ``_update_heap(key)`` to re-sort one
entry after something its sort key reads has changed in place.

The sort key of an entry is computed when the entry is set (or ``_update_heap``-ed),
not at every iteration: a plugin class whose ``priority`` attribute changes keeps its
place until the manager re-sorts it, as in the original. Ties are ordered by the key
itself (reversed with ``reverse=True``), as the original's ``(sort value, key)`` pairs are.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping


class SortedDict(dict):
    def __init__(
        self,
        sort_func: Callable[[Any, Any], Any] = lambda k, v: k,
        init_dict: Mapping | Iterable[tuple[Any, Any]] | None = None,
        reverse: bool = False,
    ) -> None:
        super().__init__()
        self.sort_func = sort_func
        self.reverse = reverse
        self._sort_values: dict[Any, Any] = {}
        self.sorted_keys: list | None = None
        pairs = init_dict.items() if isinstance(init_dict, Mapping) else (init_dict or [])
        for key, value in pairs:
            self[key] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._sort_values[key] = self.sort_func(key, value)
        self.sorted_keys = None

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        del self._sort_values[key]
        self.sorted_keys = None

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        super().clear()
        self._sort_values.clear()
        self.sorted_keys = None

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # dict.update would bypass __setitem__ and leave the new keys without a sort value.
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def _update_heap(self, key: Any) -> None:
        """Recompute the sort value of ``key`` (its value changed in place)."""
        if key in self:
            value = self.sort_func(key, self[key])
            if value != self._sort_values.get(key):
                self._sort_values[key] = value
                self.sorted_keys = None

    def keys(self) -> list:  # type: ignore[override]
        if self.sorted_keys is None:
            pairs = sorted(((v, k) for k, v in self._sort_values.items()), reverse=self.reverse)
            self.sorted_keys = [k for _, k in pairs]
        return list(self.sorted_keys)

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> list:  # type: ignore[override]
        return [self[k] for k in self.keys()]

    def __iter__(self) -> Iterator:
        return iter(self.keys())

    def copy(self) -> "SortedDict":
        return SortedDict(self.sort_func, self.items(), self.reverse)

    def __repr__(self) -> str:
        order = "descending" if self.reverse else "ascending"
        return f"<SortedDict {order} by {getattr(self.sort_func, '__name__', 'sort_func')}: {dict(self.items())}>"
