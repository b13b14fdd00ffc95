"""``AliQwenBot``: the original's `qwen` bot type (its Bailian SDK is retired): Qwen through DashScope's compatible mode.

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.QWEN_OLD``.
"""
from bot.compatible.presets import QWEN_OLD
from bot.compatible.vendor_bot import VendorChatBot


class AliQwenBot(VendorChatBot):
    preset = QWEN_OLD
