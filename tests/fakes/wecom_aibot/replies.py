"""Schema checks of the bodies a bot sends (reference §2.6, §2.7, §2.8, §3.5).

`check_body` only looks at the body itself; who may send what, deadlines and rate limits are the
simulator's business (server.py).
"""
from __future__ import annotations

from typing import Callable, Optional

from .records import (
    CONTENT_TOO_LONG,
    INVALID_MSGTYPE,
    MAX_CONTENT_BYTES,
    MAX_FEEDBACK_ID_BYTES,
    Outcome,
    fail,
    missing,
)
from .uploads import Media

MEDIA_TYPES = ("image", "file", "voice", "video")
# What each command accepts. `text` is welcome-only; aibot_respond_msg and aibot_send_msg answer
# it with 40008 (observed), as any type they do not know.
RESPOND_TYPES = {"stream", "stream_with_template_card", "markdown", "template_card", *MEDIA_TYPES}
SEND_TYPES = {"markdown", "template_card", *MEDIA_TYPES}
WELCOME_TYPES = {"text", "template_card"}
RESPONSE_URL_TYPES = {"markdown", "template_card"}

Lookup = Callable[[str, object], "tuple[Optional[Media], Optional[Outcome]]"]


def _too_long(text: str, what: str) -> Optional[Outcome]:
    size = len(text.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        return fail(CONTENT_TOO_LONG, f"{what} is {size} bytes > {MAX_CONTENT_BYTES}")
    return None


def _content(section: dict, path: str, required: bool) -> Optional[Outcome]:
    content = section.get("content")
    if content is None and not required:
        return None
    if not isinstance(content, str):
        return missing(f"{path}.content")
    return _too_long(content, f"{path}.content")


def _feedback(section: dict, path: str) -> Optional[Outcome]:
    feedback = section.get("feedback")
    if feedback is None:
        return None
    if not isinstance(feedback, dict) or not isinstance(feedback.get("id"), str):
        return missing(f"{path}.feedback.id")
    if len(feedback["id"].encode("utf-8")) > MAX_FEEDBACK_ID_BYTES:
        return fail(CONTENT_TOO_LONG, f"feedback.id > {MAX_FEEDBACK_ID_BYTES} bytes")
    return None


def _card(body: dict, required: bool) -> Optional[Outcome]:
    card = body.get("template_card")
    if card is None and not required:
        return None
    if not isinstance(card, dict):
        return missing("body.template_card")
    if not isinstance(card.get("card_type"), str):
        return missing("body.template_card.card_type")
    return None


def check_body(body, allowed: set, lookup: Lookup) -> tuple[Optional[Outcome], Optional[Media]]:
    """(error or None, the media a media message refers to)."""
    if not isinstance(body, dict):
        return missing("body"), None
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str):
        return missing("body.msgtype"), None
    if msgtype not in allowed:
        return fail(INVALID_MSGTYPE, f"hint: {msgtype!r} not allowed here"), None
    if msgtype in ("stream", "stream_with_template_card"):
        stream = body.get("stream")
        if not isinstance(stream, dict):
            return missing("body.stream"), None
        if not isinstance(stream.get("id"), str) or not stream["id"]:
            return missing("body.stream.id"), None
        error = (_content(stream, "body.stream", required=False) or _feedback(stream, "body.stream")
                 or _card(body, required=False))
        return error, None
    if msgtype == "markdown":
        section = body.get("markdown")
        if not isinstance(section, dict):
            return missing("body.markdown.content"), None
        return _content(section, "body.markdown", True) or _feedback(section, "body.markdown"), None
    if msgtype == "text":
        section = body.get("text")
        if not isinstance(section, dict):
            return missing("body.text.content"), None
        return _content(section, "body.text", True), None
    if msgtype == "template_card":
        return _card(body, required=True), None
    section = body.get(msgtype)
    media_id = section.get("media_id") if isinstance(section, dict) else None
    if not media_id:
        # A url or base64 instead of media_id is answered this way (observed for image).
        return missing(f"body.{msgtype}.media_id"), None
    media, error = lookup(msgtype, media_id)
    return error, media
