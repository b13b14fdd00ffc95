"""Service hours: ``chat_time_module``, ``chat_start_time``, ``chat_stop_time``."""
from __future__ import annotations

import datetime
import functools
import re
from typing import Any, Callable, TypeVar

from common.log import logger

F = TypeVar("F", bound=Callable[..., Any])

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
END_OF_DAY = 24 * 60
# Messages ending with these still get through outside service hours, so an
# admin can reload a config whose service hours lock everyone out.
BYPASS_SUFFIXES = ("#reconf", "#更新配置")


def _minutes(value: str, name: str) -> int:
    """Minutes since midnight of an "HH:MM" string; "24:00" gives 1440."""
    match = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if match:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if (hours < 24 and minutes < 60) or (hours == 24 and minutes == 0):
            return hours * 60 + minutes
    raise ValueError(f'{name} must be a time "HH:MM" between "00:00" and "24:00", got {value!r}')


def is_in_service_time(now: datetime.time | datetime.datetime, start: str, stop: str) -> bool:
    """Whether ``now`` falls in the daily window from ``start`` to ``stop``.

    Minute resolution with both ends included, as the original compared
    "HH:MM" strings: with stop "18:00", 18:00:59 is still in service. A start
    later than the stop is a window across midnight ("22:00"-"06:00");
    start == stop means always on. "24:00" is the end of the day (as a start
    it is the same moment as "00:00").
    """
    start_min = _minutes(start, "chat_start_time") % END_OF_DAY
    stop_min = _minutes(stop, "chat_stop_time")
    now_min = now.hour * 60 + now.minute
    if start_min == stop_min:
        return True
    if start_min < stop_min:
        return start_min <= now_min <= stop_min
    # across midnight: from start to the end of the day, then up to stop
    return now_min >= start_min or now_min <= stop_min


def _conf() -> Any:
    # Imported per call rather than at import time: this module then has no
    # import-order tie to config, and the live (possibly reloaded) config is read.
    from config import conf

    return conf()


def _message_content(args: tuple, kwargs: dict) -> Any:
    message = args[0] if args else kwargs.get("cmsg", kwargs.get("msg"))
    return getattr(message, "content", None)


def time_checker(func: F) -> F:
    """Drop messages that arrive outside service hours (for ``handle_*`` methods).

    With ``chat_time_module`` on and the current local time outside the window,
    the message is dropped (logged at info) unless its content ends with
    ``#reconf`` or ``#更新配置``. Unlike the original, a malformed time in the
    config lets messages through (logged as an error): silently refusing every
    message because of a typo is the worse failure.
    """

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _conf()
        if not config.get("chat_time_module", False):
            return func(self, *args, **kwargs)
        start = config.get("chat_start_time", "00:00")
        stop = config.get("chat_stop_time", "24:00")
        try:
            in_service = is_in_service_time(datetime.datetime.now(), start, stop)
        except ValueError as error:
            logger.error(f"[time_check] service hours ignored: {error}; fix config.json")
            return func(self, *args, **kwargs)
        if in_service:
            return func(self, *args, **kwargs)
        content = _message_content(args, kwargs)
        if isinstance(content, str) and content.strip().endswith(BYPASS_SUFFIXES):
            return func(self, *args, **kwargs)
        logger.info(f"[time_check] message dropped: outside service hours {start}-{stop}")
        return None

    return wrapper  # type: ignore[return-value]
