# encoding:utf-8
"""The events plugins listen to, and what a listener answers.

Names and values are the original's: third-party plugins compare and store them.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

# `from plugins import *` hands these to third-party plugins; Enum was exported by the
# original too, and some plugins use it without importing it.
__all__ = ["Event", "EventAction", "EventContext", "Enum"]


class Event(Enum):
    ON_RECEIVE_MESSAGE = 1
    """A message arrived. e_context: {"channel", "context"}. Setting context to None drops it."""

    ON_HANDLE_CONTEXT = 2
    """Before the bot is asked. e_context: {"channel", "context", "reply"} (reply starts empty)."""

    ON_DECORATE_REPLY = 3
    """A reply exists and is about to be decorated. e_context: {"channel", "context", "reply"}."""

    ON_SEND_REPLY = 4
    """The reply is about to be sent. e_context: {"channel", "context", "reply"}."""

    # AFTER_SEND_REPLY = 5 is only sketched in the original; no channel emits it.


class EventAction(Enum):
    CONTINUE = 1  # the next plugin gets the event, then the default logic runs
    BREAK = 2  # no further plugin gets the event; the default logic still runs
    BREAK_PASS = 3  # no further plugin gets the event and the default logic is skipped


class EventContext:
    """One event on its way through the plugins: a dict of facts plus the action so far.

    ``e_context["reply"]`` style access goes to the dict, as in the original.
    """

    def __init__(self, event: Event, econtext: dict | None = None):
        self.event = event
        # The original's default was one dict shared by every EventContext built
        # without an argument; each gets its own here.
        self.econtext = econtext if econtext is not None else {}
        self.action = EventAction.CONTINUE

    def __getitem__(self, key: str) -> Any:
        return self.econtext[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.econtext[key] = value

    def __delitem__(self, key: str) -> None:
        del self.econtext[key]

    def __contains__(self, key: str) -> bool:
        return key in self.econtext

    def get(self, key: str, default: Any = None) -> Any:
        return self.econtext.get(key, default)

    @property
    def breaked_by(self) -> str | None:
        """Upper-case name of the plugin that broke the chain (kept in the dict, as the original does)."""
        return self.econtext.get("breaked_by")

    def is_pass(self) -> bool:
        return self.action == EventAction.BREAK_PASS

    def is_break(self) -> bool:
        return self.action == EventAction.BREAK or self.action == EventAction.BREAK_PASS

    def __repr__(self) -> str:
        return f"EventContext(event={self.event}, action={self.action}, econtext={self.econtext})"
