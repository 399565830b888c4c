"""The metrics' failure labels are the failure kinds (pipeline/errors.py), a fixed set, never free
text: a detail that names an object, or a reworded message, changes no label."""

from __future__ import annotations

from pipeline.errors import KINDS, Failure
from pipeline.ops.metrics import families
from pipeline.ops.progress import Progress
from pipeline.records.audio import Recording
from pipeline.records.results import RecordingStatus


def test_failures_are_labelled_by_kind_without_object_names():
    failures = [
        Failure("truncated", "truncated: 12 of 40 s decoded"),
        Failure("truncated", "corrupt or truncated at 12.34 s: Invalid data"),
        Failure("unreadable", "cannot read john-smith-555-0142.wav: permission denied"),
        Failure("unreadable", "reading calls/2026/maria-lopez.json failed 4 times"),
        Failure("bad_manifest_row", "manifest row 17: no uri"),
        Failure("engine_failed", "engine failed on 3 of 12 blocks: ActorDiedError"),
    ]
    p = Progress()
    for n, f in enumerate(failures):
        p.add(RecordingStatus.of(Recording(f"s3://calls/{n}.wav", 1, "e"), "r", "failed", error=f), 1)
    figures = p.as_dict()
    assert figures["failures_by_reason"] == {"truncated": 2, "unreadable": 2, "bad_manifest_row": 1, "engine_failed": 1}
    (metric,) = [m for m in families("r", 0.0, figures, {}, None) if m.name == "granite_batch_failures"]
    labels = {s.labels["reason"]: s.value for s in metric.samples}
    assert labels == {"truncated": 2, "unreadable": 2, "bad_manifest_row": 1, "engine_failed": 1}
    assert set(labels) <= set(KINDS)
    assert "  failures    truncated 2, unreadable 2, bad_manifest_row 1, engine_failed 1" in p.summary("r", "out")
