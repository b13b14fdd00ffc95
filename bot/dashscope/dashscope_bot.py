"""``DashscopeBot``: Qwen through DashScope's compatible mode (`model: qwen-turbo/plus/max`, or `bot_type: dashscope`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.QWEN``.
"""
from bot.compatible.presets import QWEN
from bot.compatible.vendor_bot import VendorChatBot


class DashscopeBot(VendorChatBot):
    preset = QWEN
