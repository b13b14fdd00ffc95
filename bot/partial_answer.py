"""Showing a streamed answer while it is written, on channels that can (Channel.show_partial).

A bot that reads its answer as a stream makes one PartialAnswer per context and calls
`show` with the text so far; when a piece of the answer is finished and sent as a reply,
`next_answer` starts a new one (the text after an image is a new bubble).
"""
from __future__ import annotations

import uuid

from bridge.context import Context
from common.log import logger


class PartialAnswer:
    def __init__(self, channel, context: Context) -> None:
        self.channel = channel
        self.context = context
        self.stream_id = uuid.uuid4().hex
        self._failed = False

    @classmethod
    def for_context(cls, context: Context | None) -> "PartialAnswer | None":
        """None when the context's channel cannot show partial answers (the bot then
        answers as it always did)."""
        channel = context.get("channel") if context is not None else None
        can_show = getattr(channel, "can_show_partial", None)
        try:
            return cls(channel, context) if callable(can_show) and can_show(context) else None
        except Exception as e:
            logger.warning(f"[bot] channel cannot tell whether it shows partial answers: {e}")
            return None

    def show(self, text: str) -> None:
        if self._failed or not text.strip():
            return
        try:
            self.channel.show_partial(self.context, self.stream_id, text)
        except Exception:
            # Showing progress is a nicety: the finished answer still goes out.
            self._failed = True
            logger.exception("[bot] showing a partial answer failed; the finished answer will still be sent")

    def next_answer(self) -> None:
        self.stream_id = uuid.uuid4().hex
