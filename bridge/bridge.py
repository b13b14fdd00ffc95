"""The Bridge: routes a query to the chat bot, and audio or text to the speech and
translation engines chosen by the settings.

Same routing and public methods as the original. Differences, on purpose:

* ``fetch_reply_content``, ``fetch_voice_to_text``, ``fetch_text_to_voice`` and
  ``fetch_translate`` never raise. An unknown or unavailable bot/engine, or any
  exception inside one, becomes ``Reply(ReplyType.ERROR, <short text>)``, in
  Chinese when the user's text contains Chinese characters, else in English.
  The reply never carries exception text (which may hold URLs, keys or a
  traceback); the details go to the log. ``get_bot`` and ``find_chat_bot``
  still raise, as before, because plugins call them to get a bot object.
* Bots are created lazily under a lock, so two worker threads asking at the
  same time create one bot, not two.
* ``Bridge`` is a real class (``isinstance`` works) holding one instance;
  ``Bridge.reset_instance()`` forgets it (tests).
"""
from __future__ import annotations

import re
import threading
from typing import Any, Callable, Mapping

from bot.bot_factory import BotNotAvailable, UnknownBot, create_bot
from bridge.context import Context
from bridge.reply import Reply, ReplyType
from common import const
from common.log import logger
from config import conf
from voice.factory import create_voice


# Model name -> bot type, used when bot_type is empty. The rules are disjoint, so
# their order does not matter among themselves; all of them beat the two
# settings-based choices (text-davinci-003 and use_azure_chatgpt) as in the original.
_MODEL_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda m: m in (const.WEN_XIN, const.WEN_XIN_4), const.BAIDU),
    (lambda m: m == const.XUNFEI, const.XUNFEI),
    (lambda m: m == const.QWEN, const.QWEN),
    (lambda m: m in (const.QWEN_TURBO, const.QWEN_PLUS, const.QWEN_MAX), const.QWEN_DASHSCOPE),
    (lambda m: m.startswith("gemini"), const.GEMINI),
    (lambda m: m == const.DIFY, const.DIFY),
    (lambda m: m.startswith("glm"), const.ZHIPU_AI),
    (lambda m: m == const.COZE, const.COZE),
    (lambda m: m.startswith("claude-3"), const.CLAUDEAPI),
    (lambda m: m.startswith("deepseek-"), const.DEEPSEEK),
    (lambda m: m == "claude", const.CLAUDEAI),
    (lambda m: m in (const.MOONSHOT, const.MOONSHOT_V1_8K, const.MOONSHOT_V1_32K, const.MOONSHOT_V1_128K), const.MOONSHOT),
    (lambda m: m == const.MODELSCOPE, const.MODELSCOPE),
    (lambda m: m == const.MINIMAX_ABAB6_5, const.MiniMax),
)


