# encoding:utf-8
# A plugin that handles the media the bot itself ignores (videos, files), the way the ecosystem's
# video and file plugins do: msg.prepare() makes sure the file is on disk, then the plugin reads
# context.content. It answers with the size and SHA-256 of what it read.
import hashlib

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from plugins import *


@plugins.register(name="MediaProbe", desire_priority=50, desc="describes received videos and files", version="0.1",
                  author="tests")
class MediaProbe(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type not in (ContextType.VIDEO, ContextType.FILE):
            return
        msg = context.get("msg")
        if msg is not None:
            msg.prepare()
        with open(context.content, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        e_context["reply"] = Reply(ReplyType.TEXT, f"{context.type.name.lower()} {len(data)} bytes sha256 {digest}")
        e_context.action = EventAction.BREAK_PASS
