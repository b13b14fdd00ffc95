"""Loggers of the package: one per component, own console handler, no propagation (so a host
application's root logging config neither duplicates nor silences them).

The level is read from the environment when a logger is created, i.e. at import time. That is why
`LEVELS_SEEN` exists: it is a simulator addition that lets tests see which level each logger
actually picked up (the variable name is case-sensitive on Linux, unlike on Windows).
"""
import logging
import os

from ntwork import conf

LEVELS_SEEN = {}

_FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"


def _level_from_env():
    return os.environ.get(conf.LOG_KEY, conf.LOG_LEVEL)


def get_logger(name):
    level = _level_from_env()
    LEVELS_SEEN[name] = level

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)

    log = logging.getLogger(name)
    # Re-importing the package (tests do) must not stack a second handler on the same logger.
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return log
