"""``GoogleGeminiBot``: Google Gemini through its OpenAI-compatible endpoint (`model: gemini*`, or `bot_type: gemini`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.GEMINI``.
"""
from bot.compatible.presets import GEMINI
from bot.compatible.vendor_bot import VendorChatBot


class GoogleGeminiBot(VendorChatBot):
    preset = GEMINI
