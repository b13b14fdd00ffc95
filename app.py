# encoding:utf-8
"""Entry point: `python app.py` runs the daemon; `python app.py --cmd` talks in the terminal.

Start: load and validate config -> open the state store -> create the channel
-> load plugins -> startup. Stop (SIGINT/SIGTERM): stop taking messages, let
running replies finish for up to `shutdown_timeout` seconds, flush state, close
the channel, then chain to the previous signal handler (else exit 0). A second
signal exits at once.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from common.allocator import limit_arenas
from common.log import logger, open_run_log, set_console_level
from common.tmp_dir import run_janitor
from config import ConfigError, conf, get_appdata_dir, load_config, set_command_line_settings

from common import const

# Channels for which plugins are loaded: all of them (the original's list; gewechat is not ported).
PLUGIN_CHANNELS = const.CHANNEL_NAMES

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_FORCED = 3

_channel = None
_store = None
_sandbox = None
# Reentrant: a signal handler runs on the main thread, possibly while that thread is
# inside _graceful_stop's check already (at the end of terminal input).
_shutdown_lock = threading.RLock()
_shutting_down = False
_stopped = threading.Event()


class StartupError(Exception):
    """Start-up cannot go on; the message is the one line the user sees."""


def _graceful_stop() -> None:
    """Stop taking messages, let running replies finish, flush and close. Runs once."""
    global _shutting_down
    with _shutdown_lock:
        if _shutting_down:
            return
        _shutting_down = True
    _stop_linkai()
    channel = _channel
    if channel is not None and hasattr(channel, "stop_accepting"):
        channel.stop_accepting()
        timeout = float(conf().get("shutdown_timeout"))
        if not channel.wait_idle(timeout):
            _keep_backlog(channel, timeout)
    if channel is not None:
        try:
            channel.stop()
        except Exception as e:
            logger.error(f"[app] closing the channel failed: {e}")
    conf().user_data_book.close()
    if _sandbox is not None:
        _sandbox.stop()
    if _store is not None:
        try:
            _store.close()
        except Exception as e:
            logger.error(f"[app] closing the state store failed: {e}")
    _stopped.set()


def _stop_linkai() -> None:
    """Close the LinkAI connection first: no pushed setting or message arrives while the
    channel winds down. Imported only when it was started (use_linkai)."""
    linkai_client = sys.modules.get("common.linkai_client")
    if linkai_client is None:
        return
    try:
        linkai_client.stop()
    except Exception as e:  # the stop goes on whatever LinkAI does
        logger.error(f"[app] stopping the LinkAI client failed: {e}")


def _keep_backlog(channel, timeout: float) -> None:
    """The stop could not answer everything in time: start nothing more and say what is kept."""
    halt = getattr(channel, "halt", None)
    left = halt() if callable(halt) else "some"
    if _store is not None and _store.durable:
        logger.warning(f"[app] {left} message(s) not answered after {timeout:g} s; they are kept in the state store "
                       f"and answered after the next start")
    else:
        logger.warning(f"[app] {left} message(s) not answered after {timeout:g} s are lost (state_store is memory)")


def sigterm_handler_wrap(_signo: int) -> None:
    """Install the stop handler for `_signo`, keeping the previous one to chain to."""
    old_handler = signal.getsignal(_signo)

    def func(_signo, _stack_frame):
        if _shutting_down:
            logger.warning(f"signal {_signo} received again, exiting now")
            os._exit(EXIT_FORCED)
        logger.info("signal {} received, exiting...".format(_signo))
        _graceful_stop()  # saves user data (the book's final flush) before the store closes
        if callable(old_handler):
            return old_handler(_signo, _stack_frame)
        sys.exit(0)

    signal.signal(_signo, func)


def start_channel(channel_name: str | list[str]) -> None:
    """Start the channel `channel_name`, or several side by side (a list of names: channel_group.py)."""
    global _channel
    from channel import channel_factory

    names = [channel_name] if isinstance(channel_name, str) else list(channel_name)
    if len(names) == 1:
        channel = channel_factory.create_channel(names[0])
        members = [channel]
    else:
        from channel.channel_group import ChannelGroup

        channel = _channel = ChannelGroup()  # known before its channels: a failure stops those made already
        for name in names:
            channel.add(channel_factory.create_channel(name))
        members = channel.channels
    _channel = channel
    if any(member.channel_type in PLUGIN_CHANNELS for member in members):
        from plugins import PluginManager

        PluginManager().load_plugins()
    _check_bot_settings()
    if conf().get("use_linkai"):
        try:
            from common import linkai_client

            threading.Thread(target=linkai_client.start, args=(channel,), daemon=True).start()
        except Exception as e:  # never stops start-up
            logger.error(f"[app] LinkAI client not started: {e}")
    channel.startup()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="Chat platforms to Dify and other LLM apps.")
    parser.add_argument("--cmd", action="store_true", help="talk in this terminal (forces channel_type terminal)")
    parser.add_argument("--config", metavar="PATH", help="settings file to use instead of ./config.json")
    parser.add_argument(
        "--sandbox", action="store_true",
        help="offline demo: the Dify bot talks to a local Dify simulator instead of a real Dify app",
    )
    parser.add_argument("--plugins-dir", metavar="PATH", help="extra folder of plugins; its plugins.json and config.json are used")
    parser.add_argument(
        "--import-user-datas", metavar="PKL", nargs="?", const="",
        help="import an old user_datas.pkl (default: <appdata_dir>/user_datas.pkl) into the state store",
    )
    parser.add_argument(
        "--backup-state", metavar="PATH",
        help="copy the state database to PATH (a file, or a folder for a dated file) and exit; "
             "safe while the daemon runs",
    )
    return parser.parse_args(argv)


# dify_app_type -> the app mode the simulator plays
_SANDBOX_MODES = {"chatbot": "chat", "chatflow": "advanced-chat", "agent": "agent-chat", "workflow": "workflow", "completion": "completion"}


def _start_sandbox() -> dict:
    """Start a local Dify simulator (an offline demo, clearly labelled); return the
    settings that point the Dify bot at it."""
    global _sandbox
    from sandbox.dify_server import DifyServer

    mode = _SANDBOX_MODES[conf().get("dify_app_type")]
    _sandbox = DifyServer(api_key=SANDBOX_KEY, mode=mode).start()
    _sandbox.answers_for_sandbox = True
    # Logged once: a WARNING reaches the console even when the terminal quietens it.
    logger.warning(
        f"SANDBOX: offline demo. Answers come from a local Dify simulator at {_sandbox.base_url} "
        f"(mode {mode}), not from a real Dify app."
    )
    return {"bot_type": "dify", "model": "dify", "dify_api_base": _sandbox.base_url, "dify_api_key": SANDBOX_KEY}


SANDBOX_KEY = "app-sandbox"
# The sandbox keeps its state in a file of its own: its Dify conversations exist only in
# the simulator of one run, and must never be sent to a real Dify (or a later sandbox).
SANDBOX_STATE_DB = "sandbox-state.db"


def _check_bot() -> None:
    """Stop start-up when the chat bot is not available here (its settings are checked
    once the plugins are loaded, by _check_bot_settings). Without this the first user
    would find out."""
    from bot.bot_factory import BotNotAvailable, UnknownBot, bot_class
    from bridge.bridge import route

    name = route()["chat"]
    setting = "bot_type" if conf().get("bot_type") else "model"
    try:
        bot_class(name)
    except (UnknownBot, BotNotAvailable) as e:
        raise StartupError(f"{e} (chosen by the setting '{setting}')") from None


def _check_voice() -> None:
    """Stop start-up when a speech engine the settings turn on cannot work (voice/startup_check.py)."""
    from voice.startup_check import VoiceEngineUnavailable, VoiceSettingsProblem, check_voice_engines

    try:
        check_voice_engines(conf())
    except VoiceEngineUnavailable as e:
        raise StartupError(str(e)) from None
    except VoiceSettingsProblem as e:
        raise ConfigError(str(e)) from None


def _check_bot_settings() -> None:
    """Stop start-up when a setting the chat bot needs (an API key) is missing; run once the
    plugins are loaded: a plugin that gives each group or chat its own app (custom_dify_app)
    supplies those settings itself, and the global ones may then stay empty."""
    from bot.bot_factory import bot_class
    from bridge.bridge import route

    problem = getattr(bot_class(route()["chat"]), "settings_problem", None)
    message = problem(conf()) if callable(problem) else None
    if not message:
        return
    suppliers = _plugins_supplying_bot_settings()
    if suppliers:
        logger.warning(f"[app] {message}; plugin {', '.join(suppliers)} supplies these settings per chat, "
                       f"so chats it does not cover will get an error")
        return
    raise ConfigError(message)


def _plugins_supplying_bot_settings() -> list[str]:
    from plugins import PluginManager

    manager = PluginManager()
    return [
        name for name, instance in manager.instances.items()
        if getattr(instance, "SUPPLIES_BOT_SETTINGS", False) and instance.handlers
        and getattr(manager.plugins.get(name), "enabled", False)
    ]


def _open_state(args: argparse.Namespace) -> None:
    global _store
    from common.store import STATE_DB_NAME, StoreError, import_user_datas_pickle, open_store

    try:
        prefix = conf().get("redis_key_prefix") + ("sandbox:" if args.sandbox else "")
        _store = open_store(conf().get("state_store"), get_appdata_dir(), SANDBOX_STATE_DB if args.sandbox else STATE_DB_NAME,
                            redis_url=conf().get("redis_url"), redis_key_prefix=prefix)
        if args.sandbox:
            from bot.dify.dify_session import NAMESPACE

            _store.clear(NAMESPACE)  # conversations of an earlier sandbox run: its simulator is gone
    except (StoreError, ValueError, OSError) as e:
        raise StartupError(f"cannot open the state store: {e}") from None
    conf().user_data_book.attach(_store)
    threading.Thread(target=_purge_expired_state, args=(_store,), name="state-purge", daemon=True).start()
    threading.Thread(target=run_janitor, args=(_stopped,), name="tmp-janitor", daemon=True).start()
    if args.import_user_datas is not None:
        path = args.import_user_datas or os.path.join(get_appdata_dir(), "user_datas.pkl")
        try:
            imported = import_user_datas_pickle(path)
        except (StoreError, OSError) as e:
            raise StartupError(f"cannot import {path}: {e}") from None
        added = conf().user_data_book.import_datas(imported)
        logger.info(f"[app] imported {len(imported)} user(s), {added} value(s) from {path}")


def _backup_state(args: argparse.Namespace) -> int:
    """--backup-state PATH: an online copy of the state database, then exit."""
    from common.store import STATE_DB_NAME, StoreError
    from common.store.backup import backup_state

    kind = (conf().get("state_store") or "sqlite").lower()
    if kind == "redis":
        print("backup failed: state_store is 'redis': back up the Redis server itself "
              "(its RDB snapshot or append-only files, e.g. after BGSAVE)", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    if kind != "sqlite":
        print(f"backup failed: state_store is '{kind}', which keeps nothing on disk to back up", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    source = os.path.join(get_appdata_dir(), SANDBOX_STATE_DB if args.sandbox else STATE_DB_NAME)
    try:
        result = backup_state(source, args.backup_state)
    except (StoreError, OSError) as e:
        print(f"backup failed: {e}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    logger.info(f"[app] state database {source} backed up to {result.path}")
    print(f"state database backed up to {result.path} ({result.size} bytes)")
    return EXIT_OK


PURGE_INTERVAL = 600.0


def _purge_expired_state(store) -> None:
    """Drop expired dedup keys and bot state now and then, so the file stays small."""
    while not _stopped.wait(PURGE_INTERVAL):
        try:
            removed = store.purge_expired()
            if removed:
                logger.debug(f"[app] purged {removed} expired state row(s)")
        except Exception as e:
            if _shutting_down:  # the store was closed by the stop
                logger.debug(f"[app] purge skipped: {e}")
                return
            # A store that is away for now (Redis restarting, a locked file) is purged next time.
            logger.warning(f"[app] purging expired state failed, trying again in {PURGE_INTERVAL:g} s: {e}")


def run(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    limit_arenas()  # before the worker threads exist (common/allocator.py says why)
    open_run_log("run.log")
    if args.cmd:
        _quiet_console()  # before anything is logged: even the config lines go to run.log only
    # Command-line settings win over the files, now and after every #reconf.
    forced: dict = {"channel_type": "terminal"} if args.cmd else {}
    try:
        set_command_line_settings(forced)
        load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.backup_state is not None:
        return _backup_state(args)
    try:
        channel_name = _channel_names()
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if "terminal" in channel_name:
        _quiet_console()
    try:
        if args.sandbox:
            forced.update(_start_sandbox())
            set_command_line_settings(forced)
        _check_bot()
        _check_voice()
        _open_state(args)
        if args.plugins_dir:
            from plugins import PluginManager

            if not os.path.isdir(args.plugins_dir):
                raise StartupError(f"plugins folder '{args.plugins_dir}' does not exist")
            PluginManager().configure(args.plugins_dir)
        sigterm_handler_wrap(signal.SIGINT)
        sigterm_handler_wrap(signal.SIGTERM)
        start_channel(channel_name)
    except KeyboardInterrupt:
        return EXIT_OK
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_OK
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        _graceful_stop()
        return EXIT_BAD_CONFIG
    except Exception as e:
        from channel.channel_factory import ChannelError

        if not isinstance(e, (StartupError, ChannelError)):
            logger.exception("[app] start-up failed")
        print(f"start-up failed: {e}", file=sys.stderr)
        _graceful_stop()
        return EXIT_STARTUP_FAILED
    # startup() returned: the channel ended by itself (end of terminal input) or runs
    # in background threads; in the latter case wait for a signal.
    try:
        if not _shutting_down and not _channel_finished():
            # Not _stopped.wait(): the handler's _graceful_stop sets _stopped, and a signal
            # landing while this thread holds the Event's inner lock would deadlock on it.
            while not _stopped.is_set():
                time.sleep(0.5)
        _graceful_stop()
    except KeyboardInterrupt:
        return EXIT_OK
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_OK
    code = int(getattr(_channel, "exit_code", 0) or 0)
    if code:
        logger.error(f"[app] the channel ended by itself, exiting with code {code}")
    return code


def _channel_names() -> list[str]:
    """The channels `channel_type` names (one, or several to run side by side); ConfigError for a
    combination that cannot run."""
    from channel.channel_factory import ALIASES
    from channel.channel_group import channel_names

    return channel_names(conf().get("channel_type", "wx"), conf(), ALIASES)


def _quiet_console() -> None:
    # The terminal's screen is for the conversation: only warnings and errors join it;
    # run.log still records everything from INFO up.
    set_console_level(logging.WARNING)


def _channel_finished() -> bool:
    # A channel whose startup() returns after its work is done says so with `finished`.
    return bool(getattr(_channel, "finished", False))


if __name__ == "__main__":
    sys.exit(run())
