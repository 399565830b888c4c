"""The one configuration model, shared by the CLI, `jobs/*.yaml` and the Helm chart's ConfigMap.

Precedence, highest first: CLI flags > environment (`GRANITE_BATCH_` prefix, `__` between
nested keys, e.g. `GRANITE_BATCH_BLOCKS__MAX_S=3.5`) > the YAML job file > defaults.
Unknown keys are rejected everywhere; `ConfigError` says which key is wrong and how to set it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from .errors import ConfigError

ENV_PREFIX = "GRANITE_BATCH_"
_DATE = re.compile(r"\{date(?::([^}]*))?\}")
DEFAULT_MODEL = "ibm-granite/granite-4.0-1b-speech"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(Section):
    """Where the recordings are: a local folder or `s3://bucket/prefix`."""

    uri: str = Field(description="Local folder, file, or s3://bucket/prefix to read recordings from.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph RGW); None means AWS.")
    region: str | None = Field(None, description="S3 region; None uses the AWS default chain.")
    include: list[str] = Field(["*"], description="Glob(s) on the key below the prefix; a key must match one.")
    exclude: list[str] = Field(
        ["*.keywords.txt", "*.json", "*.md5"],
        description="Glob(s) on the key below the prefix; a matching key is out of scope (and counted).",
    )
    max_attempts: int = Field(8, ge=1, description="botocore retry attempts (standard mode) per S3 request.")
    read_chunk_bytes: int = Field(4 << 20, ge=64 << 10, description="Size of each ranged GET when streaming an object.")
    date_lag_days: int = Field(
        1,
        ge=0,
        description="`{date}` or `{date:%Y/%m/%d}` in `uri` is the run's UTC date minus this many days "
        "(a nightly job reads yesterday's folder).",
    )

    def resolved(self, now: datetime) -> InputConfig:
        """The URI with its date placeholders filled in for a run started at `now`."""
        if "{date" not in self.uri:
            return self
        day = (now - timedelta(days=self.date_lag_days)).date()
        uri = _DATE.sub(lambda m: day.strftime(m.group(1) or "%Y-%m-%d"), self.uri)
        return self.model_copy(update={"uri": uri})


class OutputConfig(Section):
    """Where `granite-batch run` writes `segments/`, `recordings/` and `runs/` (see docs/output.md)."""

    uri: str | None = Field(None, description="Where results go (local folder or s3://bucket/prefix).")
    format: Literal["parquet", "delta"] = Field(
        "parquet",
        description="parquet: Parquet datasets with our own commit protocol (docs/output.md); delta: Delta Lake "
        "tables through delta-rs, for lake engines, time travel and `optimize` (docs/lake.md).",
    )
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint of the output; None: input.endpoint_url."
    )
    region: str | None = Field(None, description="S3 region of the output; None: input.region.")
    commit_every_s: float = Field(
        60.0, gt=0, description="Finished recordings are committed at least this often (one Parquet file per commit)."
    )
    commit_rows: int = Field(200_000, ge=1, description="...or as soon as this many segment rows are waiting.")
    compact_target_mb: float = Field(
        128.0, gt=0, description="`granite-batch optimize` merges smaller files into files of about this size."
    )
    vacuum_retain_hours: float = Field(
        168.0,
        ge=0,
        description="Delta: `optimize` deletes files no table version of this many hours needs (time travel "
        "reaches back this far).",
    )
    lock_stale_s: float = Field(
        60.0,
        gt=0,
        description="The run's lease on the output (`_lock.json`), renewed every quarter of it: a lock not renewed "
        "this long is a dead run's and is taken over; a dead run on the same machine is taken over at once.",
    )


class FiltersConfig(Section):
    """Which objects are in scope, and the limits a recording must respect.

    Out-of-scope objects (globs, modified_since) are counted, not listed. A recording over a limit
    is in scope and gets a `failed` row saying which limit: nothing is skipped silently.
    """

    modified_since: datetime | None = Field(None, description="Only objects modified at or after this instant.")
    max_size_bytes: int | None = Field(8 << 30, ge=0, description="Larger objects fail with a reason.")
    max_duration_s: float | None = Field(8 * 3600.0, gt=0, description="Longer recordings fail with a reason.")
    decode_timeout_s: float | None = Field(
        3600.0,
        gt=0,
        description="A recording still being fetched, decoded and cut after this long fails with a "
        "reason (time waiting for the engines does not count).",
    )


class ChannelsConfig(Section):
    policy: Literal["split", "mix"] = Field(
        "split", description="split: every channel is its own stream (call-center stereo); mix: downmix to mono."
    )
    labels: dict[int, str] = Field(
        {},
        description="Channel index -> label for multi-channel recordings, e.g. {0: agent, 1: customer}; "
        "unlabelled channels get `ch<i>`.",
    )
    mono_label: str = Field("mono", description="Label of single-channel recordings (and `mix` output is `mix`).")

    def label(self, channel: int, channels: int, own: tuple[str, ...] = ()) -> str:
        """`own`: the recording's labels (an input manifest's channel_labels), before `labels`."""
        if self.policy == "mix":
            return "mix"
        if channel < len(own) and own[channel]:
            return own[channel]
        if channels == 1:
            return self.mono_label
        return self.labels.get(channel, f"ch{channel}")


class BlocksConfig(Section):
    """How a channel is cut into blocks for the model (see docs/architecture.md#blocks)."""

    max_s: float = Field(4.0, gt=0.5, le=30.0, description="Longest block; Granite's encoder attends in 4 s blocks.")
    min_s: float = Field(1.0, ge=0.0, description="No cut inside speech earlier than this into a block.")
    search_s: float = Field(1.5, gt=0.0, description="Window before max_s searched for the quietest cut point.")
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Silero speech probability that starts speech.")
    vad_gate_dbfs: float | None = Field(
        -50.0, le=-30.0, description="Runs of 0.5 s quieter than this skip the VAD model (speed); null: never."
    )
    min_speech_s: float = Field(0.25, ge=0.0, description="Shorter speech bursts are treated as noise.")
    min_silence_s: float = Field(0.1, ge=0.0, description="A pause must last this long to end speech.")
    pad_s: float = Field(0.2, ge=0.0, description="Audio kept before and after detected speech.")
    merge_gap_s: float = Field(
        0.5, ge=0.0, description="Pauses up to this long stay inside one block (0.5 s: see docs/quality.md)."
    )

    @model_validator(mode="after")
    def _window_fits(self) -> BlocksConfig:
        if self.min_s + 0.1 > self.max_s:
            raise ValueError("blocks.min_s must be at least 0.1 s below blocks.max_s")
        return self


class ModelConfig(Section):
    id: str = Field(
        DEFAULT_MODEL, description="Hub id, local folder, or s3:// mirror (see `granite-batch mirror-model`)."
    )
    revision: str | None = Field(None, description="Hub revision (commit) to pin.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint of an s3:// mirror; None: input.endpoint_url."
    )
    cache_dir: str = Field(
        "~/.cache/granite-batch/models", description="Per-node folder for downloaded mirrors and patched configs."
    )


class PromptConfig(Section):
    """What the model is asked (see docs/engines.md#prompts)."""

    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="transcribe, or translate (the model's AST prompt)."
    )
    target_language: str = Field("English", description="Target language when task is translate.")
    keywords: list[str] = Field([], description="Job-level keywords (names, products, acronyms) to bias recognition.")
    keywords_file: str | None = Field(None, description="Local file with more keywords, one per line (# comments).")
    sidecar_keywords: bool = Field(True, description="Also read `<object>.keywords.txt` next to each recording.")
    max_keywords: int = Field(50, ge=0, description="Keywords beyond this many (after merging) are dropped.")
    language: str | None = Field(
        None,
        description="Spoken language (ISO 639-1, e.g. `en`) for the output's `language` column; "
        "null: detected per recording from its transcript.",
    )


