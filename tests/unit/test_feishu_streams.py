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


class Context(dict):
    """A context of a message of chat `chat`."""

    def __init__(self, message_id: str = "om_asked", chat: str = "oc_chat") -> None:
        super().__init__(message_id=message_id, chat=chat)


def by_message(context) -> tuple[str, str]:
    return context["chat"], context["message_id"]


def test_updates_are_throttled_and_a_held_text_lands_after_the_interval():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update, by_message)
    context = Context()
    cards.show(context, "s1", "a")
    for n in range(2, 30):
        cards.show(context, "s1", "a" * n)  # all within one interval: held, the newest wins
    assert platform.created == ["a"] and platform.updates == []
    time.sleep(streams.UPDATE_INTERVAL + 0.2)  # a pause in the answer: what was written shows anyway
    assert [(m, t) for _, m, t in platform.updates] == [("om_1", "a" * 29)]


def test_nothing_held_is_written_after_the_card_is_finished():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update, by_message)
    context = Context()
    cards.show(context, "s1", "first")
    cards.show(context, "s1", "first second")  # held
    card = cards.finish(context)
    assert card.message_id == "om_1" and card.shown == "first"
    time.sleep(streams.UPDATE_INTERVAL + 0.2)
    assert platform.updates == []  # the sender writes the final text; no stale text after it
    assert cards.finish(context) is None


def test_each_stream_of_an_answer_has_its_own_card_finished_oldest_first():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update, by_message)
    context = Context()
    cards.show(context, "s1", "before the picture")
    cards.show(context, "s2", "after")
    assert [cards.finish(context).message_id, cards.finish(context).message_id] == ["om_1", "om_2"]


def test_a_card_is_kept_by_the_message_not_by_the_context_object():
    platform = Platform()
    cards = CardStreams(platform.create, platform.update, by_message)
    grown_under = Context("om_voice")
    cards.show(grown_under, "s1", "transcribed answer")
    assert cards.finish(Context("om_other")) is None  # another message never gets it
    assert cards.finish(Context("om_voice", chat="oc_elsewhere")) is None  # nor another chat
    card = cards.finish(Context("om_voice"))  # a second context for the same message (voice) does
    assert card is not None and card.message_id == "om_1" and cards.open_count() == 0
    cards.show(grown_under, "s1", "x")
    cards.forget(Context("om_voice"))
    assert cards.open_count() == 0