def route(cfg: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The ``btype`` table for the given settings (the live config by default).

    ``bot_type``, when set, is the chat bot and nothing else is looked at
    (LinkAI included), as in the original. Otherwise the chat bot follows
    ``model``; then ``use_linkai`` with a ``linkai_api_key`` replaces it with
    LinkAI, and also replaces the OpenAI speech engines.
    """
    cfg = conf() if cfg is None else cfg
    btype = {
        "chat": const.CHATGPT,
        "voice_to_text": cfg.get("voice_to_text") or "openai",
        "text_to_voice": cfg.get("text_to_voice") or "google",
        "translate": cfg.get("translate") or "baidu",
    }
    bot_type = cfg.get("bot_type")
    if bot_type:
        btype["chat"] = bot_type
        return btype
    model = str(cfg.get("model") or const.GPT35)
    if model == "text-davinci-003":
        btype["chat"] = const.OPEN_AI
    if cfg.get("use_azure_chatgpt"):
        btype["chat"] = const.CHATGPTONAZURE
    for matches, name in _MODEL_RULES:
        if matches(model):
            btype["chat"] = name
            break
    if cfg.get("use_linkai") and cfg.get("linkai_api_key"):
        btype["chat"] = const.LINKAI
        if not cfg.get("voice_to_text") or cfg.get("voice_to_text") == "openai":
            btype["voice_to_text"] = const.LINKAI
        if not cfg.get("text_to_voice") or cfg.get("text_to_voice") in ("openai", const.TTS_1, const.TTS_1_HD):
            btype["text_to_voice"] = const.LINKAI
    return btype


def _create_translator(name: str) -> Any:
    try:
        from translate.factory import create_translator
    except ImportError as e:
        raise BotNotAvailable(f"translator '{name}' is not available in this version", name) from e
    return create_translator(name)


_CREATORS: dict[str, Callable[[str], Any]] = {
    "chat": create_bot,
    "voice_to_text": create_voice,
    "text_to_voice": create_voice,
    "translate": _create_translator,
}

# --- user-facing error texts -------------------------------------------------

_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# typename -> (Chinese, English) for: what it is, the setting that picks it, the failure
_WHAT = {
    "chat": ("机器人", "bot", "bot_type 或 model", "bot_type or model"),
    "voice_to_text": ("语音识别引擎", "speech-to-text engine", "voice_to_text", "voice_to_text"),
    "text_to_voice": ("语音合成引擎", "text-to-speech engine", "text_to_voice", "text_to_voice"),
    "translate": ("翻译引擎", "translator", "translate", "translate"),
}
_FAILED = {
    "chat": ("抱歉，生成回复时出错了，请稍后再试。", "Sorry, something went wrong while generating the reply. Please try again later."),
    "voice_to_text": ("抱歉，语音识别失败了，请稍后再试。", "Sorry, speech recognition failed. Please try again later."),
    "text_to_voice": ("抱歉，语音合成失败了，请稍后再试。", "Sorry, text-to-speech failed. Please try again later."),
    "translate": ("抱歉，翻译失败了，请稍后再试。", "Sorry, translation failed. Please try again later."),
}


def is_chinese(text: Any) -> bool:
    return isinstance(text, str) and _CHINESE.search(text) is not None


def in_language(zh: str, en: str, chinese: bool | None) -> str:
    """The text for the user's language; both when it is unknown (``chinese=None``)."""
    if chinese is None:
        return f"{zh} / {en}"
    return zh if chinese else en


def error_text(typename: str, error: BaseException, name: str, chinese: bool | None) -> str:
    """A short user-facing text for ``error``; ``chinese=None`` gives both languages."""
    what_zh, what_en, key_zh, key_en = _WHAT[typename]
    if isinstance(error, UnknownBot):
        zh = f"未知的{what_zh}“{name}”，请检查配置项 {key_zh}。"
        en = f"Unknown {what_en} '{name}': check the {key_en} setting."
    elif isinstance(error, BotNotAvailable):
        zh = f"{what_zh}“{name}”在当前版本中不可用，请在配置项 {key_zh} 中换一个。"
        en = f"The {what_en} '{name}' is not available in this version: choose another one in the {key_en} setting."
    else:
        zh, en = _FAILED[typename]
    return in_language(zh, en, chinese)


class Bridge:
    """One per process: ``Bridge()`` always returns the same object."""

    _instance: "Bridge | None" = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> "Bridge":
        instance = cls._instance
        if instance is None:
            with cls._instance_lock:
                if cls._instance is None:
                    created = super().__new__(cls)
                    created._lock = threading.RLock()
                    created._load_routes()
                    cls._instance = created
                instance = cls._instance
        return instance

    @classmethod
    def reset_instance(cls) -> None:
        """Forget the instance, so the next ``Bridge()`` starts from the settings (tests)."""
        with cls._instance_lock:
            cls._instance = None

    def _load_routes(self) -> None:
        self.btype: dict[str, str] = route()
        self.bots: dict[str, Any] = {}
        self.chat_bots: dict[str, Any] = {}

    # --- bots ----------------------------------------------------------------

    def get_bot(self, typename: str) -> Any:
        """The bot or engine for ``typename``, created on first use.

        Raises KeyError for a typename other than chat, voice_to_text,
        text_to_voice and translate; UnknownBot / BotNotAvailable when the
        chosen name cannot be created (nothing is cached then, so fixing the
        setting and calling ``reset_bot`` or simply retrying works).
        """
        bot = self.bots.get(typename)
        if bot is not None:
            return bot
        # One lock for all creations: creation is rare (once per bot, per reset)
        # and this keeps it simple next to reset_bot.
        with self._lock:
            bot = self.bots.get(typename)
            if bot is None:
                name = self.btype[typename]
                logger.info("create bot {} for {}".format(name, typename))
                bot = _CREATORS[typename](name)
                self.bots[typename] = bot
            return bot

    def get_bot_type(self, typename: str) -> str:
        return self.btype[typename]

    def find_chat_bot(self, bot_type: str) -> Any:
        """A chat bot of the given type, kept apart from the routed one (plugins use it).

        Raises UnknownBot / BotNotAvailable like ``create_bot``.
        """
        bot = self.chat_bots.get(bot_type)
        if bot is not None:
            return bot
        with self._lock:
            bot = self.chat_bots.get(bot_type)
            if bot is None:
                bot = create_bot(bot_type)
                self.chat_bots[bot_type] = bot
            return bot

    def reset_bot(self) -> None:
        """Re-run the routing from the current settings and drop every bot (``#model`` uses it)."""
        with self._lock:
            self._load_routes()

    # --- requests (never raise) ---------------------------------------------

    def _call(self, typename: str, call: Callable[[Any], Reply], chinese: bool | None) -> Reply:
        name = self.btype.get(typename, "")
        try:
            bot = self.get_bot(typename)
        except (UnknownBot, BotNotAvailable) as e:
            # Our own one-line message says it all; a traceback would only add noise.
            logger.error("[Bridge] cannot create {} for {}: {}".format(name, typename, e))
            return Reply(ReplyType.ERROR, error_text(typename, e, name, chinese))
        except Exception as e:
            logger.exception("[Bridge] creating {} for {} failed".format(name, typename))
            return Reply(ReplyType.ERROR, error_text(typename, e, name, chinese))
        try:
            return call(bot)
        except Exception as e:
            logger.exception("[Bridge] {} {} failed".format(typename, name))
            return Reply(ReplyType.ERROR, error_text(typename, e, name, chinese))

    def fetch_reply_content(self, query: str, context: Context = None) -> Reply:
        return self._call("chat", lambda bot: bot.reply(query, context), is_chinese(query))

    def fetch_voice_to_text(self, voiceFile: str) -> Reply:
        # The language of a voice message is unknown before transcription: both languages.
        return self._call("voice_to_text", lambda bot: bot.voiceToText(voiceFile), None)

    def fetch_text_to_voice(self, text: str) -> Reply:
        return self._call("text_to_voice", lambda bot: bot.textToVoice(text), is_chinese(text))

    def fetch_translate(self, text: str, from_lang: str = "", to_lang: str = "en") -> Reply:
        return self._call("translate", lambda bot: bot.translate(text, from_lang, to_lang), is_chinese(text))
