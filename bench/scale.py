"""A nightly re-run over a big store that finds nothing new: the driver's time, peak memory and the
rows it writes, with synthetic history and a synthetic listing.

The output gets N `ok` recordings rows (as N earlier settlements; written with Arrow, in files of
1M rows), and the listing yields the same N recordings (a Source patched into the driver, no
files). Each variant runs the real driver (`run_job`) in a fresh child process, so its peak RSS
(VmHWM) is the driver's alone; a run that starts an engine fails the bench. Side by side:
  default:      no row per skipped recording; history held as sorted numpy keys (history.py);
  skipped_rows: run.skipped_rows on (a `skipped` row for each recording, the old behaviour);
  delta:        output.format: delta (history read through DeltaTable.to_pyarrow_dataset()).

Options: --recordings N (1000000), --also 10000000 (more sizes, default variant only).
Last line: rerun_1m_driver_rss_mb=<int> rerun_1m_s=<float> rows_written=<int> (the default variant at N)
Tried on: 2-core x86_64 VM, no GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline.records.audio import Recording  # noqa: E402
from pipeline.records.results import RECORDINGS  # noqa: E402

CHUNK = 1_000_000


def uri(i: int) -> str:
    return f"s3://lake/calls/2026/{i // 10_000:04d}/call-{i:08d}.wav"


def etag(i: int) -> str:
    return f"{i:032x}"


def write_history(out: Path, n: int, delta: bool) -> None:
    """n `ok` recordings rows, as one earlier run wrote them."""
    when = datetime(2026, 11, 29, 2, tzinfo=timezone.utc)
    folder = out / "recordings" / "date=2026-11-29"
    if not delta:
        folder.mkdir(parents=True)
    for start in range(0, n, CHUNK):
        idx = range(start, min(n, start + CHUNK))
        uris = [uri(i) for i in idx]
        ids = [hashlib.sha256(f"{u}\n{etag(i)}".encode()).hexdigest()[:24] for u, i in zip(uris, idx)]
        m = len(ids)
        cols = {
            "recording_id": ids,
            "source_uri": uris,
            "source_etag": [etag(i) for i in idx],
            "size_bytes": pa.array([1 << 20] * m, pa.int64()),
            "duration_s": pa.array([60.0] * m),
            "sample_rate": pa.array([8000] * m, pa.int32()),
            "channels": pa.array([2] * m, pa.int32()),
            "speech_s": pa.array([40.0] * m),
            "segments": pa.array([12] * m, pa.int32()),
            "status": ["ok"] * m,
            "error": pa.nulls(m, pa.string()),
            "format": ["wav"] * m,
            "codec": ["pcm_s16le"] * m,
            "language": ["en"] * m,
            "previous_run_id": pa.nulls(m, pa.string()),
            "run_id": ["20261129T020000Z-aaaaaa"] * m,
            "processed_at": pa.array([when] * m, pa.timestamp("us", tz="UTC")),
        }
        table = pa.table(cols | {"meta": pa.nulls(m, RECORDINGS.field("meta").type)}, schema=RECORDINGS)
        if delta:
            from deltalake import write_deltalake

            table = table.append_column("date", pa.array(["2026-11-29"] * m))
            write_deltalake(str(out / "recordings"), table, partition_by=["date"], mode="append")
        else:
            pq.write_table(table, folder / f"hist-{start // CHUNK:05d}.parquet")


class SyntheticListing:
    """The store's listing: the same n recordings, made on the fly."""

    def __init__(self, n: int) -> None:
        from pipeline.sources.scope import ListingStats

        self.n, self.stats = n, ListingStats()

    def recordings(self):  # noqa: ANN201
        for i in range(self.n):
            yield Recording(uri(i), 1 << 20, etag(i))


def child(out: str, n: int, skipped_rows: bool, fmt: str) -> None:
    """One re-run in this process; prints a JSON line of its figures."""
    from pipeline.config import load_config
    from pipeline.run import driver as job

    def no_engine(cfg):  # noqa: ANN001, ANN202
        raise AssertionError("a re-run with nothing new started an engine")

    job.open_source = lambda inp, filters: SyntheticListing(n)  # type: ignore[assignment]
    cfg = load_config(
        None,
        {"input.uri": "s3://lake/calls/", "output.uri": out, "run.skipped_rows": skipped_rows, "output.format": fmt},
    )
    t = time.perf_counter()
    report = job.run_job(cfg, no_engine, err=io.StringIO())
    seconds = time.perf_counter() - t
    from bench.common import peak_rss_mb

    p = report.progress
    assert p.skipped == n and p.ok == p.failed == 0, (p.skipped, p.ok, p.failed)
    print(json.dumps({"s": seconds, "rss_mb": peak_rss_mb()}))


def _rows(out: Path, delta: bool) -> int:
    if delta:
        from deltalake import DeltaTable

        return DeltaTable(str(out / "recordings")).to_pyarrow_dataset().count_rows()
    return ds.dataset(out / "recordings", partitioning="hive").count_rows()


def rerun(n: int, skipped_rows: bool, fmt: str = "parquet") -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    delta = fmt == "delta"
    write_history(out, n, delta)
    before = _rows(out, delta)
    r = subprocess.run(
        [sys.executable, __file__, "--child", str(out), str(n), str(int(skipped_rows)), fmt],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    figures["rows"] = _rows(out, delta) - before
    return figures


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recordings", type=int, default=1_000_000)
    ap.add_argument("--also", type=lambda s: [int(x) for x in s.split(",") if x], default=[])
    args = ap.parse_args()
    n = args.recordings
    default, old, delta = rerun(n, False), rerun(n, True), rerun(n, False, "delta")
    for name, f in (("default", default), ("skipped_rows", old), ("delta", delta)):
        print(f"{name:13s} {n} settled: {f['s']:.1f} s, driver peak RSS {f['rss_mb']:.0f} MB, {f['rows']} rows written")
    print(f"skipped_rows over default: time {old['s'] / default['s']:.2f}x, rows {old['rows']} vs {default['rows']}")
    print(
        f"delta over default: time {delta['s'] / default['s']:.2f}x, peak RSS {delta['rss_mb'] / default['rss_mb']:.2f}x"
    )
    for m in args.also:
        f = rerun(m, False)
        print(
            f"default       {m} settled: {f['s']:.1f} s, driver peak RSS {f['rss_mb']:.0f} MB, {f['rows']} rows written"
        )
    print(
        f"rerun_1m_driver_rss_mb={default['rss_mb']:.0f} rerun_1m_s={default['s']:.2f} rows_written={default['rows']}"
    )


if __name__ == "__main__":
    main()
