# encoding:utf-8
# A plugin importing openai at module level and calling it the way plugins written for the
# original (openai 0.27) do: "$gpt <question>" asks the model named in its settings.
import openai
import openai.error

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from config import conf
from plugins import *


@plugins.register(name="OpenAIChat", desire_priority=60, desc="ask openai", version="0.1", author="tests")
class OpenAIChat(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT or not context.content.startswith("$gpt "):
            return
        question = context.content[len("$gpt "):]
        try:
            response = openai.ChatCompletion.create(
                api_key=conf().get("open_ai_api_key"),
                api_base=conf().get("open_ai_api_base"),
                model="gpt-3.5-turbo",
                messages=[{"role": "user", "content": question}],
            )
            text = "gpt: " + response["choices"][0]["message"]["content"]
        except openai.error.OpenAIError as e:
            logger.error(f"[OpenAIChat] {e}")
            text = "gpt failed"
        e_context["reply"] = Reply(ReplyType.TEXT, text)
        e_context.action = EventAction.BREAK_PASS
