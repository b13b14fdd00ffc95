"""What bundled plugins need from the chat bot: its session manager, its name, and a way
to answer in its place. (A module, not a folder, so plugin scanning never imports it.)"""
from __future__ import annotations

from typing import Any

from bot.session_manager import session_ttl
from bridge.bridge import Bridge
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common.expired_dict import ExpiredDict
from common.log import logger
from config import conf
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


def session_state() -> ExpiredDict:
    """Per-session plugin state that ends with the bot session it belongs to."""
    return ExpiredDict(session_ttl())


def text_command(context: Context) -> tuple[str, str, str] | None:
    """(first word, the rest stripped, plugin_trigger_prefix) of a non-empty TEXT message;
    None for anything else."""
    content = context.content
    if context.type != ContextType.TEXT or not isinstance(content, str) or not content.strip():
        return None
    words = content.split(maxsplit=1)
    return words[0], (words[1].strip() if len(words) > 1 else ""), conf().get("plugin_trigger_prefix", "$")


def answer(e_context: EventContext, rtype: ReplyType, text: str) -> None:
    """Answer instead of the bot and stop the chain."""
    e_context["reply"] = Reply(rtype, text)
    e_context.action = EventAction.BREAK_PASS
