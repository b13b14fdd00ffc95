"""Files the WeCom client sends: written to ``tmp/wework_send/`` under unique names.

ntwork's media sends are asynchronous: the call returns once the request is queued and the WeCom
process reads the file later. A file handed to it must therefore stay on disk for a while; the
channel deletes it ``KEEP_SECONDS`` after the send, and whatever a previous run left behind is
cleared at start (the original deleted its temporary image right after ``send_image``, racing
the client). Paths are absolute because the WeCom process does not share our working directory.
"""
from __future__ import annotations

import io
import os
import time
import uuid
from typing import Any, BinaryIO

from common import fetch
from common.log import logger
from common.tmp_dir import TmpDir

SEND_DIR_NAME = "wework_send"
KEEP_SECONDS = 60.0
# WeCom refuses images over 10 MB (the original compressed to just under that).
IMAGE_MAX_BYTES = 10 * 1024 * 1024
# A downloaded image larger than this is not even compressed: it is refused as too big.
IMAGE_DOWNLOAD_MAX_BYTES = 40 * 1024 * 1024
# The original's video limit.
VIDEO_MAX_BYTES = 30 * 1024 * 1024
_CHUNK = 64 * 1024

_PIL_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


class TooLarge(Exception):
    """The media is bigger than WeCom (or this channel) accepts."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes, more than the {limit} bytes allowed")
        self.size = size
        self.limit = limit


def send_dir() -> str:
    folder = os.path.abspath(os.path.join(TmpDir().path(), SEND_DIR_NAME))
    os.makedirs(folder, exist_ok=True)
    return folder


def new_send_path(suffix: str = "") -> str:
    return os.path.join(send_dir(), uuid.uuid4().hex + suffix)


def clear_send_dir(older_than: float = 0.0) -> int:
    """Delete files a previous run left for the client to read; returns how many."""
    removed = 0
    folder = send_dir()
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path) and now - os.path.getmtime(path) >= older_than:
                os.remove(path)
                removed += 1
        except OSError as e:  # still open by WeCom, or gone meanwhile
            logger.debug(f"[wework] could not remove {path}: {e}")
    return removed


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --------------------------------------------------------------------------- downloads
def download(url: str, path: str, max_bytes: int) -> int:
    """Stream ``url`` into ``path``, at most ``max_bytes``; returns the size.

    Through :mod:`common.fetch` (the URL comes from a reply: internal addresses refused, a
    total deadline, limited concurrency). Raises TooLarge (the partial file removed) when the
    body is bigger, :class:`common.fetch.FetchError` otherwise.
    """
    try:
        size, _ = fetch.fetch_to_file(url, path, max_bytes)
    except fetch.FetchTooLarge as e:
        raise TooLarge(e.size, e.limit) from None
    return size


# --------------------------------------------------------------------------- images
def _image_format(data: bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:
        return None


def compress_image(data: bytes, max_bytes: int = IMAGE_MAX_BYTES) -> bytes:
    """A JPEG of ``data`` under ``max_bytes``: lower quality first, then smaller sizes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    for scale_step in range(8):
        qualities = (85, 70, 55, 40) if scale_step == 0 else (70,)
        for quality in qualities:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        width, height = image.size
        image = image.resize((max(1, int(width * 0.75)), max(1, int(height * 0.75))))
    raise TooLarge(len(data), max_bytes)


def image_file_from_bytes(data: bytes) -> str:
    """Write an image for sending (compressed when over WeCom's limit); returns its path."""
    fmt = _image_format(data)
    if fmt is None:
        raise ValueError("the reply's image is not an image Pillow can read")
    if len(data) > IMAGE_MAX_BYTES:
        logger.info(f"[wework] image of {len(data)} bytes is over {IMAGE_MAX_BYTES}, compressing")
        data = compress_image(data, IMAGE_MAX_BYTES)
        fmt = "JPEG"
    path = new_send_path(_PIL_SUFFIXES.get(fmt, ".png"))
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_all(content: Any) -> bytes:
    """The bytes of a reply's content: bytes, or a file-like object (read from the start)."""
    if isinstance(content, (bytes, bytearray)):
        return bytes(content)
    if hasattr(content, "read"):
        if hasattr(content, "seek"):
            content.seek(0)
        return content.read()
    raise TypeError(f"expected bytes or a file-like object, got {type(content).__name__}")


def image_file_from_url(url: str) -> str:
    """Download an image (capped) and prepare it for sending; returns its path."""
    scratch = new_send_path(".download")
    try:
        download(url, scratch, IMAGE_DOWNLOAD_MAX_BYTES)
        with open(scratch, "rb") as f:
            data = f.read()
    finally:
        remove_quietly(scratch)
    return image_file_from_bytes(data)


def copy_stream(source: BinaryIO, path: str, max_bytes: int | None = None) -> int:
    """Copy a file-like object to ``path``; TooLarge (file removed) past ``max_bytes``."""
    if hasattr(source, "seek"):
        source.seek(0)
    size = 0
    try:
        with open(path, "wb") as f:
            while True:
                block = source.read(_CHUNK)
                if not block:
                    break
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(size, max_bytes)
                f.write(block)
    except BaseException:
        remove_quietly(path)
        raise
    return size


def file_for_sending(content: Any, suffix: str, max_bytes: int | None = None) -> tuple[str, bool]:
    """(absolute path, whether it is our own copy) for a reply's file: a path or a file-like object."""
    if isinstance(content, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(content))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no file {path}")
        if max_bytes is not None and os.path.getsize(path) > max_bytes:
            raise TooLarge(os.path.getsize(path), max_bytes)
        return path, False
    if isinstance(content, (bytes, bytearray)):
        content = io.BytesIO(content)
    name = getattr(content, "name", None)
    if isinstance(name, str) and os.path.splitext(name)[1]:
        suffix = os.path.splitext(name)[1]
    path = new_send_path(suffix)
    copy_stream(content, path, max_bytes)
    return path, True

