# encoding:utf-8
# Written the way plugins for the original dify-on-wechat are: ON_HANDLE_CONTEXT.
import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins import *


@plugins.register(name="CompatHandle", desire_priority=10, desc="answers 'mark?' itself, rewrites 'rewrite ...'", version="0.1", author="tests")
class CompatHandle(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[CompatHandle] inited")

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT:
            return
        if context.content == "mark?":
            reply = Reply()
            reply.type = ReplyType.TEXT
            reply.content = "mark=" + str(context.get("compat_mark"))
            e_context["reply"] = reply
            e_context.action = EventAction.BREAK_PASS
        elif context.content.startswith("rewrite "):
            # BREAK: no more plugins, but the bot still answers the changed question.
            context.content = context.content[len("rewrite "):].upper()
            e_context.action = EventAction.BREAK

    def get_help_text(self, **kwargs):
        return "mark? / rewrite <text>"
