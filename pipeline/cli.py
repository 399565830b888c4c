"""The `granite-batch` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cpu_torch
from .commands.plan import run_plan
from .config import JobConfig, load_config
from .errors import ERRORS, INTERNAL_ERROR, ConfigError, EngineStartError, exit_on_sigterm

DOCTOR_HINT = (
    "granite-batch: `granite-batch doctor` checks what a run needs on this machine "
    "(torch and vLLM builds, codecs, Ray; with --config, the model and output) and says how to fix it"
)


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", dest="input.uri", metavar="URI", help="local folder/file or s3://bucket/prefix")
    p.add_argument("--config", metavar="FILE", help="job file (the format of jobs/*.yaml)")
    p.add_argument(
        "--endpoint-url", dest="input.endpoint_url", metavar="URL", help="S3-compatible endpoint (MinIO, Ceph)"
    )
    p.add_argument("--channels", dest="channels.policy", choices=["split", "mix"], help="channel policy")


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="model.id", metavar="ID|DIR|S3", help="hub id, local folder or s3:// mirror")
    p.add_argument("--engine", dest="engine.kind", choices=["vllm", "transformers"], help="inference engine")
    p.add_argument(
        "--keywords",
        dest="prompt.keywords",
        type=lambda s: [w for w in s.split(",") if w.strip()],
        metavar="A,B,C",
        help="job-level keywords for biasing",
    )
    p.add_argument("--task", dest="prompt.task", choices=["transcribe", "translate"], help="transcribe or translate")


# -- the subcommands: arguments, then a handler taking the parsed arguments ----------------------------
def _plan_args(p: argparse.ArgumentParser) -> None:
    _job_args(p)
    p.add_argument("--output", metavar="DIR", help="write DIR/recordings.parquet and DIR/blocks.parquet")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode processes (default: all cores)")


def _run_args(p: argparse.ArgumentParser) -> None:
    _job_args(p)
    _engine_args(p)
    p.add_argument(
        "--output", dest="output.uri", metavar="URI", help="local folder or s3://bucket/prefix for the results"
    )
    p.add_argument("--address", dest="run.address", metavar="ADDR", help="join a Ray cluster (ray://head:10001, auto)")
    p.add_argument(
        "--retry-failed",
        dest="run.retry_failed",
        action="store_const",
        const=True,
        help="also redo recordings that failed in earlier runs",
    )


def _scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="job file whose `compliance:` section says what to find")
    p.add_argument("--output", dest="output.uri", metavar="URI", help="the output an earlier run wrote")


def _unlock_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", dest="output.uri", metavar="URI", required=True, help="the output whose lock to clear")
    p.add_argument("--config", metavar="FILE", help="job file (for the output's endpoint and region)")
    p.add_argument("--endpoint-url", dest="output.endpoint_url", metavar="URL", help="S3-compatible endpoint")


def _optimize_args(p: argparse.ArgumentParser) -> None:
    _unlock_args(p)
    p.add_argument(
        "--target-mb", dest="output.compact_target_mb", type=float, metavar="MB", help="merged files' size (128)"
    )
    p.add_argument(
        "--retain-hours", dest="output.vacuum_retain_hours", type=float, metavar="H", help="Delta: vacuum (168)"
    )


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output", type=Path, default=Path("granite-batch-demo"), help="output folder (default: %(default)s)"
    )


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", type=Path, metavar="JOB.yaml", help="job file (jobs/*.yaml)")
    p.add_argument("--namespace", "-n", default="default")
    p.add_argument("--name", help="release name (default: granite-batch-<job file name>)")
    p.add_argument(
        "--values",
        "-f",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="chart values for the cluster: images, worker groups, credentials (repeatable)",
    )
    p.add_argument("--chart", type=Path, help="the Helm chart (default: helm/granite-batch of this checkout)")
    p.add_argument("--dry-run", action="store_true", help="print the manifests as YAML; create nothing")
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)  # the schedule launcher, in-cluster


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the release name that submit printed")
    p.add_argument("--namespace", "-n", default="default")


def _transcribe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--config", metavar="FILE", help="job file (the format of jobs/*.yaml)")
    p.add_argument("--channels", dest="channels.policy", choices=["split", "mix"], help="channel policy")
    _engine_args(p)


def _make_test_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--full-size", action="store_true", help="the real-size architecture (4.3 GiB, bf16) for speed checks"
    )
    p.add_argument("--seed", type=int, default=0)


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="job file: also check its model and output")
    p.add_argument("--model", dest="model.id", metavar="ID|DIR|S3", help="also check this model source")
    p.add_argument("--output", dest="output.uri", metavar="URI", help="also check that this output is writable")
    p.add_argument("--endpoint-url", dest="input.endpoint_url", metavar="URL", help="S3-compatible endpoint")


def _mirror_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path)
    p.add_argument("uri", metavar="s3://BUCKET/PREFIX")
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint")


def _config(args: dict[str, Any], **defaults: Any) -> JobConfig:
    """The job config: the job file, then the command line's dotted options (`input.uri`, ...)."""
    overrides = {k: v for k, v in args.items() if "." in k}
    for key, value in defaults.items():
        overrides.setdefault(key, value)
    return load_config(args.get("config"), overrides)


