"""Docs, jobs and set-up commands stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import load_config, markdown_reference
from pipeline.schema import PLAN_BLOCKS, PLAN_RECORDINGS, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_output_doc_shows_the_schemas():
    doc = (ROOT / "docs/output.md").read_text()
    for schema in (PLAN_RECORDINGS, PLAN_BLOCKS):
        assert markdown_table(schema) in doc


def test_configuration_doc_lists_every_key():
    assert markdown_reference() in (ROOT / "docs/configuration.md").read_text()


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_jobs_validate(job, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(job)
    assert cfg.input.uri


def test_readme_gives_two_commands_and_ci_runs_the_test_one():
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 2
    run_job, run_tests = blocks
    assert "granite-batch" in run_job and run_tests == "bash tests/run.sh"
    assert "exec bash tests/run.sh" in (ROOT / ".ci/run").read_text()
