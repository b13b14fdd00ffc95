"""The interface every translator implements."""
from __future__ import annotations


class TranslateError(RuntimeError):
    """The translation service refused or failed; the message says why."""


class Translator:
    # Languages are ISO 639-1 codes (https://en.wikipedia.org/wiki/List_of_ISO_639-1_codes);
    # an empty from_lang asks the engine to detect it.
    def translate(self, query: str, from_lang: str = "", to_lang: str = "en") -> str:
        """The translation of ``query``; raises TranslateError when the engine fails."""
        raise NotImplementedError
