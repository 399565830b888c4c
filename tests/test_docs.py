"""Docs, jobs and set-up commands stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import load_config, markdown_reference
from pipeline.schema import SCHEMAS, markdown_table

ROOT = Path(__file__).resolve().parents[1]


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


def _generated() -> dict[tuple[str, str], str]:
    """(doc, marker) -> the text that belongs between `<!-- generated: marker -->` and `<!-- end -->`."""
    tables = {("docs/output.md", name): markdown_table(schema) for name, schema in SCHEMAS.items()}
    return tables | {("docs/configuration.md", "config"): markdown_reference()}


def _section(text: str, marker: str) -> tuple[int, int]:
    start = text.index(f"<!-- generated: {marker} -->\n") + len(f"<!-- generated: {marker} -->\n")
    return start, text.index("\n<!-- end -->", start)


def test_generated_doc_sections_are_current():
    for (doc, marker), expected in _generated().items():
        text = (ROOT / doc).read_text()
        a, b = _section(text, marker)
        assert text[a:b] == expected, f"{doc} is stale: run `python tests/test_docs.py`"


def _regenerate() -> None:
    """`python tests/test_docs.py`: rewrite the generated sections of docs/ after a schema or config change."""
    for (doc, marker), expected in _generated().items():
        text = (ROOT / doc).read_text()
        a, b = _section(text, marker)
        (ROOT / doc).write_text(text[:a] + expected + text[b:])


if __name__ == "__main__":
    _regenerate()
