# encoding:utf-8
# Written the way plugins for the original dify-on-wechat are: ON_RECEIVE_MESSAGE.
# It drops messages that ask to be dropped and marks the others for the later plugins.
import plugins
from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.log import logger
from config import conf
from plugins import *


@plugins.register(
    name="CompatReceive",
    desire_priority=20,
    hidden=True,
    desc="drops 'drop me' messages, marks the others",
    version="0.1",
    author="tests",
)
class CompatReceive(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_RECEIVE_MESSAGE] = self.on_receive_message
        logger.info("[CompatReceive] inited")

    def on_receive_message(self, e_context: EventContext):
        context = e_context["context"]
        assert isinstance(context["msg"], ChatMessage)
        if context.type == ContextType.TEXT and "drop me" in context.content:
            e_context["context"] = None
            e_context.action = EventAction.BREAK_PASS
            return
        context["compat_mark"] = "seen-by-receive:" + conf().get("model", "")
