"""The WeCom client object plugins send through: ``from channel.wework.run import wework``.

In the original this module made the ``ntwork.WeWork()`` the channel used, at import time,
and plugins (scheduled tasks, push APIs) call it directly: ``wework.send_text(conversation_id,
text)``, ``wework.get_rooms()``, ``wework.login_status``. Here ``wework`` stands for the client
of the running wework channel and forwards every attribute to it, so those plugins work
unchanged. Importing this module never fails: ntwork exists only on Windows, and a plugin
imported under another channel must still load. Using ``wework`` without a running WeCom
client raises ``WeworkUnavailable`` saying what it needs; ``bool(wework)`` is False then, so
the common ``if not wework or not wework.login_status`` guard keeps working.
"""
from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any, Callable

from config import conf

__all__ = ["wework", "forever", "WeworkUnavailable"]


class WeworkUnavailable(RuntimeError):
    """``channel.wework.run.wework`` was used with no WeCom client running."""


def _running_client() -> Any:
    """The ntwork client of the wework channel, or WeworkUnavailable saying why there is none."""
    if importlib.util.find_spec("ntwork") is None:
        raise WeworkUnavailable(
            "channel.wework.run.wework needs ntwork, which is not installed: it runs only on Windows "
            "with PC WeCom logged in, with channel_type 'wework' (see requirements-wework.txt)"
        )
    channel_type = conf().get("channel_type", "")
    names = channel_type.split(",") if isinstance(channel_type, str) else channel_type  # several: channel_group.py
    if "wework" not in [str(name).strip() for name in names]:
        raise WeworkUnavailable(
            f"channel.wework.run.wework sends through the WeCom client, which runs only with "
            f"channel_type 'wework' (now '{channel_type}')"
        )
    from channel.wework.wework_channel import WeworkChannel

    client = getattr(WeworkChannel(), "wework", None)
    if client is None:
        raise WeworkUnavailable("channel.wework.run.wework: the WeCom client has not started yet (wait for the login)")
    return client


# Handlers plugins registered with ``@wework.msg_register(...)`` before the client existed:
# plugins load before the channel starts its client, and in the original that decorator
# already worked at import time. The channel hands them to its client when it starts.
_early_handlers: list[tuple[Any, Callable]] = []
_early_lock = threading.Lock()


def register_early_handlers(client: Any) -> int:
    """Give the handlers registered before ``client`` existed to it. Returns how many."""
    with _early_lock:
        pending = list(_early_handlers)
        _early_handlers.clear()
    for msg_type, func in pending:
        client.msg_register(msg_type)(func)
    return len(pending)


class _SharedWeWork:
    """Forwards to the running channel's ``ntwork.WeWork`` (see the module docstring)."""

    def msg_register(self, msg_type: Any) -> Callable[[Callable], Callable]:
        """``@wework.msg_register(type)``: on the running client, or kept for it until it starts."""
        try:
            return _running_client().msg_register(msg_type)
        except WeworkUnavailable:
            pass

        def keep(func: Callable) -> Callable:
            with _early_lock:
                _early_handlers.append((msg_type, func))
            return func

        return keep

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_running_client(), name)

    def __bool__(self) -> bool:
        try:
            _running_client()
        except WeworkUnavailable:
            return False
        return True

    def __repr__(self) -> str:
        return f"<shared WeCom client: {'running' if self else 'not running'}>"


wework = _SharedWeWork()


def forever() -> None:
    """Sleep until Ctrl+C, then close the WeCom client (the original's helper)."""
    try:
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        try:
            import ntwork

            ntwork.exit_()
        except Exception:  # no ntwork, or the client is already gone
            pass
        raise SystemExit(0)
