"""Answers shown growing in one Feishu card, replaced in place (PATCH im/v1/messages/{id}).

The first text of an answer creates a card (as the reply would have been sent); later texts
replace the card's content, at most one PATCH per UPDATE_INTERVAL per card (Feishu allows 5
updates a second per message): a text that comes sooner is held, and the next update or the
finished text carries it. The finished text always lands: `finish` hands the card to the
sender, which writes the final text into it.

An answer can need several cards: when the bot sends a part of it (an image between two
paragraphs), the text after it grows in a new card (PartialAnswer.next_answer gives it a new
stream id).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from common.log import logger

UPDATE_INTERVAL = 0.3  # seconds between two updates of one card
CARD_MAX_BYTES = 20000  # a growing text beyond this stays as it is until the end


@dataclass
class Card:
    message_id: str
    shown: str
    updated: float


class CardStreams:
    def __init__(self, create: Callable[[Any, str], str], update: Callable[[str, str], None]) -> None:
        """`create(context, text)` sends a new card and returns its message id;
        `update(message_id, text)` replaces a card's text."""
        self._create = create
        self._update = update
        self._cards: dict[int, dict[str, Card]] = {}  # id(context) -> stream id -> card, oldest first
        self._lock = threading.Lock()

    def show(self, context: Any, stream_id: str, text: str) -> None:
        with self._lock:
            card = self._cards.get(id(context), {}).get(stream_id)
        if card is None:
            message_id = self._create(context, text)
            with self._lock:
                self._cards.setdefault(id(context), {})[stream_id] = Card(message_id, text, time.monotonic())
            return
        if text == card.shown or len(text.encode("utf-8")) > CARD_MAX_BYTES:
            return
        if time.monotonic() - card.updated < UPDATE_INTERVAL:
            return  # held: the next update or the finished text shows it
        card.updated = time.monotonic()
        self._update(card.message_id, text)
        card.shown = text

    def finish(self, context: Any) -> Card | None:
        """The context's oldest open card, now closed (its final text is the caller's to write),
        or None when none is open."""
        with self._lock:
            cards = self._cards.get(id(context))
            if not cards:
                return None
            stream_id = next(iter(cards))
            card = cards.pop(stream_id)
        logger.debug(f"[feishu] card {card.message_id} finished")
        return card

    def forget(self, context: Any) -> None:
        with self._lock:
            self._cards.pop(id(context), None)
