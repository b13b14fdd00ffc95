"""``OpenAIBot`` (``bot_type: openAI``) at the original's path.

The original called the completions API of text-davinci-003, which OpenAI has retired; this
bot is ChatGPTBot (chat completions, same settings) under the original's name, with the
``create_img`` of OpenAIImage that the original's OpenAIBot had.
"""
from __future__ import annotations

from bot.chatgpt.chat_gpt_bot import ChatGPTBot
from bot.openai.open_ai_image import OpenAIImage


class OpenAIBot(ChatGPTBot, OpenAIImage):
    pass
