"""Checks shared by the three send APIs (OA custom/send, WeCom message/send, kf/send_msg): text
content and its byte limit, and media_id resolution."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .errors import EMPTY_CONTENT, INVALID_MEDIA_ID, TEXT_MAX_BYTES
from .media import Media
from .routes import Answer, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator

MEDIA_TYPES = ("image", "voice", "video", "file")


def text_content(payload: dict) -> tuple[Optional[str], Optional[Answer]]:
    content = payload.get("content")
    if not isinstance(content, str) or not content:
        return None, fail(EMPTY_CONTENT)
    return content, None


def over_limit(content: str, limit: int = TEXT_MAX_BYTES) -> bool:
    return len(content.encode("utf-8")) > limit


def truncate_utf8(content: str, limit: int = TEXT_MAX_BYTES) -> str:
    """What a member sees of an over-long WeCom text: the first `limit` bytes, never half a character
    (the platform's exact cut is undocumented; a cut code point would show as garbage anyway)."""
    return content.encode("utf-8")[:limit].decode("utf-8", "ignore")


def resolve_media(sim: "WeChatPlatformSimulator", account: str, msgtype: str, payload: dict,
                  now: float) -> tuple[Optional[Media], Optional[Answer]]:
    """The media a media message points to; it must be of the message's type and the account's."""
    media = sim._media.get(account, payload.get("media_id"), now)
    if media is None or media.kind != msgtype:
        return None, fail(INVALID_MEDIA_ID, f"no {msgtype} with media_id {payload.get('media_id')!r}")
    return media, None
