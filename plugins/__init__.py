"""The plugin framework: what third-party plugins import.

    import plugins
    from plugins import *

    @plugins.register(name="Hello", desire_priority=-1, desc="...", version="0.1", author="me")
    class Hello(Plugin):
        def __init__(self):
            super().__init__()
            self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
"""
from config import write_plugin_config  # the original's `from .plugin import *` exported it
from .event import *
from .plugin import *
from .plugin_manager import PluginManager

instance = PluginManager()

register = instance.register
