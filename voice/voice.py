"""The interface every speech engine implements."""
from __future__ import annotations

from bridge.reply import Reply


class Voice:
    """A speech engine. Method names are the original's (plugins call them)."""

    def voiceToText(self, voice_file: str) -> Reply:
        """Transcribe the audio file at ``voice_file``; a TEXT reply on success."""
        raise NotImplementedError

    def textToVoice(self, text: str) -> Reply:
        """Synthesize ``text``; a VOICE reply holding the path of the audio file."""
        raise NotImplementedError
