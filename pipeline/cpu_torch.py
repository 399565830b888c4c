"""A CPU torch next to PyPI's CUDA builds of torchvision, torchaudio and torchcodec.

vLLM's CPU build pins torch 2.13.0+cpu but also requires torchvision, torchaudio and torchcodec,
and on x86_64 PyPI has those only as CUDA builds (`+cu130`, ...). Their compiled parts need
`libc10_cuda.so`, which a CPU torch lacks, so importing them raises and takes transformers'
model imports down with them ("operator torchvision::nms does not exist").

`install()` handles that before anything imports them, reading only version files (no torch
import, about a millisecond):
- torchvision and torchcodec are blocked (`None` in `sys.modules`): to transformers and vLLM
  they are simply not installed, as after `pip uninstall`;
- torchaudio keeps its pure-Python parts (Granite's feature extractor needs its
  `MelSpectrogram`): its compiled `_extension` is replaced by an empty stand-in.
Where the builds match (GPU images, or a CPU torchvision), nothing changes.

It must hold in every process that imports them: ours, Ray's workers and the processes vLLM
spawns (`python -m vllm.model_executor.models.registry`, its engine core). So the package
installs `granite_batch_cpu_torch.pth` into site-packages (setup.py), which runs `install()` at
every interpreter start-up of that environment; the CLI calls it too. The .pth loads this file as
`_granite_batch_cpu_torch`, not as `pipeline.cpu_torch`: importing `pipeline` at start-up would
pin it to the installed checkout ahead of the working directory's. Hence no imports from
`pipeline` here. `GRANITE_BATCH_CPU_TORCH=off` turns it off.
"""

from __future__ import annotations

import os
import re
import sys
import types
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path

BLOCKED = ("torchvision", "torchcodec")  # nothing we use needs them; transformers and vLLM cope without
STUBBED = ("torchaudio",)  # needed for its pure-Python transforms
COMPANIONS = BLOCKED + STUBBED
PTH_NAME = "granite_batch_cpu_torch.pth"
_VERSION = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)
_CUDA = re.compile(r"""^cuda\s*(?::[^=]*)?=\s*(.+)$""", re.M)


@dataclass(frozen=True)
class Build:
    name: str
    version: str  # "" when its version file could not be read
    path: Path

    @property
    def local(self) -> str:  # "cpu", "cu130", "rocm6.4", or ""
        return self.version.partition("+")[2]

    @property
    def gpu_build(self) -> bool:
        return self.local.startswith(("cu", "rocm"))


def find_build(name: str, path: list[str] | None = None) -> Build | None:
    """The installed package `name` and its version, without importing it (`path`: sys.path)."""
    spec = PathFinder.find_spec(name, path)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    try:
        match = _VERSION.search((root / "version.py").read_text())
    except OSError:
        match = None
    return Build(name, match.group(1) if match else "", root)


def torch_is_cpu_only(torch: Build) -> bool:
    """A CPU build of torch: no CUDA and no ROCm runtime to load a GPU build's extensions with."""
    if torch.local:
        return torch.local == "cpu"
    try:  # no local tag (a custom build): its version file says whether CUDA was compiled in
        text = (torch.path / "version.py").read_text()
    except OSError:
        return False
    cuda = _CUDA.search(text)
    return cuda is not None and cuda.group(1).strip() == "None" and not (torch.path / "lib" / "libc10_hip.so").exists()


def mismatched(path: list[str] | None = None) -> list[Build]:
    """Companions that are GPU builds next to a CPU-only torch (they cannot load)."""
    torch = find_build("torch", path)
    if torch is None or not torch_is_cpu_only(torch):
        return []
    found = (find_build(n, path) for n in COMPANIONS)
    return [b for b in found if b is not None and b.gpu_build]


def _torchaudio_stand_in() -> types.ModuleType:
    stub = types.ModuleType("torchaudio._extension")
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False  # type: ignore[attr-defined]
    stub._IS_ALIGN_AVAILABLE = False  # type: ignore[attr-defined]
    stub.fail_if_no_align = lambda func: func  # type: ignore[attr-defined]
    stub._check_cuda_version = lambda: None  # type: ignore[attr-defined]
    stub._GRANITE_BATCH_STAND_IN = True  # type: ignore[attr-defined]
    return stub


def install() -> list[str]:
    """Apply the rules above to this process; returns what it changed ("blocked torchvision", ...).
    Idempotent. Does nothing once a companion is imported, or with GRANITE_BATCH_CPU_TORCH=off."""
    if os.environ.get("GRANITE_BATCH_CPU_TORCH", "").lower() in ("off", "0", "false"):
        return []
    done = []
    for build in mismatched():
        if build.name in BLOCKED:
            if build.name not in sys.modules:
                sys.modules[build.name] = None  # type: ignore[assignment]  # the documented import block
                done.append(f"blocked {build.name} {build.version}")
        elif "torchaudio" not in sys.modules and "torchaudio._extension" not in sys.modules:
            sys.modules["torchaudio._extension"] = _torchaudio_stand_in()
            done.append(f"stand-in for {build.name} {build.version}'s compiled extension")
    return done


def pth_file() -> Path | None:
    """Our start-up hook in this interpreter's site-packages, if installed."""
    for entry in sys.path:
        candidate = Path(entry or ".") / PTH_NAME
        if candidate.is_file():
            return candidate
    return None
