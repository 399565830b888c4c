"""The output store (docs/output.md, docs/lake.md): what a run commits, and what later runs, `scan`
and `optimize` read back. store.py is what every output is (a place, its lock and retries, the
runs' manifests); parquet.py and delta.py are the two formats (`output.format`), each committing a
batch as one unit; lock.py keeps one run per output; history.py holds what earlier runs settled in
bounded memory; optimize.py merges small files. The factory below picks the format.

May import: records, storage, config, errors, ops.runinfo.
"""

from __future__ import annotations

from ..config import JobConfig
from .delta import DeltaStore
from .parquet import ParquetStore
from .store import OutputStore


def output_where(cfg: JobConfig) -> tuple[str | None, str | None]:
    """Endpoint and region of everything the job writes or reads besides its input (outputs, terms
    files, audio copies): the output's, else the input's."""
    return cfg.output.endpoint_url or cfg.input.endpoint_url, cfg.output.region or cfg.input.region


def output_format(cfg: JobConfig) -> str:
    """What the output holds already (else output.format): `optimize` needs no job file."""
    endpoint, region = output_where(cfg)
    return "delta" if OutputStore(cfg.output.uri or "", endpoint, region).holds_delta() else cfg.output.format


def output_store(cfg: JobConfig, uri: str) -> OutputStore:
    """The job's output store at `uri` in `output.format`, with its unredacted companion (of the
    same format) when compliance keeps one."""
    endpoint, region = output_where(cfg)
    keep = cfg.compliance.keep_unredacted_uri
    kind = DeltaStore if cfg.output.format == "delta" else ParquetStore
    unredacted = kind(keep, endpoint, region) if keep else None
    return kind(uri, endpoint, region, cfg.output.lock_stale_s, unredacted)
