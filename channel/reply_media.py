"""The bytes of a media reply, whatever its content holds (shared by the channels that upload
media: wecom_bot, wechatmp, wechatcom_app, wechatcom_service).

A Reply's content may be a URL (IMAGE_URL / VIDEO_URL: downloaded through common.fetch, with its
address checks, deadline and size cap), a file path, bytes, or an open file. At most
`max_bytes + 1` bytes are read, so a caller can tell "too large" from "just fits".
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

from bridge.reply import Reply, ReplyType
from common import fetch

# Leading bytes -> file extension (platforms check an upload's extension against its type).
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"), (b"#!AMR", ".amr"),
          (b"ID3", ".mp3"), (b"%PDF", ".pdf"))


def read_reply_media(reply: Reply, max_bytes: int, default_name: str = "media") -> tuple[bytes, str]:
    """(bytes, file name) of a media reply; fetch.FetchError or OSError when it cannot be read."""
    content = reply.content
    if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL):
        data, _ = fetch.fetch_bytes(str(content), max_bytes)
        return data, os.path.basename(urlsplit(str(content)).path) or default_name
    if isinstance(content, (str, os.PathLike)):
        with open(content, "rb") as f:
            return f.read(max_bytes + 1), os.path.basename(str(content)) or default_name
    if isinstance(content, (bytes, bytearray)):
        return bytes(content), default_name
    if hasattr(content, "read"):
        try:
            content.seek(0)
        except Exception:  # a stream that cannot seek is read from where it is
            pass
        name = os.path.basename(str(getattr(content, "name", "") or "")) or default_name
        return content.read(max_bytes + 1), name
    raise OSError(f"cannot read a {type(content).__name__} as media")


def with_extension(name: str, data: bytes, fallback: str) -> str:
    """`name` with an extension: its own, else one from the content's first bytes, else `fallback`."""
    if os.path.splitext(name)[1]:
        return name
    if data[4:8] == b"ftyp":
        return name + ".mp4"
    for magic, extension in _MAGIC:
        if data.startswith(magic):
            return name + extension
    return name + fallback
