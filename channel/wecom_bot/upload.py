"""Temporary media upload over the long connection (reference/wecom-aibot.md §2.11), for the
images, files, voice and videos the bot sends: init, the chunks one at a time (WeCom answers
"system error" to chunks sent at once), finish -> a media_id valid 3 days."""
from __future__ import annotations

import base64
import hashlib

from channel.wecom_bot.ws_client import AibotError, LongConnection

CHUNK_BYTES = 512 * 1024
MAX_CHUNKS = 100
MIN_BYTES = 5
MAX_BYTES = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024, "file": 20 * 1024 * 1024}


class UploadRefused(Exception):
    """The data cannot be uploaded as that type (size); the message says why."""


def fits(kind: str, size: int) -> bool:
    return MIN_BYTES <= size <= MAX_BYTES[kind]


def upload(conn: LongConnection, kind: str, filename: str, data: bytes) -> str:
    """Upload `data` as a `kind` (image, voice, video, file); returns its media_id."""
    if not fits(kind, len(data)):
        raise UploadRefused(f"a {kind} of {len(data)} bytes: WeCom takes {MIN_BYTES} to {MAX_BYTES[kind]} bytes")
    chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    ack = conn.request("aibot_upload_media_init", {
        "type": kind, "filename": filename, "total_size": len(data), "total_chunks": len(chunks),
        "md5": hashlib.md5(data).hexdigest(),
    })
    upload_id = (ack.get("body") or {}).get("upload_id")
    if not upload_id:
        raise AibotError(-1, "no upload_id in the answer", "aibot_upload_media_init")
    for index, chunk in enumerate(chunks):
        conn.request("aibot_upload_media_chunk", {
            "upload_id": upload_id, "chunk_index": index, "base64_data": base64.b64encode(chunk).decode("ascii"),
        })
    ack = conn.request("aibot_upload_media_finish", {"upload_id": upload_id}, timeout=conn.ack_timeout * 2)
    media_id = (ack.get("body") or {}).get("media_id")
    if not media_id:
        raise AibotError(-1, "no media_id in the answer", "aibot_upload_media_finish")
    return str(media_id)
