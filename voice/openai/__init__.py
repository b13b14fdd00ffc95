"""The `openai` speech engine."""
