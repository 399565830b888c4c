"""Compliance's pure core on transcripts as Granite writes them (lower case, spoken numbers), its
rules files, and `granite-batch scan` over an output written by the real commit protocol. The
same on real speech through the whole driver: tests/test_compliance_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.compliance import Scanner
from pipeline.compliance.normalize import normalize
from pipeline.compliance.rules import Rules, Term, load_rules
from pipeline.config import ComplianceConfig, load_config
from pipeline.errors import ConfigError
from pipeline.lake.parquet import ParquetStore
from pipeline.records.compliance import HITS, PII
from pipeline.records.results import Segment, Word
from pipeline.records.settled import Batch
from tests.conftest import upload_tree

CARD = "4532015112830366"  # Luhn-valid test number
SPOKEN_CARD = "four five three two zero one five one one two eight three zero three six six"
RULES = Rules(
    (Term("guaranteed returns", "mis-selling"), Term("off the record", "conduct")),
    ("credit_card", "email", "phone_number", "us_ssn"),
    0.0,
    3,
)


def seg(channel: int, index: int, start: float, text: str, timed: bool = True, language: str = "en") -> Segment:
    """A segment of 4 s whose words share it evenly (timed) or have no times."""
    ws = text.split()
    step = 4.0 / max(len(ws), 1)
    words = tuple(Word(w, start + i * step, start + (i + 1) * step, 0.9) for i, w in enumerate(ws)) if timed else ()
    label = ("agent", "customer")[channel]
    return Segment(
        "rec1", "s3://calls/a.wav", channel, label, index, start, start + 4.0, text, words, language, (), "m", "r",
        "run1", "cpu", "stop", 0, "llm",
    )  # fmt: skip


# -- normalization -----------------------------------------------------------------------------------
def test_spoken_numbers_become_one_digit_string_that_knows_its_words():
    words = f"my card is {SPOKEN_CARD} thanks".split()
    tokens = normalize(words, "en")
    (card,) = [t for t in tokens if t.text.isdigit()]
    assert card.text == CARD and (card.lo, card.hi) == (3, 3 + 16)
    assert [t.text for t in tokens if not t.text.isdigit()] == ["my", "card", "is", "thanks"]


def test_written_forms_punctuation_and_case_are_the_same_tokens():
    assert [t.text for t in normalize("My card is 4532-0151-1283-0366.".split(), "en")][-1] == "4532-0151-1283-0366"
    assert [t.text for t in normalize("Off the Record!".split(), "en")] == ["off", "the", "record"]


def test_spoken_email_is_written_at_the_right_at():
    tokens = normalize("email me at john dot smith at example dot com or call".split(), "en")
    assert [t.text for t in tokens] == ["email", "me", "at", "john.smith@example.com", "or", "call"]
    email = tokens[3]
    assert (email.lo, email.hi) == (3, 10)
    # no address: "at" without a domain that has a public suffix
    assert [t.text for t in normalize("meet me at the office dot".split(), "en")][-3:] == ["the", "office", "dot"]


def test_other_languages_numbers_and_japanese_text_kept():
    assert [t.text for t in normalize("ma carte quatre cinq trois deux".split(), "fr")][-1] == "4532"
    assert [t.text for t in normalize("meine nummer vier fünf drei zwei".split(), "de")][-1] == "4532"
    ja = "カードは よん ご さん に".split()
    assert [t.text for t in normalize(ja, "ja")] == ja


# -- the scanner ---------------------------------------------------------------------------------------
def test_a_term_across_a_block_cut_is_found_once_with_word_times():
    segs = [
        seg(0, 0, 0.0, "we offer guaranteed"),
        seg(0, 1, 4.0, "returns today and this is off the"),
        seg(0, 2, 8.0, "record"),
    ]
    found = Scanner(RULES, "run1").scan(segs)
    hits = {h.phrase: h for h in found.hits}
    assert len(found.hits) == 2
    g = hits["guaranteed returns"]
    assert (g.start_s, g.end_s, g.times_from, g.segment_index) == (
        segs[0].words[2].start_s,
        segs[1].words[0].end_s,
        "words",
        0,
    )
    r = hits["off the record"]
    assert (r.start_s, r.end_s) == (segs[1].words[-2].start_s, 12.0) and r.matched == "off the record"
    assert r.context == "and this is off the record" and r.category == "conduct"
    assert found.segments == segs  # nothing to redact: the same segments


def test_a_phrase_split_between_speakers_is_not_a_hit():
    found = Scanner(RULES, "run1").scan([seg(0, 0, 0.0, "this is off the"), seg(1, 0, 4.0, "record")])
    assert found.hits == []


def test_pii_is_replaced_in_text_and_words_and_listed_without_its_value():
    card = SPOKEN_CARD.split()
    segs = [
        seg(1, 0, 0.0, "my card number is " + " ".join(card[:9])),
        seg(1, 1, 4.0, " ".join(card[9:]) + " thanks"),
        seg(
            1,
            2,
            8.0,
            "mail john dot smith at example dot com or call two zero two four five six one one one one",
            timed=False,
        ),
        seg(0, 0, 12.0, "we offer guaranteed returns"),
    ]
    found = Scanner(RULES, "run1").scan(segs)
    s0, s1, s2, s3 = found.segments
    assert s0.text == "my card number is [CREDIT_CARD]" and s1.text == "[CREDIT_CARD] thanks"
    assert [w.word for w in s0.words] == s0.text.split() and [w.word for w in s1.words] == s1.text.split()
    assert (s0.words[-1].start_s, s0.words[-1].end_s) == (segs[0].words[4].start_s, segs[0].words[-1].end_s)
    assert s0.words[-1].score is None
    assert s2.text == "mail [EMAIL] or call [PHONE_NUMBER]" and s2.words == ()  # untimed stays untimed
    assert s3 == segs[3]
    spans = {p.entity_type: p for p in found.pii}
    assert set(spans) == {"credit_card", "email", "phone_number"}
    c = spans["credit_card"]
    assert (c.start_s, c.end_s, c.times_from, c.segment_index, c.redacted) == (
        segs[0].words[4].start_s, segs[1].words[6].end_s, "words", 0, True,
    )  # fmt: skip
    assert (spans["email"].start_s, spans["email"].end_s, spans["email"].times_from) == (8.0, 12.0, "segments")
    rows = json.dumps([p.to_row() for p in found.pii] + [s.to_row() for s in found.segments])
    for raw in (CARD, "4532", "john", "smith", "2024561111", "five six one"):
        assert raw not in rows
    assert [f.name for f in PII] == list(found.pii[0].to_row()) and "value" not in PII.names


def test_a_spelled_iban_is_redacted():
    spoken = "g b eight two w e s t one two three four five six nine eight seven six five four three two"
    rules = Rules((), ("iban",), 0.0, 8)
    (s,) = Scanner(rules, "r").scan([seg(1, 0, 0.0, f"my iban is {spoken} thanks")]).segments
    assert s.text == "my iban is [IBAN] thanks"


def test_hits_never_carry_pii_in_their_words():
    rules = Rules((Term("my card number", "cards"),), ("credit_card",), 0.0, 8)
    found = Scanner(rules, "run1").scan([seg(1, 0, 0.0, f"my card number is {SPOKEN_CARD} ok")])
    (hit,) = found.hits
    assert hit.context == "my card number is [CREDIT_CARD] ok"
    assert [f.name for f in HITS] == list(hit.to_row())


def test_min_score_leaves_weak_findings_alone():
    text = "the reference is five three six two two one four three nine"  # nine digits: a weak SSN pattern
    assert Scanner(RULES, "r").scan([seg(0, 0, 0.0, text)]).pii[0].entity_type == "us_ssn"
    strict = Rules((), ("us_ssn",), 0.5, 8)
    assert Scanner(strict, "r").scan([seg(0, 0, 0.0, text)]).pii == []


# -- rules -----------------------------------------------------------------------------------------------
def test_terms_files_yaml_and_csv(tmp_path):
    y = tmp_path / "terms.yaml"
    y.write_text("- {phrase: guaranteed returns, category: mis-selling}\n- off the record\n")
    c = tmp_path / "terms.csv"
    c.write_text("phrase,category\n# a comment\nwire transfer,payments\ninsider information,\n")
    inline = [{"phrase": "Guaranteed  Returns", "category": "dup"}]
    rules = load_rules(ComplianceConfig(terms=inline, terms_file=str(y)))
    assert [(t.phrase, t.category) for t in rules.terms] == [("Guaranteed  Returns", "dup"), ("off the record", "")]
    rules = load_rules(ComplianceConfig(terms_file=str(c)))
    assert [(t.phrase, t.category) for t in rules.terms] == [("wire transfer", "payments"), ("insider information", "")]


def test_terms_file_on_s3(moto, tmp_path):
    f = tmp_path / "terms.yaml"
    f.write_text("terms:\n  - {phrase: off the record, category: conduct}\n")
    upload_tree(moto, "audit-terms", "q4", {"terms.yaml": f})
    cfg = load_config(
        None,
        {
            "input.uri": str(tmp_path),
            "output.endpoint_url": moto.endpoint_url,
            "compliance.terms_file": "s3://audit-terms/q4/terms.yaml",
        },
    )
    from pipeline.compliance.apply import rules_of

    assert [t.phrase for t in rules_of(cfg).terms] == ["off the record"]


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("t.yaml", "- {phrase: a, category: [x]\n", "not valid YAML"),
        ("t.yaml", "phrase: a\n", "must be a list"),
        ("t.yaml", "- {category: x}\n", "entry 1: phrase: Field required"),
        ("t.yaml", "- {phrase: a, colour: x}\n", "entry 1: colour: Extra inputs are not permitted"),
        ("t.yaml", "[]\n", "holds no terms"),
        ("t.csv", "a,b,c\n", "line 1: expected `phrase,category`, got 3 fields"),
        ("t.csv", b"\xff\xfe\x00", "not UTF-8"),
        ("missing.yaml", None, "cannot read it: No such file or directory"),
    ],
)
def test_bad_terms_files_are_config_errors(tmp_path, name, content, says):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="compliance.terms_file .*" + says.replace("(", r"\(")):
        load_rules(ComplianceConfig(terms_file=str(path)))


def test_fingerprint_is_equal_exactly_when_the_rules_are():
    a = Rules((Term("x", "1"), Term("y", "2")), ("email",), 0.0, 8)
    assert a.fingerprint == Rules((Term("y", "2"), Term("x", "1")), ("email",), 0.0, 4).fingerprint
    assert a.fingerprint != Rules((Term("x", "1"),), ("email",), 0.0, 8).fingerprint
    assert a.fingerprint != Rules(a.terms, ("email", "iban"), 0.0, 8).fingerprint


def test_unknown_pii_type_is_a_config_error():
    with pytest.raises(ConfigError, match="compliance.redact.0: Input should be 'credit_card'"):
        load_config(None, {"input.uri": ".", "compliance.redact": ["passport_number"]})


# -- granite-batch scan -------------------------------------------------------------------------------------
def _job(tmp_path: Path, terms: list[str]) -> Path:
    job = tmp_path / f"job-{len(terms)}.yaml"
    job.write_text("compliance:\n  terms:\n" + "".join(f"    - {{phrase: {t}, category: c}}\n" for t in terms))
    return job


def _rows(out: Path, dataset: str) -> list[dict]:
    if not (out / dataset).exists():
        return []
    return ds.dataset(out / dataset, format="parquet", partitioning="hive").to_table().to_pylist()


def test_scan_searches_each_segments_file_once_per_rules(tmp_path, capsys):
    out = tmp_path / "out"
    store = ParquetStore(str(out))
    store.prepare("run1")
    for n, texts in enumerate([["we offer guaranteed", "returns today"], ["nothing to see", "off the record"]]):
        segs = [seg(0, i, 4.0 * i, t) for i, t in enumerate(texts)]
        segs = [s.__class__(**{**s.to_row(), "recording_id": f"rec{n}", "words": s.words}) for s in segs]
        store.commit("run1", store.file_name("run1", n), "2026-11-01", Batch(segments=segs))
    store.release("run1")

    assert main(["scan", "--output", str(out), "--config", str(_job(tmp_path, ["guaranteed returns"]))]) == 0
    hits = _rows(out, "hits")
    assert [(h["phrase"], h["recording_id"], h["start_s"]) for h in hits] == [("guaranteed returns", "rec0", 8 / 3)]
    scan_id = hits[0]["scan_id"]
    assert scan_id.startswith("scan-") and "2 searched, 0 already" in capsys.readouterr().out

    assert main(["scan", "--output", str(out), "--config", str(_job(tmp_path, ["guaranteed returns"]))]) == 0
    assert "0 searched, 2 already" in capsys.readouterr().out and len(_rows(out, "hits")) == 1

    two = _job(tmp_path, ["guaranteed returns", "off the record"])
    assert main(["scan", "--output", str(out), "--config", str(two)]) == 0
    assert sorted(h["phrase"] for h in _rows(out, "hits")) == [
        "guaranteed returns",
        "guaranteed returns",
        "off the record",
    ]
    assert len(_rows(out, "scans")) == 4
    manifest = json.loads(next((out / "runs").glob(f"{scan_id}.json")).read_text())
    assert manifest["hits_by_category"] == {"c": 1} and manifest["segments_files"]["searched"] == 2


def test_scan_refuses_a_bad_terms_file_and_no_rules(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("compliance:\n  terms_file: " + str(tmp_path / "terms.yaml") + "\n")
    (tmp_path / "terms.yaml").write_text("- {category: x}\n")
    assert main(["scan", "--output", str(tmp_path / "out"), "--config", str(bad)]) == 2
    assert "terms.yaml: entry 1: phrase: Field required" in capsys.readouterr().err
    assert main(["scan", "--output", str(tmp_path / "out")]) == 2
    assert "no terms and no PII types" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing locked or written


def test_scan_takes_the_output_lock(tmp_path, capsys):
    out = tmp_path / "out"
    ParquetStore(str(out)).prepare("a-live-run")
    assert main(["scan", "--output", str(out), "--config", str(_job(tmp_path, ["x"]))]) == 3
    assert "run a-live-run (host" in capsys.readouterr().err


def test_redacted_audio_copy_on_s3(moto, tmp_path):
    """A stereo 8 kHz call: the span is silenced on its channel only, rate and channels kept."""
    import io

    import numpy as np
    import soundfile as sf

    from pipeline.compliance.apply import Compliance
    from pipeline.records.audio import Recording
    from pipeline.records.compliance import PiiSpan
    from pipeline.sources import open_source

    rate = 8000
    t = np.arange(rate * 4) / rate
    tone = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], 1)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "call.wav", tone, rate, subtype="PCM_16")
    upload_tree(moto, "redacted", "x", {})
    overrides = {
        "input.uri": str(tmp_path / "in"),
        "output.endpoint_url": moto.endpoint_url,
        "compliance.redact": ["credit_card"],
        "compliance.redacted_audio_uri": "s3://redacted/audio",
        "compliance.audio_pad_s": 0.0,
    }
    cfg = load_config(None, overrides)
    (rec,) = open_source(cfg.input, cfg.filters).recordings()
    span = PiiSpan(
        rec.recording_id, rec.source_uri, 1, "customer", 0, "credit_card", 1.0, 2.5, "words", 1.0, True, "r", "x"
    )
    Compliance(cfg, "r").write_audio(Recording(rec.source_uri, rec.size_bytes, rec.etag), [span])
    body = moto.client().get_object(Bucket="redacted", Key=f"audio/{rec.recording_id}.flac")["Body"].read()
    audio, got_rate = sf.read(io.BytesIO(body), always_2d=True)
    assert got_rate == rate and audio.shape == tone.shape
    assert np.abs(audio[int(1.0 * rate) : int(2.5 * rate), 1]).max() == 0.0
    assert np.abs(audio[int(1.0 * rate) : int(2.5 * rate), 0]).max() > 0.4  # the other channel is kept
    assert np.abs(audio[: int(1.0 * rate) - 1, 1]).max() > 0.4 and np.abs(audio[int(2.5 * rate) + 1 :, 1]).max() > 0.4
