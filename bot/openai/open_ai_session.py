"""``OpenAISession`` at the original's path: a chat session (the completions models it was
made for, text-davinci-003 and kin, are retired; OpenAIBot speaks chat completions)."""
from __future__ import annotations

from typing import Any

from bot.chatgpt.chat_gpt_session import ChatGPTSession


class OpenAISession(ChatGPTSession):
    def __init__(self, session_id: Any, system_prompt: str | None = None, model: str = "text-davinci-003"):
        super().__init__(session_id, system_prompt, model)

    def __str__(self) -> str:
        # The original rendered the history as one completions prompt; kept for plugins that log it.
        lines = []
        for item in self.messages:
            role = {"system": "", "user": "Q: ", "assistant": "A: "}.get(item.get("role"), "")
            lines.append(f"{role}{item.get('content')}")
        return "\n".join(lines) + "\nA: "
