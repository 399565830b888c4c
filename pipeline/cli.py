"""The `granite-batch` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

from . import cpu_torch
from .config import ConfigError, JobConfig, load_config
from .engines.model_source import ModelSourceError
from .engines.base import EngineStartError
from .kube.submit import SubmitError
from .plan import PlanSummary, run_plan
from .sink import OutputError
from .sources import SourceError


DOCTOR_HINT = ("granite-batch: `granite-batch doctor` checks what a run needs on this machine "
               "(torch and vLLM builds, codecs, Ray; with --config, the model and output) and says how to fix it")


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", dest="input.uri", metavar="URI", help="local folder/file or s3://bucket/prefix")
    p.add_argument("--config", metavar="FILE", help="job file (the format of jobs/*.yaml)")
    p.add_argument("--endpoint-url", dest="input.endpoint_url", metavar="URL", help="S3-compatible endpoint (MinIO, Ceph)")
    p.add_argument("--channels", dest="channels.policy", choices=["split", "mix"], help="channel policy")


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="model.id", metavar="ID|DIR|S3", help="hub id, local folder or s3:// mirror")
    p.add_argument("--engine", dest="engine.kind", choices=["vllm", "transformers"], help="inference engine")
    p.add_argument("--keywords", dest="prompt.keywords", type=lambda s: [w for w in s.split(",") if w.strip()],
                   metavar="A,B,C", help="job-level keywords for biasing")
    p.add_argument("--task", dest="prompt.task", choices=["transcribe", "translate"], help="transcribe or translate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="granite-batch", description="Batch transcription with Granite 4.0 Speech.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="list, decode and cut the input; show what a run would do and cost")
    _job_args(plan)
    plan.add_argument("--output", metavar="DIR", help="write DIR/recordings.parquet and DIR/blocks.parquet")
    plan.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode processes (default: all cores)")
    run = sub.add_parser("run", help="transcribe everything new under --input into Parquet at --output (Ray)")
    _job_args(run)
    _engine_args(run)
    run.add_argument("--output", dest="output.uri", metavar="URI", help="local folder or s3://bucket/prefix for the results")
    run.add_argument("--address", dest="run.address", metavar="ADDR", help="join a Ray cluster (ray://head:10001, auto)")
    run.add_argument("--retry-failed", dest="run.retry_failed", action="store_const", const=True,
                     help="also redo recordings that failed in earlier runs")
    demo = sub.add_parser("demo", help="offline end-to-end run: test model + bundled audio -> Parquet, queried with DuckDB")
    demo.add_argument("--output", type=Path, default=Path("granite-batch-demo"), help="output folder (default: %(default)s)")
    sb = sub.add_parser("submit", help="create the job on Kubernetes (KubeRay RayJob, RayCronJob or CronJob) from a job file")
    sb.add_argument("job", nargs="?", type=Path, metavar="JOB.yaml", help="job file (jobs/*.yaml)")
    sb.add_argument("--namespace", "-n", default="default")
    sb.add_argument("--name", help="release name (default: granite-batch-<job file name>)")
    sb.add_argument("--values", "-f", type=Path, action="append", default=[], metavar="FILE",
                    help="chart values for the cluster: images, worker groups, credentials (repeatable)")
    sb.add_argument("--chart", type=Path, help="the Helm chart (default: helm/granite-batch of this checkout)")
    sb.add_argument("--dry-run", action="store_true", help="print the manifests as YAML; create nothing")
    sb.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)  # the schedule launcher, in-cluster
    st = sub.add_parser("status", help="state of a submitted job and its runs")
    st.add_argument("name", help="the release name that submit printed")
    st.add_argument("--namespace", "-n", default="default")
    tr = sub.add_parser("transcribe", help="transcribe local files, one JSON line per block (an engine check)")
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--config", metavar="FILE", help="job file (the format of jobs/*.yaml)")
    tr.add_argument("--channels", dest="channels.policy", choices=["split", "mix"], help="channel policy")
    _engine_args(tr)
    mk = sub.add_parser("make-test-model", help="build an offline random-weight Granite Speech model folder")
    mk.add_argument("dir", type=Path)
    mk.add_argument("--full-size", action="store_true", help="the real-size architecture (4.3 GiB, bf16) for speed checks")
    mk.add_argument("--seed", type=int, default=0)
    dr = sub.add_parser("doctor", help="check what a run on this machine needs (builds, codecs, Ray, model, output)")
    dr.add_argument("--config", metavar="FILE", help="job file: also check its model and output")
    dr.add_argument("--model", dest="model.id", metavar="ID|DIR|S3", help="also check this model source")
    dr.add_argument("--output", dest="output.uri", metavar="URI", help="also check that this output is writable")
    dr.add_argument("--endpoint-url", dest="input.endpoint_url", metavar="URL", help="S3-compatible endpoint")
    mm = sub.add_parser("mirror-model", help="upload a model folder as a verified s3:// mirror (for air-gapped sites)")
    mm.add_argument("dir", type=Path)
    mm.add_argument("uri", metavar="s3://BUCKET/PREFIX")
    mm.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint")
    args = vars(parser.parse_args(argv))
    cpu_torch.install()  # where the start-up hook (.pth) is missing, at least this process
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args["command"] == "make-test-model":
            from .testmodel import build_test_model

            print(build_test_model(args["dir"], full_size=args["full_size"], seed=args["seed"]))
            return 0
        if args["command"] == "mirror-model":
            from .engines.model_source import push_mirror

            n = push_mirror(args["dir"], args["uri"], args["endpoint_url"])
            print(f"mirrored {n} files and the manifest to {args['uri']}")
            return 0
        if args["command"] == "doctor":
            return _doctor(args)
        if args["command"] == "demo":
            from .demo import run_demo

            return run_demo(args["output"])
        if args["command"] in ("submit", "status"):
            return _kube(args)
        overrides = {k: v for k, v in args.items() if "." in k}
        if args["command"] == "transcribe":
            overrides.setdefault("input.uri", args["files"][0])
        cfg = load_config(args.get("config"), overrides)
        if args["command"] == "plan":
            return _plan(cfg, args["output"], args["workers"])
        if args["command"] == "run":
            return _run(cfg)
        return _transcribe(cfg, args["files"])
    except (ConfigError, SourceError, ModelSourceError) as err:
        print(f"granite-batch: {err}", file=sys.stderr)
        return 2
    except SubmitError as err:
        print(f"granite-batch: {err}", file=sys.stderr)
        return 2
    except OutputError as err:
        print(f"granite-batch: run failed: {err}", file=sys.stderr)
        return 3
    except EngineStartError as err:
        print(f"granite-batch: run failed: {err}\n{DOCTOR_HINT}", file=sys.stderr)
        return 3
    except Exception:  # a bug, or Ray lost: exit 4, never 1 ("finished, some recordings failed")
        traceback.print_exc()
        print("granite-batch: internal error (traceback above); a re-run resumes where this one stopped", file=sys.stderr)
        print(DOCTOR_HINT, file=sys.stderr)
        return 4


def _doctor(args: dict) -> int:
    from .doctor import diagnose, render

    overrides = {k: v for k, v in args.items() if "." in k}
    given = args["config"] or any(v is not None for v in overrides.values())
    if not args["config"]:
        overrides["input.uri"] = "."  # required by the config model; doctor does not read the input
    found = diagnose(load_config(args["config"], overrides) if given else None)
    print(render(found))
    return 1 if any(f.ok is False for f in found) else 0


def _kube(args: dict) -> int:
    from .kube import submit as k

    if args["command"] == "status":
        head, runs = k.status(args["name"], args["namespace"], k.api_client())
        print(k.render_status(head, runs))
        return 1 if runs and runs[-1].job_status == "FAILED" else 0
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


def _run(cfg: JobConfig) -> int:
    """Exit 0: every recording ok or skipped; 1: some failed (each has a row and a reason)."""
    from .job import run_job
    from .ray_run import RayBackend

    if not cfg.output.uri:
        raise ConfigError("run needs an output: `--output` or `output.uri` in the job file")
    report = run_job(cfg, RayBackend)
    print(f"manifest: {report.manifest_uri}")
    return report.exit_code


def _transcribe(cfg: JobConfig, files: list[str]) -> int:
    from .engines import make_engine
    from .engines.model_source import resolve_model
    from .engines.prompts import job_keywords
    from .transcribe_local import transcribe_files

    words = job_keywords(cfg)  # a bad keywords file fails now, not after minutes of model loading
    engine = make_engine(cfg.engine.kind, resolve_model(cfg.model, cfg.input.endpoint_url), cfg)
    failures = transcribe_files(files, cfg, engine, words, sys.stdout)
    return 1 if failures else 0


def _plan(cfg: JobConfig, output: str | None, workers: int) -> int:
    if output and output.startswith("s3://"):
        raise ConfigError("plan --output takes a local folder")
    done = Counter[str]()

    def progress(o: object) -> None:
        done["n"] += 1
        if sys.stderr.isatty():
            print(f"\r  {done['n']} recordings cut", end="", file=sys.stderr, flush=True)

    summary = run_plan(cfg, Path(output) if output else None, workers, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(render_summary(cfg, summary))
    if output:
        print(f"  wrote {output}/recordings.parquet and {output}/blocks.parquet")
    return 0


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.3f} h"


def render_summary(cfg: JobConfig, s: PlanSummary) -> str:
    ls = s.listing
    gpu_h = s.speech_s / cfg.engine.expected_rtfx / 3600
    cost = f", about {gpu_h * cfg.engine.gpu_hour_price:.2f} at {cfg.engine.gpu_hour_price:g}/GPU-h" if cfg.engine.gpu_hour_price else ""
    by_label = ", ".join(f"{k} {_h(v)}" for k, v in sorted(s.speech_s_by_label.items())) or "none"
    hard = f" ({100 * s.hard_cuts / s.blocks:.1f}% of blocks)" if s.blocks else ""
    lines = [
        f"plan: {cfg.input.uri}",
        f"  recordings  {s.recordings} ({s.recordings - s.failed} ok, {s.failed} failed)",
        f"  excluded    {ls.excluded_by_glob} by glob, {ls.excluded_by_modified_since} by modified-since, "
        f"{ls.folder_markers} folder markers",
        f"  audio       {_h(s.audio_s)}  formats: {', '.join(f'{k} {v}' for k, v in s.formats.most_common()) or 'none'}",
        f"  speech      {_h(s.speech_s)} to the model in {s.blocks} blocks of <= {cfg.blocks.max_s:g} s  ({by_label})",
        f"  dropped     {_h(s.dropped_s)} without speech; {s.hard_cuts} cuts inside speech where no pause was found{hard}",
        f"  estimate    {gpu_h:.4f} GPU-hours at RTFx {cfg.engine.expected_rtfx:g}{cost}",
        f"  unreadable  {s.failed}",
    ]
    lines += [f"    {uri}: {reason}" for uri, reason in s.failures[:50]]
    if len(s.failures) > 50:
        lines.append(f"    ... and {len(s.failures) - 50} more (see recordings.parquet)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
