"""Decode any audio stream to 16 kHz float32, chunk by chunk, without holding the file in memory.

Format detection is by content: FFmpeg (through PyAV) probes the bytes, and the object's name
is never consulted. Samples become float32 (in numpy for the common sample formats, else through
FFmpeg's converter) and are resampled to 16 kHz with soxr. `DecodeError` carries the failure's
kind and a one-line detail for the recording's status row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import BinaryIO, Literal

import av
import numpy as np
import soxr

from ..errors import DecodeError
from ..records.audio import SAMPLE_RATE, AudioInfo

CHUNK_S = 2.0  # audio handed downstream at a time: big enough to amortise per-call overhead
# Sample formats numpy turns into float32 itself (None: already float), which costs a fraction of
# a call into FFmpeg's converter per frame; -> the factor that scales integers to [-1, 1).
_SCALE: dict[str, float | None] = {
    "flt": None,
    "fltp": None,
    "dbl": None,
    "dblp": None,
    "s16": 2.0**-15,
    "s16p": 2.0**-15,
    "s32": 2.0**-31,
    "s32p": 2.0**-31,
}

# Content that is often mislabelled as audio, for a clearer reason than "invalid data".
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<!DOCTYPE", "an HTML/XML document"),
    (b"<html", "an HTML document"),
    (b"<?xml", "an XML document"),
    (b"{", "JSON or text"),
)


def describe_content(head: bytes) -> str | None:
    """Name well-known non-audio content from its first bytes."""
    stripped = head.lstrip()
    for magic, name in _MAGIC:
        if stripped[: len(magic)].lower() == magic.lower():
            return name
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head[:512]):
        return "plain text"
    return None


class AudioDecoder:
    """Open a seekable binary stream; iterate `chunks()`; then read `info` for the true values.

    Each chunk has shape (streams, n): one row per channel with `policy="split"`, a single
    downmixed row with `policy="mix"`.
    """

    def __init__(
        self, fileobj: BinaryIO, size_bytes: int, policy: Literal["split", "mix"], max_duration_s: float | None
    ) -> None:
        self._policy = policy
        self._max_duration_s = max_duration_s
        head = fileobj.read(4096)
        fileobj.seek(0)
        if not head:
            raise DecodeError("empty", "empty object (0 bytes)")
        _check_wav_data_size(head, size_bytes)
        try:
            self._container = av.open(fileobj, mode="r")
        except av.FFmpegError as err:
            what = describe_content(head)
            if what:
                raise DecodeError("not_audio", f"not audio: content is {what}") from None
            raise DecodeError("unreadable", f"unreadable: {_ffmpeg_msg(err)}") from None
        if not self._container.streams.audio:
            self._container.close()
            what = describe_content(head) or f"{self._container.format.name} content"
            raise DecodeError("not_audio", f"not audio: no audio stream in {what}")
        self._stream = self._container.streams.audio[0]
        ctx = self._stream.codec_context
        if ctx is None or not ctx.name or ctx.sample_rate <= 0:
            codec = getattr(ctx, "name", None) or "unknown"
            self._container.close()
            raise DecodeError("unsupported_codec", f"unsupported codec: {codec} in {self._container.format.name}")
        self.format = self._container.format.name
        self.codec = ctx.name
        self.sample_rate = ctx.sample_rate
        self.channels = ctx.channels
        self.declared_s = self._declared_duration(fileobj)
        if max_duration_s is not None and self.declared_s is not None and self.declared_s > max_duration_s:
            self._container.close()
            raise DecodeError(
                "too_long",
                f"too long: header declares {self.declared_s:.1f} s, over filters.max_duration_s={max_duration_s:g}",
            )
        self._native_samples = 0
        self._format = "flt"  # of the frames `_frames` yields

    def _declared_duration(self, fileobj: BinaryIO) -> float | None:
        # Trusted only where the format stores the length (FLAC STREAMINFO, MP4 sample tables,
        # Ogg's last granule, Matroska's segment info, an MP3 Xing/Info/VBRI frame): elsewhere
        # FFmpeg guesses it from the bitrate, and a guess must not fail a recording.
        s = self._stream
        if s.duration is None or s.time_base is None or s.duration <= 0:
            return None
        if self.format not in _EXACT_LENGTH_FORMATS and not (self.format == "mp3" and _mp3_has_length_frame(fileobj)):
            return None
        return float(s.duration * s.time_base)

    @property
    def info(self) -> AudioInfo:
        return AudioInfo(self.format, self.codec, self.sample_rate, self.channels, self.duration_s)

    @property
    def duration_s(self) -> float:
        return self._native_samples / self.sample_rate

    def chunks(self) -> Iterator[np.ndarray]:
        streams = 1 if self._policy == "mix" else self.channels
        resampler = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, streams, dtype="float32", quality="HQ")
        pending: list[np.ndarray] = []
        pending_n, chunk_n = 0, int(CHUNK_S * self.sample_rate)
        try:
            for x in self._frames():
                pending.append(x)
                pending_n += x.shape[0]
                if pending_n >= chunk_n:
                    yield self._resample(resampler, pending, last=False)
                    pending, pending_n = [], 0
            yield self._resample(resampler, pending, last=True)
        finally:
            self._container.close()
        if self._native_samples == 0:
            raise DecodeError("no_audio", f"no audio samples decoded ({self.codec} in {self.format})")
        self._check_declared()

    def _frames(self) -> Iterator[np.ndarray]:
        """Each decoded frame as (n, channels) samples, in its own format; `_resample` scales them."""
        frames = self._decode()
        first = next(frames, None)
        if first is None:
            return
        fmt = first.format
        # len(layout.channels): PyAV 12 has no nb_channels attribute
        expect = (fmt.name, self.sample_rate, self.channels)
        if (
            (fmt.name, first.sample_rate, len(first.layout.channels)) != expect
            or fmt.name not in _SCALE
            or (fmt.is_planar and self.channels >= 8)
        ):
            yield from self._converted(itertools.chain([first], frames))
            return
        self._format = fmt.name
        for frame in itertools.chain([first], frames):
            # Any change (e.g. concatenated ADTS streams, mono then stereo) fails the recording,
            # with the message FFmpeg's converter path gives.
            if (frame.format.name, frame.sample_rate, len(frame.layout.channels)) != expect:
                raise self._changed(frame)
            x = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
            x = x.T if fmt.is_planar else x.reshape(-1, self.channels)
            self._count(x.shape[0])
            yield x

    def _converted(self, frames: Iterator[av.AudioFrame]) -> Iterator[np.ndarray]:
        # FFmpeg converts what numpy is not given: other sample formats, and planar audio of 8+
        # channels (PyAV mis-sizes those frames, and crashes). Packed float: soxr wants (n, channels).
        to_float = av.AudioResampler(format="flt", layout=self._stream.layout, rate=self.sample_rate)
        self._format = "flt"
        for frame in frames:
            try:
                packed_frames = to_float.resample(frame)
            except ValueError:  # PyAV: "Frame does not match AudioResampler setup"
                raise self._changed(frame) from None
            for packed in packed_frames:
                if len(packed.layout.channels) != self.channels:
                    raise DecodeError(
                        "format_changed",
                        f"channel count changed mid-stream ({self.channels} -> {len(packed.layout.channels)})",
                    )
                x = packed.to_ndarray().reshape(-1, self.channels)
                self._count(x.shape[0])
                yield x

    def _count(self, n: int) -> None:
        self._native_samples += n
        if self._max_duration_s is not None and self._native_samples > self._max_duration_s * self.sample_rate:
            raise DecodeError("too_long", f"too long: over filters.max_duration_s={self._max_duration_s:g} s")

    def _changed(self, frame: av.AudioFrame) -> DecodeError:
        return DecodeError(
            "format_changed",
            f"audio format changed mid-stream at {self.duration_s:.2f} s ({frame.layout.name}, {frame.sample_rate} Hz)",
        )

    def _decode(self) -> Iterator[av.AudioFrame]:
        try:
            yield from self._container.decode(self._stream)
        except av.FFmpegError as err:
            raise DecodeError(
                "truncated", f"corrupt or truncated at {self.duration_s:.2f} s: {_ffmpeg_msg(err)}"
            ) from None

    def _resample(self, resampler: soxr.ResampleStream, parts: list[np.ndarray], last: bool) -> np.ndarray:
        x = np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)
        scale = _SCALE.get(self._format)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, made 0 below
            x = x.astype(np.float32, copy=False)
        if scale is not None:
            x *= np.float32(scale)
        if self._policy == "mix":
            x = x.mean(axis=1, keepdims=True)
        if not np.isfinite(x).all():  # NaN/Inf in float formats: silence rather than poison the model
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        y = resampler.resample_chunk(np.ascontiguousarray(x), last=last)  # planar frames: (n, ch) views
        return np.ascontiguousarray(y.T)

    def _check_declared(self) -> None:
        # A header that promises much more audio than the data holds: truncated or lying.
        declared = self.declared_s
        if declared is not None and declared - self.duration_s > max(0.5, 0.02 * declared):
            raise DecodeError(
                "truncated", f"truncated: header declares {declared:.2f} s but the data holds {self.duration_s:.2f} s"
            )


_EXACT_LENGTH_FORMATS = {"wav", "flac", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}


def _mp3_has_length_frame(fileobj: BinaryIO) -> bool:
    """Whether the first MP3 frame (after any ID3v2 tag) is a Xing/Info/VBRI header."""
    pos = fileobj.tell()
    try:
        fileobj.seek(0)
        head = fileobj.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        fileobj.seek(start)
        frame = fileobj.read(256)
        return any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))
    finally:
        fileobj.seek(pos)


def _check_wav_data_size(head: bytes, size_bytes: int) -> None:
    """FFmpeg silently clamps a WAV data chunk to the bytes present, so a truncated WAV (or one
    whose header lies about its length) would pass as a shorter recording. Check it ourselves."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            # 0 and 0xFFFFFFFF are the customary "length unknown" of streamed WAV writers.
            if size not in (0, 0xFFFFFFFF) and pos + 8 + size > size_bytes:
                raise DecodeError(
                    "truncated",
                    f"truncated: WAV header declares {size} bytes of audio but the object holds {size_bytes - pos - 8}",
                )
            return
        pos += 8 + size + (size & 1)


def _ffmpeg_msg(err: Exception) -> str:
    msg = getattr(err, "strerror", None) or str(err)
    return " ".join(str(msg).split())[:200]
