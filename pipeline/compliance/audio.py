"""Redacted audio: a FLAC copy of a recording with its PII spans silenced, channels and sample rate
kept (compliance.redacted_audio_uri). Streamed frame by frame, so a long call never sits in memory.

On split channels a span silences its own channel (the customer saying a card number leaves the
agent audible); on mixed channels (`channels.policy: mix`) it silences them all. FLAC is written
as 16-bit: listening copies, not archival masters.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable
from typing import BinaryIO

import av
import numpy as np

from ..errors import DecodeError
from ..records.compliance import PiiSpan

Spans = dict[int | None, list[tuple[float, float]]]  # channel (None: all) -> [start_s, end_s) spans


def spans_of(pii: Iterable[PiiSpan], mixed: bool, pad_s: float) -> Spans:
    out: Spans = {}
    for p in pii:
        out.setdefault(None if mixed else p.channel, []).append((max(0.0, p.start_s - pad_s), p.end_s + pad_s))
    return out


def write_redacted(src: BinaryIO, dst: BinaryIO, spans: Spans) -> float:
    """Decode `src`, silence `spans`, encode FLAC to `dst` (seekable); returns seconds silenced
    summed over channels."""
    try:
        inp = av.open(src, mode="r")
    except av.FFmpegError as err:
        raise DecodeError("unreadable", f"redacted audio: cannot open the source again: {err}") from None
    with inp:
        stream = inp.streams.audio[0]
        rate, layout = stream.codec_context.sample_rate, stream.layout
        channels = len(layout.channels)
        to_s16 = av.AudioResampler(format="s16", layout=layout, rate=rate)
        silenced = 0
        with av.open(dst, mode="w", format="flac") as out:
            enc = out.add_stream("flac", rate=rate, layout=layout.name)
            pos = 0  # samples per channel written so far
            try:
                # every decoded frame, then None: the resampler's flush
                for frame in itertools.chain(inp.decode(stream), [None]):
                    for f in to_s16.resample(frame):
                        x = f.to_ndarray().reshape(-1, channels).copy()  # packed s16: (n, channels)
                        silenced += _silence(x, pos, rate, spans)
                        _encode(out, enc, x, layout.name, rate, pos)
                        pos += x.shape[0]
            except av.FFmpegError as err:
                raise DecodeError(
                    "truncated", f"redacted audio: decoding failed at {pos / rate:.2f} s: {err}"
                ) from None
            for packet in enc.encode(None):
                out.mux(packet)
    return silenced / rate


def _silence(x: np.ndarray, pos: int, rate: int, spans: Spans) -> int:
    n, done = x.shape[0], 0
    for channel, ranges in spans.items():
        cols = slice(None) if channel is None else slice(channel, channel + 1)
        for a_s, b_s in ranges:
            a, b = max(int(a_s * rate) - pos, 0), min(int(np.ceil(b_s * rate)) - pos, n)
            if a < b:
                x[a:b, cols] = 0
                done += (b - a) * (x.shape[1] if channel is None else 1)
    return done


def _encode(
    out: av.container.OutputContainer, enc: av.AudioStream, x: np.ndarray, layout: str, rate: int, pts: int
) -> None:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x).reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate, frame.pts = rate, pts
    for packet in enc.encode(frame):
        out.mux(packet)


def write_to(fs: object, path: str, src: BinaryIO, spans: Spans) -> float:
    """Write the copy through a local temporary file (FLAC's muxer seeks back to finish its
    header), then to `path` on the pyarrow filesystem `fs`."""
    with tempfile.TemporaryFile() as tmp:
        seconds = write_redacted(src, tmp, spans)
        tmp.seek(0)
        fs.create_dir(path.rsplit("/", 1)[0])  # type: ignore[attr-defined]
        with fs.open_output_stream(path) as f:  # type: ignore[attr-defined]
            while chunk := tmp.read(8 << 20):
                f.write(chunk)
    return seconds
