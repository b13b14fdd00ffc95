"""The original's ``bot.openai`` modules, kept at their paths for plugins and bots that import them."""
