"""Which class translates for each value of the ``translate`` setting."""
from __future__ import annotations

from bot.bot_factory import UnknownBot, load_target
from translate.translator import Translator

REGISTRY: dict[str, str] = {
    "baidu": "translate.baidu.baidu_translate:BaiduTranslator",
}


def create_translator(translator_type: str) -> Translator:
    """A new translator; UnknownBot (a RuntimeError, as the original raised) for an unknown name."""
    target = REGISTRY.get(translator_type)
    if target is None:
        raise UnknownBot(
            f"unknown translator '{translator_type}' (known: {', '.join(sorted(REGISTRY))})", translator_type, list(REGISTRY)
        )
    return load_target("translator", translator_type, target)()
