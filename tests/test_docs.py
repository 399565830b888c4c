"""Docs, jobs and set-up commands stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config, markdown_reference
from pipeline.errors import KINDS
from pipeline.records.tables import SCHEMAS, markdown_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_jobs_validate(job, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(job)
    assert cfg.input.uri


def test_readme_gives_two_commands_and_ci_runs_them_from_a_clean_start():
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 2
    run_job, run_tests = blocks
    assert run_job.startswith("python3 -m venv .venv && ") and run_job.endswith("granite-batch demo")
    assert run_tests == "bash tests/run.sh"
    ci = (ROOT / ".ci/run").read_text()
    assert "## Set up" in ci  # it reads the commands from the README, not a copy of them
    for var in ("HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "HF_HOME", "RAY_TMPDIR", "TORCHINDUCTOR_CACHE_DIR"):
        assert f'{var}="$scratch' in ci, var
    assert "rm -rf .venv" in ci


def test_images_get_every_file_the_install_needs():
    """setup.py places the start-up hook; an image without either fails to build or to run."""
    needed = ("pyproject.toml", "setup.py", "granite_batch_cpu_torch.pth")
    ignore = (ROOT / ".dockerignore").read_text().split()
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        copies = " ".join(line for line in dockerfile.read_text().splitlines() if line.startswith("COPY"))
        for name in needed:
            assert f" {name} " in copies, f"{dockerfile.parent.name} image does not copy {name}"
            assert f"!{name}" in ignore, f".dockerignore keeps {name} out"


@pytest.mark.parametrize("check", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_code_is_ruff_clean(check):
    r = subprocess.run([sys.executable, "-m", "ruff", *check, "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def _generated() -> dict[tuple[str, str], str]:
    """(doc, marker) -> the text that belongs between `<!-- generated: marker -->` and `<!-- end -->`."""
    tables = {("docs/output.md", name): markdown_table(schema) for name, schema in SCHEMAS.items()}
    kinds = "\n".join(["| kind | when |", "| --- | --- |", *(f"| `{k}` | {doc} |" for k, doc in KINDS.items())])
    return tables | {
        ("docs/configuration.md", "config"): markdown_reference(),
        ("docs/operations.md", "failure-kinds"): kinds,
    }


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
