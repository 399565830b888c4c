"""Decoding real encoded audio in every supported format, and refusing bad input with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.decode import AudioDecoder
from pipeline.errors import DecodeError
from pipeline.records.audio import SAMPLE_RATE
from tests import corpus as C


def decode(path: Path, policy: str = "split", max_duration_s: float | None = None) -> tuple[AudioDecoder, np.ndarray]:
    with open(path, "rb") as f:
        dec = AudioDecoder(f, path.stat().st_size, policy, max_duration_s)  # type: ignore[arg-type]
        audio = np.concatenate(list(dec.chunks()), axis=1)
    return dec, audio


@pytest.mark.parametrize("fmt", C.FORMATS)
def test_every_format_decodes_with_true_duration(corpus, fmt):
    dec, audio = decode(corpus.formats[fmt])
    info = dec.info
    assert info.channels == 2
    assert abs(info.duration_s - corpus.call.duration_s) <= C.codec_frame_s(fmt, info.sample_rate) + 1e-9
    # 16 kHz output covers the same time span, sample for sample.
    assert abs(audio.shape[1] - round(info.duration_s * SAMPLE_RATE)) <= 1
    assert audio.dtype == np.float32 and np.isfinite(audio).all()


def test_pcm_is_sample_exact_on_the_source_timeline(corpus):
    _, audio = decode(corpus.formats["wav_f32"])
    assert audio.shape == corpus.call.samples.shape
    np.testing.assert_allclose(audio, corpus.call.samples, atol=1e-4)


def test_telephone_8k_mulaw_stereo(corpus):
    dec, audio = decode(corpus.telephone)
    assert (dec.info.format, dec.info.codec, dec.info.sample_rate, dec.info.channels) == ("wav", "pcm_mulaw", 8000, 2)
    assert audio.shape[0] == 2
    assert abs(audio.shape[1] / SAMPLE_RATE - corpus.telephone_call.duration_s) < 1e-3
    # The channels say different things: each is loud where the other is quiet.
    for ch, start, end in corpus.telephone_call.speech:
        seg = audio[:, int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        rms = np.sqrt((seg**2).mean(axis=1))
        assert rms[ch] > 10 * rms[1 - ch]


def test_mix_policy_downmixes(corpus):
    dec, audio = decode(corpus.formats["wav_f32"], policy="mix")
    assert audio.shape[0] == 1
    np.testing.assert_allclose(audio[0], corpus.call.samples.mean(axis=0), atol=1e-4)


def test_misnamed_audio_is_decoded_by_content(corpus):
    for name, path in corpus.misnamed.items():
        dec, audio = decode(path)
        assert dec.info.duration_s > 1.0, name
    assert decode(corpus.misnamed["speech.mp3"])[0].info.codec == "opus"
    assert decode(corpus.misnamed["speech.wav"])[0].info.codec == "flac"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.wav", "empty object (0 bytes)"),
        ("truncated.mp3", "truncated: header declares"),
        ("truncated.flac", "corrupt or truncated at"),
        ("truncated.wav", "truncated: WAV header declares"),
        ("huge_header.wav", "truncated: WAV header declares 4294967280 bytes"),
        ("garbage.mp3", "unreadable: "),
        ("text.wav", "not audio: content is plain text"),
        ("page.mp3", "not audio: content is an HTML"),
        ("image.flac", "not audio: no audio stream in a JPEG image"),
        ("video_only.mp4", "not audio: no audio stream"),
        ("unsupported.wav", "unsupported codec"),
    ],
)
def test_bad_input_fails_with_a_one_line_reason(corpus, name, reason):
    with pytest.raises(DecodeError) as err:
        decode(corpus.bad[name])
    assert str(err.value).startswith(reason)
    assert "\n" not in str(err.value)


def test_duration_limit(corpus):
    with pytest.raises(DecodeError, match=r"too long: header declares .* over filters.max_duration_s=5"):
        decode(corpus.formats["wav_s16"], max_duration_s=5)
    # Without a trustworthy header length (Ogg Opus), the limit stops decoding as it is passed.
    with pytest.raises(DecodeError, match=r"too long"):
        decode(corpus.formats["webm"], max_duration_s=5)


def test_nan_and_inf_samples_become_silence(tmp_path):
    x = np.zeros((1, 16000), np.float32)
    x[0, 100:200] = np.nan
    x[0, 300] = np.inf
    path = C.encode(x, 16000, "wav_f32", tmp_path / "nan.wav")
    _, audio = decode(path)
    assert np.isfinite(audio).all()


@pytest.mark.parametrize("channels", [8, 16, 32])
def test_many_channels_stay_distinct(tmp_path, channels):
    x = np.stack(
        [np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * (c + 1) / (2 * channels) for c in range(channels)]
    )
    path = C.encode(x.astype(np.float32), 16000, "wav_s16", tmp_path / "multi.wav")
    dec, audio = decode(path)
    assert dec.info.channels == channels and audio.shape[0] == channels
    levels = np.abs(audio).max(axis=1)
    np.testing.assert_allclose(levels, (np.arange(channels) + 1) / (2 * channels), atol=2e-3)


def test_vbr_mp3_without_length_header_is_not_called_truncated(tmp_path, corpus):
    import subprocess

    wav = corpus.formats["wav_s16"]
    out = tmp_path / "vbr.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0", str(out)],
        check=True,
    )
    dec, _ = decode(out)
    assert dec.declared_s is None  # FFmpeg's bitrate guess is not a header claim
    assert abs(dec.info.duration_s - corpus.call.duration_s) < 0.1


def test_format_change_mid_stream_is_a_decode_error(tmp_path, corpus):
    import subprocess

    parts = []
    for ch in (1, 2):
        p = tmp_path / f"{ch}.aac"
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(corpus.formats["wav_s16"]),
                "-ac",
                str(ch),
                "-c:a",
                "aac",
                "-f",
                "adts",
                str(p),
            ],
            check=True,
        )
        parts.append(p.read_bytes())
    joined = tmp_path / "joined.aac"
    joined.write_bytes(b"".join(parts))
    with pytest.raises(DecodeError, match=r"^audio format changed mid-stream at [\d.]+ s \(stereo, "):
        decode(joined)


def _extra_formats(corpus, tmp_path) -> list[Path]:
    """Sample formats the corpus lacks: planar integers (ALAC: s16p, s32p) and float64 with NaN/Inf."""
    import subprocess

    src = corpus.formats["wav_s16"]
    out = []
    for name, args in (("alac16.m4a", ["-c:a", "alac"]), ("alac24.m4a", ["-c:a", "alac", "-sample_fmt", "s32p"])):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), *args, str(tmp_path / name)], check=True)
        out.append(tmp_path / name)
    x = corpus.call.samples.T.astype(np.float64).copy()
    x[100:110] = np.nan
    x[200:210] = np.inf
    x[300:310] = 1e300  # beyond float32: inf, then silence
    import soundfile

    soundfile.write(tmp_path / "f64.wav", x, corpus.call.rate, subtype="DOUBLE")
    return [*out, tmp_path / "f64.wav"]


def test_numpy_conversion_equals_ffmpegs_converter(corpus, tmp_path, monkeypatch):
    # The common sample formats become float32 in numpy; every format through FFmpeg's converter
    # (as all did before) must give the same samples, bit for bit, in both channel policies.
    from pipeline.audio import decode as D

    paths = [corpus.formats[f] for f in C.FORMATS] + _extra_formats(corpus, tmp_path)
    for path in paths:
        for policy in ("split", "mix"):
            ours = decode(path, policy)[1]
            with monkeypatch.context() as m:
                m.setattr(D, "_SCALE", {})
                theirs = decode(path, policy)[1]
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{path.name} {policy}")
            assert ours.dtype == np.float32 and np.isfinite(ours).all()
