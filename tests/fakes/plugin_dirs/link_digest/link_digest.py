# encoding:utf-8
# A link summariser in the style of the ecosystem's: "$总结 <url>" fetches the page and answers
# its title and first paragraph (the real ones then ask a model; this one stops at the page).
import re
from html.parser import HTMLParser

import requests

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from common.utils import remove_markdown_symbol
from plugins import *


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.title, self.paragraphs, self._in = "", [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("title", "p"):
            self._in = tag
            if tag == "p":
                self.paragraphs.append("")

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "p":
            self.paragraphs[-1] += data


@plugins.register(name="LinkDigest", desire_priority=40, desc="summarises links", version="0.1", author="tests")
class LinkDigest(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        match = re.match(r"^\$总结\s+(https?://\S+)$", context.content or "") if context.type == ContextType.TEXT else None
        if not match:
            return
        try:
            resp = requests.get(match.group(1), timeout=10)
            resp.raise_for_status()
            resp.encoding = resp.apparent_encoding or "utf-8"
            page = _Page()
            page.feed(resp.text)
            first = next((p.strip() for p in page.paragraphs if p.strip()), "")
            text = remove_markdown_symbol(f"**{page.title.strip()}**\n{first}")
        except requests.RequestException as e:
            logger.warning(f"[LinkDigest] {e}")
            text = "链接打不开"
        e_context["reply"] = Reply(ReplyType.TEXT, text)
        e_context.action = EventAction.BREAK_PASS
