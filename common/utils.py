"""Small text, file and URL helpers shared by channels and bots."""
from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shutil
import time
import uuid
from typing import Any, Literal
from urllib.parse import urlparse

MediaPart = tuple[Literal["text", "image", "file"], str]


def fsize(file: Any) -> int:
    """Size in bytes of a path, a BytesIO, bytes, or a seekable file object."""
    if isinstance(file, io.BytesIO):
        return file.getbuffer().nbytes
    if isinstance(file, (bytes, bytearray, memoryview)):
        return len(file)
    if isinstance(file, (str, os.PathLike)):
        return os.path.getsize(file)
    if hasattr(file, "seek") and hasattr(file, "tell"):
        # Measure by seeking to the end, then put the position back so the
        # caller can still read the file from where it was.
        position = file.tell()
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(position)
        return size
    raise TypeError(f"cannot tell the size of a {type(file).__name__}")


def compress_imgfile(file: Any, max_size: int) -> Any:
    """An image no larger than ``max_size`` bytes: ``file`` itself when it already fits,
    else a JPEG re-encoding of it in a new BytesIO.

    ``file`` is a binary file object (or a path). The quality goes down in steps; if even
    the lowest quality is too large, the picture is scaled down too. The original kept
    lowering the quality past zero and then failed inside Pillow.
    """
    if fsize(file) <= max_size:
        return file
    from PIL import Image

    if hasattr(file, "seek"):
        file.seek(0)
    with Image.open(file) as img:
        rgb = img.convert("RGB")
    while True:
        for quality in range(95, 0, -10):
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=quality)
            if fsize(out) <= max_size:
                out.seek(0)
                return out
        if rgb.width <= 16 or rgb.height <= 16:
            out.seek(0)
            return out  # as small as an image gets; the caller's limit cannot be met
        rgb = rgb.resize((max(1, rgb.width * 3 // 4), max(1, rgb.height * 3 // 4)))


def convert_webp_to_png(webp_image: Any) -> io.BytesIO:
    """A PNG copy (BytesIO at position 0) of an image file object, typically WEBP, which
    some platforms refuse to show. Raises what Pillow raises for data that is no image."""
    from PIL import Image

    webp_image.seek(0)
    with Image.open(webp_image) as img:
        png = io.BytesIO()
        img.convert("RGBA").save(png, format="PNG")
    png.seek(0)
    return png


def _print_colored(code: int, text: Any) -> None:
    print(f"\033[{code}m{text}\033[0m")


def print_green(text: Any) -> None:
    _print_colored(32, text)


def print_yellow(text: Any) -> None:
    _print_colored(33, text)


def print_red(text: Any) -> None:
    _print_colored(31, text)


def split_string_by_utf8_length(string: str, max_length: int, max_split: int = 0) -> list[str]:
    """Cut ``string`` into pieces of at most ``max_length`` UTF-8 bytes.

    Platforms limit messages in bytes (WeCom: 2048), so the cut is made on the
    encoded text, then moved back to the start of a character so no character
    is ever broken. ``max_split > 0`` allows at most that many cuts (so at most
    ``max_split + 1`` pieces, as ``str.split``'s maxsplit), the last piece
    holding the rest whatever its size. An empty string gives ``[]``.

    A single character longer than ``max_length`` (``max_length < 4``) is kept
    whole in its own piece; the original looped forever there.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length!r}")
    encoded = string.encode("utf-8")
    total = len(encoded)
    pieces: list[str] = []
    start = 0
    while start < total:
        if max_split > 0 and len(pieces) >= max_split:
            pieces.append(encoded[start:].decode("utf-8"))
            break
        end = min(start + max_length, total)
        # 0b10xxxxxx marks a continuation byte: the cut would land inside a character.
        while end < total and end > start and (encoded[end] & 0xC0) == 0x80:
            end -= 1
        if end == start:  # one character wider than max_length: take it whole
            end = start + 1
            while end < total and (encoded[end] & 0xC0) == 0x80:
                end += 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces


# Characters Windows refuses in a file name (and control characters).
_UNSAFE_NAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
# Most file systems take 255 bytes per name; tmp/ names get a 33-byte uuid prefix too.
SAFE_NAME_MAX_BYTES = 150


def safe_file_name(name: Any, default: str = "file", max_bytes: int = SAFE_NAME_MAX_BYTES) -> str:
    """A file name a user or platform sent, usable on Windows and Linux: no folders, no
    reserved characters, at most `max_bytes` bytes in UTF-8 (the limits of file systems are
    in bytes: 100 CJK characters are 300), the extension kept."""
    base = os.path.basename(str(name or "").replace("\\", "/"))
    base = _UNSAFE_NAME_CHARS.sub("_", base).strip(" .")
    if not base:
        return default
    if len(base.encode("utf-8")) <= max_bytes:
        return base
    stem, ext = os.path.splitext(base)
    if len(ext.encode("utf-8")) > max_bytes // 4:
        stem, ext = base, ""
    room = max_bytes - len(ext.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
    return (stem + ext) if stem else default


def get_path_suffix(path: str) -> str:
    """The extension of a URL's (or a local path's) last segment, without the
    dot and without any query or fragment: ``.../a.PNG?x=1`` -> ``"PNG"``."""
    url_path = urlparse(path).path
    # Split on both separators so a Windows path behaves like a URL path here.
    last_segment = re.split(r"[/\\]", url_path)[-1]
    return posixpath.splitext(last_segment)[1].lstrip(".")


# --- markdown ---------------------------------------------------------------

# Every pattern below is written so a scan cannot run past the next delimiter
# (labels exclude brackets, URLs exclude brackets and parentheses, emphasis
# content excludes its own marker) or is bounded: an LLM answer full of stray
# `*`, `_` or `[` must not turn a regex into seconds of backtracking.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADER = re.compile(r"^( {0,3})#{1,6}(?:[ \t]+|$)")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^( {0,3})>[ ]?")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?=\S)")
_INLINE_CODE = re.compile(r"(`+)([^\n]{1,1000}?)\1")
_URL_PART = r"\(\s*<?(?P<url>[^()\[\]\s<>]+)>?(?:\s+\"[^\"\n]{0,300}\")?\s*\)"
_IMAGE = re.compile(r"!\[(?P<label>[^\[\]]*)\]" + _URL_PART)
_LINK = re.compile(r"\[(?P<label>[^\[\]]+)\]" + _URL_PART)
_BOLD_STAR = re.compile(r"\*\*(?=[^\s*])((?:[^*]|\*(?!\*))+?)(?<=\S)\*\*")
_BOLD_UNDERSCORE = re.compile(r"(?<!\w)__(?=[^\s_])((?:[^_]|_(?!_))+?)(?<=\S)__(?!\w)")
_STRIKE = re.compile(r"~~(?=[^\s~])((?:[^~]|~(?!~))+?)(?<=\S)~~")
# Single * and _ only when they look like emphasis, so 2*3*4 and snake_case survive.
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])([^_]+?)(?<=\S)_(?![\w_])")
_BARE_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\x00]+")


def _strip_emphasis(text: str) -> str:
    text = _BOLD_STAR.sub(r"\1", text)
    text = _BOLD_UNDERSCORE.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    return _ITALIC_UNDERSCORE.sub(r"\1", text)


def _link_text(label: str, url: str) -> str:
    label = _strip_emphasis(label.strip())
    if not label or label == url:
        return url
    return f"{label} ({url})"


def _strip_inline(line: str) -> str:
    # Code, links and URLs are cut out first so the emphasis rules can never
    # eat a `*` or `_` that belongs to them; they are put back verbatim.
    kept: list[str] = []
    line = line.replace("\x00", "")  # the placeholder marker; NUL has no place in chat text

    def keep(replacement: str) -> str:
        kept.append(replacement)
        return f"\x00{len(kept) - 1}\x00"

    line = _INLINE_CODE.sub(lambda m: keep(m.group(2)), line)
    line = _IMAGE.sub(lambda m: keep(_link_text(m.group("label"), m.group("url"))), line)
    line = _LINK.sub(lambda m: keep(_link_text(m.group("label"), m.group("url"))), line)
    line = _BARE_URL.sub(lambda m: keep(m.group(0)), line)
    line = _strip_emphasis(line)
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], line)


def _drop_closing_hashes(title: str) -> str:
    # "## Title ##" -> "Title", but "C#" keeps its hash (no space before it).
    title = title.rstrip()
    stripped = title.rstrip("#")
    if stripped != title and (not stripped or stripped[-1] in " \t"):
        title = stripped.rstrip()
    return title


def remove_markdown_symbol(text: str) -> str:
    """Turn markdown into plain text for platforms that show it raw (WeChat,
    WeCom): emphasis, headers, bullets, quotes, rules and code fences go; link
    text and URL both stay (``text (url)``); code keeps its content verbatim.
    Numbered lists keep their numbers, which read fine as plain text."""
    if not text:
        return text
    out: list[str] = []
    in_fence = False
    fence_mark = ""
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if fence:
            mark = fence.group(1)
            if not in_fence:
                in_fence, fence_mark = True, mark[0] * len(mark)
                continue
            if mark.startswith(fence_mark) and not line.strip()[len(mark):].strip():
                in_fence = False
                continue
        if in_fence:
            out.append(line)
            continue
        if _RULE.match(line):
            out.append("")
            continue
        line = _QUOTE.sub(r"\1", line)
        header = _HEADER.match(line)
        if header:
            line = header.group(1) + _drop_closing_hashes(line[header.end():])
        line = _BULLET.sub(r"\1", line)
        out.append(_strip_inline(line))
    return "\n".join(out)


# Extensions of web pages: a link to one of these is a page to read, not a file to send.
_PAGE_EXTENSIONS = frozenset({"html", "htm", "shtml", "xhtml", "php", "asp", "aspx", "jsp"})
_MEDIA = re.compile(r"(?P<image>!)?\[(?P<label>[^\[\]]*)\]" + _URL_PART)


def _looks_like_file(url: str) -> bool:
    suffix = get_path_suffix(url)
    # Needs a letter, so version-like paths (/v1.2, /3.11) do not count as files.
    return (
        0 < len(suffix) <= 10
        and suffix.isalnum()
        and any(c.isalpha() for c in suffix)
        and suffix.lower() not in _PAGE_EXTENSIONS
    )


def parse_markdown_media(text: str) -> list[MediaPart]:
    """Split an answer into text, image and file parts, in order.

    ``![alt](url)`` is an image; ``[name](url)`` is a file only when the URL
    path ends in a file extension that is not a web page. Unlike the original
    (which made every link a "file" and then failed to download web pages),
    other links stay in the surrounding text as written. Text parts are
    stripped and empty ones dropped. URLs are returned as written (relative
    ones included); completing them is the caller's business.
    """
    parts: list[MediaPart] = []
    pending: list[str] = []

    def flush() -> None:
        chunk = "".join(pending).strip()
        pending.clear()
        if chunk:
            parts.append(("text", chunk))

    position = 0
    for match in _MEDIA.finditer(text or ""):
        url = match.group("url")
        if match.group("image"):
            kind: Literal["image", "file"] | None = "image"
        elif _looks_like_file(url):
            kind = "file"
        else:
            kind = None
        pending.append(text[position:match.start()])
        position = match.end()
        if kind is None:
            pending.append(match.group(0))
            continue
        flush()
        parts.append((kind, url))
    pending.append((text or "")[position:])
    flush()
    return parts


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON (indented, UTF-8, as the original's files) so that a reader or a crash
    mid-write sees the old file or the new one, never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # open(..., "x") rather than mkstemp: a new file gets the usual umask permissions,
    # not mkstemp's private 0600.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(data, f, indent=4, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            shutil.copymode(path, tmp)  # keep what the user had
        for attempt in range(5):
            try:
                os.replace(tmp, path)
                return
            except PermissionError:  # Windows: someone has the file open right now
                if attempt == 4:
                    raise
                time.sleep(0.2)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def parse_markdown_text(text: str) -> list[dict[str, str]]:
    """The original's name for ``parse_markdown_media``, in its shape: a list of
    ``{"type": "text" | "image" | "file", "content": ...}``. As there, ``![]()`` is an
    image and a link to a file is a file; a link to a web page stays in the text (the
    original made it a "file" that could not be downloaded)."""
    return [{"type": kind, "content": content} for kind, content in parse_markdown_media(text)]
