"""The content of the messages the bot sends (reference/channel-protocols.md §4.4): `content` is
a JSON string inside the request's JSON.

A text that uses Markdown goes as an interactive card with one markdown element (Feishu renders
it there, and a plain `text` message would show the asterisks); other text goes as `text`. Cards
are marked `update_multi`, so a growing answer can be replaced in place (PATCH). Long texts are
cut in pieces that fit the card's 30 KB body, with room for JSON escaping.
"""
from __future__ import annotations

import json

from common.utils import remove_markdown_symbol, split_string_by_utf8_length

PIECE_MAX_BYTES = 20000  # card bodies are capped at 30 KB; escaping quotes and newlines adds some


def looks_like_markdown(text: str) -> bool:
    return remove_markdown_symbol(text) != text


def json_content(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False)


def text_content(text: str) -> str:
    return json_content({"text": text})


def card(text: str) -> dict:
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "elements": [{"tag": "markdown", "content": text}],
    }


def card_content(text: str) -> str:
    return json_content(card(text))


def message_body(text: str) -> tuple[str, str]:
    """(msg_type, content) of one piece of text."""
    if looks_like_markdown(text):
        return "interactive", card_content(text)
    return "text", text_content(text)


def _escaped_bytes(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def pieces(text: str, max_bytes: int = PIECE_MAX_BYTES) -> list[str]:
    """`text` in pieces of at most max_bytes UTF-8 bytes once JSON-escaped, in order (never
    empty): a text of quotes and backslashes doubles when escaped (control characters grow
    sixfold), and the card's 30 KB cap is on the escaped body."""
    result: list[str] = []
    for piece in split_string_by_utf8_length(text, max_bytes) or [text]:
        if _escaped_bytes(piece) <= max_bytes:
            result.append(piece)
            continue
        start, size = 0, 0
        for n, char in enumerate(piece):
            grown = _escaped_bytes(char)
            if size + grown > max_bytes and n > start:
                result.append(piece[start:n])
                start, size = n, 0
            size += grown
        result.append(piece[start:])
    return result
