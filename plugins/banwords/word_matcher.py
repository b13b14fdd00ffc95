# encoding:utf-8
"""Finds every occurrence of a set of words in a text (Aho-Corasick automaton).

Why not a regex alternation of the escaped words: Python's ``re`` tries the
alternatives one after another at every position of the text, so the cost is
(text length x number of words); word lists of several thousand entries are common
for this plugin. The automaton reads each character once whatever the number of
words, and reports overlapping matches too, so masking covers every banned word
even when two of them overlap. Pure Python, no dependency.

Matching ignores case (per character, so indexes stay aligned with the text).
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator


def _fold(text: str) -> str:
    # Lowercase one character at a time and keep characters whose lowercase form is
    # longer (e.g. "İ"), so a match's indexes are indexes into the original text.
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


class WordMatcher:
    def __init__(self, words: Iterable[str]) -> None:
        self._next: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        # Lengths of the words that end at each state (own and through fail links).
        self._ends: list[tuple[int, ...]] = [()]
        self.words: list[str] = []
        seen: set[str] = set()
        for word in words:
            word = _fold(word.strip())
            if word and word not in seen:
                seen.add(word)
                self.words.append(word)
                self._add(word)
        self._link()

    def __len__(self) -> int:
        return len(self.words)

    def _add(self, word: str) -> None:
        state = 0
        for c in word:
            nxt = self._next[state].get(c)
            if nxt is None:
                nxt = len(self._next)
                self._next[state][c] = nxt
                self._next.append({})
                self._fail.append(0)
                self._ends.append(())
            state = nxt
        self._ends[state] = self._ends[state] + (len(word),)

    def _link(self) -> None:
        queue = deque(self._next[0].values())
        while queue:
            state = queue.popleft()
            for c, child in self._next[state].items():
                fallback = self._fail[state]
                while fallback and c not in self._next[fallback]:
                    fallback = self._fail[fallback]
                target = self._next[fallback].get(c, 0)
                self._fail[child] = target if target != child else 0
                self._ends[child] = self._ends[child] + self._ends[self._fail[child]]
                queue.append(child)

    def finditer(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) of every occurrence, in the order their ends are reached."""
        state = 0
        for i, c in enumerate(_fold(text)):
            while state and c not in self._next[state]:
                state = self._fail[state]
            state = self._next[state].get(c, 0)
            for length in self._ends[state]:
                yield i + 1 - length, i + 1

    def find_first(self, text: str) -> str | None:
        """The first banned word found in ``text`` (as written there), or None."""
        for start, end in self.finditer(text):
            return text[start:end]
        return None

    def contains_any(self, text: str) -> bool:
        return self.find_first(text) is not None

    def mask(self, text: str, mask_char: str = "*") -> str:
        """``text`` with every character of every occurrence replaced by ``mask_char``."""
        covered = bytearray(len(text))
        for start, end in self.finditer(text):
            covered[start:end] = b"\x01" * (end - start)
        if not any(covered):
            return text
        return "".join(mask_char if covered[i] else c for i, c in enumerate(text))
