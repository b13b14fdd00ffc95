"""Which Coze conversation each chat session is in, kept in the state store.

The same records and rules as the Dify bot's (bot/dify/dify_session.py), in a namespace of
their own: Coze keeps the history, the bot remembers per session the ``conversation_id``,
the Coze ``user_id`` it belongs to and how many user messages went into it, so a restart
(even ``kill -9``) continues the same conversation. ``coze_conversation_max_messages``
(N > 0) starts a new conversation after N user messages, as in the original, which kept
all this in memory and lost it on every restart.
"""
from __future__ import annotations

from bot.dify.dify_session import DifySession, DifySessionManager

NAMESPACE = "coze_session"

# One record shape for both bots; the name says what it is here.
CozeSession = DifySession


class CozeSessionManager(DifySessionManager):
    namespace = NAMESPACE
    max_messages_setting = "coze_conversation_max_messages"
    tag = "[COZE]"
