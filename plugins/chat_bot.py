"""What bundled plugins need from the chat bot: its session manager, its name, and a way
to answer in its place. (A module, not a folder, so plugin scanning never imports it.)"""
from __future__ import annotations

from typing import Any

from bridge.bridge import Bridge
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins.event import EventAction, EventContext


def chat_sessions(plugin: str, need_prompt: bool = False) -> Any:
    """The chat bot's session manager, or None when the bot keeps no sessions (or, with
    `need_prompt`, cannot hold a system prompt per session)."""
    try:
        bot = Bridge().get_bot("chat")
    except Exception as e:  # the Bridge reports bad bot settings on the next answer
        logger.warning(f"[{plugin}] no chat bot: {e}")
        return None
    sessions = getattr(bot, "sessions", None)
    if not callable(getattr(sessions, "clear_session", None)):
        return None
    if need_prompt and not callable(getattr(sessions, "build_session", None)):
        return None
    return sessions


def chat_bot_type() -> str:
    try:
        return str(Bridge().get_bot_type("chat"))
    except Exception:
        return "?"


def answer(e_context: EventContext, rtype: ReplyType, text: str) -> None:
    """Answer instead of the bot and stop the chain."""
    e_context["reply"] = Reply(rtype, text)
    e_context.action = EventAction.BREAK_PASS
