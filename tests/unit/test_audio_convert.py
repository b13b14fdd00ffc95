"""voice.audio_convert: format detection, SILK <-> WAV with pilk, and the clear errors for the
formats that cannot be converted without ffmpeg."""
from __future__ import annotations

import array
import os
import sys

import pytest

from tests.fakes.audio import make_amr, make_mp3, make_silk, make_wav, wav_info
from voice import audio_convert
from voice.audio_convert import (
    SILK_SAMPLE_RATE,
    UnsupportedAudioFormat,
    any_to_sil,
    any_to_wav,
    audio_format,
    find_closest_sil_supports,
    get_pcm_from_wav,
    get_silk_duration,
    is_silk,
    wav_to_pcm16_mono,
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty folder, so the scratch files in ./tmp/ can be checked for leaks."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    leftovers = os.listdir(tmp_path / "tmp") if (tmp_path / "tmp").exists() else []
    assert leftovers == [], f"scratch files left behind: {leftovers}"


def _samples(pcm: bytes) -> array.array:
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _zero_crossings_per_second(wav_path: str) -> float:
    _, _, rate, frames = wav_info(wav_path)
    samples = _samples(get_pcm_from_wav(wav_path))
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    return crossings * rate / frames


# --- detection ------------------------------------------------------------------------------------------


def test_is_silk_recognises_both_variants_and_nothing_else(workdir):
    standard = make_silk(str(workdir / "a.silk"))
    wechat = make_silk(str(workdir / "b.silk"), tencent=True)
    with open(standard, "rb") as f:
        assert f.read(9) == b"#!SILK_V3"
    with open(wechat, "rb") as f:
        assert f.read(10) == b"\x02#!SILK_V3"
    assert is_silk(standard) and is_silk(wechat)
    assert not is_silk(make_wav(str(workdir / "c.silk")))  # the name does not make it SILK
    (workdir / "empty.silk").write_bytes(b"")
    assert not is_silk(str(workdir / "empty.silk"))
    assert not is_silk(str(workdir / "missing.silk"))


def test_audio_format_trusts_content_over_the_name(workdir):
    assert audio_format(make_silk(str(workdir / "voice.wav"))) == "silk"  # WeCom names SILK loosely
    assert audio_format(make_wav(str(workdir / "voice.mp3"))) == "wav"
    assert audio_format(make_amr(str(workdir / "voice.bin"))) == "amr"
    assert audio_format(make_mp3(str(workdir / "voice.dat"))) == "mp3"
    (workdir / "clip.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(24))
    assert audio_format(str(workdir / "clip.m4a")) == "m4a"
    (workdir / "x.ogg").write_bytes(b"OggS" + bytes(30))
    assert audio_format(str(workdir / "x.ogg")) == "ogg"
    (workdir / "noise.xyz").write_bytes(b"\x01\x02\x03 not audio")
    assert audio_format(str(workdir / "noise.xyz")) is None
    (workdir / "empty.amr").write_bytes(b"")
    assert audio_format(str(workdir / "empty.amr")) == "amr"  # nothing to sniff: the extension decides


def test_find_closest_sil_supports():
    assert find_closest_sil_supports(24000) == 24000
    assert find_closest_sil_supports(22050) == 24000
    assert find_closest_sil_supports(11025) == 12000
    assert find_closest_sil_supports(96000) == 48000
    assert find_closest_sil_supports(44100) == 44100


# --- SILK -> WAV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tencent", [False, True], ids=["standard", "wechat-0x02"])
def test_silk_to_wav_round_trip(workdir, tencent):
    silk = make_silk(str(workdir / "voice.silk"), seconds=1.0, tencent=tencent)
    wav = str(workdir / "voice.wav")
    any_to_wav(silk, wav)
    channels, width, rate, frames = wav_info(wav)
    assert (channels, width, rate) == (1, 2, SILK_SAMPLE_RATE)
    assert abs(frames / rate - 1.0) < 0.05
    with open(wav, "rb") as f:
        head = f.read(12)
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    # The 440 Hz tone survives the codec: about 880 sign changes per second.
    assert 800 < _zero_crossings_per_second(wav) < 960


def test_silk_named_wav_is_decoded_in_place(workdir):
    """WeCom saves the download as .wav; any_to_wav(x.wav, x.wav) must not fail on the same file."""
    path = make_silk(str(workdir / "voice.wav"), tencent=True)
    any_to_wav(path, path)
    assert audio_format(path) == "wav"
    assert wav_info(path)[2] == SILK_SAMPLE_RATE


def test_get_silk_duration_counts_frames_of_both_variants(workdir):
    assert abs(get_silk_duration(make_silk(str(workdir / "a.silk"), seconds=1.0)) - 1000) <= 20
    assert abs(get_silk_duration(make_silk(str(workdir / "b.silk"), seconds=2.0, tencent=True)) - 2000) <= 20


def test_corrupt_silk_raises_value_error(workdir):
    bad = workdir / "bad.silk"
    bad.write_bytes(b"#!SILK_V3" + b"\x05\x00garbage")
    with pytest.raises(ValueError, match="SILK"):
        any_to_wav(str(bad), str(workdir / "bad.wav"))


# --- WAV pass-through and unsupported formats ----------------------------------------------------------------


def test_wav_passes_through_unchanged(workdir):
    src = make_wav(str(workdir / "in.wav"), seconds=0.2)
    any_to_wav(src, str(workdir / "out.wav"))
    assert (workdir / "out.wav").read_bytes() == (workdir / "in.wav").read_bytes()
    any_to_wav(src, src)  # the original raised shutil.SameFileError here
    assert wav_info(src)[3] == int(0.2 * 24000)


@pytest.mark.parametrize(
    "maker, name, word",
    [(make_amr, "voice.amr", "AMR"), (make_mp3, "voice.mp3", "MP3")],
)
def test_other_formats_raise_a_value_error_naming_them(workdir, maker, name, word):
    path = maker(str(workdir / name))
    with pytest.raises(ValueError, match=word) as info:
        any_to_wav(path, str(workdir / "out.wav"))
    assert isinstance(info.value, UnsupportedAudioFormat)
    assert not (workdir / "out.wav").exists()


def test_unknown_bytes_raise_a_value_error(workdir):
    (workdir / "noise.xyz").write_bytes(b"\x01\x02\x03 not audio")
    with pytest.raises(ValueError, match=r"unrecognised \(\.xyz\)"):
        any_to_wav(str(workdir / "noise.xyz"), str(workdir / "out.wav"))
    with pytest.raises(ValueError, match="unrecognised"):
        any_to_sil(str(workdir / "noise.xyz"), str(workdir / "out.silk"))


# --- WAV -> SILK ----------------------------------------------------------------------------------------


def test_wav_to_silk_round_trip(workdir):
    wav = make_wav(str(workdir / "reply.wav"), seconds=1.0)
    silk = str(workdir / "reply.silk")
    duration = any_to_sil(wav, silk)
    assert duration == 1000
    with open(silk, "rb") as f:
        assert f.read(10) == b"\x02#!SILK_V3"  # WeChat's variant by default: what WeChat/WeCom play
    assert abs(get_silk_duration(silk) - 1000) <= 20
    back = str(workdir / "back.wav")
    any_to_wav(silk, back)
    assert abs(wav_info(back)[3] / SILK_SAMPLE_RATE - 1.0) < 0.05
    assert 800 < _zero_crossings_per_second(back) < 960


def test_wav_to_standard_silk(workdir):
    silk = str(workdir / "reply.silk")
    any_to_sil(make_wav(str(workdir / "reply.wav"), seconds=0.5), silk, tencent=False)
    with open(silk, "rb") as f:
        data = f.read()
    assert data.startswith(b"#!SILK_V3") and data.endswith(b"\xff\xff")


@pytest.mark.parametrize(
    "rate, channels, width, expected_rate",
    [(22050, 1, 2, 24000), (44100, 2, 2, 44100), (16000, 1, 1, 16000), (48000, 2, 3, 48000), (8000, 1, 4, 8000)],
)
def test_wav_flavours_are_normalised_for_the_encoder(workdir, rate, channels, width, expected_rate):
    wav = make_wav(str(workdir / "in.wav"), seconds=0.5, rate=rate, channels=channels, sampwidth=width)
    pcm, out_rate = wav_to_pcm16_mono(wav, audio_convert.sil_supports)
    assert out_rate == expected_rate
    assert abs(len(pcm) / 2 / out_rate - 0.5) < 0.01
    # Still the same tone: a loud signal, not noise from a wrong byte layout.
    samples = _samples(pcm)
    assert 7000 < max(samples) < 8200
    assert abs(any_to_sil(wav, str(workdir / "out.silk")) - 500) <= 1


def test_raw_pcm_to_silk(workdir):
    from tests.fakes.audio import tone_pcm

    (workdir / "in.pcm").write_bytes(tone_pcm(0.5, 16000))
    assert any_to_sil(str(workdir / "in.pcm"), str(workdir / "out.silk"), pcm_rate=16000) == 500
    assert is_silk(str(workdir / "out.silk"))


def test_silk_to_silk_is_a_copy_with_its_real_duration(workdir):
    src = make_silk(str(workdir / "in.silk"), seconds=1.0, tencent=True)
    duration = any_to_sil(src, str(workdir / "out.sil"))
    assert (workdir / "out.sil").read_bytes() == (workdir / "in.silk").read_bytes()
    assert abs(duration - 1000) <= 20  # the original returned a made-up 10000


def test_get_pcm_from_wav_returns_the_raw_frames(workdir):
    wav = make_wav(str(workdir / "in.wav"), seconds=0.25, rate=16000, channels=2)
    assert len(get_pcm_from_wav(wav)) == int(0.25 * 16000) * 2 * 2
