# encoding:utf-8
# An API lookup plugin in the style of the ecosystem's "morning news / weather / express" ones:
# "$天气 <city>" asks a JSON API whose address and key are in the plugin's settings.
import json

import requests

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from plugins import *


@plugins.register(name="ApiLookup", desire_priority=30, desc="weather lookup", version="0.1", author="tests")
class ApiLookup(Plugin):
    def __init__(self):
        super().__init__()
        self.config = self.load_config() or {}
        if not self.config.get("api_base"):
            raise Exception("[ApiLookup] api_base is not configured")
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT or not context.content.startswith("$天气 "):
            return
        city = context.content[len("$天气 "):].strip()
        try:
            resp = requests.get(self.config["api_base"] + "/weather", params={"city": city, "token": self.config.get("token", "")}, timeout=10)
            data = resp.json()
            if data.get("code") != 200:
                text = f"查询失败：{data.get('msg')}"
            else:
                text = f"{city}：{data['data']['weather']}，{data['data']['temp']}℃"
        except (requests.RequestException, ValueError, KeyError) as e:
            logger.warning(f"[ApiLookup] {e}")
            text = "查询失败"
        e_context["reply"] = Reply(ReplyType.TEXT, text)
        e_context.action = EventAction.BREAK_PASS
