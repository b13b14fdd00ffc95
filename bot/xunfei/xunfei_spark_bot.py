"""``XunFeiBot``: iFlytek Spark through its HTTP (OpenAI-compatible) API (`model: xunfei`, or `bot_type: xunfei`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.XUNFEI``.
"""
from bot.compatible.presets import XUNFEI
from bot.compatible.vendor_bot import VendorChatBot


class XunFeiBot(VendorChatBot):
    preset = XUNFEI
