"""Real test audio with known ground truth, plus deliberately bad inputs.

Sources (all local, no network):
  * recorded English speech from Debian's ``pocketsphinx-testdata``
    (``/usr/share/pocketsphinx/test/data``) with reference transcripts;
  * synthetic speech in several languages from the ``espeak-ng`` CLI;
  * every container/codec in ``FORMATS``, encoded by the real ``ffmpeg`` CLI.

Needs: numpy, soundfile, soxr, and the ``ffmpeg``/``espeak-ng`` executables.
Run ``python tests/corpus.py`` for a self-check that encodes every format and
compares the duration ``ffprobe`` reports with the true one.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SPEECH_RATE = 16000
TESTDATA_DIR = Path("/usr/share/pocketsphinx/test/data")

# Transcripts of the headerless 16-bit LE 16 kHz mono .raw recordings.
# goforward: the expected hypothesis of pocketsphinx's own decoder tests;
# dhd.2934z: TIDIGITS naming ("z" = zero), same string as tidigits.lsn's
# man.ah.2934za.  numbers/something ship without a transcript (text=None).
_RAW_FILES: dict[str, tuple[str, str | None]] = {
    "goforward": ("goforward.raw", "go forward ten meters"),
    "tidigits/dhd.2934z": ("tidigits/dhd.2934z.raw", "two nine three four zero"),
    "numbers": ("numbers.raw", None),
    "something": ("something.raw", None),
}
# (directory, transcript file) pairs; lines look like "<s> words </s> (fileid)".
_WAV_SETS = (("cards", "cards.transcription"), ("librivox", "transcription"))

# name -> file extension.  m4a_moov_end has its moov atom after the media data.
FORMAT_EXT: dict[str, str] = {
    "wav_u8": "wav",
    "wav_s16": "wav",
    "wav_s24": "wav",
    "wav_s32": "wav",
    "wav_f32": "wav",
    "wav_mulaw": "wav",
    "wav_alaw": "wav",
    "flac": "flac",
    "mp3": "mp3",
    "ogg_vorbis": "ogg",
    "opus": "opus",
    "m4a": "m4a",
    "m4a_moov_end": "m4a",
    "webm": "webm",
}
FORMATS: tuple[str, ...] = tuple(FORMAT_EXT)

_FFMPEG_CODEC_ARGS: dict[str, list[str]] = {
    "wav_u8": ["-c:a", "pcm_u8", "-f", "wav"],
    "wav_s16": ["-c:a", "pcm_s16le", "-f", "wav"],
    "wav_s24": ["-c:a", "pcm_s24le", "-f", "wav"],
    "wav_s32": ["-c:a", "pcm_s32le", "-f", "wav"],
    "wav_f32": ["-c:a", "pcm_f32le", "-f", "wav"],
    "wav_mulaw": ["-c:a", "pcm_mulaw", "-f", "wav"],
    "wav_alaw": ["-c:a", "pcm_alaw", "-f", "wav"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "ogg_vorbis": ["-c:a", "libvorbis", "-q:a", "4", "-f", "ogg"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "opus"],
    "m4a": ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-f", "mp4"],
    "m4a_moov_end": ["-c:a", "aac", "-b:a", "64k", "-f", "mp4"],
    "webm": ["-c:a", "libopus", "-b:a", "32k", "-f", "webm"],
}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


@dataclass(frozen=True)
class Utterance:
    """One real recording: float32 mono 16 kHz samples and its lowercase transcript.

    The clip keeps the recording's own leading/trailing pauses, so the speech
    lies somewhere inside it, not necessarily at its edges.
    """

    name: str
    samples: np.ndarray
    text: str | None

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds."""
        return len(self.samples) / SPEECH_RATE


@dataclass(frozen=True)
class Call:
    """A synthetic conversation and where each utterance was placed.

    ``samples`` has shape (channels, n) at ``rate``; ``speech`` holds one
    (channel, start_s, end_s) per placed utterance, in placement order, and
    ``texts`` the matching transcripts (None where unknown).
    """

    samples: np.ndarray
    rate: int
    speech: tuple[tuple[int, float, float], ...]
    texts: tuple[str | None, ...]

    @property
    def duration_s(self) -> float:
        """Length of the call in seconds."""
        return self.samples.shape[1] / self.rate