class PoolConfig(Section):
    """One group of engine workers. A run's pools all pull blocks from one queue, each at its own
    pace; free slots of earlier pools are served first (see docs/architecture.md#engine-pools)."""

    name: str = Field(description="Pool name, written to each segment's `engine` column.")
    device: Literal["gpu", "cpu"] = Field(description="gpu: one engine per `gpus`; cpu: vLLM's CPU build.")
    replicas: int | Literal["auto"] = Field(
        "auto", description="Engine workers; auto: every GPU of the cluster (gpu), 1 (cpu). 0 disables the pool."
    )
    cpus: float = Field(1.0, ge=0, description="CPUs reserved per engine worker (its compute threads on cpu pools).")
    gpus: float = Field(1.0, ge=0, description="GPUs per engine worker (gpu pools; ignored on cpu pools).")
    resources: dict[str, float] = Field(
        {}, description="Extra Ray resources per worker, e.g. {vllm_cpu: 1} to keep CPU engines on CPU-image nodes."
    )
    memory_gib: float | None = Field(
        None, gt=0, description="Memory reserved from Ray per engine worker (keeps nodes from being overpacked)."
    )
    slots: int = Field(2, ge=1, description="Batches queued per worker (2: the next batch is ready when one ends).")
    batch_blocks: int | None = Field(None, ge=1, description="Blocks per engine call; null: engine.batch_blocks.")
    gather_s: float = Field(
        0.0,
        ge=0,
        description="When fewer than `slots` batches wait, wait this long for more before an engine pass "
        "(CPU passes have a large fixed cost: merging the first batches of a run saves whole passes).",
    )


