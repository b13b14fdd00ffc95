"""Microsoft Edge's online text to speech through the ``edge-tts`` package
(``text_to_voice``: ``edge``; it has no speech recognition). ``pip install -r requirements-voice.txt``.

``edge_tts_voice`` picks the voice (the original's fixed ``zh-CN-YunjianNeural`` by default;
``edge-tts --list-voices`` lists them). ``edge_tts_wss_url``, when set, replaces the service URL
edge-tts connects to (its module constant ``WSS_URL``, read at each connection): for a proxy
or gateway in front of the service, and for tests against a loopback fake.

Differences from the original: ``voiceToText`` answers that Edge cannot transcribe (the
original returned None, which the pipeline dropped without a word), and a failed synthesis is
an error reply, not an exception in the worker.
"""
from __future__ import annotations

import asyncio
import threading

from bot.bot_factory import BotNotAvailable
from config import conf
from voice.cloud_speech import VendorVoice, SpeechError, request_timeout

DEFAULT_VOICE = "zh-CN-YunjianNeural"
_url_lock = threading.Lock()  # WSS_URL is one module constant: one synthesis at a time may replace it


def _edge_tts():
    try:
        import edge_tts
        import edge_tts.communicate
    except ImportError:
        raise SpeechError("engine_missing", "the edge-tts package is not installed: pip install -r requirements-voice.txt") from None
    return edge_tts


class EdgeVoice(VendorVoice):
    NAME = "edge"
    ENGINE = "Edge TTS"
    CAN_TRANSCRIBE = False

    def __init__(self) -> None:
        # Fail at creation (start-up check, Bridge), not at the first reply.
        try:
            _edge_tts()
        except SpeechError:
            raise BotNotAvailable("voice engine 'edge' needs the edge-tts package: pip install -r requirements-voice.txt",
                                  "edge") from None

    def describe(self) -> str:
        return f"voice={conf().get('edge_tts_voice') or DEFAULT_VOICE}"

    def transcribe(self, path: str, scratch: list[str]) -> str:
        raise SpeechError("unsupported", "Edge TTS has no speech recognition: choose another voice_to_text")

    def synthesize(self, text: str) -> tuple[bytes, str]:
        edge_tts = _edge_tts()
        import aiohttp

        voice = str(conf().get("edge_tts_voice") or DEFAULT_VOICE)
        url = str(conf().get("edge_tts_wss_url") or "")

        async def run() -> bytes:
            communicate = edge_tts.Communicate(text, voice, connect_timeout=int(request_timeout()),
                                               receive_timeout=int(request_timeout()))
            audio = bytearray()
            async for chunk in communicate.stream():
                if chunk["type"] == "audio":
                    audio.extend(chunk["data"])
            return bytes(audio)

        module = edge_tts.communicate
        try:
            if url:
                with _url_lock:
                    original = module.WSS_URL
                    module.WSS_URL = url
                    try:
                        audio = asyncio.run(run())
                    finally:
                        module.WSS_URL = original
            else:
                audio = asyncio.run(run())
        except edge_tts.exceptions.NoAudioReceived as e:
            raise SpeechError("failed", f"no audio received: {e}") from e
        except aiohttp.WSServerHandshakeError as e:
            kind = "config" if e.status in (401, 403) else "busy" if e.status == 429 else "failed"
            raise SpeechError(kind, f"the service refused the connection: HTTP {e.status} {e.message}") from e
        except (asyncio.TimeoutError, TimeoutError) as e:
            raise SpeechError("timeout", f"no answer in time: {e!r}") from e
        except (aiohttp.ClientConnectionError, OSError) as e:
            raise SpeechError("unreachable", f"{type(e).__name__}: {e}") from e
        except (edge_tts.exceptions.EdgeTTSException, aiohttp.ClientError, ValueError) as e:
            raise SpeechError("failed", f"{type(e).__name__}: {e}") from e
        return audio, ".mp3"
