"""Answers shown growing in one Feishu card, replaced in place (PATCH im/v1/messages/{id}).

The first text of an answer creates a card (as the reply would have been sent); later texts
replace the card's content, at most one PATCH per UPDATE_INTERVAL per card (Feishu allows 5
updates a second per message). A text that comes sooner is held and written when the interval
is over (a timer), unless a newer one replaced it first, so a pause in the answer (an agent's
tool call) still shows everything written before it. The finished text always lands: `finish`
closes the card (nothing held is written after that) and hands it to the sender, which writes
the final text into it.

Cards are kept by the message they answer (`key(context)`: its chat and message id), not by
the context object: the pipeline answers a voice message with a second context (for the
transcribed text) that carries the same message, so the card grown under one is finished under
the other; and a context's address is reused by Python once it is gone, so a key made from it
could hand one chat's card to another chat's answer. A card also keeps its chat, checked again
when it is finished.

An answer can need several cards: when the bot sends a part of it (an image between two
paragraphs), the text after it grows in a new card (PartialAnswer.next_answer gives it a new
stream id).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from common.log import logger

UPDATE_INTERVAL = 0.3  # seconds between two updates of one card
CARD_MAX_BYTES = 20000  # a growing text beyond this stays as it is until the end


@dataclass
class Card:
    message_id: str
    chat: str  # the chat the card is in (key(context)[0])
    shown: str
    updated: float
    held: str | None = None  # a text waiting for the interval to pass
    closed: bool = False
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one update of the card at a time


class CardStreams:
    def __init__(self, create: Callable[[Any, str], str], update: Callable[[str, str], None],
                 key: Callable[[Any], tuple[str, Hashable] | None]) -> None:
        """`create(context, text)` sends a new card and returns its message id;
        `update(message_id, text)` replaces a card's text (False: skipped for the app's rate
        limit, the text is held and written later); `key(context)` is (chat id, message
        id) of the message the context answers, or None (no card for it)."""
        self._create = create
        self._update = update
        self._key = key
        self._cards: dict[tuple, dict[str, Card]] = {}  # key(context) -> stream id -> card, oldest first
        self._lock = threading.Lock()

    def show(self, context: Any, stream_id: str, text: str) -> None:
        key = self._key(context)
        if key is None:
            return  # not a platform message: the final reply goes as a message
        with self._lock:
            card = self._cards.get(key, {}).get(stream_id)
        if card is None:
            message_id = self._create(context, text)
            with self._lock:
                self._cards.setdefault(key, {})[stream_id] = Card(message_id, str(key[0]), text, time.monotonic())
            return
        with card.lock:
            if card.closed or text == card.shown or len(text.encode("utf-8")) > CARD_MAX_BYTES:
                return
            wait = UPDATE_INTERVAL - (time.monotonic() - card.updated)
            if wait > 0:
                card.held = text
                if card.timer is None:
                    card.timer = threading.Timer(wait, self._write_held, (card,))
                    card.timer.daemon = True
                    card.timer.start()
                return
            self._write(card, text)

    def _write(self, card: Card, text: str) -> None:
        """With card.lock held."""
        card.updated = time.monotonic()
        card.held = None
        if self._update(card.message_id, text) is False:
            # The app's update budget is spent: held for the next interval (the finished text
            # is never skipped, it waits for its turn).
            card.held = text
            if card.timer is None:
                card.timer = threading.Timer(UPDATE_INTERVAL, self._write_held, (card,))
                card.timer.daemon = True
                card.timer.start()
            return
        card.shown = text

    def _write_held(self, card: Card) -> None:
        with card.lock:
            card.timer = None
            if card.closed or card.held is None:
                return
            try:
                self._write(card, card.held)
            except Exception as e:  # the next text, or the finished one, tries again
                logger.warning(f"[feishu] card {card.message_id} not updated: {e}")

    def finish(self, context: Any) -> Card | None:
        """The context's oldest open card, now closed (its final text is the caller's to write),
        or None when none is open."""
        key = self._key(context)
        if key is None:
            return None
        with self._lock:
            cards = self._cards.get(key)
            if not cards:
                return None
            card = cards.pop(next(iter(cards)))
            if not cards:
                del self._cards[key]
        self._close(card)
        if card.chat != str(key[0]):  # never another chat's card, whatever the key
            logger.error(f"[feishu] card {card.message_id} is in chat {card.chat}, not {key[0]}: not used")
            return None
        logger.debug(f"[feishu] card {card.message_id} finished")
        return card

    def forget(self, context: Any) -> None:
        """The message is handled: its cards (any left unfinished) are closed and dropped."""
        key = self._key(context)
        if key is None:
            return
        with self._lock:
            cards = self._cards.pop(key, {})
        for card in cards.values():
            self._close(card)

    def open_count(self) -> int:
        with self._lock:
            return sum(len(cards) for cards in self._cards.values())

    @staticmethod
    def _close(card: Card) -> None:
        # Under the card's lock: an update on its way lands before the final text is written.
        with card.lock:
            card.closed = True
            if card.timer is not None:
                card.timer.cancel()
                card.timer = None
