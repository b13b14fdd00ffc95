"""``ModelScopeBot``: ModelScope API-Inference (`model: modelscope`, or `bot_type: modelscope` with a model id).

At the original's module path so its ``bot_type`` keeps working; the preset (address, key
setting, models, quirks) is ``bot.compatible.presets.MODELSCOPE``.
"""
from bot.compatible.presets import MODELSCOPE
from bot.compatible.vendor_bot import VendorChatBot


class ModelScopeBot(VendorChatBot):
    preset = MODELSCOPE
