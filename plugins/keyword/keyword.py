# encoding:utf-8
"""Keyword: fixed answers to fixed messages.

A text equal to a key of ``keyword`` (after trimming spaces) gets that key's value as
the reply, and the bot is not asked (BREAK_PASS). A list value picks one item at
random. A value that is an http(s) URL is sent as media when its path ends in a known
extension:

* image (.jpg .jpeg .png .gif .webp .bmp .img) -> IMAGE_URL;
* document or archive (.pdf .doc .docx .xls .xlsx .ppt .pptx .txt .csv .zip .rar .7z)
  -> FILE, downloaded to tmp/ first (a folder of its own, so two downloads never share
  a name; at most ``max_file_mb`` MB, default 20). If the download fails the URL is
  sent as text instead;
* video (.mp4) -> VIDEO_URL;

anything else is text.

Settings: plugins/config.json entry "keyword" or plugins/keyword/config.json:
``{"keyword": {"question": "answer" | ["answer", ...]}, "max_file_mb": 20,
"download_timeout": 30}``.
"""
from __future__ import annotations

import os
import random
import re
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.deadline import Deadline
from common.log import logger
from common.tmp_dir import TmpDir
from common.utils import get_path_suffix
from config import conf
from plugins import Event, EventAction, EventContext, Plugin

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "webp", "bmp", "img"})
FILE_EXTENSIONS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "csv", "zip", "rar", "7z"})
VIDEO_EXTENSIONS = frozenset({"mp4"})

DEFAULT_MAX_FILE_MB = 20
DEFAULT_DOWNLOAD_TIMEOUT = 30
_CONNECT_TIMEOUT = 10
_UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


class DownloadError(Exception):
    pass


def _is_web_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and not any(c.isspace() for c in text)


def _file_name_of(url: str) -> str:
    """A file name for the download, taken from the URL and safe on Windows and Linux."""
    name = unquote(os.path.basename(urlsplit(url).path))
    name = _UNSAFE_NAME_CHARS.sub("_", name).strip(" .")
    if len(name) > 120:
        stem, ext = os.path.splitext(name)
        name = stem[: 120 - len(ext)] + ext
    return name or "file"


def download_file(url: str, max_bytes: int, timeout: float) -> str:
    """Download ``url`` to a new folder in tmp/ and return the file's path.

    Raises DownloadError on an HTTP error, a network failure, a body over ``max_bytes``
    (checked on the announced length and while reading, so a lying server is cut off too), or
    when the whole download takes longer than ``timeout`` seconds (a server trickling a byte at
    a time passes every per-read timeout; a watchdog closes it). The URL is the admin's own
    (plugin config), so it is not held to common.fetch's address checks and keeps the proxy.
    """
    folder = os.path.join(TmpDir().path(), uuid.uuid4().hex)
    path = os.path.join(folder, _file_name_of(url))
    proxy = conf().get("proxy")
    proxies = {"http": proxy, "https": proxy} if proxy else None
    deadline = Deadline(timeout)
    try:
        with requests.get(url, stream=True, timeout=(_CONNECT_TIMEOUT, timeout), proxies=proxies) as resp:
            deadline.attach(resp)
            if resp.status_code != 200:
                raise DownloadError(f"HTTP {resp.status_code}")
            announced = resp.headers.get("Content-Length")
            if announced and announced.isdigit() and int(announced) > max_bytes:
                raise DownloadError(f"{announced} bytes is over the {max_bytes} byte limit")
            os.makedirs(folder, exist_ok=True)
            size = 0
            with open(path, "wb") as f:
                for chunk in resp.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"more than the {max_bytes} byte limit")
                    f.write(chunk)
    except (DownloadError, requests.RequestException, OSError) as e:
        _remove(path, folder)
        if isinstance(e, DownloadError):
            raise
        if deadline.expired:
            raise DownloadError(f"not done within download_timeout ({timeout:g} s)") from e
        raise DownloadError(str(e)) from e
    finally:
        deadline.cancel()
    return path


def _remove(path: str, folder: str) -> None:
    for remove, target in ((os.remove, path), (os.rmdir, folder)):
        try:
            remove(target)
        except OSError:
            pass


@plugins.register(
    name="Keyword",
    desire_priority=900,
    hidden=True,
    desc="Fixed replies to fixed messages",
    version="0.2",
    author="dify-on-wechat",
)
class Keyword(Plugin):
    def __init__(self):
        super().__init__()
        self.keyword: dict[str, Any] = {}
        try:
            config = self.load_config()
        except Exception as e:
            logger.error(f"[Keyword] cannot read the settings, plugin stays off: {e}")
            return
        if config is None:
            logger.info("[Keyword] no settings (plugins/config.json entry 'keyword' or plugins/keyword/config.json); plugin stays off")
            return
        words = config.get("keyword") if isinstance(config, dict) else None
        if not isinstance(words, dict):
            logger.error('[Keyword] settings must look like {"keyword": {"question": "answer"}}; plugin stays off')
            return
        self.keyword = {str(k).strip(): v for k, v in words.items() if self._usable(k, v)}
        self.max_bytes = int(self._number(config, "max_file_mb", DEFAULT_MAX_FILE_MB) * 1024 * 1024)
        self.download_timeout = self._number(config, "download_timeout", DEFAULT_DOWNLOAD_TIMEOUT)
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info(f"[Keyword] inited with {len(self.keyword)} keyword(s)")

    @staticmethod
    def _usable(key: Any, value: Any) -> bool:
        if isinstance(value, list):
            ok = bool(value) and all(isinstance(v, str) and v for v in value)
        else:
            ok = isinstance(value, str) and bool(value)
        if not ok:
            logger.warning(f"[Keyword] the answer to {key!r} must be a text or a list of texts; ignored")
        return ok

    @staticmethod
    def _number(config: dict, key: str, default: float) -> float:
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            logger.warning(f"[Keyword] {key} must be a positive number; using {default}")
            return default
        return value

    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        if context.type != ContextType.TEXT or not isinstance(context.content, str):
            return
        content = context.content.strip()
        answer = self.keyword.get(content)
        if answer is None:
            return
        if isinstance(answer, list):
            answer = random.choice(answer)
        logger.info(f"[Keyword] a keyword matched in session {context.get('session_id')}")
        logger.debug(f"[Keyword] matched {content!r}")
        e_context["reply"] = self._reply_for(answer.strip())
        e_context.action = EventAction.BREAK_PASS

    def _reply_for(self, answer: str) -> Reply:
        if not _is_web_url(answer):
            return Reply(ReplyType.TEXT, answer)
        ext = get_path_suffix(answer).lower()
        if ext in IMAGE_EXTENSIONS:
            return Reply(ReplyType.IMAGE_URL, answer)
        if ext in VIDEO_EXTENSIONS:
            return Reply(ReplyType.VIDEO_URL, answer)
        if ext in FILE_EXTENSIONS:
            try:
                return Reply(ReplyType.FILE, download_file(answer, self.max_bytes, self.download_timeout))
            except DownloadError as e:
                # The original let the exception escape (no reply at all) or sent an
                # error page saved as the file; the link itself is still useful.
                logger.warning(f"[Keyword] download of {answer} failed, sending the link: {e}")
                return Reply(ReplyType.TEXT, answer)
        return Reply(ReplyType.TEXT, answer)

    def get_help_text(self, **kwargs) -> str:
        return "按关键词回复固定内容（文字、图片、文件或视频）。\nFixed replies (text, image, file or video) to configured keywords."
