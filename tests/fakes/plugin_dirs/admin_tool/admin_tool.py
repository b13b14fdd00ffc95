# encoding:utf-8
# An admin tool in the style of the ecosystem's: "$插件" lists the loaded plugins in the order
# PluginManager keeps them; "$设置 <key> <value>" stores a setting with write_plugin_config.
import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from plugins import *


@plugins.register(name="AdminTool", desire_priority=5, desc="plugin admin", version="0.1", author="tests")
class AdminTool(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT:
            return
        if context.content == "$插件":
            manager = PluginManager()
            lines = [f"{name}:{plugin.priority}:{'on' if plugin.enabled else 'off'}" for name, plugin in manager.plugins.items()]
            text = " ".join(lines)
        elif context.content.startswith("$设置 "):
            _, key, value = context.content.split(" ", 2)
            write_plugin_config({"AdminTool": {key: value}})
            text = f"{key}={pconf('AdminTool')[key]}"
        else:
            return
        e_context["reply"] = Reply(ReplyType.TEXT, text)
        e_context.action = EventAction.BREAK_PASS
