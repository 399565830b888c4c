"""A run's Prometheus metrics, pushed to a Pushgateway (docs/operations.md).

A batch job ends before a scrape would find it, so the run pushes: every `metrics.push_every_s`
from a thread of its own, and once at the end with the exit code. Each push replaces the group
(job + grouping labels: one job file's runs replace each other). The time of the last successful
run lives in a group of its own (`outcome="success"`), pushed only by a run that ends with exit
code 0, so a failed night does not erase it and an alert can tell how long ago it was. A
Pushgateway that is down or slow costs one warning, never the run.

`families` is the pure core: a run's figures (the manifest's, `Progress.as_dict()`) in, metric
families out. Names follow Prometheus' conventions: `granite_batch_` prefix, base units,
`_total` for counters (within a run; each run starts from zero, `run_id` is on the info metric).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import push_to_gateway

from ..config import MetricsConfig

log = logging.getLogger(__name__)

P = "granite_batch_"
Snapshot = tuple[dict[str, Any], dict[str, Any]]  # (figures: Progress.as_dict(), engines: the manifest's)


def _counter(name: str, doc: str, values: dict[str, float] | float, label: str | None = None) -> CounterMetricFamily:
    m = CounterMetricFamily(P + name, doc, labels=[label] if label else None)
    if label is None:
        m.add_metric([], float(values))  # type: ignore[arg-type]
    else:
        for k, v in sorted(values.items()):  # type: ignore[union-attr]
            m.add_metric([k], float(v))
    return m


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=float(value))


def pool_of(worker: str) -> str:
    """Engine worker keys are `<pool>-<k>` (ray_run/backend.py)."""
    return worker.rsplit("-", 1)[0]


def families(
    run_id: str, started_at: float, figures: dict[str, Any], engines: dict[str, Any], exit_code: int | None
) -> list[Metric]:
    """The run's metrics; `exit_code` None while it runs. `started_at`: Unix time."""
    rec = figures["recordings"]
    info = InfoMetricFamily(P + "run", "The run these figures are of.", value={"run_id": run_id})
    out: list[Metric] = [
        info,
        _gauge("run_start_timestamp_seconds", "When the run started (Unix time).", started_at),
        _gauge("run_wall_seconds", "Wall time of the run so far (at its end: in all).", figures["wall_s"]),
        _gauge("run_finished", "1 once the run has ended (exit code set), 0 while it runs.", exit_code is not None),
        _counter("recordings_listed", "Recordings listed in the input.", rec["listed"]),
        _counter(
            "recordings",
            "Recordings settled by this run, by status (skipped: done by an earlier run).",
            {k: rec[k] for k in ("ok", "failed", "skipped")},
            "status",
        ),
        _counter(
            "audio_seconds", "Audio transcribed (decoded duration of ok recordings).", figures["audio_hours"] * 3600
        ),
        _counter(
            "speech_seconds",
            "Speech in the audio transcribed (what reached the model).",
            figures["speech_hours"] * 3600,
        ),
        _counter(
            "segments", "Segments written, by the path that produced the text.", figures["decoded_by"], "decoded_by"
        ),
        # by kind, a fixed set (errors.KINDS): never a message's text, which can name an object key
        _counter("failures", "Failed recordings by failure kind.", figures["failures_by_reason"], "reason"),
        _counter("term_hits", "Compliance term hits, by category.", figures.get("hits_by_category", {}), "category"),
        _counter("pii_redacted", "PII spans redacted, by entity type.", figures.get("pii_by_type", {}), "entity_type"),
        _gauge("rtfx", "Audio seconds transcribed per wall second of the run.", figures["rtfx"]),
    ]
    workers = GaugeMetricFamily(P + "engine_workers", "Engine workers by pool and state.", labels=["pool", "state"])
    failed = Counter(pool_of(key) for key in engines.get("failed", {}))
    for pool in sorted(set(engines.get("ready", {})) | set(failed)):
        workers.add_metric([pool, "ready"], engines.get("ready", {}).get(pool, 0))
        workers.add_metric([pool, "failed"], failed.get(pool, 0))
    out.append(workers)
    if engines.get("first_ready_s") is not None:
        out.append(
            _gauge(
                "engine_first_ready_seconds",
                "Seconds from the run's start to its first engine worker ready.",
                engines["first_ready_s"],
            )
        )
    if exit_code is not None:
        out.append(
            _gauge(
                "exit_code",
                "The run's exit code (0 done, 1 recordings failed, 2 config, 3 run failed, 4 internal).",
                exit_code,
            )
        )
    return out


class _Families:
    """A registry collector over fixed families."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def _registry(metrics: Iterable[Metric]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Families(metrics))  # type: ignore[arg-type]
    return reg


class Pusher:
    """Pushes a run's metrics now and then, and at its end. `snapshot` is called on the pusher's
    thread: it must only read (a read that races the driver is skipped, and the next one taken)."""

    def __init__(self, cfg: MetricsConfig, run_id: str, started_at: float, snapshot: Callable[[], Snapshot]) -> None:
        assert cfg.pushgateway_url
        self.cfg, self.run_id, self.started_at, self.snapshot = cfg, run_id, started_at, snapshot
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="metrics-push")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.push_every_s):
            with contextlib.suppress(RuntimeError):  # a dict the driver changed while we read it: next time
                self._push(families(self.run_id, self.started_at, *self.snapshot(), None))

    def final(self, exit_code: int) -> None:
        """The last push, after the thread's (it is stopped and joined first): the run's final
        figures and exit code, and, if 0, the time of success. Never raises: metrics never cost
        the run, nor hide why it ended."""
        self._stop.set()
        self._thread.join(timeout=self.cfg.timeout_s + 1)
        try:
            metrics = families(self.run_id, self.started_at, *self._read(), exit_code)
        except Exception as err:  # noqa: BLE001 - still say how the run ended
            log.warning("metrics: the run's final figures could not be read (%s)", type(err).__name__)
            metrics = [
                _gauge("run_finished", "1 once the run has ended.", 1),
                _gauge("exit_code", "The exit code.", exit_code),
            ]
        self._push(metrics)
        if exit_code == 0:
            success = _gauge(
                "last_success_timestamp_seconds", "When a run last ended with exit code 0 (Unix time).", time.time()
            )
            self._push([success], {"outcome": "success"})

    def _read(self, tries: int = 3) -> Snapshot:
        """The snapshot, read again if the driver's threads changed a dict under it (the admitter
        may still be adding a failed engine)."""
        for _ in range(tries - 1):
            with contextlib.suppress(RuntimeError):
                return self.snapshot()
        return self.snapshot()

    def _push(self, metrics: list[Metric], extra: dict[str, str] | None = None) -> None:
        try:
            push_to_gateway(
                self.cfg.pushgateway_url,  # type: ignore[arg-type]
                job=self.cfg.job,
                registry=_registry(metrics),
                grouping_key={**self.cfg.grouping, **(extra or {})},
                timeout=self.cfg.timeout_s,
            )
        except Exception as err:  # noqa: BLE001 - metrics never cost the run
            if not self._warned:
                self._warned = True
                log.warning(
                    "metrics: could not push to the Pushgateway (%s: %s); the run goes on without them",
                    type(err).__name__,
                    str(err)[:200],
                )
