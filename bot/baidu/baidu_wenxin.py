"""``BaiduWenxinBot``: Baidu Wenxin / ERNIE through Qianfan's v2 (OpenAI-compatible) API (`model: wenxin` / `wenxin-4`, or `bot_type: baidu`).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.WENXIN``.
"""
from bot.compatible.presets import WENXIN
from bot.compatible.vendor_bot import VendorChatBot


class BaiduWenxinBot(VendorChatBot):
    preset = WENXIN
