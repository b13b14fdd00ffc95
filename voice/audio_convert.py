"""Audio format detection and the conversions the voice pipeline needs, without ffmpeg.

The original converted everything through pydub, which needs an ffmpeg binary that a plain
Windows PC does not have. This port handles the formats chat platforms actually deliver and
the speech engines accept with the Python standard library plus ``pilk`` (SILK codec):

* WAV in, WAV out: copied (PCM of any width / channel count is normalised where an encoder
  needs it, see ``wav_to_pcm16_mono``);
* SILK (WeChat / WeCom voice) -> WAV: decoded with pilk at 24000 Hz;
* WAV or raw 16-bit PCM -> SILK: encoded with pilk (WeChat's variant by default);
* everything else (AMR, MP3, M4A, OGG, ...) is recognised by its magic bytes but not decoded:
  the conversion raises ``UnsupportedAudioFormat`` (a ``ValueError``) naming the format, and
  callers fall back to sending the file as it is (Dify accepts AMR and MP3 directly).

SILK facts used here (pilk's README, the SILK spec it ships, and the original project):

* a standard SILK file starts with ``#!SILK_V3`` and ends with the two bytes ``FF FF``; a
  WeChat/WeCom voice file has one extra ``0x02`` byte in front and no trailer. Each frame is a
  2-byte little-endian length and the payload, 20 ms of audio by default;
* SILK does not store a sample rate: the decoder renders at whatever rate it is asked for, and
  the codec's internal rate is at most 24 kHz. WeChat voice is decoded at 24000 Hz everywhere in
  the original (``sil_to_wav(rate=24000)``, the WeCom channel's ``pilk.silk_to_wav(..., rate=24000)``,
  ``mp3_to_silk`` encoding at 24000 Hz with ``tencent=True``), so that is ``SILK_SAMPLE_RATE``.

pilk's C code opens files by their byte path, which breaks on Windows for names outside the
ANSI code page; every file pilk touches is therefore a scratch file with a plain ASCII name
relative to the working directory (``tmp/``), and Python does the rest of the I/O.
"""
from __future__ import annotations

import array
import os
import shutil
import sys
import wave
from contextlib import contextmanager
from typing import Iterator

from common.log import logger
from common.tmp_dir import unique_tmp_path

try:
    import pilk
except ImportError:  # pragma: no cover - pilk is in requirements.txt
    pilk = None
    logger.warning("import pilk failed, SILK voice conversion will not be supported. Try: pip install pilk")

__all__ = [
    "SILK_MAGIC",
    "SILK_SAMPLE_RATE",
    "UnsupportedAudioFormat",
    "any_to_amr",
    "any_to_mp3",
    "any_to_sil",
    "any_to_wav",
    "audio_format",
    "audio_format_of_bytes",
    "find_closest_sil_supports",
    "get_pcm_from_wav",
    "get_silk_duration",
    "is_silk",
    "mp3_to_silk",
    "pcm_to_sil",
    "sil_supports",
    "sil_to_wav",
    "split_audio",
    "wav_to_pcm16_mono",
]

SILK_MAGIC = b"#!SILK_V3"
_TENCENT_PREFIX = b"\x02"
_SILK_TRAILER = 0xFFFF
SILK_SAMPLE_RATE = 24000
SILK_FRAME_MS = 20

# PCM rates pilk's encoder and decoder accept (same list as the original's).
sil_supports = [8000, 12000, 16000, 24000, 32000, 44100, 48000]

_SILK_SUFFIXES = (".sil", ".silk", ".slk")

# Human-readable names for error messages.
_FORMAT_NAMES = {
    "wav": "WAV",
    "silk": "SILK",
    "amr": "AMR",
    "mp3": "MP3",
    "m4a": "M4A/MP4",
    "webm": "WebM",
    "ogg": "OGG",
    "flac": "FLAC",
    "aac": "AAC",
    "pcm": "raw PCM",
}

# Extensions used when the content says nothing (e.g. an empty or truncated file).
_EXTENSION_FORMATS = {
    ".wav": "wav",
    ".sil": "silk",
    ".silk": "silk",
    ".slk": "silk",
    ".amr": "amr",
    ".mp3": "mp3",
    ".mpga": "mp3",
    ".mpeg": "mp3",
    ".m4a": "m4a",
    ".mp4": "m4a",
    ".webm": "webm",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".flac": "flac",
    ".aac": "aac",
    ".pcm": "pcm",
}