class EngineConfig(Section):
    kind: Literal["vllm", "transformers"] = Field("vllm", description="Inference engine.")
    dtype: str = Field("auto", description="Weights dtype: auto (model's), bfloat16, float16 or float32.")
    batch_blocks: int = Field(64, ge=1, description="Blocks handed to the engine per call.")
    max_num_seqs: int = Field(256, ge=1, description="vLLM: sequences scheduled at once.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM on GPU: share of GPU memory it may use.")
    cpu_kvcache_gib: float = Field(2.0, gt=0, description="vLLM on CPU: KV cache size in GiB (taken from RAM).")
    enforce_eager: bool | None = Field(
        None, description="vLLM: skip compilation and graph capture; null: eager on CPU (starts fast), compiled on GPU."
    )
    tokens_per_s: float = Field(
        16.0, gt=0, description="Output cap per second of block audio (guard against runaways)."
    )
    margin_tokens: int = Field(16, ge=0, description="Added to the output cap.")
    pad_bucket_s: float | None = Field(
        1.0,
        gt=0,
        description="Zero-pad each block up to a multiple of this and batch equal lengths together, so "
        "results do not depend on batch composition; null: no padding (faster, batch-dependent).",
    )
    expected_rtfx: float = Field(
        280.0, gt=0, description="Audio seconds per GPU second, for plan's cost estimate (leaderboard A100 figure)."
    )
    gpu_hour_price: float = Field(0.0, ge=0, description="Price of one GPU-hour, for plan's cost estimate (0: hide).")
    force_tokens_per_s: float | None = Field(
        None,
        gt=0,
        description="Benchmarks on random weights only: every output is exactly this many tokens per second.",
    )
    pools: list[PoolConfig] = Field(
        [
            PoolConfig(name="gpu", device="gpu"),
            PoolConfig(name="cpu", device="cpu", gpus=0, batch_blocks=16, slots=4, gather_s=1.0),
        ],
        description="Engine worker pools of `granite-batch run`; all serve the same run.",
    )

    @field_validator("pools")
    @classmethod
    def _unique_pool_names(cls, v: list[PoolConfig]) -> list[PoolConfig]:
        names = [p.name for p in v]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"pool names must be unique and at least one pool given (got {names})")
        return v


