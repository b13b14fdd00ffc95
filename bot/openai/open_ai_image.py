"""``OpenAIImage``: the image-generation mix-in plugins and third-party bots inherit from
(``class MyBot(Bot, OpenAIImage)``) to call ``self.create_img(query, 0)``.

It answers through ChatGPTBot's image request (``open_ai_api_base`` + ``/images/generations``,
``text_to_image``, ``image_create_size``, ``rate_limit_dalle``), so its errors are the ones
users get from the chat bot. The original set the openai<1.0 SDK's process-wide key and base
URL in ``__init__``; nothing global is touched here.
"""
from __future__ import annotations

from typing import Any

from bridge.context import Context, ContextType
from bridge.reply import ReplyType


class OpenAIImage:
    def _image_bot(self) -> Any:
        from bot.chatgpt.chat_gpt_bot import ChatGPTBot

        if isinstance(self, ChatGPTBot):
            return self
        bot = self.__dict__.get("_openai_image_bot")
        if bot is None:
            bot = ChatGPTBot()
            self.__dict__["_openai_image_bot"] = bot
        return bot

    def create_img(self, query: str, retry_count: int = 0, api_key: str | None = None, context: Context | None = None) -> tuple[bool, Any]:
        """``(True, image URL)`` (or ``(True, BytesIO)`` for a base64 answer), else
        ``(False, message for the user)``. With ``context``, a DALL-E 3 revised prompt is sent
        to its channel first, as in the original. ``retry_count`` is accepted for the
        original's signature; retries happen inside."""
        kwargs = dict(context.kwargs) if context is not None else {}
        if api_key:
            kwargs["openai_api_key"] = api_key
        reply = self._image_bot()._reply_image(query, Context(ContextType.IMAGE_CREATE, query, kwargs))
        if reply.type in (ReplyType.IMAGE_URL, ReplyType.IMAGE):
            return True, reply.content
        return False, reply.content
