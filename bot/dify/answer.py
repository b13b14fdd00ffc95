"""Turning Dify's answer into replies.

* :class:`AnswerFold` folds streamed events into parts: text, images, files.
* :class:`ParagraphSplitter` cuts streamed text into finished paragraphs (for
  ``dify_stream_reply``), never inside a ``` code fence.
* :class:`PartSender` turns parts into Replies (markdown images and file links
  become IMAGE / FILE replies, downloaded first with :mod:`common.fetch`; a link that is
  refused, too big, too slow or finds every download slot taken is sent as text) and sends all but the last
  through the channel while the last becomes the bot's reply.
"""
from __future__ import annotations

import io
import os
import re
import uuid
from typing import Any, Callable, Literal
from urllib.parse import unquote, urlsplit

from bot.dify.errors import DifyError
from bridge.context import Context
from bridge.reply import Reply, ReplyType
from common.fetch import FetchError
from common.log import logger
from common.tmp_dir import TmpDir
from common.utils import parse_markdown_media

Part = tuple[Literal["text", "image", "file"], str]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


class ParagraphSplitter:
    """Collects streamed text; :meth:`feed` returns the paragraphs it completed.

    A paragraph ends at a blank line that is not inside a fenced code block.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._partial = ""
        self._fence: str | None = None  # the opening marker while inside a fence

    def feed(self, text: str) -> list[str]:
        done: list[str] = []
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            if self._fence is None and not line.strip():
                paragraph = "\n".join(self._lines).strip()
                self._lines = []
                if paragraph:
                    done.append(paragraph)
                continue
            self._lines.append(line)
            self._track_fence(line)
        return done

    def _track_fence(self, line: str) -> None:
        match = _FENCE.match(line)
        if not match:
            return
        marker, rest = match.group(1), match.group(2)
        if self._fence is None:
            self._fence = marker
        elif marker[0] == self._fence[0] and len(marker) >= len(self._fence) and not rest.strip():
            self._fence = None

    def take_rest(self) -> str:
        """Everything not yet returned as a paragraph; the splitter starts empty again."""
        lines = self._lines + ([self._partial] if self._partial else [])
        self.reset()
        return "\n".join(lines).strip()

    def reset(self) -> None:
        self._lines, self._partial, self._fence = [], "", None


class AnswerFold:
    """Folds the events of one streamed answer.

    ``message`` / ``agent_message`` deltas accumulate; ``agent_thought`` and
    ``message_file`` end the current text part; ``message_file`` adds an image
    (or file) part; ``message_replace`` replaces all text so far (output
    moderation; the original ignored it); ``terminal`` (``message_end``, or
    ``workflow_finished`` for workflow apps) ends the answer. ``workflow_*``,
    ``node_*``, ``text_chunk``, ``tts_*`` and unknown events are ignored.

    Finished parts go to ``on_part`` when given (streamed replies), else they are
    kept in ``parts``. With ``split_paragraphs`` every finished paragraph is a part.
    Without it, ``on_text`` (when given) gets the text of the part in progress, all of
    it so far, after every change (to show the answer growing).
    """

    def __init__(
        self,
        *,
        terminal: str = "message_end",
        on_part: Callable[[Part], None] | None = None,
        split_paragraphs: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.terminal = terminal
        self.on_part = on_part
        self.on_text = on_text
        self.split_paragraphs = split_paragraphs
        self.parts: list[Part] = []
        self.delivered = 0
        self.received = False  # any text or file arrived
        self.text_chars = 0  # characters of answer text so far (a reader stops past answer_max_chars)
        self.ended = False
        self.conversation_id = ""
        self.workflow: dict[str, Any] | None = None
        self._buffer = ""
        self._splitter = ParagraphSplitter()

    # -- input ---------------------------------------------------------------------------
    def feed(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if not self.conversation_id and isinstance(event.get("conversation_id"), str):
            self.conversation_id = event["conversation_id"]
        if name in ("message", "agent_message"):
            delta = event.get("answer")
            if isinstance(delta, str) and delta:
                self.received = True
                self._add_text(delta)
        elif name == "agent_thought":
            self._flush()
        elif name == "message_file":
            self._message_file(event)
        elif name == "message_replace":
            self._replace(event.get("answer"))
        elif name == self.terminal:
            if name == "workflow_finished":
                data = event.get("data")
                self.workflow = data if isinstance(data, dict) else {}
            else:
                usage = (event.get("metadata") or {}).get("usage") if isinstance(event.get("metadata"), dict) else None
                logger.debug("[DIFY] usage %s", usage)
            self.ended = True
        else:
            logger.debug("[DIFY] event ignored: %s", name)

    def _add_text(self, delta: str) -> None:
        self.text_chars += len(delta)
        if self.split_paragraphs:
            for paragraph in self._splitter.feed(delta):
                self._emit(("text", paragraph))
        else:
            self._buffer += delta
            if self.on_text is not None:
                self.on_text(self._buffer)

    def _flush(self) -> None:
        text = self._splitter.take_rest() if self.split_paragraphs else self._buffer.strip()
        self._buffer = ""
        if text:
            self._emit(("text", text))

    def _message_file(self, event: dict[str, Any]) -> None:
        url = event.get("url")
        if not isinstance(url, str) or not url or event.get("belongs_to") == "user":
            logger.debug(f"[DIFY] message_file ignored: {event}")
            return
        self.received = True
        self._flush()
        self._emit(("image" if event.get("type", "image") == "image" else "file", url))

    def _replace(self, answer: Any) -> None:
        if self.delivered:
            logger.warning("[DIFY] message_replace after parts of the answer were already sent; replacing the rest")
        self._buffer = ""
        self.text_chars = 0
        self._splitter.reset()
        self.parts = [part for part in self.parts if part[0] != "text"]
        if isinstance(answer, str) and answer:
            self.received = True
            self._add_text(answer)

    def _emit(self, part: Part) -> None:
        if self.on_part is not None:
            self.delivered += 1
            self.on_part(part)
        else:
            self.parts.append(part)

    # -- output ------------------------------------------------------------------------
    def finish(self) -> list[Part]:
        """The parts not sent yet, the text in progress included."""
        text = self._splitter.take_rest() if self.split_paragraphs else self._buffer.strip()
        self._buffer = ""
        parts = self.parts + ([("text", text)] if text else [])
        self.parts = []
        return parts


def expand(parts: list[Part]) -> list[Part]:
    """Text parts split further into text, markdown images and file links."""
    out: list[Part] = []
    for kind, value in parts:
        if kind == "text":
            out.extend(parse_markdown_media(value))
        elif value:
            out.append((kind, value))
    return out


_UNSAFE_NAME = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')


def file_name_from_url(url: str) -> str:
    """The URL's last path segment, decoded and made safe as a file name."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _UNSAFE_NAME.sub("_", name).strip(" .")
    if len(name) > 120:
        stem, ext = os.path.splitext(name)
        name = stem[: 120 - len(ext)] + ext
    return name or "file"


