"""Temporary media (media/upload, media/get) and OA permanent material (reference §1.6 step 4, §1.7,
§2.4): the multipart upload, the per-type size and format limits, the 3-day life of a media_id.

Checks are on the multipart part's file name extension, the byte size, and for AMR voice the
duration (counted from the AMR frame headers, 20 ms each). MP3 duration is not checked. Media
belong to one account (appid or corpid): another account's media_id is 40007, as is one past its
3 days or deleted.
"""
from __future__ import annotations

import email.parser
import email.policy
import secrets
from dataclasses import dataclass
from typing import Optional

from .errors import (
    INVALID_FILE_SIZE,
    INVALID_FILE_TYPE,
    INVALID_IMAGE_SIZE,
    INVALID_MEDIA_TYPE,
    INVALID_THUMB_SIZE,
    INVALID_VIDEO_SIZE,
    INVALID_VOICE_SIZE,
    MB,
    TEMP_MEDIA_TTL,
)

VOICE_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Rule:
    max_bytes: int
    extensions: Optional[frozenset]  # None = any
    oversize: int  # errcode for too big (or too long, for voice)


def _rule(max_bytes: int, exts: Optional[str], oversize: int) -> Rule:
    return Rule(max_bytes, frozenset(exts.split()) if exts else None, oversize)


# Per platform, per `type`. OA sizes and formats from §1.7, WeCom from §2.4; permanent material
# takes the same limits with the wider voice formats of the OA material API.
RULES: dict[str, dict[str, Rule]] = {
    "oa": {
        "image": _rule(10 * MB, "bmp png jpeg jpg gif", INVALID_IMAGE_SIZE),
        "voice": _rule(2 * MB, "amr mp3", INVALID_VOICE_SIZE),
        "video": _rule(10 * MB, "mp4", INVALID_VIDEO_SIZE),
        "thumb": _rule(64 * 1024, "jpg jpeg", INVALID_THUMB_SIZE),
    },
    "oa_material": {
        "image": _rule(10 * MB, "bmp png jpeg jpg gif", INVALID_FILE_SIZE),
        "voice": _rule(2 * MB, "amr mp3 wma wav", INVALID_FILE_SIZE),
        "video": _rule(10 * MB, "mp4", INVALID_FILE_SIZE),
        "thumb": _rule(64 * 1024, "jpg jpeg", INVALID_FILE_SIZE),
    },
    "wecom": {
        "image": _rule(10 * MB, "jpg jpeg png", INVALID_IMAGE_SIZE),
        "voice": _rule(2 * MB, "amr", INVALID_FILE_SIZE),
        "video": _rule(10 * MB, "mp4", INVALID_VIDEO_SIZE),
        "file": _rule(20 * MB, None, INVALID_FILE_SIZE),
    },
}
WECOM_MIN_BYTES = 6  # WeCom: "every file must be larger than 5 bytes"

CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
                 "bmp": "image/bmp", "amr": "audio/amr", "mp3": "audio/mpeg", "wav": "audio/wav",
                 "wma": "audio/x-ms-wma", "mp4": "video/mp4"}

# AMR-NB storage format (RFC 4867 §5): "#!AMR\n", then frames whose first byte carries the frame
# type in bits 3-6; the size below includes that byte. Every frame is 20 ms.
AMR_MAGIC = b"#!AMR\n"
AMR_FRAME_BYTES = [13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1]


def amr_seconds(data: bytes) -> Optional[float]:
    """Duration of an AMR-NB file, None when it is not one."""
    if not data.startswith(AMR_MAGIC):
        return None
    pos, frames = len(AMR_MAGIC), 0
    while pos < len(data):
        pos += AMR_FRAME_BYTES[(data[pos] >> 3) & 0x0F]
        frames += 1
    return frames * 0.02


@dataclass
class Part:
    name: str
    filename: Optional[str]
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> Optional[dict[str, Part]]:
    """The parts of a multipart/form-data body by field name; None when it is not one."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    parts: dict[str, Part] = {}
    for item in message.iter_parts():
        name = item.get_param("name", header="content-disposition")
        if not name:
            continue
        parts[str(name)] = Part(str(name), item.get_filename(), item.get_content_type(),
                                item.get_payload(decode=True) or b"")
    return parts


def extension(filename: Optional[str]) -> str:
    if not filename or "." not in filename:
        return ""
    return filename.rsplit(".", 1)[1].lower()


def check_upload(platform: str, kind: str, filename: Optional[str], data: bytes) -> Optional[tuple[int, str]]:
    """(errcode, detail) when the platform refuses this upload, else None."""
    rule = RULES[platform].get(kind)
    if rule is None:
        return INVALID_MEDIA_TYPE, f"type {kind!r}"
    ext = extension(filename)
    if rule.extensions is not None and ext not in rule.extensions:
        return INVALID_FILE_TYPE, f"{kind} does not take .{ext or '(none)'} files"
    if not data or (platform == "wecom" and len(data) < WECOM_MIN_BYTES):
        return INVALID_FILE_SIZE, f"{len(data)} bytes"
    if len(data) > rule.max_bytes:
        return rule.oversize, f"{len(data)} bytes > {rule.max_bytes}"
    if kind == "voice":
        seconds = amr_seconds(data)
        if seconds is not None and seconds > VOICE_MAX_SECONDS:
            return rule.oversize, f"voice lasts {seconds:.2f} s > {VOICE_MAX_SECONDS:g} s"
    return None


@dataclass
class Media:
    media_id: str
    account: str
    kind: str  # image | voice | video | thumb | file
    data: bytes
    filename: Optional[str]
    created_at: float
    permanent: bool = False
    description: Optional[dict] = None  # video material: {"title", "introduction"}
    deleted: bool = False

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(extension(self.filename), "application/octet-stream")


class MediaStore:
    def __init__(self) -> None:
        self._items: dict[str, Media] = {}

    def add(self, account: str, kind: str, data: bytes, filename: Optional[str], now: float,
            permanent: bool = False, description: Optional[dict] = None) -> Media:
        # Real media_ids are 64 opaque characters; permanent ones look different, which a client
        # must not care about either.
        media_id = ("P" if permanent else "T") + secrets.token_urlsafe(45)
        media = Media(media_id, account, kind, data, filename, now, permanent, description)
        self._items[media_id] = media
        return media

    def get(self, account: str, media_id: object, now: float, permanent: Optional[bool] = None) -> Optional[Media]:
        """The usable media of that account, or None (unknown, other account, expired, deleted)."""
        media = self._items.get(media_id) if isinstance(media_id, str) else None
        if media is None or media.account != account or media.deleted:
            return None
        if permanent is not None and media.permanent != permanent:
            return None
        if not media.permanent and now - media.created_at > TEMP_MEDIA_TTL:
            return None
        return media

    def peek(self, media_id: str) -> Optional[Media]:
        """Any media by id, even expired or deleted: for test assertions."""
        return self._items.get(media_id)
