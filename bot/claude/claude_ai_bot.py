"""``model: claude`` (bot type ``claude``): the original's client of the claude.ai web page,
logged in with ``claude_api_cookie`` and ``claude_uuid``.

That web client is retired: claude.ai's internal endpoints changed and are closed to
bots, so it cannot work whatever the settings. Start-up stops with a line that says so
and names the replacement: Claude through Anthropic's API (bot type ``claudeAPI``), chosen
by a ``model`` starting with ``claude-3`` or by ``bot_type: claudeAPI``, with
``claude_api_key``. A plugin that still asks for this bot gets the same text as its reply.
"""
from __future__ import annotations

from typing import Any

from bot.bot import Bot
from bridge.bridge import is_chinese
from bridge.context import Context
from bridge.reply import Reply, ReplyType

RETIRED = ("bot type 'claude' (model or bot_type 'claude': the claude.ai web client with claude_api_cookie) is retired and "
           "cannot work any more: use Claude through Anthropic's API instead, with bot_type 'claudeAPI' "
           "(or a model starting with 'claude-3') and your key in claude_api_key")
RETIRED_ZH = ("模型 claude（网页版 Claude，使用 claude_api_cookie）已停用，无法再使用：请改用 Anthropic API，"
              "把 bot_type 设为 claudeAPI（或 model 设为 claude-3 开头的模型），并在 claude_api_key 中填写 API Key。")


class ClaudeAIBot(Bot):
    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        return RETIRED

    def reply(self, query: str, context: Context = None) -> Reply:
        return Reply(ReplyType.ERROR, RETIRED_ZH if is_chinese(query) else RETIRED)
