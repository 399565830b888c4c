"""What every segment row must satisfy, checked on the output of every run test."""

from __future__ import annotations

from typing import Any

PATHS = {"ctc", "verified", "llm"}


def check_segments(rows: list[dict[str, Any]]) -> None:
    """`words` holds one entry per word of `text`; timed words lie inside their segment and their
    start times never decrease; `decoded_by` names a path (a CTC text taken as is made no tokens)."""
    assert rows, "no segments to check"
    for r in rows:
        assert [w["word"] for w in r["words"]] == r["text"].split(), r
        assert r["decoded_by"] in PATHS, r
        assert r["decoded_by"] != "ctc" or r["output_tokens"] == 0, r
        last = r["start_s"]
        for w in r["words"]:
            if w["start_s"] is None:
                assert w["end_s"] is None and w["score"] is None, r
                continue
            assert r["start_s"] - 1e-9 <= w["start_s"] <= w["end_s"] <= r["end_s"] + 1e-9, (w, r["start_s"], r["end_s"])
            assert w["start_s"] >= last - 1e-9, r
            last = w["start_s"]
