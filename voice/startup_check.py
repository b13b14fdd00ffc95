"""Start-up check of the speech engines the settings will use.

Without it a wrong ``voice_to_text`` / ``text_to_voice`` (an unknown name, an engine whose
optional package is not installed, a vendor API that no longer exists, a required key left
empty) is found by the first user who sends a voice message. An engine is checked only when a
setting makes it used: ``speech_recognition`` / ``group_speech_recognition`` for speech to text,
``voice_reply_voice`` / ``always_reply_voice`` for text to speech. The names are the Bridge's
route (``use_linkai`` may replace the OpenAI engines by LinkAI's).

An engine class may define ``settings_problem(cfg) -> str | None`` (a static method): a
sentence saying what is missing or retired and what to use instead.
"""
from __future__ import annotations

from typing import Any, Mapping

from bot.bot_factory import BotNotAvailable, UnknownBot, is_import_path, load_target
from voice.factory import VOICE_REGISTRY, known_voices

# operation -> the settings that make it used
_USED_BY = {
    "voice_to_text": ("speech_recognition", "group_speech_recognition"),
    "text_to_voice": ("voice_reply_voice", "always_reply_voice"),
}


class VoiceEngineUnavailable(Exception):
    """The engine a setting names cannot run here (unknown, not installed)."""


class VoiceSettingsProblem(Exception):
    """The engine exists but its settings cannot work (a missing key, a retired API)."""


def engines_in_use(cfg: Mapping[str, Any]) -> dict[str, str]:
    """operation -> engine name, for the operations the settings turn on."""
    from bridge.bridge import route

    names = route(cfg)
    return {op: names[op] for op, switches in _USED_BY.items() if any(cfg.get(s) for s in switches)}


def check_voice_engines(cfg: Mapping[str, Any]) -> None:
    """Raise VoiceEngineUnavailable or VoiceSettingsProblem naming the setting; else nothing."""
    for operation, name in engines_in_use(cfg).items():
        target = VOICE_REGISTRY.get(name) if isinstance(name, str) else None
        try:
            if target is None:
                if not is_import_path(name):
                    raise UnknownBot(f"unknown voice engine {name!r}; known engines: {', '.join(known_voices())}",
                                     str(name), known_voices())
                target = name
            cls = load_target("voice engine", str(name), target)
        except (UnknownBot, BotNotAvailable) as e:
            raise VoiceEngineUnavailable(f"{e} (chosen by the setting '{operation}')") from None
        problem = getattr(cls, "settings_problem", None)
        message = problem(cfg) if callable(problem) else None
        if message:
            raise VoiceSettingsProblem(f"{message} (chosen by the setting '{operation}')")
