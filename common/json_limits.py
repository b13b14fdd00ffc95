"""JSON from the outside, parsed with a bound on nesting.

Python's parser recurses once per level: a body like `[[[[...` a thousand deep raises
RecursionError (an internal error and a traceback), and a value a few hundred deep that
does parse makes every later walk over it (encoding, logging, storing) a risk. Nothing the
daemon accepts is deeper than a few levels, so anything past MAX_DEPTH is refused.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """The text is JSON nested deeper than allowed. The message is one line for the client."""


def loads_limited(text: str | bytes, max_depth: int = MAX_DEPTH, *, strict: bool = True) -> Any:
    """`json.loads(text)`, refusing nesting deeper than `max_depth` with JsonTooDeep (other
    invalid text raises ValueError as json.loads does). `strict=False` lets control characters
    stand in strings (json.loads' own switch)."""
    try:
        value = json.loads(text, strict=strict)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if depth(value, max_depth) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def depth(value: Any, stop_after: int | None = None) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` is 1), without recursion.
    With `stop_after`, stops counting once the depth passes it."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if stop_after is not None and deepest > stop_after:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest
