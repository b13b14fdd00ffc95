"""Start-up check of the speech engines the settings choose, so a user finds out at start, not
from the first voice message.

Only the engines in use are checked: ``voice_to_text`` when ``speech_recognition`` or
``group_speech_recognition`` is on, ``text_to_voice`` when ``voice_reply_voice`` or
``always_reply_voice`` is. An engine whose code or Python package is missing, or that cannot do
the job it was given, stops start-up with one line; an engine class may add its own checks with
a ``startup_problem(role)`` classmethod (a fatal problem, one line) and a
``startup_warning(role)`` classmethod (logged, e.g. missing credentials or a retired endpoint).
"""
from __future__ import annotations

from typing import Any

from bot.bot_factory import BotNotAvailable, UnknownBot, is_import_path, load_target
from common.log import logger


def _roles_in_use(cfg: Any) -> list[str]:
    roles = []
    if cfg.get("speech_recognition") or cfg.get("group_speech_recognition"):
        roles.append("voice_to_text")
    if cfg.get("voice_reply_voice") or cfg.get("always_reply_voice"):
        roles.append("text_to_voice")
    return roles


def voice_startup_problems(cfg: Any, engines: dict[str, str]) -> list[str]:
    """One line per fatal problem of the engines in use (``engines``: role -> engine name, as
    the Bridge routes them); warnings are logged."""
    from voice.factory import VOICE_REGISTRY, known_voices

    problems = []
    for role in _roles_in_use(cfg):
        name = engines.get(role)
        target = VOICE_REGISTRY.get(name) if isinstance(name, str) else None
        if target is None and not is_import_path(name):
            problems.append(f"unknown voice engine {name!r} (setting '{role}'); known engines: {', '.join(known_voices())}")
            continue
        try:
            cls = load_target("voice engine", str(name), target or name)
        except (UnknownBot, BotNotAvailable) as e:
            problems.append(f"{e} (chosen by the setting '{role}')")
            continue
        check = getattr(cls, "startup_problem", None)
        problem = check(role) if callable(check) else None
        if problem:
            problems.append(f"{problem} (setting '{role}': {name})")
        warn = getattr(cls, "startup_warning", None)
        warning = warn(role) if callable(warn) else None
        if warning:
            logger.warning(f"[voice] {role} = {name}: {warning}")
    return problems
