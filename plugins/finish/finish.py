# encoding:utf-8
"""Finish: the last plugin in the chain. A text that still starts with the plugin
command prefix (``plugin_trigger_prefix``, "$" by default) here was not taken by any
plugin, so the user gets an error instead of the bot answering "$foo" as a question."""
from __future__ import annotations

import plugins
from bridge.bridge import is_chinese
from bridge.context import ContextType
from bridge.reply import ReplyType
from common.log import logger
from config import conf
from plugins import Event, EventContext, Plugin
from plugins.chat_bot import answer


@plugins.register(
    name="Finish",
    desire_priority=-999,
    hidden=True,
    desc="Answers plugin commands that no plugin handled",
    version="1.1",
    author="dify-on-wechat",
)
class Finish(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Finish] inited")

    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        if context.type != ContextType.TEXT or not isinstance(context.content, str):
            return
        prefix = conf().get("plugin_trigger_prefix", "$")
        # The original matched every message when the prefix was set to "": "".startswith
        # is always true, so the bot stopped answering anything.
        if not prefix or not context.content.startswith(prefix):
            return
        command = context.content.split(maxsplit=1)[0]
        logger.debug(f"[Finish] no plugin took the command {command!r}")
        if is_chinese(context.content):
            text = f"没有插件能处理命令“{command}”。\n发送 #help 查看已启用插件的命令，或 #help 插件名 查看某个插件的用法。"
        else:
            text = f"No plugin handles the command '{command}'.\nSend #help to list the plugin commands, or #help <plugin> for one plugin."
        answer(e_context, ReplyType.ERROR, text)

    def get_help_text(self, **kwargs) -> str:
        return ""
