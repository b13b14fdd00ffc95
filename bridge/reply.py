"""What a bot or plugin answers with."""
from __future__ import annotations

from enum import Enum
from typing import Any


class ReplyType(Enum):
    TEXT = 1  # text
    VOICE = 2  # path of an audio file
    IMAGE = 3  # a file-like object holding an image
    IMAGE_URL = 4
    VIDEO_URL = 5
    FILE = 6  # path of a file
    CARD = 7
    INVITE_ROOM = 8
    INFO = 9
    ERROR = 10
    TEXT_ = 11  # "forced" text: sent as is
    VIDEO = 12
    MINIAPP = 13
    ACCEPT_FRIEND = 19

    def __str__(self) -> str:
        return self.name


class Reply:
    def __init__(self, type: ReplyType = None, content: Any = None):
        self.type = type
        self.content = content

    def __str__(self) -> str:
        return "Reply(type={}, content={})".format(self.type, self.content)

    __repr__ = __str__