class PartSender:
    """Sends the parts of one answer: every part but the last goes out at once
    (``channel.deliver``), the last is returned as the reply."""

    def __init__(self, client: Any, context: Context) -> None:
        self.client = client
        self.context = context

    # -- delivery ------------------------------------------------------------------------
    def can_deliver(self) -> bool:
        return self.context.get("channel") is not None

    def deliver(self, reply: Reply) -> None:
        channel = self.context.get("channel")
        if channel is None:
            logger.warning(f"[DIFY] no channel to send a {reply.type} part of the answer")
            return
        try:
            deliver = getattr(channel, "deliver", None)
            if callable(deliver):
                deliver(self.context, reply)
            else:
                channel.send(reply, self.context)
        except Exception:
            # One part failing to go out must not lose the rest of the answer.
            logger.exception("[DIFY] sending a part of the answer failed")

    def send_all(self, parts: list[Part]) -> None:
        """Send every part now (paragraphs of a streamed answer)."""
        for part in expand(parts):
            self.deliver(self.to_reply(part))

    def send_and_return_last(self, parts: list[Part], note: str | None = None) -> Reply | None:
        """Send all parts but the last now; return the last as a Reply (None when empty).
        ``note`` is added to the last text (e.g. "the answer was cut off")."""
        items = expand(parts)
        if note:
            if items and items[-1][0] == "text":
                items[-1] = ("text", items[-1][1] + "\n" + note)
            else:
                items.append(("text", note))
        if not items:
            return None
        if not self.can_deliver() and len(items) > 1:
            # Nowhere to send parts early: one text reply with the media as links.
            text = "\n\n".join(value if kind == "text" else self.client.resolve_url(value) for kind, value in items)
            return Reply(ReplyType.TEXT, text)
        for part in items[:-1]:
            self.deliver(self.to_reply(part))
        return self.to_reply(items[-1])

    # -- one part ------------------------------------------------------------------------
    def to_reply(self, part: Part) -> Reply:
        kind, value = part
        if kind == "text":
            return Reply(ReplyType.TEXT, value)
        url = self.client.resolve_url(value)
        if kind == "image":
            try:
                content, content_type = self.client.download(url, self.client.image_max_bytes)
                if content_type and not content_type.startswith(("image/", "application/octet-stream", "binary/")):
                    raise ValueError(f"not an image: {content_type}")
                return Reply(ReplyType.IMAGE, io.BytesIO(content))
            except (DifyError, FetchError, ValueError, OSError) as e:
                logger.warning(f"[DIFY] image download failed, sending the link: {e}")
                return Reply(ReplyType.TEXT, f"图片链接：{url}")
        try:
            content, _ = self.client.download(url, self.client.file_max_bytes)
            folder = os.path.join(TmpDir().path(), uuid.uuid4().hex)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, file_name_from_url(url))
            with open(path, "wb") as f:
                f.write(content)
            return Reply(ReplyType.FILE, path)
        except (DifyError, FetchError, ValueError, OSError) as e:
            logger.warning(f"[DIFY] file download failed, sending the link: {e}")
            return Reply(ReplyType.TEXT, f"文件链接：{url}")
