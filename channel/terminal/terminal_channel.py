"""Terminal channel: questions from stdin, replies on stdout.

Works with a TTY (prompts shown) and with a pipe (replies only). At the end of
input it waits for the pending replies, then returns so the daemon exits 0.
"""
from __future__ import annotations

import io
import itertools
import logging
import sys
import threading
import time
import uuid

from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from common.log import logger, set_console_level
from common.text import safe_text

# How often the waiting main thread wakes, so a signal handler that is due runs.
INPUT_POLL_SECONDS = 0.2


class TerminalMessage(ChatMessage):
    def __init__(self, msg_id, content, ctype=ContextType.TEXT, from_user_id="User", to_user_id="Chatgpt", other_user_id="Chatgpt"):
        super().__init__(None)
        self.msg_id = msg_id
        self.ctype = ctype
        self.content = content
        self.from_user_id = from_user_id
        self.to_user_id = to_user_id
        self.other_user_id = other_user_id
        self.create_time = int(time.time())


class TerminalChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE]
    PRIVATE_NEEDS_PREFIX = False  # every line typed here is for the bot

    def __init__(self, stdin: io.TextIOBase | None = None, stdout: io.TextIOBase | None = None) -> None:
        super().__init__()
        self._stdin = stdin if stdin is not None else sys.stdin
        self._stdout = stdout if stdout is not None else sys.stdout
        self._print_lock = threading.Lock()
        self._interactive = bool(getattr(self._stdin, "isatty", lambda: False)())
        # Unique across runs: message ids are remembered in the state store.
        self._run_id = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    def _write(self, text: str) -> None:
        with self._print_lock:
            self._stdout.write(text)
            self._stdout.flush()

    def send(self, reply: Reply, context) -> None:
        if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL):
            body = f"[{reply.type}] {reply.content}"
        elif reply.type in (ReplyType.IMAGE, ReplyType.VIDEO, ReplyType.FILE):
            body = f"[{reply.type}] {getattr(reply.content, 'name', reply.content)}"
        else:
            body = str(reply.content)
        self._write("\nBot:\n" + body + "\n" + ("\nUser:" if self._interactive else ""))

    def startup(self) -> None:
        # Keep the screen for the conversation (also with `debug`, whose records go to
        # run.log); only warnings and errors join it.
        set_console_level(logging.WARNING)
        _use_utf8(self._stdin, self._stdout)
        # What was asked before the last stop and not answered comes first.
        self.resume_inbox()
        if self._interactive:
            self._write("\nPlease input your question:\nUser:")
        # The input is read on a thread of its own and the calling (main) thread only waits
        # for it: Python runs signal handlers on the main thread, on top of whatever it was
        # doing. Reading there, a SIGTERM could land while the loop holds a lock the stop
        # needs (the dispatcher's, the state store's: a deadlock), or just before it blocks
        # in the read of stdin (the handler then waits for the next line, which may never come).
        failure: list[BaseException] = []
        reader = threading.Thread(target=self._read_input, args=(failure,), name="terminal-input", daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(INPUT_POLL_SECONDS)  # short waits: a handler due runs within one
        if failure:
            raise failure[0]
        self.finished = True

    def _read_input(self, failure: list) -> None:
        try:
            for line in self._stdin:
                # safe_text: stdin opened with surrogateescape (POSIX's C locale) turns bad bytes into lone surrogates.
                prompt = safe_text(line.rstrip("\r\n"))
                if not prompt.strip():
                    continue
                msg = TerminalMessage(f"{self._run_id}-{next(self._ids)}", prompt)
                context = self._compose_context(ContextType.TEXT, prompt, msg=msg, isgroup=False)
                if context is None:
                    logger.warning(f"[terminal] message {msg.msg_id} ignored by the rules")
                    logger.debug(f"[terminal] ignored message: {prompt}")
                    continue
                produced = self.produce(context)
                if produced is Produced.STOPPING or produced is Produced.DUPLICATE:
                    logger.warning(f"[terminal] message {msg.msg_id} not taken: {produced.value}")
            # End of input: answer what was asked before leaving.
            self.wait_idle()
        except BaseException as e:  # startup() raises it on the calling thread, as before
            failure.append(e)


def _use_utf8(*streams) -> None:
    # A Windows console defaults to a legacy code page; questions are often Chinese.
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(encoding="utf-8", errors="replace")
            except (ValueError, OSError):
                pass
