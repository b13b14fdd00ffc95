"""channel/feishu/streams.py: a growing answer in one card, updates throttled, nothing written
after the card is finished."""
from __future__ import annotations

import threading
import time

from channel.feishu import streams
from channel.feishu.streams import CardStreams


class Platform:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.updates: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def create(self, context, text: str) -> str:
        self.created.append(text)
        return f"om_{len(self.created)}"

    def update(self, message_id: str, text: str) -> None:
        with self.lock:
            self.updates.append((time.monotonic(), message_id, text))


def test_updates_are_throttled_and_a_held_text_lands_after_the_interval():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update)
    context = object()
    cards.show(context, "s1", "a")
    for n in range(2, 30):
        cards.show(context, "s1", "a" * n)  # all within one interval: held, the newest wins
    assert platform.created == ["a"] and platform.updates == []
    time.sleep(streams.UPDATE_INTERVAL + 0.2)  # a pause in the answer: what was written shows anyway
    assert [(m, t) for _, m, t in platform.updates] == [("om_1", "a" * 29)]


def test_nothing_held_is_written_after_the_card_is_finished():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update)
    context = object()
    cards.show(context, "s1", "first")
    cards.show(context, "s1", "first second")  # held
    card = cards.finish(context)
    assert card.message_id == "om_1" and card.shown == "first"
    time.sleep(streams.UPDATE_INTERVAL + 0.2)
    assert platform.updates == []  # the sender writes the final text; no stale text after it
    assert cards.finish(context) is None


def test_each_stream_of_an_answer_has_its_own_card_finished_oldest_first():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update)
    context = object()
    cards.show(context, "s1", "before the picture")
    cards.show(context, "s2", "after")
    assert [cards.finish(context).message_id, cards.finish(context).message_id] == ["om_1", "om_2"]
