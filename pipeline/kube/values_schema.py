"""The chart's files generated from the config model (pipeline/config.py):

- `values.schema.json`: the chart's own keys, written out here, and `job`, which *is* the job
  config model. So a values file, a `jobs/*.yaml` file and `granite-batch run --config` accept
  exactly the same job, and Helm rejects a typo at install time.
- `pool-defaults.json`: the default engine pools (`engine.pools`), which the chart's worker
  groups start from; the chart sets only what it derives from its own values (replicas, CPUs,
  the Ray resource that keeps CPU engines on CPU nodes).

`python -m pipeline.kube.values_schema` rewrites both; tests keep them current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import JobConfig

CHART = Path(__file__).resolve().parents[2] / "helm" / "granite-batch"


def _obj(props: dict[str, Any], required: list[str] | None = None, doc: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    if doc:
        out["description"] = doc
    return out


STR, BOOL, INT = {"type": "string"}, {"type": "boolean"}, {"type": "integer", "minimum": 0}
# Free-form Kubernetes structures (resources, selectors, tolerations, security contexts) are
# checked by the API server and, in our tests, by kubernetes-validate on the rendered manifests.
K8S_OBJ, K8S_LIST = {"type": "object"}, {"type": "array"}
IMAGE = _obj(
    {"repository": STR, "tag": STR, "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["repository", "tag"]
)
LABELS = {"type": "object", "additionalProperties": STR}
PLACEMENT = {"resources": K8S_OBJ, "nodeSelector": K8S_OBJ, "tolerations": K8S_LIST}


def _job_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """JobConfig's JSON schema, with `$defs` renamed `definitions` (Helm validates with draft 7)."""
    raw = json.dumps(JobConfig.model_json_schema()).replace('"#/$defs/', '"#/definitions/')
    schema = json.loads(raw)
    return schema, schema.pop("$defs", {})


def values_schema() -> dict[str, Any]:
    job, definitions = _job_schema()
    job.pop("title", None)
    job["description"] = "The granite-batch job (the schema of jobs/*.yaml; docs/configuration.md)."
    workers = {
        "gpu": _obj(
            {
                "enabled": BOOL,
                "minReplicas": INT,
                "maxReplicas": INT,
                "gpusPerWorker": {"type": "integer", "minimum": 1},
                **PLACEMENT,
            },
            ["enabled"],
        ),
        "cpu": _obj(
            {
                "enabled": BOOL,
                "minReplicas": INT,
                "maxReplicas": INT,
                "engineCpus": {"type": "number", "exclusiveMinimum": 0},
                **PLACEMENT,
            },
            ["enabled"],
        ),
    }
    props = {
        "job": job,
        "image": _obj({"cpu": IMAGE, "gpu": IMAGE}, ["cpu", "gpu"]),
        "imagePullSecrets": K8S_LIST,
        "rayVersion": STR,
        "rayAuth": _obj({"enabled": BOOL, "secretName": STR}, doc="Ray token authentication (KubeRay authOptions)."),
        "head": _obj({"rayCpus": INT, **PLACEMENT}),
        "workers": _obj(workers, ["gpu", "cpu"]),
        "autoscaler": _obj(
            {"idleTimeoutSeconds": INT, "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]}}
        ),
        "rayJob": _obj(
            {
                "shutdownAfterJobFinishes": BOOL,
                "ttlSecondsAfterFinished": INT,
                "activeDeadlineSeconds": INT,
                "backoffLimit": INT,
            }
        ),
        "s3": _obj(
            {"existingSecret": STR, "accessKeyIdKey": STR, "secretAccessKeyKey": STR, "region": STR},
            doc="Credentials by reference only: the name of an existing Secret, or workload identity.",
        ),
        "serviceAccount": _obj({"create": BOOL, "name": STR, "annotations": LABELS}),
        "model": _obj(
            {
                "source": {"enum": ["hub", "s3", "pvc"]},
                "hub": _obj({"id": STR, "revision": STR, "tokenSecret": _obj({"name": STR, "key": STR})}),
                "s3": _obj({"uri": {"type": "string", "pattern": "^(s3://.+)?$"}}),
                "pvc": _obj({"claimName": STR, "path": STR}),
                "cacheSizeLimit": STR,
            },
            ["source"],
        ),
        "shmSizeLimit": STR,
        "podSecurityContext": K8S_OBJ,
        "securityContext": K8S_OBJ,
        "launcher": _obj({"resources": K8S_OBJ}),
        "metrics": _obj(
            {
                "pushgatewayUrl": {"type": "string", "pattern": "^(https?://.+)?$"},
                "prometheusRule": _obj(
                    {
                        "enabled": BOOL,
                        "labels": LABELS,
                        "successWithinHours": {"type": "number", "exclusiveMinimum": 0},
                        "failedShare": {"type": "number", "minimum": 0, "maximum": 1},
                        "severity": STR,
                    }
                ),
                "grafanaDashboard": _obj({"enabled": BOOL, "labels": LABELS}),
            },
            doc="Prometheus metrics (pushed by every run), alert rules and a Grafana dashboard (docs/operations.md).",
        ),
        "nameOverride": STR,
        "fullnameOverride": STR,
        "global": K8S_OBJ,  # Helm passes it to every chart
    }
    schema = _obj(props, ["job", "image", "workers", "model"])
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema, "definitions": definitions}


def render() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


def render_pool_defaults() -> str:
    """`JobConfig().engine.pools` by name, without `replicas` (the chart's worker groups decide it)."""
    pools = {
        p.name: p.model_dump(mode="json", exclude={"name", "replicas"})
        for p in JobConfig.model_fields["engine"].default.pools
    }
    return json.dumps(pools, indent=2) + "\n"


GENERATED = {"values.schema.json": render, "pool-defaults.json": render_pool_defaults}

if __name__ == "__main__":
    for name, make in GENERATED.items():
        (CHART / name).write_text(make())
        print(f"wrote {CHART / name}")
