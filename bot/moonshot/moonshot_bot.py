"""``MoonshotBot``: Moonshot / Kimi (`model: moonshot`, `moonshot-v1-8k/32k/128k`, or `bot_type: moonshot`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.MOONSHOT``.
"""
from bot.compatible.presets import MOONSHOT
from bot.compatible.vendor_bot import VendorChatBot


class MoonshotBot(VendorChatBot):
    preset = MOONSHOT
