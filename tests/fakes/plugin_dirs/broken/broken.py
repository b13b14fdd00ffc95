# A plugin that raises on every message: the daemon must log it and answer anyway.
import plugins
from plugins import *


@plugins.register(name="Broken", desire_priority=50, desc="raises", version="1.0", author="tests")
class Broken(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        self.handlers[Event.ON_DECORATE_REPLY] = self.on_handle_context

    def on_handle_context(self, e_context):
        raise ValueError("this plugin is broken on purpose")
