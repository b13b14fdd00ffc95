"""History of the OpenAI-style chat bot, with a download-free token estimate.

The original counted tokens with ``tiktoken``, which downloads its encoding
files on first use (and so fails offline). Here the count is an estimate that
needs nothing:

* a CJK character (Chinese, Japanese kana, Korean Hangul, full-width
  punctuation) counts 1 token, which is what the GPT tokenizers give for
  common Chinese characters (rare ones take 2, so this errs a little low);
* any other text counts 1 token per 4 characters, rounded up (OpenAI's own
  rule of thumb for English);
* every message adds 4 tokens of framing (role, separators), and the whole
  prompt 3 more for the reply's priming, as in OpenAI's counting recipe;
* an image part of a multi-part message counts 85 tokens (a low-detail image).

It is an estimate, not an exact count: budgets (``conversation_max_tokens``)
should keep some margin below the model's real context window.

Trimming keeps the system message and drops the oldest turns first. A turn
is dropped whole: when the oldest question goes, the answers left in front
of the next question go too, so the history never starts with an answer
(the original dropped one message at a time). When only the latest user
message is left and it alone is over budget, it is kept and sent anyway,
as in the original.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

from bot.session_manager import Session
from common import const
from common.log import logger

TOKENS_PER_MESSAGE = 4
TOKENS_FOR_REPLY = 3
TOKENS_PER_IMAGE = 85
CHARS_PER_TOKEN = 4

_CJK = re.compile(
    "["
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3000-\u303f"  # CJK symbols and punctuation
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u31ff"  # bopomofo, Hangul compatibility jamo, kanbun, CJK strokes
    "\u3200-\u4dbf"  # enclosed CJK, compatibility, extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul jamo extended-A
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff00-\uffef"  # half-width and full-width forms
    "\U00020000-\U0003134f"  # extensions B to G
    "]"
)


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of a piece of text (see the module docstring)."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / CHARS_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return estimate_text_tokens(content)
    if isinstance(content, list):  # multi-part content (text and image parts)
        total = 0
        for part in content:
            if isinstance(part, dict):
                if part.get("type") in ("image_url", "image"):
                    total += TOKENS_PER_IMAGE
                else:
                    total += _content_tokens(part.get("text"))
            else:
                total += _content_tokens(part)
        return total
    if isinstance(content, dict):
        return _content_tokens(content.get("content", content.get("text")))
    return estimate_text_tokens(str(content))


def estimate_message_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """Estimated prompt tokens of a list of chat messages."""
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE + _content_tokens(message.get("content"))
        if message.get("name"):
            total += estimate_text_tokens(str(message["name"]))
    return total + TOKENS_FOR_REPLY


def trim_messages(messages: list[dict[str, Any]], max_tokens: int | None) -> int:
    """Drop the oldest turns of ``messages`` (in place) until they fit; return the estimate.

    A leading system message is always kept; a lone latest user message is
    kept even when it alone is over budget. ``max_tokens`` None: no limit.
    """
    tokens = estimate_message_tokens(messages)
    if max_tokens is None:
        return tokens
    first = 1 if messages and messages[0].get("role") == "system" else 0
    while tokens > max_tokens and len(messages) > first:
        if len(messages) == first + 1 and messages[first].get("role") == "user":
            logger.warning("user message exceeds max_tokens. total_tokens={}".format(tokens))
            break
        del messages[first]
        # The answers to the question just dropped go with it.
        while len(messages) > first and messages[first].get("role") == "assistant":
            del messages[first]
        tokens = estimate_message_tokens(messages)
    return tokens


class ChatGPTSession(Session):
    def __init__(self, session_id: Any, system_prompt: str | None = None, model: str = const.GPT35):
        super().__init__(session_id, system_prompt)
        self.model = model

    def discard_exceeding(self, max_tokens: int | None = None, cur_tokens: int | None = None) -> int:
        """Trim to ``max_tokens``; return the estimated tokens left.

        ``cur_tokens`` (the API's reported usage, passed by the manager) is
        accepted for compatibility and not needed: the estimate never fails.
        """
        return trim_messages(self.messages, max_tokens)

    def calc_tokens(self) -> int:
        return estimate_message_tokens(self.messages)
