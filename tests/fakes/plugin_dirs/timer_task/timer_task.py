# encoding:utf-8
# A scheduled-task plugin in the style of the ecosystem's timer plugins: "$timer <seconds> <text>"
# sends <text> later, outside any reply, through whatever the channel offers: the shared WeCom
# client (channel.wework.run), itchat for personal WeChat, else the channel's send().
import threading

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from config import conf
from lib import itchat
from lib.itchat.content import *
from plugins import *

try:
    from channel.wework.run import wework
except Exception as e:
    print(f"wework not available: {e}")


@plugins.register(name="TimerTask", desire_priority=50, desc="scheduled messages", version="0.1", author="tests")
class TimerTask(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT:
            return
        words = context.content.split(" ", 2)
        if words[0] == "$itchat":
            try:
                itchat.send(words[1] if len(words) > 1 else "", toUserName="filehelper")
                text = "sent"
            except Exception as e:
                text = f"itchat failed: {e}"
            e_context["reply"] = Reply(ReplyType.TEXT, text)
            e_context.action = EventAction.BREAK_PASS
            return
        if words[0] != "$timer" or len(words) < 3 or not words[1].isdigit():
            return
        receiver, channel = context["receiver"], e_context["channel"]
        timer = threading.Timer(int(words[1]), self.fire, args=(words[2], receiver, channel, context))
        timer.daemon = True
        timer.start()
        e_context["reply"] = Reply(ReplyType.TEXT, f"scheduled in {words[1]} s")
        e_context.action = EventAction.BREAK_PASS

    def fire(self, text, receiver, channel, context):
        channel_type = conf().get("channel_type")
        try:
            if channel_type == "wework":
                wework.send_text(receiver, text)
            elif channel_type == "wx":
                itchat.send(text, toUserName=receiver)
            else:
                channel.send(Reply(ReplyType.TEXT, text), context)
        except Exception as e:
            logger.error(f"[TimerTask] sending failed: {e}")

    def get_help_text(self, **kwargs):
        return "$timer <seconds> <text>"