class ScheduleConfig(Section):
    """When the job runs on Kubernetes (`granite-batch submit`, the Helm chart); `run` ignores it."""

    cron: str | None = Field(None, description="Cron schedule, e.g. `0 2 * * *`; null: one run, now.")
    time_zone: str = Field("Etc/UTC", description="IANA time zone of the cron schedule.")
    mode: Literal["raycronjob", "cronjob"] = Field(
        "raycronjob",
        description="raycronjob: KubeRay's RayCronJob (1.6+, feature gate); cronjob: a CronJob creates the RayJob.",
    )
    suspend: bool = Field(False, description="Keep the schedule but start no new runs.")
    command: Literal["run", "optimize"] = Field(
        "run",
        description="What the job runs: `granite-batch run` (transcribe), or `optimize` (compact and vacuum "
        "the output; no engine starts, so no worker is added).",
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5 and not v.startswith("@"):
            raise ValueError("a cron schedule has five fields (minute hour day-of-month month day-of-week)")
        return v


class RunConfig(Section):
    """How `granite-batch run` uses Ray (see docs/run.md)."""

    address: str | None = Field(
        None, description="Ray cluster to join (ray://host:10001 or auto); null: start Ray in-process."
    )
    object_store_gib: float = Field(
        1.0,
        gt=0,
        description="Embedded Ray: object store size (blocks in flight live here; Ray Data applies backpressure).",
    )
    num_cpus: int | None = Field(None, ge=1, description="Embedded Ray: CPUs to use; null: all cores.")
    window_recordings: int = Field(
        20_000, ge=1, description="Recordings listed and handed to Ray at a time (bounds driver memory on huge stores)."
    )
    retry_failed: bool = Field(
        False, description="Also redo recordings that failed in an earlier run (default: skipped)."
    )
    skipped_rows: bool = Field(
        False,
        description="Also write a `skipped` recordings row for every recording an earlier run settled "
        "(a row per recording per run; off: they are counted in the manifest and summary only).",
    )
    progress_every_s: float = Field(
        10.0, gt=0, description="Seconds between progress lines when stderr is not a terminal."
    )
    decode_cpus: float = Field(1.0, gt=0, description="CPUs per decode-and-block task.")
    decode_memory_gib: float | None = Field(
        2.0,
        gt=0,
        description="Memory per decode worker: reserved from Ray, and a recording that pushes the "
        "worker past it fails with a reason (streaming decode needs ~0.3 GiB; null: no limit).",
    )
    engine_start_timeout_s: float = Field(
        1800.0, gt=0, description="Wait this long for the first engine worker (node scale-up, model download and load)."
    )


class DecodingConfig(Section):
    """Granite's CTC head (docs/engines.md, "The CTC stage"): word times and IBM's self-speculative
    decoding. Defaults are the values of IBM's leaderboard run."""

    speculative: Literal["off", "ctc"] = Field(
        "ctc",
        description="ctc: take the CTC text when the head is sure, else verify it in one LLM pass, else "
        "generate; off: always generate.",
    )
    ctc_threshold: float = Field(
        0.7, description="Take the CTC text as is when its largest per-frame entropy (nats) is at most this."
    )
    confidence_threshold: float = Field(
        0.2, ge=0, le=1, description="Accept a verified draft when every token's LLM probability is at least this."
    )
    verify: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Verify uncertain CTC drafts in one LLM pass. auto: on GPUs; off on CPUs, where that pass "
        "(a prefill) costs as much as generating the block (bench/ctc.py).",
    )
    word_times: bool = Field(True, description="Word start/end times from the CTC head (segments' `words`).")
    ctc_batch_blocks: int = Field(
        32, ge=1, description="Blocks through the CTC stage's encoder at once (bounds its memory per batch)."
    )
    ctc_gpu_memory_gib: float = Field(
        4.0,
        gt=0,
        description="GPU pools: memory the CTC stage may use beside vLLM; it must fit in the share vLLM "
        "leaves (1 - engine.gpu_memory_utilization).",
    )

    @property
    def needs_ctc(self) -> bool:
        return self.word_times or self.speculative != "off"