def _frozen(x: np.ndarray) -> np.ndarray:
    """Return x as a read-only float32 array (safe to share from a cache)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x.flags.writeable = False
    return x


def _transcripts(path: Path) -> dict[str, str]:
    """Parse a sphinx transcription file into {fileid: lowercase text}."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.endswith(")") or "(" not in line:
            continue
        words, _, fileid = line[:-1].rpartition("(")
        words = words.replace("<s>", " ").replace("</s>", " ")
        out[fileid.strip()] = " ".join(words.lower().split())
    return out


@functools.cache
def speech_utterances() -> list[Utterance]:
    """All recordings in pocketsphinx-testdata, as float32 mono 16 kHz.

    Returned arrays are read-only (the result is cached); copy before editing.
    """
    if not TESTDATA_DIR.is_dir():
        raise FileNotFoundError(f"{TESTDATA_DIR} missing: apt-get install pocketsphinx-testdata")
    utts: list[Utterance] = []
    for subdir, transcript_file in _WAV_SETS:
        texts = _transcripts(TESTDATA_DIR / subdir / transcript_file)
        for fileid, text in texts.items():
            data, rate = sf.read(TESTDATA_DIR / subdir / f"{fileid}.wav", dtype="float32")
            assert rate == SPEECH_RATE and data.ndim == 1, (fileid, rate, data.shape)
            utts.append(Utterance(f"{subdir}/{fileid}", _frozen(data), text))
    for name, (rel, text) in _RAW_FILES.items():
        pcm = np.fromfile(TESTDATA_DIR / rel, dtype="<i2")
        utts.append(Utterance(name, _frozen(pcm / 32768.0), text))
    return utts


def utterance(name: str) -> Utterance:
    """The utterance called ``name`` (e.g. "goforward", "cards/001")."""
    for u in speech_utterances():
        if u.name == name:
            return u
    raise KeyError(name)


@functools.cache
def _espeak_cached(text: str, lang: str, wpm: int | None = None) -> np.ndarray:
    """Synthesize once per (text, lang, wpm); see espeak()."""
    speed = ["-s", str(wpm)] if wpm else []
    proc = subprocess.run(["espeak-ng", "-v", lang, *speed, "--stdout", text], capture_output=True, check=True)
    wav = proc.stdout
    # espeak-ng streams a canonical 44-byte header with placeholder sizes.
    if wav[:4] != b"RIFF" or wav[36:40] != b"data":
        raise RuntimeError(f"unexpected espeak-ng output for lang={lang!r}: {proc.stderr!r}")
    (rate,) = struct.unpack_from("<I", wav, 24)
    pcm = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768.0
    if rate != SPEECH_RATE:
        pcm = soxr.resample(pcm, rate, SPEECH_RATE)
    return _frozen(pcm)


def espeak(text: str, lang: str, wpm: int | None = None) -> np.ndarray:
    """Speak ``text`` with espeak-ng voice ``lang``; float32 mono 16 kHz.

    Tested voices: en, fr, de, es, pt, ja (any ``espeak-ng --voices`` code
    works).  The ja voice reads kana only: kanji are spelled out in English.
    ``wpm``: words per minute (espeak-ng's default is 175).
    """
    return _espeak_cached(text, lang, wpm).copy()


def silence(seconds: float, rate: int = SPEECH_RATE, noise_dbfs: float | None = None, seed: int = 0) -> np.ndarray:
    """float32 mono zeros, or Gaussian noise with RMS ``noise_dbfs`` dBFS."""
    n = int(round(seconds * rate))
    if noise_dbfs is None:
        return np.zeros(n, dtype=np.float32)
    rms = 10.0 ** (noise_dbfs / 20.0)
    return (np.random.default_rng(seed).standard_normal(n) * rms).astype(np.float32)


def make_call(
    utterances: Sequence[Utterance | np.ndarray],
    gaps_s: float | Sequence[float],
    channels: int = 1,
    rate: int = SPEECH_RATE,
    seed: int = 0,
    noise_dbfs: float | None = -60.0,
) -> Call:
    """Place utterances one after another, separated by known gaps.

    ``gaps_s`` is one float (used everywhere) or len(utterances)+1 floats:
    gaps_s[i] is the pause before utterance i and gaps_s[-1] the trailing
    pause.  Utterances never overlap.  With channels=2 utterance i goes on
    channel i % 2 (0 = agent, 1 = customer) while the other channel stays
    quiet.  A noise floor of ``noise_dbfs`` (None: digital silence) is added
    everywhere so pauses are not exact zeros.  16 kHz input is resampled
    with soxr when ``rate`` differs; ``speech`` times are exact sample
    positions divided by ``rate``.
    """
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    clips = [u.samples if isinstance(u, Utterance) else np.asarray(u) for u in utterances]
    texts = tuple(u.text if isinstance(u, Utterance) else None for u in utterances)
    if rate != SPEECH_RATE:
        clips = [soxr.resample(np.asarray(c, dtype=np.float32), SPEECH_RATE, rate) for c in clips]
    gaps = [float(gaps_s)] * (len(clips) + 1) if np.isscalar(gaps_s) else list(gaps_s)
    if len(gaps) != len(clips) + 1:
        raise ValueError(f"need {len(clips) + 1} gaps, got {len(gaps)}")
    gap_n = [int(round(g * rate)) for g in gaps]
    total = sum(gap_n) + sum(len(c) for c in clips)
    out = np.zeros((channels, total), dtype=np.float32)
    speech: list[tuple[int, float, float]] = []
    pos = 0
    for i, clip in enumerate(clips):
        pos += gap_n[i]
        ch = i % channels
        out[ch, pos : pos + len(clip)] = clip
        speech.append((ch, pos / rate, (pos + len(clip)) / rate))
        pos += len(clip)
    if noise_dbfs is not None:
        for ch in range(channels):
            out[ch] += silence(total / rate, rate, noise_dbfs, seed=seed + ch)[:total]
    return Call(_frozen(out), rate, tuple(speech), texts)


def encode(samples: np.ndarray, rate: int, fmt: str, path: str | Path) -> Path:
    """Encode float32 audio, shape (n,) or (channels, n), with the ffmpeg CLI.

    ``fmt`` is one of FORMATS; the container is forced, so ``path`` may have
    any extension.  Opus gets resampled to 48 kHz if ``rate`` is not an Opus
    rate.  Output is bit-exact (no encoder tags) for reproducibility.
    """
    if fmt not in _FFMPEG_CODEC_ARGS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    x = np.asarray(samples, dtype=np.float32)
    x = x[None, :] if x.ndim == 1 else x
    channels = x.shape[0]
    extra: list[str] = []
    if fmt in ("opus", "webm") and rate not in _OPUS_RATES:
        extra = ["-ar", "48000"]
    path = Path(path)
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        *extra, *_FFMPEG_CODEC_ARGS[fmt], str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, input=np.ascontiguousarray(x.T).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed for {fmt}: {proc.stderr.decode(errors='replace')}")
    return path


def codec_frame_s(fmt: str, rate: int = SPEECH_RATE) -> float:
    """One codec frame (plus priming slack) in seconds: a duration tolerance.

    A decoded file may legitimately differ from the source by up to about
    this much (padding to a whole frame, encoder delay not trimmed).
    """
    if fmt.startswith("wav_") or fmt == "flac":
        return 1.0 / rate  # exact sample counts are stored
    if fmt == "mp3":
        # Two MPEG-1 frames.  Gapless decoders (ffmpeg reads the LAME tag) are
        # exact, but ffprobe's header estimate and non-gapless decoders add
        # encoder delay (~1105 samples) + end padding (< 1 frame).
        return 2 * 1152.0 / rate
    if fmt.startswith("m4a"):
        return 1024.0 / rate  # AAC frame; priming is trimmed via the MP4 edit list
    if fmt == "ogg_vorbis":
        return 2048.0 / rate  # largest Vorbis block
    if fmt in ("opus", "webm"):
        return 0.020 + 312.0 / 48000  # 20 ms frame + default libopus pre-skip
    raise ValueError(f"unknown format {fmt!r}")


def ffprobe_duration(path: str | Path) -> float | None:
    """Duration in seconds that ffprobe reports (stream, else container)."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)
    for s in info.get("streams", []):
        if s.get("codec_type") == "audio" and s.get("duration") not in (None, "N/A"):
            return float(s["duration"])
    dur = info.get("format", {}).get("duration")
    return float(dur) if dur not in (None, "N/A") else None


def decoded_duration(path: str | Path) -> float | None:
    """Seconds of audio the ffmpeg CLI actually decodes from the first audio
    stream (None if ffmpeg fails or there is no audio)."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    rate = int(proc.stdout.split()[0])
    dec = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
         "-ac", "1", "-f", "f32le", "pipe:1"],
        capture_output=True,
    )  # fmt: skip
    return None if dec.returncode != 0 else len(dec.stdout) / 4 / rate