class UnsupportedAudioFormat(ValueError):
    """The input is not a format this module can convert (the message names it)."""


# --- detection ----------------------------------------------------------------------------------------


def _head(path: str, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _silk_header_length(head: bytes) -> int:
    """9 for standard SILK, 10 for WeChat's 0x02-prefixed variant, 0 for anything else."""
    if head.startswith(SILK_MAGIC):
        return len(SILK_MAGIC)
    if head.startswith(_TENCENT_PREFIX + SILK_MAGIC):
        return len(SILK_MAGIC) + 1
    return 0


def is_silk(path: str) -> bool:
    """True when the file's content is SILK (``#!SILK_V3``, optionally after WeChat's 0x02 byte)."""
    try:
        return _silk_header_length(_head(path)) > 0
    except OSError:
        return False


def audio_format_of_bytes(head: bytes) -> str | None:
    """The audio format named by the first bytes of a file (16 are enough), or None."""
    if _silk_header_length(head):
        return "silk"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"#!AMR"):  # "#!AMR\n" (narrow band) and "#!AMR-WB\n"
        return "amr"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean ADTS AAC rather than MP3.
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    return None


def audio_format(path: str) -> str | None:
    """The file's audio format from its first bytes, else from its extension; None if unknown.

    One of: wav, silk, amr, mp3, m4a, webm, ogg, flac, aac, pcm. Content wins over the name
    because platforms and plugins name files loosely (a WeCom voice ``.wav`` may hold SILK).
    Raises OSError when the file cannot be read.
    """
    found = audio_format_of_bytes(_head(path))
    if found is not None:
        return found
    return _EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())


def _describe(fmt: str | None, path: str) -> str:
    if fmt is None:
        ext = os.path.splitext(path)[1]
        return f"unrecognised ({ext})" if ext else "unrecognised"
    return _FORMAT_NAMES.get(fmt, fmt)


# --- WAV / PCM helpers -------------------------------------------------------------------------------


def get_pcm_from_wav(wav_path: str) -> bytes:
    """The raw sample frames of a WAV file, in its own width and channel layout."""
    with wave.open(wav_path, "rb") as wav:
        return wav.readframes(wav.getnframes())


def _to_16bit(frames: bytes, width: int) -> bytes:
    """Little-endian signed 16-bit samples from WAV samples of ``width`` bytes."""
    if width == 2:
        return frames
    count = len(frames) // width
    out = bytearray(count * 2)
    if width == 1:  # unsigned 8-bit: flipping the top bit makes it signed, it becomes the high byte
        out[1::2] = frames[:count].translate(bytes(b ^ 0x80 for b in range(256)))
    elif width in (3, 4):  # keep the two most significant bytes of each sample
        out[0::2] = frames[width - 2 :: width][:count]
        out[1::2] = frames[width - 1 :: width][:count]
    else:
        raise UnsupportedAudioFormat(f"unsupported WAV sample width: {width * 8} bits")
    return bytes(out)


