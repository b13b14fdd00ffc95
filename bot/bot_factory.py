"""Which class answers for each ``bot_type``.

``REGISTRY`` maps a bot type (the value of ``bot_type``, or what ``model`` is
routed to by the Bridge) to the class that implements it, written as an import
path ``"package.module:ClassName"`` (imported only when that bot is first
needed, so an unused bot never costs an import or a missing dependency) or as
the class itself.

Plugging in your own bot, without editing the project
-----------------------------------------------------
``bot_type`` may itself be an import path of the form
``"package.module:ClassName"``, for example in config.json::

    "bot_type": "my_bots.echo:EchoBot"

The module must be importable (installed, or on ``PYTHONPATH`` / in the
project folder), and the class must be constructible without arguments and
have a ``reply(query, context)`` method (subclass :class:`bot.bot.Bot`).
Code can also call :func:`register_bot` to give such a class a short name.

Errors
------
* :class:`UnknownBot`: the name is neither registered nor an import path;
  the message lists the known names.
* :class:`BotNotAvailable`: the name is known but its code cannot be imported
  (not ported to this version, or a Python package it needs is missing).

Both subclass ``RuntimeError``, which is what the original raised for any
unknown bot type, so callers written for the original keep working.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Union

from common import const

Target = Union[str, Callable[[], Any]]


class UnknownBot(RuntimeError):
    """No bot (or voice engine, or translator) is registered under this name."""

    def __init__(self, message: str, name: str = "", known: list[str] | None = None):
        super().__init__(message)
        self.name = name
        self.known = list(known or [])


class BotNotAvailable(RuntimeError):
    """The name is known but its implementation cannot be loaded in this install."""

    def __init__(self, message: str, name: str = ""):
        super().__init__(message)
        self.name = name


# bot_type -> implementation. The module paths are the original's, so a bot
# ported later drops into the same place without touching this table.
REGISTRY: dict[str, Target] = {
    const.BAIDU: "bot.baidu.baidu_wenxin:BaiduWenxinBot",
    const.CHATGPT: "bot.chatgpt.chat_gpt_bot:ChatGPTBot",
    const.OPEN_AI: "bot.openai.open_ai_bot:OpenAIBot",
    const.CHATGPTONAZURE: "bot.chatgpt.chat_gpt_bot:AzureChatGPTBot",
    const.XUNFEI: "bot.xunfei.xunfei_spark_bot:XunFeiBot",
    const.LINKAI: "bot.linkai.link_ai_bot:LinkAIBot",
    const.CLAUDEAI: "bot.claude.claude_ai_bot:ClaudeAIBot",
    const.CLAUDEAPI: "bot.claudeapi.claude_api_bot:ClaudeAPIBot",
    const.QWEN: "bot.ali.ali_qwen_bot:AliQwenBot",
    const.QWEN_DASHSCOPE: "bot.dashscope.dashscope_bot:DashscopeBot",
    const.GEMINI: "bot.gemini.google_gemini_bot:GoogleGeminiBot",
    const.DIFY: "bot.dify.dify_bot:DifyBot",
    const.ZHIPU_AI: "bot.zhipuai.zhipuai_bot:ZHIPUAIBot",
    const.COZE: "bot.bytedance.bytedance_coze_bot:ByteDanceCozeBot",
    const.MOONSHOT: "bot.moonshot.moonshot_bot:MoonshotBot",
    const.MiniMax: "bot.minimax.minimax_bot:MinimaxBot",
    const.DEEPSEEK: "bot.deepseek.deepseek_bot:DeepseekBot",
    const.MODELSCOPE: "bot.modelscope.modelscope_bot:ModelScopeBot",
}

_registry_lock = threading.Lock()


def register_bot(name: str, target: Target) -> None:
    """Register (or replace) the implementation of bot type ``name``.

    ``target`` is an import path ``"package.module:ClassName"`` or a class
    (any callable returning a bot).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a bot name must be a non-empty string")
    if isinstance(target, str):
        _split_path(target)  # fail now, not at first use
    elif not callable(target):
        raise TypeError(f"bot target for {name!r} must be an import path or a class, got {type(target).__name__}")
    with _registry_lock:
        REGISTRY[name] = target


def known_bots() -> list[str]:
    return sorted(REGISTRY)


def is_import_path(name: Any) -> bool:
    """True for names of the form ``package.module:ClassName``."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and bool(attr) and all(part.isidentifier() for part in module.split(".") + attr.split("."))


def _split_path(path: str) -> tuple[str, str]:
    if not is_import_path(path):
        raise ValueError(f"{path!r} is not an import path of the form 'package.module:ClassName'")
    module, attr = path.split(":")
    return module, attr


def load_target(kind: str, name: str, target: Target) -> Callable[[], Any]:
    """The class (factory) behind ``target``; BotNotAvailable if it cannot be imported.

    ``kind`` names what is being loaded ("bot", "voice engine", ...) in messages.
    """
    if not isinstance(target, str):
        return target
    module_name, attr = _split_path(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None) or ""
        # The module itself is absent (not ported), or one of its own imports is.
        if is_import_path(name):
            # A path the user wrote: say what failed, not "this version".
            message = f"{kind} '{name}' is not available: module '{module_name}' cannot be imported ({e})"
        elif missing and not (module_name == missing or module_name.startswith(missing + ".")):
            message = f"{kind} '{name}' is not available: the Python package '{missing.split('.')[0]}' it needs is not installed"
        else:
            message = f"{kind} '{name}' is not available in this version"
        raise BotNotAvailable(message, name) from e
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise BotNotAvailable(
            f"{kind} '{name}' is not available in this version ({module_name} has no {attr})", name
        ) from e
    if not callable(obj):
        raise BotNotAvailable(f"{kind} '{name}' is not available: {target} is not a class", name)
    return obj


def bot_class(bot_type: str) -> Callable[[], Any]:
    """The class (factory) registered as ``bot_type`` (or at that import path), imported
    but not instantiated; raises UnknownBot or BotNotAvailable."""
    with _registry_lock:
        target = REGISTRY.get(bot_type) if isinstance(bot_type, str) else None
    if target is None:
        if is_import_path(bot_type):
            target = bot_type
        else:
            raise UnknownBot(
                f"unknown bot type {bot_type!r}; known bot types: {', '.join(known_bots())}"
                " (or an import path 'package.module:ClassName')",
                str(bot_type),
                known_bots(),
            )
    return load_target("bot", str(bot_type), target)


def create_bot(bot_type: str) -> Any:
    """A new instance of the bot registered as ``bot_type`` (or at that import path).

    Raises UnknownBot or BotNotAvailable (see the module docstring); anything
    the bot's constructor raises propagates unchanged.
    """
    bot = bot_class(bot_type)()
    if not callable(getattr(bot, "reply", None)):
        raise BotNotAvailable(f"bot '{bot_type}' is not usable: it has no reply(query, context) method", str(bot_type))
    return bot
