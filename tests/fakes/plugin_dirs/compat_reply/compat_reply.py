# encoding:utf-8
# Written the way plugins for the original dify-on-wechat are: ON_DECORATE_REPLY and ON_SEND_REPLY.
import plugins
from bridge.reply import Reply, ReplyType
from plugins import *


@plugins.register(name="CompatReply", desire_priority=5, desc="signs replies, holds back secrets", version="0.1", author="tests")
class CompatReply(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_DECORATE_REPLY] = self.on_decorate_reply
        self.handlers[Event.ON_SEND_REPLY] = self.on_send_reply

    def on_decorate_reply(self, e_context: EventContext):
        reply = e_context["reply"]
        if reply.type == ReplyType.TEXT:
            reply.content = reply.content + " [signed]"

    def on_send_reply(self, e_context: EventContext):
        reply = e_context["reply"]
        if "SECRET" in str(reply.content):
            e_context.action = EventAction.BREAK_PASS  # not sent
