"""OpenAI-compatible vendors: presets (presets.py) applied to the OpenAI-compatible bot (vendor_bot.py)."""
