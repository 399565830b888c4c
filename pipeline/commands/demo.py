"""`granite-batch demo`: the whole product on a fresh machine with no GPU and no hub access.

It builds the offline test model (random weights: the texts are noise, the pipeline is real),
runs `jobs/local-demo.yaml` on the bundled example recordings (a stereo call, a voicemail and a
truncated file that must come out `failed`), and queries the output with DuckDB.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..config import load_config

ROOT = Path(__file__).resolve().parents[2]  # the checkout: jobs/ and examples/
JOB = ROOT / "jobs" / "local-demo.yaml"
MODEL_DIR = Path("~/.cache/granite-batch/test-model").expanduser()

SEGMENTS_SQL = """
SELECT regexp_extract(source_uri, '[^/]+$') AS file, channel_label, round(start_s, 2) AS start_s,
       round(end_s, 2) AS end_s, round(words[1].start_s, 2) AS first_word_s, decoded_by, left(text, 30) AS text
FROM read_parquet('{out}/segments/*/*.parquet', hive_partitioning = true)
ORDER BY file, channel, segment_index LIMIT 12"""
RECORDINGS_SQL = """
SELECT regexp_extract(source_uri, '[^/]+$') AS file, status, round(duration_s, 1) AS duration_s, segments, error
FROM read_parquet('{out}/recordings/*/*.parquet', hive_partitioning = true)
WHERE run_id = '{run_id}' ORDER BY file"""


def run_demo(output: Path) -> int:
    from ..ray_run import RayBackend
    from ..run.driver import run_job
    from ..testing.testmodel import build_test_model

    if not JOB.is_file():
        print(f"granite-batch demo runs from a source checkout (needs {JOB})", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    out = output.resolve()
    audio = ROOT / "examples" / "audio"
    print(
        f"granite-batch demo: {JOB.relative_to(ROOT)} on {audio.relative_to(ROOT)}/ (a stereo call, a voicemail, "
        "and a truncated file that must come out failed), Ray in-process, vLLM's CPU build",
        file=sys.stderr,
    )
    if not (MODEL_DIR / "config.json").is_file():
        print(
            f"building the offline test model in {MODEL_DIR} (random weights: transcripts are noise)", file=sys.stderr
        )
        build_test_model(MODEL_DIR)
    cfg = load_config(JOB, {"input.uri": str(audio), "output.uri": str(out), "model.id": str(MODEL_DIR)})
    report = run_job(cfg, RayBackend)
    unexpected = {kind: n for kind, n in report.progress.failures.items() if kind != "truncated"}
    if unexpected:  # only the truncated example may fail; anything else is this machine's problem
        print(
            f"granite-batch demo: recordings failed unexpectedly ({unexpected}); examples: "
            f"{report.progress.examples}\nRun `granite-batch doctor` to check this machine.",
            file=sys.stderr,
        )
        return 1
    import duckdb

    for sql in (SEGMENTS_SQL, RECORDINGS_SQL):
        query = sql.format(out=out, run_id=report.run_id)
        print(f"\nduckdb> {' '.join(query.split())}")
        try:
            print(duckdb.sql(query))
        except duckdb.IOException:  # no file of that dataset yet: every recording failed
            print("(no rows)")
    p = report.progress
    if p.ok + p.failed:
        did = (
            f"listed {audio}, decoded each file and channel, cut ~4 s blocks at pauses, transcribed them with "
            f"the test model through vLLM ({p.ok} ok, {p.failed} failed), and committed"
        )
        again = "Run it again: nothing is redone (every recording is skipped: done before)."
    else:
        did = f"listed {audio}; every recording was done by an earlier run into this output, so all are skipped"
        again = f"Delete {out} to run it from scratch."
    print(f"""
Done in {time.monotonic() - t0:.0f} s. What it did: {did}. The output:
  {out}/segments/     one row per segment, on the source timeline (Parquet, by date)
  {out}/recordings/   one row per recording a run settled: ok, or failed (with the reason)
  {report.manifest_uri}   this run's manifest
{again} The model was random, so the texts are noise.
Real transcripts: granite-batch run --input s3://bucket/calls --output s3://bucket/transcripts \\
    --model ibm-granite/granite-4.0-1b-speech   (docs/run.md; air-gapped: docs/engines.md)""")
    return 0