def telephone_call(path: str | Path) -> Call:
    """Write a stereo 8 kHz mu-law WAV call; return its truth (8 kHz timeline).

    Channel 0 (agent) and channel 1 (customer) take turns with different
    librivox/cards sentences; the other channel is at a -60 dBFS floor.
    """
    names = [
        "librivox/sense_and_sensibility_01_austen_64kb-0880",
        "cards/002",
        "librivox/sense_and_sensibility_01_austen_64kb-0930",
        "cards/005",
    ]
    gaps = [0.5, 0.8, 0.6, 1.0, 0.7]
    call = make_call([utterance(n) for n in names], gaps, channels=2, rate=8000)
    encode(call.samples, call.rate, "wav_mulaw", path)
    return call


def _wav_header(fmt_tag: int, channels: int, rate: int, bits: int, data_bytes: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header; sizes are written as given."""
    block = channels * bits // 8
    riff_size = min(36 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, fmt_tag, channels, rate, rate * block, block, bits)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def _s16_bytes(x: np.ndarray) -> bytes:
    """float32 -> little-endian int16 PCM bytes."""
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def write_bad_inputs(dir: str | Path) -> dict[str, Path]:
    """Write files that must fail to decode (or decode only partially).

    Keys are the file names.  truncated.* hold a prefix of a valid file;
    truncated.wav keeps an intact header that claims the full length (a
    header that lies).  huge_header.wav claims 0xFFFFFFF0 data bytes but
    holds 1 s.
    """
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    speech = utterance("librivox/sense_and_sensibility_01_austen_64kb-0870").samples
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)
        out[name] = d / name

    put("empty.wav", b"")
    with tempfile.TemporaryDirectory() as tmp:
        mp3 = encode(speech, SPEECH_RATE, "mp3", Path(tmp) / "s.mp3").read_bytes()
        cut = int(len(mp3) * 0.4)
        while mp3[cut] == 0xFF:  # avoid landing exactly on a frame sync
            cut += 1
        put("truncated.mp3", mp3[: cut + 7])
        flac = encode(speech, SPEECH_RATE, "flac", Path(tmp) / "s.flac").read_bytes()
        put("truncated.flac", flac[: int(len(flac) * 0.4) + 3])
        pcm = _s16_bytes(speech)
        header = _wav_header(1, 1, SPEECH_RATE, 16, len(pcm))  # claims the full length
        put("truncated.wav", header + pcm[: len(pcm) * 3 // 10])
        jpg = Path(tmp) / "red.jpg"
        _ffmpeg_lavfi(["-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1"], jpg)
        put("image.flac", jpg.read_bytes())
        mp4 = Path(tmp) / "v.mp4"
        _ffmpeg_lavfi(
            ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
             "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"],
            mp4,
        )  # fmt: skip
        put("video_only.mp4", mp4.read_bytes())
    rng = np.random.default_rng(1234)
    put("garbage.mp3", rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    put("text.wav", b"This is not audio.\nJust a plain text file with a .wav name.\n" * 20)
    put(
        "page.mp3",
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        b"<body><h1>Not Found</h1><p>The requested URL was not found.</p></body></html>\n",
    )
    one_s = _s16_bytes(speech[:SPEECH_RATE])
    put("unsupported.wav", _wav_header(0x7777, 1, SPEECH_RATE, 16, len(one_s)) + one_s)
    put("huge_header.wav", _wav_header(1, 1, SPEECH_RATE, 16, 0xFFFFFFF0) + one_s)
    return out


def _ffmpeg_lavfi(args: list[str], path: Path) -> None:
    """Run ffmpeg with lavfi source ``args`` writing ``path``."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           *args, "-fflags", "+bitexact", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


def write_misnamed(dir: str | Path) -> dict[str, Path]:
    """Valid audio under the wrong extension: these MUST decode fine.

    speech.mp3 is Ogg Opus, speech.wav is FLAC; both hold the "goforward"
    utterance (2.786 s, "go forward ten meters").
    """
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    x = utterance("goforward").samples
    return {
        "speech.mp3": encode(x, SPEECH_RATE, "opus", d / "speech.mp3"),
        "speech.wav": encode(x, SPEECH_RATE, "flac", d / "speech.wav"),
    }


def _self_check() -> None:
    """Encode every format, probe it, and print sizes and durations."""
    utts = speech_utterances()
    total = sum(u.duration_s for u in utts)
    print(f"{len(utts)} utterances, {total:.2f} s, from {TESTDATA_DIR}")
    for u in utts:
        print(f"  {u.name:52s} {u.duration_s:6.2f} s  {u.text!r}")
    phrases = {
        "en": "Hello, this is a test.",
        "fr": "Bonjour, ceci est un test.",
        "de": "Guten Tag, das ist ein Test.",
        "es": "Hola, esto es una prueba.",
        "pt": "Olá, isto é um teste.",
        "ja": "こんにちは、これはテストです。",
    }
    for lang, text in phrases.items():
        print(f"  espeak {lang}: {len(espeak(text, lang)) / SPEECH_RATE:.2f} s")
    call = make_call(utts[:4], [0.5, 1.0, 0.7, 1.2, 0.5], channels=2)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("mono16k", utts[0].samples, 16000), ("call2ch", call.samples, 16000)]
        for label, samples, rate in cases:
            true_s = samples.shape[-1] / rate
            print(f"\n{label}: true duration {true_s:.4f} s")
            print(
                f"  {'format':14s} {'bytes':>8s} {'probed_s':>9s} {'diff_ms':>8s} "
                f"{'decoded_s':>9s} {'diff_ms':>8s} {'tol_ms':>7s}"
            )
            for fmt in FORMATS:
                p = encode(samples, rate, fmt, Path(tmp) / f"{label}_{fmt}.{FORMAT_EXT[fmt]}")
                tol = codec_frame_s(fmt, rate)
                cols, ok = [], True
                for dur in (ffprobe_duration(p), decoded_duration(p)):
                    diff = None if dur is None else dur - true_s
                    ok = ok and diff is not None and abs(diff) <= tol + 1e-6
                    cols.append("None" if dur is None else f"{dur:9.4f}")
                    cols.append("-" if diff is None else f"{diff * 1000:8.2f}")
                if not ok:
                    failures.append(f"{label}/{fmt}")
                flag = "" if ok else "  <-- outside tolerance"
                print(
                    f"  {fmt:14s} {p.stat().st_size:8d} {cols[0]:>9s} {cols[1]:>8s} "
                    f"{cols[2]:>9s} {cols[3]:>8s} {tol * 1000:7.2f}{flag}"
                )
        tel = telephone_call(Path(tmp) / "tel.wav")
        probed = ffprobe_duration(Path(tmp) / "tel.wav")
        print(f"\ntelephone: {tel.duration_s:.3f} s, probed {probed}, speech {tel.speech}")
        bad = write_bad_inputs(Path(tmp) / "bad")
        print("\nbad inputs: bytes, ffprobe duration, ffmpeg-decoded duration (None = error)")
        for name, p in bad.items():
            print(f"  {name:20s} {p.stat().st_size:8d} {ffprobe_duration(p)} {decoded_duration(p)}")
        print("misnamed (must decode):")
        for name, p in write_misnamed(Path(tmp) / "mis").items():
            print(f"  {name:20s} {p.stat().st_size:8d} {ffprobe_duration(p)} {decoded_duration(p)}")
    print("\nALL FORMATS OK" if not failures else f"\nOUTSIDE TOLERANCE: {failures}")


if __name__ == "__main__":
    if shutil.which("ffmpeg") is None or shutil.which("espeak-ng") is None:
        raise SystemExit("ffmpeg and espeak-ng are required")
    _self_check()
