"""pipeline/metrics.py's pure core: failure reasons become a fixed set of labels, never free text."""

from __future__ import annotations

from pipeline.ops.metrics import REASON_CLASSES, by_class, reason_class
from pipeline.ops.progress import reason_of


def test_failure_reasons_become_a_fixed_set_without_object_names():
    errors = [
        "truncated: 12 of 40 s decoded",
        "cannot read john-smith-555-0142.wav: permission denied",
        "reading calls/2026/maria-lopez.json failed 4 times",
        "manifest row 17: no uri",
        "engine failed on 3 of 12 blocks",
        "something no one has seen before from +1 202 555 0142",
    ]
    classes = by_class({reason_of(e): 1 for e in errors})
    assert classes == {"truncated": 1, "unreadable": 2, "manifest row": 1, "engine": 1, "other": 1}
    assert set(classes) <= {c for _, c in REASON_CLASSES} | {"other"}
    assert reason_class("internal error") == "internal error"
