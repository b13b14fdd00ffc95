# encoding:utf-8
# A plugin written the way the original's plugins are: it keeps a per-user count
# in user data, which must survive SIGTERM, SIGINT and kill -9.
import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from config import conf
from plugins import *


@plugins.register(name="Counter", desire_priority=10, desc="counts questions", version="1.0", author="tests")
class Counter(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Counter] inited")

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT or context.content != "count":
            return
        data = conf().get_user_data(context["msg"].from_user_id)
        data["count"] = data.get("count", 0) + 1
        e_context["reply"] = Reply(ReplyType.TEXT, "count={}".format(data["count"]))
        e_context.action = EventAction.BREAK_PASS

    def get_help_text(self, **kwargs):
        return "send 'count'"