class TermConfig(Section):
    phrase: str = Field(min_length=1, description="Words to find, as spoken (matched after normalization).")
    category: str = Field("", description="Your label for the phrase, e.g. `mis-selling`.")


PII_TYPES = ("credit_card", "email", "phone_number", "us_ssn", "iban", "ip_address", "us_bank_number", "uk_nhs")


class ComplianceConfig(Section):
    """Term hits and PII redaction over every transcript (docs/compliance.md). Empty by default: no
    terms and no redaction, nothing written beyond segments."""

    terms: list[TermConfig] = Field(
        [], description="Phrases to find: `{phrase, category}` each; hits go to OUTPUT/hits/ with their seconds."
    )
    terms_file: str | None = Field(
        None, description="More terms: a local or s3:// YAML list of `{phrase, category}` or CSV `phrase,category`."
    )
    redact: list[Literal[PII_TYPES]] = Field(  # type: ignore[valid-type]
        [],
        description="PII entity types replaced by `[TYPE]` in segments' text and words, and listed in "
        "OUTPUT/pii/ (type and seconds, never the value); empty: no redaction.",
    )
    min_score: float = Field(
        0.0, ge=0, le=1, description="PII findings scored below this (presidio's score) are left alone."
    )
    context_words: int = Field(8, ge=0, description="Words either side of a hit kept in its `context` column.")
    keep_unredacted_uri: str | None = Field(
        None,
        description="Also commit the unredacted segments here (e.g. a bucket with stricter access), "
        "with the same commits as the redacted ones.",
    )
    redacted_audio_uri: str | None = Field(
        None,
        description="Write a FLAC copy of every recording with PII here (`<uri>/<recording_id>.flac`), "
        "PII spans silenced, channels and sample rate kept.",
    )
    audio_pad_s: float = Field(0.25, ge=0, description="Silence this much beyond each PII span in redacted audio.")

    @property
    def enabled(self) -> bool:
        return bool(self.terms or self.terms_file or self.redact)


class MetricsConfig(Section):
    """Prometheus metrics of every run, pushed to a Pushgateway during the run and at its end: a
    batch job ends before any scrape finds it (docs/operations.md). Off without a URL."""

    pushgateway_url: str | None = Field(
        None, description="Pushgateway, e.g. `http://pushgateway.monitoring:9091`; null: no metrics pushed."
    )
    job: str = Field("granite-batch", min_length=1, description="The `job` label (the Pushgateway's group).")
    grouping: dict[str, str] = Field(
        {},
        description="More grouping labels, e.g. `{job_file: nightly}`: runs with the same labels replace each "
        "other's metrics. `granite-batch run --config FILE` adds `job_file` (the file's name) unless set.",
    )
    push_every_s: float = Field(30.0, gt=0, description="Seconds between pushes during a run (and one at its end).")
    timeout_s: float = Field(
        5.0, gt=0, description="Per push; a Pushgateway that is down costs a warning, not the run."
    )


class JobConfig(BaseSettings):
    """A whole job. `jobs/*.yaml` files hold exactly this structure."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    input: InputConfig
    output: OutputConfig = OutputConfig()
    filters: FiltersConfig = FiltersConfig()
    channels: ChannelsConfig = ChannelsConfig()
    blocks: BlocksConfig = BlocksConfig()
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    engine: EngineConfig = EngineConfig()
    decoding: DecodingConfig = DecodingConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    metrics: MetricsConfig = MetricsConfig()
    run: RunConfig = RunConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    def for_run(self, now: datetime) -> JobConfig:
        """This config with the input's date placeholders resolved for a run started at `now`."""
        return self.model_copy(update={"input": self.input.resolved(now)})

    @field_validator("input", mode="before")
    @classmethod
    def _uri_shorthand(cls, v: Any) -> Any:
        return {"uri": v} if isinstance(v, str) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        job_file = _JOB_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if job_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=job_file))
        return tuple(sources)


