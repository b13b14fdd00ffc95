# encoding:utf-8
"""Hello: group events and a few demo words.

* JOIN_GROUP: a fixed welcome (``group_welc_fixed_msg`` for that group name, else the
  global ``group_welcome_msg``), or the bot writes one: the context becomes a TEXT
  holding ``group_welc_prompt`` and the chain breaks (BREAK), so the default logic asks
  the bot with that prompt.
* EXIT_GROUP: the global ``group_exit_msg``, else (when ``group_chat_exit_group``) the
  bot answers ``group_exit_prompt``; otherwise nothing is said.
* PATPAT: the bot answers ``patpat_prompt`` (a self-introduction).
* Demo texts: "Hello" (greets you by name, no bot call), "Hi" (a reply the bot then
  replaces: BREAK keeps the default logic), "End" (turns into an image request for
  "The World").

``{nickname}`` in a prompt or fixed text is replaced by the member's nickname.
Settings: plugins/config.json entry "hello" or plugins/hello/config.json (see
config.json.template); with neither, the built-in defaults below apply.
"""
from __future__ import annotations

from typing import Any

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from config import conf
from plugins import Event, EventAction, EventContext, Plugin
from plugins.chat_bot import answer

# The original's built-in defaults had the exit and pat-pat prompts swapped (a member
# leaving made the bot introduce itself, a pat-pat accused someone of leaving); each
# prompt here belongs to its event.
DEFAULT_WELCOME_PROMPT = '请用一种随机挑选的风格，写一句话欢迎新成员"{nickname}"加入本群。'
DEFAULT_EXIT_PROMPT = '请用一种随机挑选的风格，告诉群里的其他成员："{nickname}"已经离开了本群。'
DEFAULT_PATPAT_PROMPT = "请用一种随机挑选的风格简短地介绍你自己，并提醒对方发送 #help 可以查看帮助。"

_HANDLED_TYPES = (ContextType.TEXT, ContextType.JOIN_GROUP, ContextType.EXIT_GROUP, ContextType.PATPAT)


def _fill(template: str, nickname: str) -> str:
    # str.replace, not str.format: a prompt with other braces (JSON, emoticons like {^_^})
    # made the original raise on every event.
    return template.replace("{nickname}", nickname)


@plugins.register(
    name="Hello",
    desire_priority=-1,
    hidden=True,
    desc="Welcomes new group members, answers pat-pats, and says hello",
    version="0.2",
    author="dify-on-wechat",
)
class Hello(Plugin):
    def __init__(self):
        super().__init__()
        self.group_welc_fixed_msg: dict[str, str] = {}
        self.group_welc_prompt = DEFAULT_WELCOME_PROMPT
        self.group_exit_prompt = DEFAULT_EXIT_PROMPT
        self.patpat_prompt = DEFAULT_PATPAT_PROMPT
        self.use_character_desc = False
        try:
            config = self.load_config()
        except Exception as e:  # unreadable own config.json
            logger.error(f"[Hello] cannot read the settings, plugin stays off: {e}")
            return
        if config is None:
            config = {}
        if not isinstance(config, dict):
            logger.error(f"[Hello] settings must be a JSON object, got {type(config).__name__}; plugin stays off")
            return
        self._apply(config)
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Hello] inited")

    def _apply(self, config: dict[str, Any]) -> None:
        fixed = config.get("group_welc_fixed_msg", {})
        if isinstance(fixed, dict):
            self.group_welc_fixed_msg = {str(k): str(v) for k, v in fixed.items() if isinstance(v, str) and v}
        else:
            logger.warning("[Hello] group_welc_fixed_msg must map group names to texts; ignored")
        for key in ("group_welc_prompt", "group_exit_prompt", "patpat_prompt"):
            value = config.get(key)
            if value is None:
                continue
            if isinstance(value, str) and value.strip():
                setattr(self, key, value)
            else:
                logger.warning(f"[Hello] {key} must be a non-empty text; the default is used")
        self.use_character_desc = bool(config.get("use_character_desc", False))

    # ------------------------------------------------------------------ events
    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        if context.type not in _HANDLED_TYPES:
            return
        msg = context.get("msg")
        nickname = str(getattr(msg, "actual_user_nickname", None) or "")
        if context.type == ContextType.JOIN_GROUP:
            self._on_join(e_context, nickname)
        elif context.type == ContextType.EXIT_GROUP:
            self._on_exit(e_context, nickname)
        elif context.type == ContextType.PATPAT:
            self._ask_bot(e_context, _fill(self.patpat_prompt, nickname), mark=True)
        else:
            self._on_text(e_context, msg)

    def _group_name(self, context) -> str:
        msg = context.get("msg")
        return str(
            context.get("group_name")
            or getattr(msg, "other_user_nickname", None)
            or getattr(msg, "from_user_nickname", None)
            or ""
        )

    def _on_join(self, e_context: EventContext, nickname: str) -> None:
        context = e_context["context"]
        fixed = self.group_welc_fixed_msg.get(self._group_name(context)) or conf().get("group_welcome_msg")
        if fixed:
            answer(e_context, ReplyType.TEXT, _fill(str(fixed), nickname))
            return
        self._ask_bot(e_context, _fill(self.group_welc_prompt, nickname), mark=True)

    def _on_exit(self, e_context: EventContext, nickname: str) -> None:
        fixed = conf().get("group_exit_msg")
        if fixed:
            answer(e_context, ReplyType.TEXT, _fill(str(fixed), nickname))
        elif conf().get("group_chat_exit_group"):
            self._ask_bot(e_context, _fill(self.group_exit_prompt, nickname), mark=False)
        else:
            # Nothing to say. The original broke with BREAK and let the default logic log
            # "unknown context type"; BREAK_PASS with no reply says nothing, quietly.
            e_context.action = EventAction.BREAK_PASS

    def _on_text(self, e_context: EventContext, msg) -> None:
        context = e_context["context"]
        content = context.content
        if content == "Hello":
            if context.get("isgroup", False):
                group = self._group_name(context)
                text = f"Hello, {getattr(msg, 'actual_user_nickname', '')} from {group}"
            else:
                text = f"Hello, {getattr(msg, 'from_user_nickname', '')}"
            answer(e_context, ReplyType.TEXT, text)
        elif content == "Hi":
            # BREAK keeps the default logic: the bot's answer replaces this reply.
            e_context["reply"] = Reply(ReplyType.TEXT, "Hi")
            e_context.action = EventAction.BREAK
        elif content == "End":
            context.type = ContextType.IMAGE_CREATE
            # The original only changed a local variable, so the bot was asked to draw "End".
            context.content = "The World"
            e_context.action = EventAction.CONTINUE

    def _ask_bot(self, e_context: EventContext, prompt: str, mark: bool) -> None:
        """Turn the event into a question for the bot (the default logic asks it)."""
        context = e_context["context"]
        context.type = ContextType.TEXT
        context.content = prompt
        e_context.action = EventAction.BREAK
        if mark and not self.use_character_desc:
            # Bots with an app-level persona (LinkAI) leave it out for plugin prompts.
            context["generate_breaked_by"] = EventAction.BREAK

    def get_help_text(self, **kwargs) -> str:
        return "发送 Hello，我会叫出你的名字；发送 End，我会画一张“世界”的图。\nSend Hello and I greet you by name; send End for a picture of the world.\n"
