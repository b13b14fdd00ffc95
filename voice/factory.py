"""Which class implements each speech engine name (``voice_to_text`` / ``text_to_voice``).

Same mechanism as :mod:`bot.bot_factory`: a registry of import paths loaded on
first use, an import path ``"package.module:ClassName"`` accepted as an engine
name, and the same errors (UnknownBot for an unknown name, BotNotAvailable for
an engine whose code or Python package is missing).
"""
from __future__ import annotations

import threading
from typing import Any

from bot.bot_factory import BotNotAvailable, Target, UnknownBot, is_import_path, load_target

__all__ = ["VOICE_REGISTRY", "BotNotAvailable", "UnknownBot", "create_voice", "register_voice", "known_voices"]

# Engine names and module paths are the original's.
VOICE_REGISTRY: dict[str, Target] = {
    "baidu": "voice.baidu.baidu_voice:BaiduVoice",
    "google": "voice.google.google_voice:GoogleVoice",
    "openai": "voice.openai.openai_voice:OpenaiVoice",
    "pytts": "voice.pytts.pytts_voice:PyttsVoice",
    "azure": "voice.azure.azure_voice:AzureVoice",
    "elevenlabs": "voice.elevent.elevent_voice:ElevenLabsVoice",
    "linkai": "voice.linkai.linkai_voice:LinkAIVoice",
    "ali": "voice.ali.ali_voice:AliVoice",
    "edge": "voice.edge.edge_voice:EdgeVoice",
    "xunfei": "voice.xunfei.xunfei_voice:XunfeiVoice",
    "dify": "voice.dify.dify_voice:DifyVoice",
    "tencent": "voice.tencent.tencent_voice:TencentVoice",
}

_lock = threading.Lock()


def register_voice(name: str, target: Target) -> None:
    """Register (or replace) the engine ``name``: an import path or a class."""
    if not isinstance(name, str) or not name:
        raise ValueError("a voice engine name must be a non-empty string")
    if not isinstance(target, str) and not callable(target):
        raise TypeError(f"voice target for {name!r} must be an import path or a class")
    with _lock:
        VOICE_REGISTRY[name] = target


def known_voices() -> list[str]:
    return sorted(VOICE_REGISTRY)


def create_voice(voice_type: str) -> Any:
    """A new instance of the speech engine ``voice_type``."""
    with _lock:
        target = VOICE_REGISTRY.get(voice_type) if isinstance(voice_type, str) else None
    if target is None:
        if not is_import_path(voice_type):
            raise UnknownBot(
                f"unknown voice engine {voice_type!r}; known engines: {', '.join(known_voices())}",
                str(voice_type),
                known_voices(),
            )
        target = voice_type
    return load_target("voice engine", str(voice_type), target)()
