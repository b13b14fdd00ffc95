"""The LinkAI bot at the original's path, ``bot.linkai.link_ai_bot.LinkAIBot``."""