def _samples(pcm16: bytes) -> array.array:
    samples = array.array("h")
    samples.frombytes(pcm16[: len(pcm16) - len(pcm16) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array.array) -> bytes:
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _downmix(samples: array.array, channels: int) -> array.array:
    if channels == 1:
        return samples
    columns = [samples[c::channels] for c in range(channels)]
    return array.array("h", (sum(frame) // channels for frame in zip(*columns)))


def _resample(samples: array.array, src_rate: int, dst_rate: int) -> array.array:
    """Linear interpolation. Good enough for speech; only used for rates pilk does not take
    (e.g. 22050 -> 24000), which are close to a supported one, so little is lost."""
    if src_rate == dst_rate or len(samples) < 2:
        return samples
    count = max(1, round(len(samples) * dst_rate / src_rate))
    step = src_rate / dst_rate
    last = len(samples) - 1
    out = array.array("h", bytes(2 * count))
    for i in range(count):
        pos = i * step
        j = int(pos)
        if j >= last:
            out[i] = samples[last]
        else:
            a = samples[j]
            out[i] = int(a + (samples[j + 1] - a) * (pos - j))
    return out


def wav_to_pcm16_mono(wav_path: str, rates: list[int] | None = None) -> tuple[bytes, int]:
    """A WAV file's audio as mono signed 16-bit little-endian PCM, and its sample rate.

    With ``rates``, the audio is resampled to the closest of them when its own rate is not in
    the list. Raises UnsupportedAudioFormat for WAV flavours the stdlib cannot read (float,
    compressed, and WAVE_FORMAT_EXTENSIBLE before Python 3.12).
    """
    try:
        with wave.open(wav_path, "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as e:
        raise UnsupportedAudioFormat(f"cannot read WAV file {wav_path}: {e}") from e
    samples = _downmix(_samples(_to_16bit(frames, width)), channels)
    if rates:
        target = find_closest_sil_supports(rate, rates)
        samples, rate = _resample(samples, rate, target), target
    return _pcm_bytes(samples), rate


def _write_wav(wav_path: str, pcm16_mono: bytes, rate: int) -> None:
    with wave.open(wav_path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16_mono)


def find_closest_sil_supports(sample_rate: int, rates: list[int] | None = None) -> int:
    """The supported SILK PCM rate closest to ``sample_rate`` (ties go to the lower rate)."""
    candidates = rates or sil_supports
    return min(candidates, key=lambda r: (abs(r - sample_rate), r))


# --- SILK --------------------------------------------------------------------------------------------


def get_silk_duration(silk_path: str, frame_ms: int = SILK_FRAME_MS) -> int:
    """Duration in ms of a SILK file, counted from its frames (both variants).

    pilk.get_duration miscounts: it reads the length as ``lo + hi * 16`` and counts the
    standard trailer as a frame. This reads ``lo + hi * 256`` and stops at the trailer.
    """
    with open(silk_path, "rb") as f:
        data = f.read()
    pos = _silk_header_length(data[:16])
    if not pos:
        raise UnsupportedAudioFormat(f"not a SILK file: {silk_path}")
    frames = 0
    while pos + 2 <= len(data):
        size = data[pos] | data[pos + 1] << 8
        if size == _SILK_TRAILER:
            break
        pos += 2 + size
        if pos > len(data):  # a truncated last frame is not audio
            break
        frames += 1
    return frames * frame_ms


def _require_pilk() -> None:
    if pilk is None:
        raise UnsupportedAudioFormat("SILK conversion needs the pilk package: pip install pilk")


@contextmanager
def _scratch(suffix: str) -> Iterator[str]:
    path = unique_tmp_path(suffix)
    try:
        yield path
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def _decode_silk(silk_path: str, rate: int) -> bytes:
    """16-bit mono PCM at ``rate`` from a SILK file. Raises UnsupportedAudioFormat if undecodable."""
    _require_pilk()
    with open(silk_path, "rb") as f:
        data = f.read()
    if not _silk_header_length(data[:16]):
        raise UnsupportedAudioFormat(f"not a SILK file: {silk_path}")
    with _scratch(".silk") as silk_copy, _scratch(".pcm") as pcm_path:
        with open(silk_copy, "wb") as f:
            f.write(data)
        try:
            pilk.decode(silk_copy, pcm_path, pcm_rate=rate)
        except Exception as e:  # pilk.error: "Wrong Header", I/O errors
            raise UnsupportedAudioFormat(f"cannot decode SILK file {silk_path}: {e}") from e
        try:
            with open(pcm_path, "rb") as f:
                pcm = f.read()
        except OSError:
            pcm = b""
    # pilk "decodes" a valid header followed by garbage into nothing, without an error.
    if not pcm:
        raise UnsupportedAudioFormat(f"SILK file {silk_path} holds no decodable audio")
    return pcm


def sil_to_wav(silk_path: str, wav_path: str, rate: int = SILK_SAMPLE_RATE) -> int:
    """Decode a SILK file (either variant) into a 16-bit mono WAV at ``rate``; returns ms."""
    if rate not in sil_supports:
        raise ValueError(f"rate must be one of {sil_supports}, not {rate}")
    pcm = _decode_silk(silk_path, rate)
    _write_wav(wav_path, pcm, rate)
    return len(pcm) * 1000 // (2 * rate)


def pcm_to_sil(pcm16_mono: bytes, rate: int, sil_path: str, tencent: bool = True) -> int:
    """Encode 16-bit mono PCM at ``rate`` (one of ``sil_supports``) to SILK; returns ms.

    ``tencent`` writes WeChat's variant (leading 0x02, no trailer), which WeChat and WeCom
    clients play; set it to False for standard SILK.
    """
    _require_pilk()
    if rate not in sil_supports:
        raise ValueError(f"rate must be one of {sil_supports}, not {rate}")
    if not pcm16_mono:
        raise UnsupportedAudioFormat("no audio to encode")
    with _scratch(".pcm") as pcm_path, _scratch(".silk") as silk_out:
        with open(pcm_path, "wb") as f:
            f.write(pcm16_mono)
        pilk.encode(pcm_path, silk_out, pcm_rate=rate, tencent=tencent)
        with open(silk_out, "rb") as f:
            data = f.read()
    with open(sil_path, "wb") as f:
        f.write(data)
    return len(pcm16_mono) * 1000 // (2 * rate)


# --- public conversions (the original's names) ---------------------------------------------------------


def _same_file(a: str, b: str) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _copy(src: str, dst: str) -> None:
    # The original raised shutil.SameFileError for any_to_wav(x.wav, x.wav), which the WeCom
    # voice path hits on every message; a file is already its own copy.
    if not _same_file(src, dst):
        shutil.copyfile(src, dst)


def any_to_wav(any_path: str, wav_path: str) -> None:
    """Write ``any_path`` as a WAV file at ``wav_path``.

    WAV is copied; SILK (by content, or a .sil/.silk/.slk name) is decoded at 24000 Hz. Any
    other format raises UnsupportedAudioFormat (a ValueError) naming it: no decoder for it
    ships without ffmpeg, and the caller sends the original file instead.
    """
    fmt = audio_format(any_path)
    if fmt == "wav":
        _copy(any_path, wav_path)
        return
    if fmt == "silk":
        if _same_file(any_path, wav_path):
            # Decode first, then overwrite: the source is read completely before writing.
            pcm = _decode_silk(any_path, SILK_SAMPLE_RATE)
            _write_wav(wav_path, pcm, SILK_SAMPLE_RATE)
            return
        sil_to_wav(any_path, wav_path, SILK_SAMPLE_RATE)
        return
    raise UnsupportedAudioFormat(
        f"cannot convert {_describe(fmt, any_path)} audio to WAV (only WAV and SILK can be converted): {any_path}"
    )


def any_to_sil(any_path: str, sil_path: str, pcm_rate: int = SILK_SAMPLE_RATE, tencent: bool = True) -> int:
    """Write ``any_path`` as SILK at ``sil_path``; returns the duration in ms.

    WAV (any width or channel count; resampled to the closest rate pilk takes) and raw
    ``.pcm`` (16-bit mono at ``pcm_rate``) are encoded; SILK is copied. Other formats raise
    UnsupportedAudioFormat naming them. The original returned a made-up 10000 ms for SILK
    input and a float otherwise; this returns the real duration as an int.
    """
    fmt = audio_format(any_path)
    if fmt == "silk":
        _copy(any_path, sil_path)
        return get_silk_duration(sil_path)
    if fmt == "wav":
        pcm, rate = wav_to_pcm16_mono(any_path, sil_supports)
        return pcm_to_sil(pcm, rate, sil_path, tencent=tencent)
    if fmt == "pcm":
        with open(any_path, "rb") as f:
            pcm = f.read()
        return pcm_to_sil(pcm[: len(pcm) - len(pcm) % 2], pcm_rate, sil_path, tencent=tencent)
    raise UnsupportedAudioFormat(
        f"cannot convert {_describe(fmt, any_path)} audio to SILK (only WAV, raw PCM and SILK can be): {any_path}"
    )


def any_to_mp3(any_path: str, mp3_path: str) -> None:
    """Copy an MP3 file. There is no MP3 encoder without ffmpeg: other formats raise
    UnsupportedAudioFormat (the Dify engine sends WAV or AMR instead of converting)."""
    fmt = audio_format(any_path)
    if fmt == "mp3":
        _copy(any_path, mp3_path)
        return
    raise UnsupportedAudioFormat(f"cannot convert {_describe(fmt, any_path)} audio to MP3 (no encoder available): {any_path}")


def any_to_amr(any_path: str, amr_path: str) -> None:
    """Copy an AMR file. There is no AMR encoder without ffmpeg: other formats raise
    UnsupportedAudioFormat."""
    fmt = audio_format(any_path)
    if fmt == "amr":
        _copy(any_path, amr_path)
        return
    raise UnsupportedAudioFormat(f"cannot convert {_describe(fmt, any_path)} audio to AMR (no encoder available): {any_path}")


# --- compressed formats through miniaudio (MP3, FLAC, OGG Vorbis; no ffmpeg) -----------------------

_MINIAUDIO_FORMATS = ("mp3", "flac", "ogg", "wav")


def _decode_compressed(path: str, rate: int) -> bytes:
    """16-bit mono PCM at ``rate`` from an MP3, FLAC, OGG Vorbis or WAV file (miniaudio)."""
    fmt = audio_format(path)
    if fmt not in _MINIAUDIO_FORMATS:
        raise UnsupportedAudioFormat(f"cannot decode {_describe(fmt, path)} audio (MP3, FLAC, OGG and WAV can be): {path}")
    try:
        import miniaudio
    except ImportError:
        raise UnsupportedAudioFormat(f"decoding {_describe(fmt, path)} needs the miniaudio package: pip install miniaudio") from None
    try:
        with open(path, "rb") as f:  # miniaudio gets bytes: no file name reaches C code (Windows)
            decoded = miniaudio.decode(f.read(), output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=rate)
    except miniaudio.DecodeError as e:
        raise UnsupportedAudioFormat(f"cannot decode {_describe(fmt, path)} file {path}: {e}") from e
    return _pcm_bytes(decoded.samples)


def mp3_to_silk(mp3_path: str, silk_path: str) -> int:
    """Encode an MP3 (or FLAC, OGG, WAV) file as WeChat-variant SILK at 24000 Hz, the form
    WeChat and WeCom play as a voice message; returns the duration in ms.

    The original went through pydub (so ffmpeg) and returned pilk's miscounted duration.
    """
    pcm = _decode_compressed(mp3_path, SILK_SAMPLE_RATE)
    return pcm_to_sil(pcm, SILK_SAMPLE_RATE, silk_path, tencent=True)


def split_audio(file_path: str, max_segment_length_ms: int = 60000) -> tuple[int, list[str]]:
    """(duration in ms, files): the file itself when it is not longer than
    ``max_segment_length_ms``, else pieces of at most that length next to it, named
    ``<name>_1.wav``, ``<name>_2.wav``, ... (speech-to-text services limit the length).

    The pieces are WAV whatever the input (MP3, FLAC, OGG or WAV): the original kept the
    input's format through ffmpeg, and there is no MP3 encoder here.
    """
    if max_segment_length_ms <= 0:
        raise ValueError(f"max_segment_length_ms must be > 0, got {max_segment_length_ms!r}")
    fmt = audio_format(file_path)
    if fmt == "wav":
        pcm, rate = wav_to_pcm16_mono(file_path)
    else:
        rate = SILK_SAMPLE_RATE if fmt == "silk" else 16000
        pcm = _decode_silk(file_path, rate) if fmt == "silk" else _decode_compressed(file_path, rate)
    bytes_per_ms = rate * 2 / 1000
    duration_ms = int(len(pcm) / bytes_per_ms)
    if duration_ms <= max_segment_length_ms:
        return duration_ms, [file_path]
    prefix = os.path.splitext(file_path)[0]
    step = int(max_segment_length_ms * bytes_per_ms) // 2 * 2
    files = []
    for index, start in enumerate(range(0, len(pcm), step), start=1):
        path = f"{prefix}_{index}.wav"
        _write_wav(path, pcm[start:start + step], rate)
        files.append(path)
    return duration_ms, files
