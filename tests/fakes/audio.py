"""Real audio files for tests: a WAV tone (stdlib ``wave``), SILK made from it with pilk (standard
or WeChat's 0x02-prefixed variant), and small AMR-NB / MP3 files that are valid enough to be
recognised and sent (they are never decoded)."""
from __future__ import annotations

import array
import math
import os
import sys
import tempfile
import wave

SAMPLE_RATE = 24000


def tone_pcm(seconds: float = 1.0, rate: int = SAMPLE_RATE, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    """A sine tone as mono signed 16-bit little-endian PCM."""
    count = int(seconds * rate)
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def make_wav(path: str, seconds: float = 1.0, rate: int = SAMPLE_RATE, channels: int = 1, sampwidth: int = 2,
             freq: float = 440.0) -> str:
    """Write a WAV tone. Multi-channel files repeat the tone on each channel; widths 1-4 are supported."""
    pcm16 = tone_pcm(seconds, rate, freq)
    if sampwidth == 2:
        frames = pcm16
    else:
        out = bytearray()
        for i in range(0, len(pcm16), 2):
            value = int.from_bytes(pcm16[i:i + 2], "little", signed=True)
            if sampwidth == 1:
                out.append((value >> 8) + 128)
            else:
                out += (value << (8 * (sampwidth - 2))).to_bytes(sampwidth, "little", signed=True)
        frames = bytes(out)
    if channels > 1:
        frames = b"".join(frames[i:i + sampwidth] * channels for i in range(0, len(frames), sampwidth))
    with wave.open(path, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(sampwidth)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


def make_silk(path: str, seconds: float = 1.0, rate: int = SAMPLE_RATE, tencent: bool = False) -> str:
    """Encode a tone to SILK with pilk. ``tencent=True`` gives WeChat's variant (0x02 first, no trailer)."""
    import pilk

    fd, pcm_path = tempfile.mkstemp(suffix=".pcm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(tone_pcm(seconds, rate))
        pilk.encode(pcm_path, path, pcm_rate=rate, tencent=tencent)
    finally:
        os.remove(pcm_path)
    return path


# AMR-NB 12.2 kbit/s: a frame is a header byte (frame type 7, quality bit set) and 31 payload bytes.
_AMR_FRAME = bytes([0x3C]) + bytes(31)


def make_amr(path: str, frames: int = 5) -> str:
    """An AMR-NB file: the ``#!AMR\\n`` magic and ``frames`` silent 20 ms frames."""
    with open(path, "wb") as f:
        f.write(b"#!AMR\n" + _AMR_FRAME * frames)
    return path


# One silent MPEG-1 Layer III frame (128 kbit/s, 44.1 kHz) behind an empty ID3v2.3 tag.
_MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)


def make_mp3(path: str, frames: int = 4) -> str:
    with open(path, "wb") as f:
        f.write(b"ID3\x03\x00\x00\x00\x00\x00\x00" + _MP3_FRAME * frames)
    return path


def wav_info(path: str) -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frame count) of a WAV file."""
    with wave.open(path, "rb") as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()
