"""OpenAI-compatible chat bot (ChatGPT, Azure OpenAI, and any server speaking the same API)."""
