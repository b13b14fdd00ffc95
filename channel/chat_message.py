"""The platform-neutral message a channel adapter builds from a platform event.

Field names are the original's: third-party plugins read them.
- from_user / to_user: who sent it and who received it (in a group, from is the group).
- other_user: the other side of the conversation from the bot's point of view
  (the group in a group chat, the person in a private chat).
- actual_user: in a group, the member who actually wrote the message.
- my_msg: the bot's own account sent it.
- content: text, or a file path for media (filled by ``prepare()``).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from common.masking import mask_command


class ChatMessage:
    msg_id = None
    create_time = None

    ctype = None
    content = None

    from_user_id = None
    from_user_nickname = None
    to_user_id = None
    to_user_nickname = None
    other_user_id = None
    other_user_nickname = None
    my_msg = False
    self_display_name = None

    is_group = False
    is_at = False
    actual_user_id = None
    actual_user_nickname = None
    at_list = None

    _prepare_fn: Callable[[], Any] | None = None
    _prepared = False
    _rawmsg = None

    # Guards the creation of each message's own lock: subclasses written for the original
    # (its channels and third-party copies) do not call super().__init__().
    _lock_guard = threading.Lock()

    def __init__(self, _rawmsg: Any = None):
        self._rawmsg = _rawmsg

    def _get_prepare_lock(self) -> threading.Lock:
        lock = self.__dict__.get("_prepare_lock")
        if lock is None:
            with ChatMessage._lock_guard:
                lock = self.__dict__.get("_prepare_lock")
                if lock is None:
                    lock = self.__dict__["_prepare_lock"] = threading.Lock()
        return lock

    def prepare(self) -> None:
        """Run the lazy download once, even when two threads ask at once."""
        with self._get_prepare_lock():
            if self._prepare_fn and not self._prepared:
                self._prepared = True
                self._prepare_fn()

    def __str__(self) -> str:
        return (
            "ChatMessage: id={}, create_time={}, ctype={}, content={}, from_user_id={}, "
            "from_user_nickname={}, to_user_id={}, to_user_nickname={}, other_user_id={}, "
            "other_user_nickname={}, is_group={}, is_at={}, actual_user_id={}, "
            "actual_user_nickname={}, at_list={}".format(
                self.msg_id, self.create_time, self.ctype, mask_command(self.content), self.from_user_id,
                self.from_user_nickname, self.to_user_id, self.to_user_nickname, self.other_user_id,
                self.other_user_nickname, self.is_group, self.is_at, self.actual_user_id,
                self.actual_user_nickname, self.at_list,
            )
        )
