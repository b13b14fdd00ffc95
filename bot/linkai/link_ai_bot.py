"""``LinkAIBot``: LinkAI's chat service (``bot_type: linkai``, or ``use_linkai`` with a key),
at the original's path ``bot.linkai.link_ai_bot``.

LinkAI speaks the OpenAI chat-completions API at ``{linkai_api_base}/v1/chat/completions``
with ``Authorization: Bearer {linkai_api_key}`` plus ``app_code`` (``linkai_app_code``, or a
context's ``app_code``, which plugins set) naming the LinkAI app. Everything else (history,
streaming, retries, error texts, ``create_img`` through ``/v1/images/generations``) is
ChatGPTBot's. Not ported: the original's knowledge-base and agent suffixes, group-to-app
mapping and LinkAI image recognition.
"""
from __future__ import annotations

import threading
from typing import Any

from bot.chatgpt.chat_gpt_bot import ChatGPTBot
from bot.openai.open_ai_image import OpenAIImage
from bridge.context import Context
from bridge.reply import Reply
from config import conf

DEFAULT_LINKAI_API_BASE = "https://api.link-ai.tech"


def _linkai_base() -> str:
    return (conf().get("linkai_api_base") or DEFAULT_LINKAI_API_BASE).rstrip("/")


class LinkAIBot(ChatGPTBot, OpenAIImage):
    def __init__(self) -> None:
        super().__init__()
        # A plugin's context may name another LinkAI app for one question; workers run
        # questions of several sessions at once, so it is kept per thread.
        self._question = threading.local()

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        # LinkAI's own key, not OpenAI's (which the chat bot it is built on would ask for).
        if str(settings.get("linkai_api_key") or "").strip():
            return None
        return "setting 'linkai_api_key' is empty: put your LinkAI API key in it"

    def reply(self, query: str, context: Context = None) -> Reply:
        self._question.app_code = context.get("app_code") if context is not None else None
        try:
            return super().reply(query, context)
        finally:
            self._question.app_code = None

    def _linkai_auth(self, call: Any) -> None:
        key = conf().get("linkai_api_key") or ""
        call.api_key = key
        call.headers = {"Authorization": f"Bearer {key}"} if key else {}
        call.settings = "linkai_api_key, linkai_app_code, linkai_api_base"
        # The key and address errors name LinkAI's settings, not OpenAI's.
        call.key_setting = "linkai_api_key"
        call.base_setting = "linkai_api_base"

    def _chat_endpoint(self, call: Any) -> None:
        call.url = _linkai_base() + "/v1/chat/completions"
        self._linkai_auth(call)
        app_code = getattr(self._question, "app_code", None) or conf().get("linkai_app_code")
        if app_code:
            call.payload["app_code"] = app_code

    def _image_endpoint(self, call: Any) -> None:
        call.url = _linkai_base() + "/v1/images/generations"
        self._linkai_auth(call)
        call.target_words = ("画图模型", "Image model")
