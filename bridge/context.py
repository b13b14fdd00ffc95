"""What a channel hands to plugins and bots: one incoming event and its facts."""
from __future__ import annotations

from enum import Enum
from typing import Any

from common.masking import mask_command, mask_value


class ContextType(Enum):
    TEXT = 1
    VOICE = 2
    IMAGE = 3
    FILE = 4
    VIDEO = 5
    SHARING = 6
    EMOJI = 7
    IMAGE_CREATE = 10
    ACCEPT_FRIEND = 19
    JOIN_GROUP = 20
    PATPAT = 21
    FUNCTION = 22
    EXIT_GROUP = 23
    NON_USER_MSG = 30
    STATUS_SYNC = 51

    def __str__(self) -> str:
        return self.name


class Context:
    """A dict-like record: ``type`` and ``content`` are attributes, the rest lives in ``kwargs``.

    Plugins written for the original read and write it both ways
    (``context["type"]`` and ``context.type``), so both are kept.
    """

    def __init__(self, type: ContextType = None, content: Any = None, kwargs: dict | None = None):
        self.type = type
        self.content = content
        self.kwargs = kwargs if kwargs is not None else {}

    def __contains__(self, key: str) -> bool:
        if key == "type":
            return self.type is not None
        if key == "content":
            return self.content is not None
        return key in self.kwargs

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type
        if key == "content":
            return self.content
        return self.kwargs[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "type":
            self.type = value
        elif key == "content":
            self.content = value
        else:
            self.kwargs[key] = value

    def __delitem__(self, key: str) -> None:
        if key == "type":
            self.type = None
        elif key == "content":
            self.content = None
        else:
            del self.kwargs[key]

    def __str__(self) -> str:
        # Contexts are logged; user data copied into them may hold API keys.
        shown = {k: mask_value(k, v) for k, v in self.kwargs.items()}
        return "Context(type={}, content={}, kwargs={})".format(self.type, mask_command(self.content), shown)

    __repr__ = __str__
