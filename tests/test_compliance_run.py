"""Compliance on real speech, through the real driver: a two-channel call (tests/compliance_call.py:
espeak-ng saying a card number, an e-mail address, a phone and a social security number, and two
regulated phrases, one across a block cut) transcribed by a real recognizer (moonshine-cpp behind
our engine interface, bench/local_backend.py) and run by `run_job` with the compliance job's
settings: redacted segments, hits and pii rows at the right seconds, an unredacted copy, redacted
FLAC audio, no raw value anywhere else, and `scan` over the output afterwards."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf
import yaml

pytest.importorskip("moonshine_cpp", reason="the bench extra: pip install -e '.[bench]'")

from pipeline.cli import main  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.run.driver import run_job  # noqa: E402
from tests.compliance_call import REDACT, TERMS, leaked, planted, write_call  # noqa: E402

JOB = Path(__file__).resolve().parents[1] / "jobs" / "compliance-audit.yaml"


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    from bench.local_backend import LocalBackend
    from bench.moonshine_engine import MoonshineEngine

    tmp = tmp_path_factory.mktemp("audit")
    (tmp / "in").mkdir()
    call = write_call(tmp / "in" / "call.wav")
    # jobs/compliance-audit.yaml, pointed at this machine's folders
    overrides = {
        "input.uri": str(tmp / "in"),
        "output.uri": str(tmp / "out"),
        "compliance.keep_unredacted_uri": str(tmp / "unredacted"),
        "compliance.redacted_audio_uri": str(tmp / "audio"),
    }
    cfg = load_config(JOB, overrides)
    assert {t.phrase for t in cfg.compliance.terms} >= {t["phrase"] for t in TERMS}
    assert set(cfg.compliance.redact) == set(REDACT)
    engine = MoonshineEngine()
    err, logs = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    try:
        report = run_job(cfg, lambda c: LocalBackend(c, engine), err=err)
    finally:
        logging.getLogger().removeHandler(handler)
        engine._stop()
    assert report.exit_code == 0, err.getvalue()
    return tmp, call, overrides, err.getvalue() + logs.getvalue()


def rows(root: Path, dataset: str) -> list[dict]:
    return ds.dataset(root / dataset, format="parquet", partitioning="hive").to_table().to_pylist()


def test_every_planted_item_is_found_at_its_second(audit):
    tmp, call, *_ = audit
    found = {("pii", p["entity_type"]): p for p in rows(tmp / "out", "pii")}
    found |= {("term", h["phrase"]): h for h in rows(tmp / "out", "hits")}
    assert len(found) == len(planted())
    for p in planted():
        row = found[(p.kind, p.what)]
        channel, start, end = call.speech[p.utterance]
        assert row["channel"] == channel and row["channel_label"] == ("agent", "customer")[channel]
        # moonshine gives no word times: the span is its segments', which the blocker cut around the speech
        assert start - 0.5 <= row["start_s"] <= start + 0.5 and end - 0.5 <= row["end_s"] <= end + 0.5, (p, row)
        assert row["times_from"] == "segments"


def test_a_term_across_a_block_cut_is_one_hit(audit):
    tmp, *_ = audit
    (hit,) = [h for h in rows(tmp / "out", "hits") if h["phrase"] == "off the record"]
    segs = sorted((s["segment_index"], s["start_s"]) for s in rows(tmp / "out", "segments") if s["channel"] == 0)
    nxt = next(start for i, start in segs if i == hit["segment_index"] + 1)
    assert hit["end_s"] > nxt  # it ends in the segment after the one it starts in
    assert hit["category"] == "conduct" and "record" in hit["matched"].lower()


def test_segments_are_redacted_in_text_and_words(audit):
    tmp, *_ = audit
    segs = rows(tmp / "out", "segments")
    texts = " ".join(s["text"] for s in segs)
    for t in ("[CREDIT_CARD]", "[EMAIL]", "[PHONE_NUMBER]", "[US_SSN]"):
        assert t in texts
    for s in segs:
        assert not s["words"] or [w["word"] for w in s["words"]] == s["text"].split()
    raw = " ".join(s["text"] for s in rows(tmp / "unredacted", "segments")).lower()
    assert "gmail" in raw and len(rows(tmp / "unredacted", "segments")) == len(segs)


def test_no_raw_value_in_the_output_or_the_logs(audit):
    tmp, _, _, logs = audit
    written = [logs]
    for f in sorted((tmp / "out").rglob("*")):
        if f.suffix == ".parquet":
            table = ds.dataset(f, format="parquet").to_table()
            written += [str(v) for col in table.columns for v in col.to_pylist()]
        elif f.is_file():
            written.append(f.read_text())
    assert leaked(" ".join(written)) == []
    # the check finds them where they are: the unredacted copy, in segment order
    segs = sorted(rows(tmp / "unredacted", "segments"), key=lambda s: (s["channel"], s["segment_index"]))
    assert leaked(" ".join(s["text"] for s in segs)) == [raw for p in planted() for raw in p.raw]


def test_redacted_audio_is_silent_over_pii_on_its_channel_only(audit):
    tmp, call, *_ = audit
    (flac,) = (tmp / "audio").iterdir()
    audio, rate = sf.read(flac, always_2d=True)
    assert rate == call.rate and audio.shape == (call.samples.shape[1], 2)
    for p in rows(tmp / "out", "pii"):
        a, b = int(p["start_s"] * rate), int(p["end_s"] * rate)
        assert np.abs(audio[a:b, p["channel"]]).max() == 0.0
        assert np.abs(call.samples[p["channel"], a:b]).max() > 0.1  # there was speech there
    for ch, start, end in call.speech:
        if ch == 0:  # the agent's speech is kept
            a, b = int(start * rate), int(end * rate)
            assert np.abs(audio[a:b, 0]).max() > 0.1


def test_scan_adds_terms_after_the_fact(audit, tmp_path, capsys, monkeypatch):
    tmp, call, overrides, _ = audit
    monkeypatch.setenv("GRANITE_BATCH_COMPLIANCE__KEEP_UNREDACTED_URI", overrides["compliance.keep_unredacted_uri"])
    monkeypatch.setenv("GRANITE_BATCH_COMPLIANCE__REDACTED_AUDIO_URI", overrides["compliance.redacted_audio_uri"])
    assert main(["scan", "--output", str(tmp / "out"), "--config", str(JOB)]) == 0
    assert "0 searched, 1 already searched" in capsys.readouterr().out  # the run searched with these rules

    job = yaml.safe_load(JOB.read_text())
    job["compliance"]["terms"].append({"phrase": "thank you for calling", "category": "greeting"})
    later = tmp_path / "audit.yaml"
    later.write_text(yaml.safe_dump(job))
    assert main(["scan", "--output", str(tmp / "out"), "--config", str(later)]) == 0
    assert "1 searched" in capsys.readouterr().out
    hits = rows(tmp / "out", "hits")
    (greeting,) = [h for h in hits if h["phrase"] == "thank you for calling"]
    assert greeting["scan_id"].startswith("scan-") and greeting["channel_label"] == "agent"
    assert greeting["start_s"] <= call.speech[0][1] + 0.5
    # the terms the run found are found again under the scan's id
    again = sorted(h["phrase"] for h in hits if h["scan_id"] == greeting["scan_id"])
    assert again == sorted([t["phrase"] for t in TERMS] + ["thank you for calling"])
    assert main(["scan", "--output", str(tmp / "out"), "--config", str(later)]) == 0
    assert "0 searched, 1 already searched" in capsys.readouterr().out


def test_the_audit_queries_in_the_docs_answer(audit):
    """docs/compliance.md's DuckDB queries, as printed, on this output."""
    import duckdb

    tmp, call, *_ = audit
    doc = (JOB.parents[1] / "docs" / "compliance.md").read_text()
    sql = doc.split("## Audit queries")[1].split("```sql\n")[1].split("```")[0]
    uri = str(tmp / "in" / "call.wav")
    statements = [s for s in sql.split(";") if s.strip()]
    assert len(statements) == 4
    answers = [
        duckdb.execute(
            s.replace("OUTPUT", str(tmp / "out")).replace("s3://acme-archive/voice/2026-10-01/call-0001.wav", uri)
        ).fetchall()
        for s in statements
    ]
    per_day, to_listen, seconds, pii = answers  # (a scan test may have added a greeting hit)
    assert {(c, n) for _, c, n, _ in per_day} >= {("conduct", 1), ("mis-selling", 1)}
    assert to_listen[0][0] == uri and to_listen[0][1] >= 2
    planted_seconds = [r for r in seconds if r[2] != "greeting"]
    assert [r[1] for r in planted_seconds] == ["guaranteed returns", "off the record"]
    assert {r[0] for r in planted_seconds} == {"agent"}
    assert sorted(r[0] for r in pii) == ["credit_card", "email", "phone_number", "us_ssn"]
