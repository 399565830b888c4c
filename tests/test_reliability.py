"""Nothing lost: the reliability scenario (tests/reliability.py) on Ceph RGW, the real-S3 tier.

One scenario, run once per session: 33 kinds of bad and odd input beside good calls; a clean run;
then runs killed, refused by an unreachable output, and hit by worker kills and S3 faults, into
one output that must end up equal to the clean run's. bench/reliability.py writes the same
report to docs/reliability.md.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.bad_inputs import KINDS
from tests.reliability import GOOD, run_scenario

pytestmark = pytest.mark.ceph


@pytest.fixture(scope="module")
def report(ceph, tiny_model):
    work = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        yield run_scenario(ceph, tiny_model, work / "w")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_every_recording_is_accounted_for_exactly_once(report):
    # The empty folder marker is no recording; the overwritten object is two (its old and new version).
    assert report.inputs == len(KINDS) - 1 + len(GOOD) + 1
    assert report.accounted == report.inputs, report.problems
    assert report.duplicate_rows == 0


def test_each_kind_gets_its_status_and_reason_and_every_good_file_completes(report):
    assert len(KINDS) >= 25
    assert report.problems == []


def test_the_faulted_output_equals_the_clean_run(report):
    assert report.diff_vs_clean == 0, report.problems


def test_every_fault_kind_was_injected(report):
    expected = {
        "driver killed",
        "decode worker killed mid-task",
        "engine worker killed mid-call",
        "S3 503 SlowDown",
        "S3 connection reset",
        "S3 body cut mid-transfer",
        "output store unreachable (requests refused)",
        "object deleted or overwritten after listing",
    }
    assert {k for k, n in report.faults.items() if n > 0} == expected, report.faults


def test_no_credential_leaks_nothing_escapes_the_output_no_remote_code(report):
    assert report.leaks == []
    assert report.escaped == []
    # (the remote-code sentinel is one of report.problems, checked above)