def _plan(args: dict[str, Any]) -> int:
    from .commands.plan import render_summary

    cfg, output = _config(args), args["output"]
    if output and output.startswith("s3://"):
        raise ConfigError("plan --output takes a local folder")
    done = Counter[str]()

    def progress(o: object) -> None:
        done["n"] += 1
        if sys.stderr.isatty():
            print(f"\r  {done['n']} recordings cut", end="", file=sys.stderr, flush=True)

    summary = run_plan(cfg, Path(output) if output else None, args["workers"], progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(render_summary(cfg, summary))
    if output:
        print(f"  wrote {output}/recordings.parquet and {output}/blocks.parquet")
    return 0


def _run(args: dict[str, Any]) -> int:
    """Exit 0: every recording ok or skipped; 1: some failed (each has a row and a reason)."""
    from .ray_run import RayBackend
    from .run.driver import run_job

    exit_on_sigterm()
    report = run_job(_config(args), RayBackend)
    print(f"manifest: {report.manifest_uri}")
    return report.exit_code


def _scan(args: dict[str, Any]) -> int:
    from .compliance.rescan import run_scan, summary

    cfg = _config(args, **{"input.uri": "."})  # scan reads no input: a job file without `input:` needs none
    report = run_scan(cfg)
    print(summary(report, cfg.output.uri or ""))
    return 0


def _unlock(args: dict[str, Any]) -> int:
    from .lake import output_store

    cfg = _config(args, **{"input.uri": "."})
    uri = cfg.output.uri or ""
    held = output_store(cfg, uri).lock().clear()
    if held is None:
        print(f"{uri}: no lock")
        return 0
    age = time.time() - held.heartbeat
    print(
        f"warning: removed the lock of {held.describe()} on {uri} (last heartbeat {age:.0f} s ago). If that run "
        "is still alive, it stops at its next commit; a new run may start now.",
        file=sys.stderr,
    )
    return 0


def _optimize(args: dict[str, Any]) -> int:
    from .lake.optimize import run_optimize

    cfg = _config(args, **{"input.uri": "."})
    print(run_optimize(cfg).summary(cfg.output.uri or ""))
    return 0


def _demo(args: dict[str, Any]) -> int:
    from .commands.demo import run_demo

    return run_demo(args["output"])


def _submit(args: dict[str, Any]) -> int:
    from .kube import submit as k

    if args["manifest"]:
        print(f"created {k.submit_manifest(args['manifest'], None, k.api_client())}")
        return 0
    if args["job"] is None:
        raise ConfigError("submit needs a job file: granite-batch submit jobs/nightly-call-center.yaml")
    name = args["name"] or k.release_name(args["job"])
    docs = k.render(args["job"], name, args["namespace"], args["values"], args["chart"] or k.CHART)
    if args["dry_run"]:
        print(k.to_yaml(docs), end="")
        return 0
    for created in k.apply(docs, k.api_client()):
        print(f"created {created}")
    print(f"follow it: granite-batch status {name} --namespace {args['namespace']}")
    return 0


def _status(args: dict[str, Any]) -> int:
    from .kube import submit as k

    head, runs = k.status(args["name"], args["namespace"], k.api_client())
    print(k.render_status(head, runs))
    return 1 if runs and runs[-1].job_status == "FAILED" else 0


def _transcribe(args: dict[str, Any]) -> int:
    from .commands.transcribe import transcribe_files
    from .engines.factory import make_engine
    from .engines.model_source import resolve_model
    from .prompt import job_keywords

    cfg = _config(args, **{"input.uri": args["files"][0]})
    words = job_keywords(cfg)  # a bad keywords file fails now, not after minutes of model loading
    engine = make_engine(cfg.engine.kind, resolve_model(cfg.model, cfg.input.endpoint_url), cfg)
    failures = transcribe_files(args["files"], cfg, engine, words, sys.stdout)
    return 1 if failures else 0


def _make_test_model(args: dict[str, Any]) -> int:
    from .testing.testmodel import build_test_model

    print(build_test_model(args["dir"], full_size=args["full_size"], seed=args["seed"]))
    return 0


def _mirror_model(args: dict[str, Any]) -> int:
    from .engines.model_source import push_mirror

    n = push_mirror(args["dir"], args["uri"], args["endpoint_url"])
    print(f"mirrored {n} files and the manifest to {args['uri']}")
    return 0


def _doctor(args: dict[str, Any]) -> int:
    from .commands.doctor import diagnose, render

    given = args["config"] or any(v is not None for k, v in args.items() if "." in k)
    # input.uri is required by the config model; doctor does not read the input
    found = diagnose((_config(args) if args["config"] else _config(args, **{"input.uri": "."})) if given else None)
    print(render(found))
    return 1 if any(f.ok is False for f in found) else 0


# name -> (help, arguments, handler), in the order `--help` lists them
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[dict[str, Any]], int]]] = {
    "plan": ("list, decode and cut the input; show what a run would do and cost", _plan_args, _plan),
    "run": ("transcribe everything new under --input into Parquet at --output (Ray)", _run_args, _run),
    "scan": (
        "search an earlier run's segments again for compliance terms and PII (no transcription)",
        _scan_args,
        _scan,
    ),
    "unlock": ("clear an output's lock by hand (a run that died elsewhere); with a warning", _unlock_args, _unlock),
    "optimize": (
        "merge an output's small files; Delta: also vacuum (while no run holds it)",
        _optimize_args,
        _optimize,
    ),
    "demo": ("offline end-to-end run: test model + bundled audio -> Parquet, queried with DuckDB", _demo_args, _demo),
    "submit": (
        "create the job on Kubernetes (KubeRay RayJob, RayCronJob or CronJob) from a job file",
        _submit_args,
        _submit,
    ),
    "status": ("state of a submitted job and its runs", _status_args, _status),
    "transcribe": ("transcribe local files, one JSON line per block (an engine check)", _transcribe_args, _transcribe),
    "make-test-model": (
        "build an offline random-weight Granite Speech model folder",
        _make_test_model_args,
        _make_test_model,
    ),
    "doctor": ("check what a run on this machine needs (builds, codecs, Ray, model, output)", _doctor_args, _doctor),
    "mirror-model": (
        "upload a model folder as a verified s3:// mirror (for air-gapped sites)",
        _mirror_model_args,
        _mirror_model,
    ),
}

DOCTOR_AFTER = (EngineStartError,)  # start-up failures that `doctor` can explain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="granite-batch", description="Batch transcription with Granite 4.0 Speech.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=text))
    args = vars(parser.parse_args(argv))
    cpu_torch.install()  # where the start-up hook (.pth) is missing, at least this process
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args["command"]][2](args)
    except Exception as err:
        for types, code, prefix in ERRORS:
            if isinstance(err, types):
                print(f"granite-batch: {prefix}{err}", file=sys.stderr)
                if isinstance(err, DOCTOR_AFTER):
                    print(DOCTOR_HINT, file=sys.stderr)
                return code
        traceback.print_exc()
        print(
            "granite-batch: internal error (traceback above); a re-run resumes where this one stopped", file=sys.stderr
        )
        print(DOCTOR_HINT, file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