_JOB_FILE: ContextVar[Path | None] = ContextVar("job_file", default=None)

# Config keys that have a CLI flag, for error messages that say how to set a key.
CLI_FLAGS: dict[str, str] = {
    "input.uri": "--input",
    "input.endpoint_url": "--endpoint-url",
    "channels.policy": "--channels",
    "model.id": "--model",
    "engine.kind": "--engine",
    "prompt.keywords": "--keywords",
    "prompt.task": "--task",
    "output.uri": "--output",
    "run.address": "--address",
    "run.retry_failed": "--retry-failed",
}


def load_config(job_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> JobConfig:
    """Build the effective config. `overrides` are CLI values keyed by dotted path ("input.uri")."""
    _reject_unknown_env()
    path = Path(job_file) if job_file else None
    if path is not None:
        _check_job_file(path)
    token = _JOB_FILE.set(path)
    try:
        cfg = JobConfig(**_nest({k: v for k, v in (overrides or {}).items() if v is not None}))
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None
    finally:
        _JOB_FILE.reset(token)
    if path is None or "job_file" in cfg.metrics.grouping:
        return cfg
    # Each job file's runs are their own group in the Pushgateway (and its alerts' series).
    grouping = {"job_file": path.stem, **cfg.metrics.grouping}
    return cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update={"grouping": grouping})})


def _check_job_file(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"job file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"job file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"job file {path} must hold a mapping of sections (input:, blocks:, ...)")


# Read before any config exists (at interpreter start-up: pipeline/cpu_torch.py), so not a key.
NOT_CONFIG_ENV = {"GRANITE_BATCH_CPU_TORCH"}


def _reject_unknown_env() -> None:
    # pydantic-settings ignores prefixed variables that match no section; a typo there would
    # silently fall back to a default, so treat it like any other unknown key.
    for name in os.environ:
        if name.upper() in NOT_CONFIG_ENV:
            continue
        if name.upper().startswith(ENV_PREFIX):  # pydantic-settings matches case-insensitively
            section = name[len(ENV_PREFIX) :].split("__")[0].lower()
            if section not in JobConfig.model_fields:
                raise ConfigError(f"invalid configuration:\n  environment variable {name}: unknown key `{section}`")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def _explain(err: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing" and key in JobConfig.model_fields:  # a whole section: name its required keys
            section = JobConfig.model_fields[key].annotation
            required = [n for n, f in section.model_fields.items() if f.is_required()]  # type: ignore[union-attr]
            key = ".".join([key, required[0]]) if len(required) == 1 else key
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{_did_you_mean(e['loc'])}")
            continue
        how = [f"`{CLI_FLAGS[key]}`"] if key in CLI_FLAGS else []
        how.append(f"`{ENV_PREFIX}{key.upper().replace('.', '__')}`")
        how.append(f"`{key}` in the job file")
        got = f" (got {e['input']!r})" if e["type"] != "missing" else ""
        lines.append(f"  {key}: {e['msg']}{got}; set it with {' or '.join(how)}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] | None = JobConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean `{close[0]}`?)" if close else f" (known: {', '.join(model.model_fields)})"


def markdown_reference() -> str:
    """Every key with its default and meaning, as docs/configuration.md shows it (a test keeps them equal)."""
    rows = ["| key | default | env | meaning |", "| --- | --- | --- | --- |"]
    for section, sf in JobConfig.model_fields.items():
        model = sf.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, f in model.model_fields.items():
            key = f"{section}.{name}"
            default = "required" if f.is_required() else f"`{json.dumps(to_jsonable_python(f.default))}`"
            env = f"`{ENV_PREFIX}{section.upper()}__{name.upper()}`"
            rows.append(f"| `{key}` | {default} | {env} | {f.description or ''} |")
    return "\n".join(rows)
