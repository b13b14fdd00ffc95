"""``MinimaxBot``: MiniMax (`model: abab6.5-chat`, or `bot_type: minimax`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.MINIMAX``.
"""
from bot.compatible.presets import MINIMAX
from bot.compatible.vendor_bot import VendorChatBot


class MinimaxBot(VendorChatBot):
    preset = MINIMAX
