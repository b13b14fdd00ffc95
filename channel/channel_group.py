"""Several channels in one daemon: `channel_type` as a list or "a,b" (CoW-now's multi-channel start).

`channel_names()` reads the setting and refuses combinations that cannot work (one line, exit 2):
the same channel twice (an alias counts as its channel), two channels listening on one port, two
channels reading this terminal's input. One name stays the single channel it always was: app.py
starts it as before (`--cmd` forces `terminal`).

`ChannelGroup` runs the channels of a list. What is shared and what is not:
* shared: the plugins, the bots, the state store, the user data and the one HTTP server per port;
* per channel: its queues and workers (each channel is its own ChatChannel), its inbox items and
  dedup keys in the store (kept under the channel's name, so `resume_inbox` hands each item back to
  the channel that took it), and its session ids: each gets the channel's name in front ("wx:<id>"),
  so the same id on two platforms (a web page may choose any) is two conversations. A reply goes
  out on the channel whose worker handles the message, which is the one that took it in.

Each channel's `startup()` runs in a thread of its own (some block for as long as they run, others
return once listening). The calling thread waits: a channel whose start-up raises stops the daemon
with its error, as a single channel does; a channel that ends by itself (`finished`) ends the
daemon with its exit code, and the stop then closes every channel.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from common.log import logger
from config import ConfigError

# Channels that read this terminal's input: the terminal itself, and `wx`, which asks for the
# verification code WeChat shows on the phone there. Two of them would steal each other's lines.
READS_STDIN = frozenset({"terminal", "wx"})
# How often the waiting thread looks at the channels (it must also wake for signals).
WATCH_SECONDS = 0.2


def _port_setting(name: str, config: Any) -> str | None:
    """The setting holding the port the channel `name` listens on, or None when it does not listen
    (in the mode its settings choose). Each starts a server of its own there, so two cannot share it."""
    if name == "web":
        return "web_port"
    if name in ("wechatmp", "wechatmp_service"):
        return "wechatmp_port"
    if name in ("wechatcom_app", "wechatcom_service"):  # both serve /wxcomapp on this port
        return "wechatcomapp_port"
    if name == "feishu" and (config.get("feishu_event_mode") or "http") == "http":
        return "feishu_port"
    if name == "wecom_bot" and config.get("wecom_bot_mode") == "callback":
        return "wecom_bot_port"
    if name == "dingtalk" and config.get("dingtalk_health_port"):
        return "dingtalk_health_port"
    return None


def channel_names(value: Any, config: Any, aliases: dict[str, str] | None = None) -> list[str]:
    """The channel names `channel_type` asks for, in its order. Raises ConfigError naming the setting
    for an empty name and for combinations that cannot run together. Unknown names are left to the
    channel factory, which lists the valid ones."""
    if isinstance(value, str):
        if "," not in value:
            return [value]
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, list):
        names = [part.strip() if isinstance(part, str) else part for part in value]
    else:
        raise ConfigError(f"setting 'channel_type' must be a channel name, a list of names or names separated by "
                          f"commas, got {type(value).__name__}")
    if not names:
        raise ConfigError("setting 'channel_type' is an empty list; name at least one channel, e.g. \"web\"")
    if any(not isinstance(name, str) or not name for name in names):
        raise ConfigError(f"setting 'channel_type' has an empty channel name: {value!r}")
    if len(names) == 1:
        return names
    aliases = aliases or {}
    seen: dict[str, str] = {}
    for name in names:
        main = aliases.get(name, name)
        if main in seen:
            how = "" if seen[main] == name else f" (as '{seen[main]}' and '{name}')"
            raise ConfigError(f"setting 'channel_type' names the channel '{main}' twice{how}; each channel can run once")
        seen[main] = name
    readers = [name for name in seen if name in READS_STDIN]
    if len(readers) > 1:
        raise ConfigError(f"setting 'channel_type': {' and '.join(readers)} would both read this terminal's input "
                          f"(the terminal's questions, the WeChat login's verification code); run them in "
                          f"separate daemons")
    ports: dict[int, str] = {}
    for name in seen:
        key = _port_setting(name, config)
        port = _as_port(config.get(key)) if key else 0
        if not port:
            continue
        if port in ports:
            raise ConfigError(f"setting 'channel_type': channels '{ports[port]}' and '{name}' both listen on port "
                              f"{port} ({_port_setting(ports[port], config)}, {key}); give one of them another port")
        ports[port] = name
    return list(seen)


def _as_port(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class ChannelGroup:
    """The channels of one daemon, seen by app.py as one channel (startup, stop_accepting, wait_idle,
    halt, stop, finished, exit_code)."""

    finished = False
    exit_code = 0

    def __init__(self, channels: list | None = None) -> None:
        self.channels: list = []
        self.channel_type = ""
        for channel in channels or []:
            self.add(channel)
        self._failure: tuple[Any, BaseException] | None = None
        self._lock = threading.Lock()

    def add(self, channel) -> None:
        channel.session_scope = channel.channel_type
        self.channels.append(channel)
        self.channel_type = ",".join(member.channel_type for member in self.channels)

    def startup(self) -> None:
        """Start every channel in a thread of its own; return when one of them has ended by itself.
        Raises the error of a channel whose start-up failed."""
        for channel in self.channels:
            threading.Thread(target=self._run, args=(channel,), name=f"start-{channel.channel_type}",
                             daemon=True).start()
        while True:
            with self._lock:
                failure = self._failure
            if failure is not None:
                channel, error = failure
                logger.error(f"[channels] channel '{channel.channel_type}' could not start: {error}")
                raise error
            ended = next((channel for channel in self.channels if getattr(channel, "finished", False)), None)
            if ended is not None:
                self.exit_code = int(getattr(ended, "exit_code", 0) or 0)
                self.finished = True
                logger.warning(f"[channels] channel '{ended.channel_type}' ended; stopping the others")
                return
            time.sleep(WATCH_SECONDS)  # not an Event: a signal handler may run on this thread

    def _run(self, channel) -> None:
        try:
            channel.startup()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which stops the daemon
            with self._lock:
                if self._failure is None:
                    self._failure = (channel, e)

    # ------------------------------------------------------------------ the stop, for every channel
    def _each(self, what: str, call: Callable[[Any], Any]) -> list:
        results = []
        for channel in self.channels:
            try:
                results.append(call(channel))
            except Exception as e:
                logger.error(f"[channels] {what} of channel '{channel.channel_type}' failed: {e}")
        return results

    def stop_accepting(self) -> None:
        self._each("stop_accepting", lambda c: c.stop_accepting() if hasattr(c, "stop_accepting") else None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Every channel idle within `timeout` seconds in all (they finish their work side by side)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def idle(channel) -> bool:
            if not hasattr(channel, "wait_idle"):
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return bool(channel.wait_idle(left))

        results = self._each("wait_idle", idle)
        return len(results) == len(self.channels) and all(results)

    def halt(self) -> int:
        counts = self._each("halt", lambda c: c.halt() if callable(getattr(c, "halt", None)) else 0)
        return sum(int(n or 0) for n in counts)

    def stop(self) -> None:
        self._each("closing", lambda c: c.stop())
