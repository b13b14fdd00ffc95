"""What each conversation shows, and the per-conversation rate limit (reference §2.6, §5.2).

A conversation is (bot_id, "single", userid) or (bot_id, "group", chatid). Pure state; the caller
holds the simulator's lock.
"""
from __future__ import annotations

import copy
from collections import deque
from typing import Optional, Sequence, Union

from .records import Bubble
from .uploads import Media

Conv = tuple  # (bot_id, "single" | "group", id)
Entry = Union[tuple, Bubble]  # a Bubble is rendered only once finished


def media_entry(media: Media) -> tuple:
    if media.type == "file":
        return ("file", media.filename, media.data)
    return (media.type, media.data)


class ChatLog:
    def __init__(self) -> None:
        self.bubbles: dict[str, list[Bubble]] = {}  # by req_id, creation order
        self.streams: dict[tuple[str, str], Bubble] = {}  # by (req_id, stream id)
        self.timeline: list[tuple[Conv, Entry]] = []
        self._sent_at: dict[Conv, deque] = {}

    # --- rate limit -------------------------------------------------------------------------------
    def allowed(self, conv: Conv, now: float, limits: Sequence[Optional[tuple[int, float]]]) -> bool:
        """Whether one more message fits every (count, window) limit. Stream frames after the
        first do not come here: a stream is one message (§5.2, FACTS E6)."""
        times = self._sent_at.get(conv, ())
        for limit in limits:
            if limit is None:
                continue
            count, window = limit
            if sum(1 for t in times if now - t < window) >= count:
                return False
        return True

    def count(self, conv: Conv, now: float) -> None:
        times = self._sent_at.setdefault(conv, deque())
        times.append(now)
        while times and now - times[0] > 3600 * 24:  # older than any window worth keeping
            times.popleft()

    # --- what is shown ----------------------------------------------------------------------------
    def show(self, conv: Conv, entry: Entry) -> None:
        self.timeline.append((conv, entry))

    def new_bubble(self, conv: Conv, req_id: str, stream_id: str, now: float, feedback_id) -> Bubble:
        bubble = Bubble(stream_id=stream_id, text="", finished=False, frames=[], feedback_id=feedback_id,
                        created_at=now, updated_at=now, req_id=req_id)
        self.bubbles.setdefault(req_id, []).append(bubble)
        self.streams[(req_id, stream_id)] = bubble
        # A bubble takes its place in the chat when it appears, but counts as shown once finished.
        self.show(conv, bubble)
        return bubble

    def view(self, bot_id: Optional[str], userid: Optional[str], chatid: Optional[str]) -> list[tuple]:
        kind, ident = ("group", chatid) if chatid is not None else ("single", userid)
        shown = []
        for conv, entry in self.timeline:
            if conv[1:] != (kind, ident) or (bot_id is not None and conv[0] != bot_id):
                continue
            if isinstance(entry, Bubble):
                if entry.finished:
                    shown.append(("stream", entry.text))
            else:
                shown.append(copy.deepcopy(entry))
        return shown
