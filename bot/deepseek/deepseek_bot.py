"""``DeepseekBot``: DeepSeek (`model: deepseek-chat` / `deepseek-reasoner`, or `bot_type: deepseek`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.DEEPSEEK``.
"""
from bot.compatible.presets import DEEPSEEK
from bot.compatible.vendor_bot import VendorChatBot


class DeepseekBot(VendorChatBot):
    preset = DEEPSEEK
