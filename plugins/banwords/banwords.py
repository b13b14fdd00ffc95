# encoding:utf-8
"""Banwords: keeps banned words out of what users send and what the bot answers.

Words: one per line in ``banwords.txt`` in this folder (copy banwords.txt.template),
or in the file named by ``words_file`` (relative to this folder, or absolute). Blank
lines are skipped; matching ignores case. Without the file the plugin logs it and
stays off.

Settings (plugins/config.json entry "banwords" or plugins/banwords/config.json):

* ``action`` for incoming TEXT and IMAGE_CREATE messages: "ignore" (default) drops
  the message without a word; "replace" answers with an INFO message showing the
  text with the banned words masked, and the bot is not asked.
* ``reply_filter`` (default true): also check the bot's text replies, with
  ``reply_action`` "ignore" (default: the reply is not sent) or "replace" (the banned
  words are masked in the reply, which is sent).
"""
from __future__ import annotations

import os

import plugins
from bridge.bridge import is_chinese
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins import Event, EventAction, EventContext, Plugin

from .word_matcher import WordMatcher

ACTIONS = ("ignore", "replace")
DEFAULT_WORDS_FILE = "banwords.txt"


@plugins.register(
    name="Banwords",
    desire_priority=100,
    hidden=True,
    desc="Filters banned words in messages and replies",
    version="1.1",
    author="dify-on-wechat",
)
class Banwords(Plugin):
    def __init__(self):
        super().__init__()
        self.matcher: WordMatcher | None = None
        try:
            config = self.load_config()
        except Exception as e:
            logger.error(f"[Banwords] cannot read the settings, plugin stays off: {e}")
            return
        if config is None:
            config = {}
        if not isinstance(config, dict):
            logger.error(f"[Banwords] settings must be a JSON object, got {type(config).__name__}; plugin stays off")
            return
        self.action = self._choice(config, "action", "ignore")
        self.reply_filter = bool(config.get("reply_filter", True))
        self.reply_action = self._choice(config, "reply_action", "ignore")
        if self.action is None or self.reply_action is None:
            return
        words_path = self._words_path(config.get("words_file") or DEFAULT_WORDS_FILE)
        try:
            with open(words_path, "r", encoding="utf-8-sig") as f:
                matcher = WordMatcher(line for line in f)
        except FileNotFoundError:
            logger.warning(f"[Banwords] word list {words_path} not found (copy banwords.txt.template); plugin stays off")
            return
        except (OSError, UnicodeDecodeError) as e:
            logger.error(f"[Banwords] cannot read word list {words_path}: {e}; plugin stays off")
            return
        if not len(matcher):
            logger.warning(f"[Banwords] word list {words_path} is empty; plugin stays off")
            return
        self.matcher = matcher
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        if self.reply_filter:
            self.handlers[Event.ON_DECORATE_REPLY] = self.on_decorate_reply
        logger.info(
            f"[Banwords] inited: {len(matcher)} word(s), action={self.action}, "
            f"reply_filter={self.reply_filter}, reply_action={self.reply_action}"
        )

    @staticmethod
    def _choice(config: dict, key: str, default: str) -> str | None:
        value = config.get(key, default)
        if value not in ACTIONS:
            logger.error(f"[Banwords] {key} must be one of {', '.join(ACTIONS)}, got {value!r}; plugin stays off")
            return None
        return value

    def _words_path(self, name: str) -> str:
        if os.path.isabs(name):
            return name
        folder = getattr(self, "path", None) or os.path.dirname(os.path.abspath(__file__))
        return os.path.join(folder, name)

    # ------------------------------------------------------------------ events
    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        if context.type not in (ContextType.TEXT, ContextType.IMAGE_CREATE) or not isinstance(context.content, str):
            return
        content = context.content
        found = self.matcher.find_first(content)
        if found is None:
            return
        logger.info(f"[Banwords] banned word in a message of session {context.get('session_id')}")
        logger.debug(f"[Banwords] the banned word: {found!r}")
        if self.action == "replace":
            masked = self.matcher.mask(content)
            if is_chinese(content):
                text = f"消息中含有不允许使用的词语，请修改后重新发送：\n{masked}"
            else:
                text = f"Your message contains words that are not allowed; please rephrase it:\n{masked}"
            e_context["reply"] = Reply(ReplyType.INFO, text)
        # "ignore": the reply stays empty, so nothing is sent and the bot is not asked.
        e_context.action = EventAction.BREAK_PASS

    def on_decorate_reply(self, e_context: EventContext) -> None:
        reply = e_context["reply"]
        if reply is None or reply.type != ReplyType.TEXT or not isinstance(reply.content, str):
            return
        found = self.matcher.find_first(reply.content)
        if found is None:
            return
        context = e_context["context"]
        logger.info(f"[Banwords] banned word in a reply to session {context.get('session_id')}")
        logger.debug(f"[Banwords] the banned word: {found!r}")
        if self.reply_action == "ignore":
            e_context["reply"] = None
            e_context.action = EventAction.BREAK_PASS
        else:
            # Masked in place: the reply stays TEXT, so the usual decoration (the @ of
            # the member in a group, prefixes, voice) still applies.
            reply.content = self.matcher.mask(reply.content)

    def get_help_text(self, **kwargs) -> str:
        return "过滤消息和回复中的违禁词。\nFilters banned words in messages and replies."
