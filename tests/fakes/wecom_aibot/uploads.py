"""Temporary media upload (reference §2.11) and the media_ids it yields.

Pure state: the caller holds the simulator's lock and passes `now` from the injected clock.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional

from .records import (
    INVALID_FILE_SIZE,
    INVALID_MEDIA_ID,
    INVALID_MEDIA_TYPE,
    MISSING_FIELD,
    Outcome,
    fail,
    missing,
    ok,
)

MB = 1024 * 1024
SIZE_CAPS = {"image": 10 * MB, "voice": 2 * MB, "video": 10 * MB, "file": 20 * MB}
MIN_SIZE = 5
MAX_CHUNK = 512 * 1024  # raw bytes, before base64
MAX_CHUNKS = 100
SESSION_TTL = 30 * 60
MEDIA_TTL = 3 * 24 * 3600


@dataclass
class Upload:
    bot_id: str
    type: str
    filename: str
    total_size: int
    total_chunks: int
    md5: Optional[str]
    created_at: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    pending_acks: int = 0  # chunk acks queued but not sent yet (for fail_concurrent_chunks)


@dataclass
class Media:
    bot_id: Optional[str]
    type: str
    filename: str
    data: bytes
    created_at: float


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class MediaStore:
    def __init__(self) -> None:
        self.uploads: dict[str, Upload] = {}
        self.media: dict[str, Media] = {}

    # --- the three upload steps ----------------------------------------------------------------
    def init(self, bot_id: str, body: dict, now: float) -> Outcome:
        for name, check in (("type", str), ("filename", str)):
            if not isinstance(body.get(name), check):
                return missing(f"body.{name}")
        for name in ("total_size", "total_chunks"):
            if not _int(body.get(name)):
                return missing(f"body.{name}")
        kind, size, count = body["type"], body["total_size"], body["total_chunks"]
        if kind not in SIZE_CAPS:
            return fail(INVALID_MEDIA_TYPE, f"type {kind!r}")
        if not MIN_SIZE <= size <= SIZE_CAPS[kind]:
            return fail(INVALID_FILE_SIZE, f"{kind} must be {MIN_SIZE}..{SIZE_CAPS[kind]} bytes")
        if not 1 <= count <= MAX_CHUNKS or count * MAX_CHUNK < size:
            return fail(INVALID_FILE_SIZE, f"total_chunks must be 1..{MAX_CHUNKS} of <= {MAX_CHUNK} bytes")
        md5 = body.get("md5")
        upload_id = secrets.token_hex(16)
        self.uploads[upload_id] = Upload(bot_id, kind, body["filename"], size, count,
                                         md5 if isinstance(md5, str) and md5 else None, now)
        return ok({"upload_id": upload_id})

    def session(self, bot_id: str, body: dict, now: float) -> tuple[Optional[Upload], Optional[Outcome]]:
        upload_id = body.get("upload_id")
        if not isinstance(upload_id, str):
            return None, missing("body.upload_id")
        upload = self.uploads.get(upload_id)
        # A session survives reconnects of the same bot, not other bots.
        if upload is None or upload.bot_id != bot_id:
            return None, fail(INVALID_MEDIA_ID, "unknown upload_id")
        if now - upload.created_at > SESSION_TTL:
            del self.uploads[upload_id]
            return None, fail(INVALID_MEDIA_ID, "upload_id expired")
        return upload, None

    def chunk(self, upload: Upload, body: dict) -> Outcome:
        index, data = body.get("chunk_index"), body.get("base64_data")
        if not _int(index):
            return missing("body.chunk_index")
        if not isinstance(data, str):
            return missing("body.base64_data")
        if not 0 <= index < upload.total_chunks:  # 0-based (§2.11)
            return fail(INVALID_FILE_SIZE, f"chunk_index {index} out of 0..{upload.total_chunks - 1}")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return Outcome(MISSING_FIELD, "invalid base64_data. invalid Request Parameter", omit_req_id=True)
        if len(raw) > MAX_CHUNK:
            return fail(INVALID_FILE_SIZE, f"chunk of {len(raw)} bytes > {MAX_CHUNK}")
        upload.chunks.setdefault(index, raw)  # a repeated index is ignored, the first copy kept
        return ok()

    def finish(self, upload_id: str, upload: Upload, now: float) -> Outcome:
        absent = [i for i in range(upload.total_chunks) if i not in upload.chunks]
        if absent:
            return fail(INVALID_FILE_SIZE, f"missing chunks {absent[:10]}")
        data = b"".join(upload.chunks[i] for i in range(upload.total_chunks))
        if len(data) != upload.total_size:
            return fail(INVALID_FILE_SIZE, f"got {len(data)} bytes, total_size {upload.total_size}")
        if upload.md5 and hashlib.md5(data).hexdigest() != upload.md5.lower():
            return fail(INVALID_FILE_SIZE, "md5 mismatch")
        del self.uploads[upload_id]
        media_id = self.add(upload.bot_id, upload.type, upload.filename, data, now)
        # created_at is Unix seconds as an int in practice (§2.11), so it uses wall time.
        return ok({"type": upload.type, "media_id": media_id, "created_at": int(time.time())})

    # --- media ids ------------------------------------------------------------------------------
    def add(self, bot_id: Optional[str], kind: str, filename: str, data: bytes, now: float) -> str:
        media_id = "3" + secrets.token_urlsafe(30)
        self.media[media_id] = Media(bot_id, kind, filename, data, now)
        return media_id

    def lookup(self, bot_id: str, kind: str, media_id, now: float) -> tuple[Optional[Media], Optional[Outcome]]:
        """The media for a reply/send of msgtype `kind`, or the error ack."""
        if not isinstance(media_id, str) or not media_id:
            return None, missing(f"body.{kind}.media_id")
        media = self.media.get(media_id)
        if media is None or (media.bot_id not in (None, bot_id)) or now - media.created_at > MEDIA_TTL:
            return None, fail(INVALID_MEDIA_ID, media_id)
        if media.type != kind:
            return None, fail(INVALID_MEDIA_TYPE, f"media_id is a {media.type}, not a {kind}")
        return media, None
