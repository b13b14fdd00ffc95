# encoding:utf-8
# A reminder plugin in the style of the ecosystem's task plugins, which keep their tasks in a file
# and rebuild the message when a task is due: "$remind <seconds> <text>" keeps only whom to send
# to (the context's receiver), not the message that asked, and later sends <text> through the
# channel's send() with a context that has nothing but that receiver.
import threading

import plugins
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins import *


@plugins.register(name="Reminder", desire_priority=50, desc="reminders to a receiver", version="0.1", author="tests")
class Reminder(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT:
            return
        words = context.content.split(" ", 2)
        if words[0] != "$remind" or len(words) < 3 or not words[1].isdigit():
            return
        task = {"receiver": context["receiver"], "text": words[2]}  # what a task file would hold
        timer = threading.Timer(int(words[1]), self.fire, args=(task, e_context["channel"]))
        timer.daemon = True
        timer.start()
        e_context["reply"] = Reply(ReplyType.TEXT, f"reminder in {words[1]} s")
        e_context.action = EventAction.BREAK_PASS

    def fire(self, task, channel):
        context = Context(ContextType.TEXT, task["text"], {"receiver": task["receiver"]})
        try:
            channel.send(Reply(ReplyType.TEXT, task["text"]), context)
        except Exception as e:
            logger.error(f"[Reminder] sending failed: {e}")

    def get_help_text(self, **kwargs):
        return "$remind <seconds> <text>"
