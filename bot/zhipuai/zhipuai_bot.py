"""``ZHIPUAIBot``: Zhipu AI GLM (`model: glm-*`, or `bot_type: glm-4`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.ZHIPU``.
"""
from bot.compatible.presets import ZHIPU
from bot.compatible.vendor_bot import VendorChatBot


class ZHIPUAIBot(VendorChatBot):
    preset = ZHIPU
