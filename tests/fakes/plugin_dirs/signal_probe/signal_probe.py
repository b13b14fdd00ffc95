# encoding:utf-8
# Sends the daemon a stop signal at the awkward moments a real one can arrive at
# (tests/e2e/test_process.py, the stop-signal races).
import os
import signal
import threading
import time

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins import *


@plugins.register(name="SignalProbe", desire_priority=20, desc="sends SIGTERM at awkward moments", version="1.0", author="tests")
class SignalProbe(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_RECEIVE_MESSAGE] = self.on_receive_message
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[SignalProbe] inited")

    def on_receive_message(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT or context.content != "term while holding the queue lock":
            return
        # As when SIGTERM lands while the input loop is inside submit(), holding the
        # dispatcher's lock (the lock a stop needs first).
        with e_context["channel"].dispatcher._cond:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT or context.content != "term from a worker":
            return
        # As when SIGTERM is taken by another thread, or lands just before the input loop
        # blocks in its read of stdin: the main thread must still run the handler.
        time.sleep(0.5)  # the input loop is back waiting for the next line
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        e_context["reply"] = Reply(ReplyType.TEXT, "termed from a worker")
        e_context.action = EventAction.BREAK_PASS
