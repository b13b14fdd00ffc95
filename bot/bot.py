"""The interface every chat bot implements."""
from __future__ import annotations

from typing import Any, Mapping

from bridge.context import Context
from bridge.reply import Reply


class Bot:
    """A chat bot: turns a query (and the context it came with) into a Reply.

    Subclasses override :meth:`reply`. They may return ``None`` when there is
    nothing to send (the channel then sends nothing), and may raise: the
    Bridge turns any exception into a short ERROR reply for the user.
    """

    def reply(self, query: str, context: Context = None) -> Reply:
        raise NotImplementedError

    @classmethod
    def settings_problem(cls, settings: Mapping[str, Any]) -> str | None:
        """Why this bot cannot work with `settings`, in one line that names the setting to
        fix, or None. App start-up asks, so a missing key stops the daemon at once instead
        of failing every question."""
        return None
