"""Offline text to speech through ``pyttsx3`` (``text_to_voice``: ``pytts``): SAPI5 on Windows,
NSSpeechSynthesizer on macOS, eSpeak (``apt install espeak-ng``) on Linux.
``pip install -r requirements-voice.txt``.

The engine is created when the setting chooses it, so a missing package or a missing system
voice (no eSpeak on Linux) is reported once, by name, instead of failing each reply. One
synthesis at a time: a pyttsx3 engine is not thread-safe. The file is written with
``save_to_file`` + ``runAndWait``; the original's Linux work-around (``startLoop`` and polling
the folder) could wait forever when the file already existed.
"""
from __future__ import annotations

import os
import sys
import threading

from bot.bot_factory import BotNotAvailable
from common.log import logger
from common.tmp_dir import unique_tmp_path
from voice.cloud_speech import VendorVoice, SpeechError

INSTALL_HINT = ("pip install -r requirements-voice.txt"
                + ("" if sys.platform in ("win32", "darwin") else ", and the espeak-ng system package (apt install espeak-ng)"))


class PyttsVoice(VendorVoice):
    NAME = "pytts"
    ENGINE = "pyttsx3"
    CAN_TRANSCRIBE = False
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import pyttsx3
        except ImportError:
            raise BotNotAvailable(f"voice engine 'pytts' needs the pyttsx3 package: {INSTALL_HINT}", "pytts") from None
        try:
            self.engine = pyttsx3.init()
        except Exception as e:  # RuntimeError / OSError: no driver or no eSpeak library
            raise BotNotAvailable(f"voice engine 'pytts' cannot start its speech driver ({e}): {INSTALL_HINT}", "pytts") from None
        self.engine.setProperty("rate", 125)
        self.engine.setProperty("volume", 1.0)
        for voice in self.engine.getProperty("voices") or []:
            if "chinese" in str(voice.name).lower() or "zh" in str(getattr(voice, "languages", "")).lower():
                self.engine.setProperty("voice", voice.id)
                break

    def transcribe(self, path: str, scratch: list[str]) -> str:
        raise SpeechError("unsupported", "pyttsx3 has no speech recognition: choose another voice_to_text")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        path = unique_tmp_path(".wav")
        try:
            with self._lock:
                self.engine.save_to_file(text, path)
                self.engine.runAndWait()
            with open(path, "rb") as f:
                return f.read(), ".wav"
        except OSError as e:
            raise SpeechError("failed", f"pyttsx3 wrote no file: {e}") from e
        finally:
            try:
                os.remove(path)
            except OSError:
                logger.debug(f"[pyttsx3] nothing to remove at {path}")
