# encoding:utf-8
# A plugin written the way the original's plugins are (like its bundled "hello"): it greets a
# member who joined a group, which reaches plugins as a JOIN_GROUP context.
import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from channel.chat_message import ChatMessage
from common.log import logger
from plugins import *


@plugins.register(name="Greeter", desire_priority=0, desc="greets new group members", version="1.0", author="tests")
class Greeter(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Greeter] inited")

    def on_handle_context(self, e_context: EventContext):
        if e_context["context"].type != ContextType.JOIN_GROUP:
            return
        msg: ChatMessage = e_context["context"]["msg"]
        e_context["reply"] = Reply(ReplyType.TEXT, f"欢迎 {msg.actual_user_nickname} 加入「{msg.other_user_nickname}」！")
        e_context.action = EventAction.BREAK_PASS

    def get_help_text(self, **kwargs):
        return "greets members who join a group"
