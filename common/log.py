"""The project's one logger.

The console (stderr, so stdout stays free for a conversation or a pipe) shows
INFO (DEBUG with the ``debug`` setting); ``run.log`` always records INFO and
above whatever the console shows, so a quiet console (the terminal channel)
never loses the record of what happened.
A record logged with ``extra=CONSOLE_ONLY`` is a secret meant for the person at
the console (godcmd's temporary password) and never reaches run.log.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys

LOG_NAME = "log"
_FORMAT = "[%(levelname)s][%(asctime)s][%(filename)s:%(lineno)d] - %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
RUN_LOG_BYTES = 10 * 1024 * 1024
RUN_LOG_BACKUPS = 5

# `logger.warning(text, extra=CONSOLE_ONLY)`: shown on the console, never written to a file.
CONSOLE_ONLY = {"console_only": True}


class _SkipConsoleOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "console_only", False)


def _make_logger() -> logging.Logger:
    log = logging.getLogger(LOG_NAME)
    # The logger's own level is the lowest of its handlers' (see _sync_level): a debug call
    # then costs one comparison when no handler would print it, instead of a formatted record.
    log.setLevel(logging.INFO)
    log.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    console.set_name("console")
    log.addHandler(console)
    return log


def _find_handler(name: str) -> logging.Handler | None:
    for handler in logger.handlers:
        if handler.get_name() == name:
            return handler
    return None


def _sync_level() -> None:
    levels = [handler.level for handler in logger.handlers if handler.get_name() in ("console", "run_log")]
    logger.setLevel(min(levels, default=logging.INFO) or logging.DEBUG)


# What the `debug` setting asks for, and the least level the console shows whatever
# `debug` says (the terminal channel raises it to WARNING). Kept apart so that a
# reload of the settings (#reconf) cannot undo a quiet console.
_debug = False
_console_floor = logging.NOTSET


def _apply_levels() -> None:
    base = logging.DEBUG if _debug else logging.INFO
    console = _find_handler("console")
    if console is not None:
        console.setLevel(max(base, _console_floor))
    run_log = _find_handler("run_log")
    if run_log is not None:
        run_log.setLevel(base)
    _sync_level()


def set_console_level(level: int) -> None:
    """The least level the console shows from now on, whatever ``debug`` says; run.log
    keeps INFO and above (DEBUG with ``debug``)."""
    global _console_floor
    _console_floor = level
    _apply_levels()


def set_debug(enabled: bool) -> None:
    """The ``debug`` setting: DEBUG records are made, written to run.log and shown on the
    console (unless the console was quietened) only while it is on."""
    global _debug
    _debug = bool(enabled)
    _apply_levels()


def is_debug() -> bool:
    return _debug


def open_run_log(path: str = "run.log") -> None:
    """Attach the rotating run.log (once). Called by app.py at start-up."""
    if _find_handler("run_log") is not None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=RUN_LOG_BYTES, backupCount=RUN_LOG_BACKUPS, encoding="utf-8", delay=True
    )
    handler.setLevel(logging.DEBUG if _debug else logging.INFO)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    handler.addFilter(_SkipConsoleOnly())
    handler.set_name("run_log")
    logger.addHandler(handler)
    _sync_level()


logger = _make_logger()
