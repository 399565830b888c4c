"""The reliability suite's input kinds: bad, odd and extreme objects, each with what a run must say.

Every kind is a real object in a real S3 store. `expect` is the `recordings` status it must get
("ok" or "failed", with `reason` the start of the error), or "not listed" for an empty folder
marker, which is not a recording and is counted in the run manifest instead. `race` kinds are
changed in the store between the listing and the first read (the fault proxy does it on the
object's first GET); "deny" is read-protected by a bucket policy.

    python tests/bad_inputs.py DIR     # writes every kind under DIR and prints the table
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus as C

RATE = C.SPEECH_RATE


@dataclass(frozen=True)
class Kind:
    name: str
    key: str  # below the input prefix; may hold unicode, spaces, "../" or end in "/"
    what: str
    expect: Literal["ok", "failed", "not listed"]
    reason: str = ""  # failed: how the error starts
    error_kind: str = ""  # failed: its kind (pipeline/errors.py)
    speech: bool = False  # ok: segments expected (else none: silence, too short)
    race: Literal["delete", "replace", "deny"] | None = None


KINDS: tuple[Kind, ...] = (
    # empty, truncated and damaged
    Kind("empty", "bad/empty.wav", "0-byte object", "failed", "empty object (0 bytes)", "empty"),
    Kind(
        "truncated-mp3",
        "bad/truncated.mp3",
        "MP3 cut mid-frame at 40%",
        "failed",
        "truncated: header declares",
        "truncated",
    ),
    Kind(
        "truncated-wav",
        "bad/truncated.wav",
        "WAV cut at 30%, header claims the full length",
        "failed",
        "truncated: WAV header declares",
        "truncated",
    ),
    Kind(
        "truncated-flac",
        "bad/truncated.flac",
        "FLAC cut mid-frame at 40%",
        "failed",
        "corrupt or truncated at",
        "truncated",
    ),
    Kind("tiny", "odd/tiny-50ms.wav", "0.05 s of speech", "ok"),
    Kind(
        "random-bytes",
        "bad/noise-bytes.mp3",
        "64 KiB of random bytes named .mp3",
        "failed",
        "unreadable: ",
        "unreadable",
    ),
    Kind(
        "format-change",
        "bad/mono-then-stereo.aac",
        "ADTS AAC switching mono to stereo mid-stream",
        "failed",
        "audio format changed mid-stream",
        "format_changed",
    ),
    # mislabelled content
    Kind("text", "bad/notes.wav", "plain text named .wav", "failed", "not audio: content is plain text", "not_audio"),
    Kind(
        "html",
        "bad/error-page.mp3",
        "an HTML error page named .mp3",
        "failed",
        "not audio: content is an HTML",
        "not_audio",
    ),
    Kind(
        "jpeg",
        "bad/photo.flac",
        "a JPEG named .flac",
        "failed",
        "not audio: no audio stream in a JPEG image",
        "not_audio",
    ),
    Kind(
        "video-only",
        "bad/screen.mp4",
        "MP4 with video and no audio",
        "failed",
        "not audio: no audio stream",
        "not_audio",
    ),
    Kind(
        "unknown-codec",
        "bad/codec-0x7777.wav",
        "WAV with an unknown codec tag",
        "failed",
        "unsupported codec",
        "unsupported_codec",
    ),
    Kind("opus-as-mp3", "odd/voicemail.mp3", "Ogg Opus named .mp3", "ok", speech=True),
    Kind("flac-as-wav", "odd/dictation.wav", "FLAC named .wav", "ok", speech=True),
    # lying or extreme headers and formats
    Kind(
        "rf64-1e12",
        "bad/rf64-claims-1e12-samples.wav",
        "RF64 WAV whose header claims 10^12 samples, holds 1 s",
        "failed",
        "too long: header declares 62500000.0 s",
        "too_long",
    ),
    Kind(
        "riff-4gib",
        "bad/riff-claims-4gib.wav",
        "WAV whose header claims 4 GiB, holds 1 s",
        "failed",
        "truncated: WAV header declares 4294967280 bytes",
        "truncated",
    ),
    Kind("rate-1hz", "odd/rate-1hz.wav", "WAV at 1 Hz (120 samples)", "ok"),
    Kind("rate-384khz", "odd/rate-384khz.wav", "speech at 384 kHz", "ok", speech=True),
    Kind("channels-8", "odd/channels-8.wav", "8 channels, speech on two", "ok", speech=True),
    Kind("channels-32", "odd/channels-32.wav", "32 channels, speech on one", "ok", speech=True),
    Kind("nan-inf", "odd/nan-inf.wav", "float WAV with NaN and Inf samples around speech", "ok", speech=True),
    # unusual content
    Kind("hour-silence", "odd/hour-of-silence.flac", "one hour of digital silence", "ok"),
    Kind("dc-offset", "odd/dc-offset.wav", "speech on a +0.3 DC offset", "ok", speech=True),
    Kind("clipping", "odd/clipped.wav", "speech amplified 12x and hard-clipped", "ok", speech=True),
    Kind("six-hours", "odd/six-hours.mp3", "one 6-hour MP3 (speech once every 10 minutes)", "ok", speech=True),
    # odd object keys
    Kind("unicode-key", "keys/réunion-über-会議.wav", "unicode key", "ok", speech=True),
    Kind("spaces-key", "keys/call with  spaces .wav", "key with spaces", "ok", speech=True),
    Kind("dotdot-key", "keys/../../../escape.wav", "key with ../ segments", "ok", speech=True),
    Kind("slash-key", "keys/ends-in-slash/", "key ending in / that holds audio", "ok", speech=True),
    Kind("folder-marker", "keys/empty-folder/", "empty key ending in / (a console folder)", "not listed"),
    # objects that change or vanish
    Kind(
        "deleted",
        "race/deleted.wav",
        "deleted between list and get",
        "failed",
        "object vanished since it was listed",
        "no_such_object",
        race="delete",
    ),
    Kind(
        "replaced",
        "race/replaced.wav",
        "overwritten between list and get (etag mismatch)",
        "failed",
        "object changed since it was listed",
        "object_changed",
        race="replace",
    ),
    Kind(
        "denied",
        "race/no-read.wav",
        "bucket policy denies reading it",
        "failed",
        "access denied",
        "access_denied",
        race="deny",
    ),
)


def write_kinds(root: Path) -> dict[str, Path]:
    """Every kind's bytes under `root` (by kind name); cached: a second call reuses the files."""
    root.mkdir(parents=True, exist_ok=True)
    done = root / ".complete"
    if done.exists():
        return {k.name: root / k.name for k in KINDS}
    speech = C.utterance("goforward").samples  # 2.8 s, "go forward ten meters"
    bad = C.write_bad_inputs(root / "_bad")
    misnamed = C.write_misnamed(root / "_misnamed")
    one_s = C._s16_bytes(speech[:RATE])
    out: dict[str, Path] = {}

    def put(name: str, data: bytes | Path) -> None:
        path = root / name
        if isinstance(data, Path):
            shutil.copyfile(data, path)
        else:
            path.write_bytes(data)
        out[name] = path

    def wav(name: str, x: np.ndarray, rate: int = RATE, fmt: str = "wav_s16") -> None:
        out[name] = C.encode(np.asarray(x, np.float32), rate, fmt, root / name)

    padded = np.concatenate([C.silence(1.0), speech, C.silence(1.0)])
    put("empty", b"")
    for name in ("truncated.mp3", "truncated.wav", "truncated.flac"):
        put(f"truncated-{name.split('.')[1]}", bad[name])
    wav("tiny", speech[RATE // 2 : RATE // 2 + int(0.05 * RATE)])
    put("random-bytes", bad["garbage.mp3"])
    put("format-change", _format_change(padded))
    put("text", bad["text.wav"])
    put("html", bad["page.mp3"])
    put("jpeg", bad["image.flac"])
    put("video-only", bad["video_only.mp4"])
    put("unknown-codec", bad["unsupported.wav"])
    put("opus-as-mp3", misnamed["speech.mp3"])
    put("flac-as-wav", misnamed["speech.wav"])
    put("rf64-1e12", _rf64_header(samples=10**12) + one_s)
    put("riff-4gib", bad["huge_header.wav"])
    put("rate-1hz", C._wav_header(1, 1, 1, 16, 240) + bytes(240))
    wav("rate-384khz", C.make_call([speech], 1.0, rate=384_000).samples[0], rate=384_000)
    wav("channels-8", _channels(padded, 8, speaking=(0, 5)))
    wav("channels-32", _channels(padded, 32, speaking=(17,)))
    nan = np.concatenate([C.silence(1.0), speech, C.silence(1.0)])
    nan[100:400], nan[-300:-100], nan[5000] = np.nan, np.inf, -np.inf
    wav("nan-inf", nan, fmt="wav_f32")
    put(
        "hour-silence",
        _lavfi(["-f", "lavfi", "-i", f"anullsrc=r={RATE}:cl=mono", "-t", "3600", "-c:a", "flac"], "flac"),
    )
    wav("dc-offset", padded * 0.5 + 0.3)
    wav("clipping", np.clip(padded * 12.0, -1.0, 1.0))
    put("six-hours", _six_hours(speech))
    for name in ("unicode-key", "spaces-key", "dotdot-key", "slash-key", "deleted", "replaced", "denied"):
        wav(name, padded)
    put("folder-marker", b"")
    assert set(out) == {k.name for k in KINDS}, set(out) ^ {k.name for k in KINDS}
    shutil.rmtree(root / "_bad")
    shutil.rmtree(root / "_misnamed")
    done.touch()
    return out


def _rf64_header(samples: int, rate: int = RATE) -> bytes:
    """RF64 (EBU Tech 3306): the 64-bit WAV a 10^12-sample claim needs; sizes live in `ds64`."""
    data = samples * 2
    ds64 = struct.pack("<QQQI", data + 72, data, samples, 0)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RF64"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"ds64"
        + struct.pack("<I", len(ds64))
        + ds64
        + b"fmt "
        + fmt
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def _channels(x: np.ndarray, n: int, speaking: tuple[int, ...]) -> np.ndarray:
    out = np.stack([C.silence(len(x) / RATE, noise_dbfs=-60.0, seed=c)[: len(x)] for c in range(n)])
    for c in speaking:
        out[c] += x
    return out


def _lavfi(args: list[str], fmt: str) -> Path:
    path = Path(tempfile.mkdtemp()) / f"out.{fmt}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args, str(path)], check=True)
    return path


def _format_change(x: np.ndarray) -> bytes:
    """ADTS AAC is a bare frame stream: a mono stream followed by a stereo one is one 'file'."""
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for ch in (1, 2):
            src = C.encode(np.tile(x, (ch, 1)), RATE, "wav_s16", Path(tmp) / f"{ch}.wav")
            dst = Path(tmp) / f"{ch}.aac"
            subprocess.run(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-c:a", "aac", "-f", "adts", str(dst)],
                check=True,
            )
            parts.append(dst.read_bytes())
    return b"".join(parts)


def _six_hours(speech: np.ndarray) -> Path:
    """Ten minutes (speech at 1 s, then a -60 dBFS noise floor), encoded once and repeated 36 times
    by stream copy: a real 6-hour MP3 (21 MB at 8 kbps) in about a second."""
    with tempfile.TemporaryDirectory() as tmp:
        chunk = C.silence(600.0, noise_dbfs=-60.0)
        chunk[RATE : RATE + len(speech)] += speech
        wav = C.encode(chunk, RATE, "wav_s16", Path(tmp) / "chunk.wav")
        mp3 = Path(tmp) / "chunk.mp3"
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(wav),
                "-ar",
                "8000",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "8k",
                str(mp3),
            ],
            check=True,
        )
        return _lavfi(["-stream_loop", "35", "-i", str(mp3), "-c", "copy", "-write_xing", "0"], "mp3")


if __name__ == "__main__":
    files = write_kinds(Path(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs"))
    for k in KINDS:
        print(f"{k.name:15} {files[k.name].stat().st_size:>10} B  {k.expect:10} {k.key!r}: {k.what}")
    print(f"{len(KINDS)} kinds")
