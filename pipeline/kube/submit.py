"""`granite-batch submit JOB.yaml` and `granite-batch status NAME`.

`submit` renders the Helm chart (helm/granite-batch, through `helm template`, so there is one
renderer) with the job file as its `job` value, and creates the objects through the Kubernetes
API: a ConfigMap and a RayJob, or a RayCronJob, or a CronJob that creates RayJobs. `--dry-run`
prints the manifests instead. `submit --manifest FILE` is what that CronJob runs in-cluster: it
creates one RayJob from a rendered manifest with a `generateName`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..config import load_config
from ..errors import ConfigError, SubmitError
from .values_schema import CHART

RAY_GROUP, RAY_VERSION = "ray.io", "v1"
CUSTOM_PLURALS = {"RayJob": "rayjobs", "RayCronJob": "raycronjobs", "RayCluster": "rayclusters"}
# kind -> (API class, method suffix) of the core kinds the chart renders
CORE = {
    "ConfigMap": ("CoreV1Api", "namespaced_config_map"),
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
    "Role": ("RbacAuthorizationV1Api", "namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "namespaced_role_binding"),
    "CronJob": ("BatchV1Api", "namespaced_cron_job"),
}
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def release_name(job_file: Path) -> str:
    """`granite-batch-<job file stem>`, DNS-safe: the chart then names every object after it."""
    stem = "".join(c if c.isalnum() else "-" for c in job_file.stem.lower()).strip("-")
    return f"granite-batch-{stem}"[:40].rstrip("-")


def render(
    job_file: Path, release: str, namespace: str, values: Sequence[Path] = (), chart: Path = CHART
) -> list[dict[str, Any]]:
    """The chart's manifests for this job file (validated by the config model first)."""
    load_config(job_file)  # a bad job file fails here, with the config model's message
    job = yaml.safe_load(job_file.read_text()) or {}
    helm = shutil.which("helm")
    if helm is None:
        raise SubmitError("submit renders the Helm chart: install helm 3.8+ (see docs/kubernetes.md)")
    if not (chart / "Chart.yaml").is_file():
        raise SubmitError(f"no Helm chart at {chart}: pass --chart helm/granite-batch from a source checkout")
    with tempfile.TemporaryDirectory() as tmp:
        job_values = Path(tmp) / "job-values.yaml"
        job_values.write_text(yaml.safe_dump({"job": job}))
        cmd = [helm, "template", release, str(chart), "--namespace", namespace]
        for v in [*values, job_values]:
            cmd += ["-f", str(v)]
        env = {**os.environ, "HELM_CACHE_HOME": tmp, "HELM_CONFIG_HOME": tmp, "HELM_DATA_HOME": tmp}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SubmitError(f"helm template failed:\n{out.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for d in docs:
        d["metadata"].setdefault("namespace", namespace)
    return docs


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return "---\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def api_client() -> Any:
    """From $KUBECONFIG / ~/.kube/config, else the pod's service account."""
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except Exception:
        try:
            config.load_incluster_config()
        except Exception as err:
            raise SubmitError(f"no Kubernetes credentials: set KUBECONFIG or run in a pod ({err})") from None
    return client.ApiClient()


def apply(docs: list[dict[str, Any]], api: Any) -> list[str]:
    """Create every object; an existing one is updated (a re-submitted schedule), except a
    one-off RayJob, which is an error: it is a run, and runs are not edited."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    for d in docs:  # a one-off run that exists already: refuse before changing anything (its ConfigMap)
        if d["kind"] == "RayJob" and d["metadata"].get("name"):
            try:
                client.CustomObjectsApi(api).get_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, d["metadata"]["namespace"], "rayjobs", d["metadata"]["name"]
                )
            except ApiException as err:
                if err.status != 404:
                    raise SubmitError(f"reading RayJob {d['metadata']['name']}: {err.status} {err.reason}") from None
            else:
                raise SubmitError(
                    f"RayJob {d['metadata']['name']} exists already (a run is not edited): "
                    "delete it, or submit with --name",
                    409,  # as the API would answer a create
                )
    done = []
    for d in docs:
        kind, name, ns = d["kind"], d["metadata"].get("name"), d["metadata"]["namespace"]
        try:
            if kind in CUSTOM_PLURALS:
                custom = client.CustomObjectsApi(api)
                args = (RAY_GROUP, RAY_VERSION, ns, CUSTOM_PLURALS[kind])
                try:
                    created = custom.create_namespaced_custom_object(*args, d)
                    name = (created or {}).get("metadata", {}).get("name", name)
                except ApiException as err:
                    if err.status != 409 or kind == "RayJob":
                        raise
                    custom.patch_namespaced_custom_object(
                        *args, name, {"spec": d["spec"], "metadata": {"labels": d["metadata"].get("labels", {})}}
                    )
            elif kind in CORE:
                cls, suffix = CORE[kind]
                core = getattr(client, cls)(api)
                try:
                    getattr(core, f"create_{suffix}")(ns, d)
                except ApiException as err:
                    if err.status != 409:
                        raise
                    getattr(core, f"patch_{suffix}")(name, ns, d)
            else:
                raise SubmitError(f"submit does not know how to create a {kind}")
        except ApiException as err:
            hint = "; it exists already: delete it, or submit with --name" if err.status == 409 else ""
            raise SubmitError(
                f"creating {kind} {name} in {ns} failed: {err.status} {err.reason}{hint}", err.status
            ) from None
        done.append(f"{kind.lower()}/{name}")
    return done


def submit_manifest(manifest: Path, namespace: str | None, api: Any) -> str:
    """In-cluster (the schedule's launcher): create one RayJob from a rendered manifest."""
    doc = yaml.safe_load(manifest.read_text())
    meta = doc.setdefault("metadata", {})
    meta["namespace"] = namespace or (SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.is_file() else "default")
    # Named after the minute, not generateName: a launcher pod retried by its Job within the
    # same schedule tick gets "exists" instead of starting a second run.
    # KubeRay refuses RayJob names over 47 characters (it derives other names from them).
    prefix = meta.pop("generateName", "granite-batch-")[:33].rstrip("-") + "-"
    meta["name"] = f"{prefix}{datetime.now(timezone.utc):%Y%m%d-%H%M}"
    try:
        return apply([doc], api)[0]
    except SubmitError as err:
        if err.status == 409:
            return f"rayjob/{meta['name']} (exists already: this tick's run was created before)"
        raise


@dataclass(frozen=True)
class RunState:
    name: str
    job_status: str
    deployment_status: str
    start: str
    end: str
    message: str


def status(name: str, namespace: str, api: Any) -> tuple[list[str], list[RunState]]:
    """What is scheduled under NAME, and its runs (RayJobs), oldest first."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api)
    head: list[str] = []
    try:
        obj = custom.get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, "raycronjobs", name)
    except ApiException as err:
        if err.status != 404:
            raise SubmitError(f"reading RayCronJob {name}: {err.status} {err.reason}") from None
    else:
        spec, st = obj.get("spec", {}), obj.get("status", {})
        head.append(
            f"RayCronJob {name}: schedule {spec.get('schedule')!r} ({spec.get('timeZone', 'UTC')}), "
            f"suspended={bool(spec.get('suspend'))}, last run {st.get('lastScheduleTime', 'never')}"
        )
    try:
        cron = client.BatchV1Api(api).read_namespaced_cron_job(name, namespace)
        last = cron.status.last_schedule_time if cron.status else None
        head.append(
            f"CronJob {name}: schedule {cron.spec.schedule!r}, suspended={bool(cron.spec.suspend)}, last run {last or 'never'}"
        )
    except ApiException as err:
        if err.status != 404:
            raise SubmitError(f"reading CronJob {name}: {err.status} {err.reason}") from None
    try:
        every = custom.list_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, "rayjobs")["items"]
    except ApiException as err:
        hint = ": is the KubeRay operator (its CRDs) installed?" if err.status == 404 else ""
        raise SubmitError(f"listing RayJobs in {namespace}: {err.status} {err.reason}{hint}") from None
    # Ours: the one-off run itself, runs our launcher labelled, and runs a RayCronJob named after
    # itself (its jobTemplate carries no labels of ours).
    items = [
        o
        for o in every
        if o["metadata"]["name"] == name
        or o["metadata"]["name"].startswith(f"{name}-")
        or (o["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == name
    ]
    runs: dict[str, RunState] = {}
    for o in items:
        st = o.get("status", {})
        n = o["metadata"]["name"]
        runs[n] = RunState(
            n,
            st.get("jobStatus", "PENDING") or "PENDING",
            st.get("jobDeploymentStatus", "") or "",
            st.get("startTime", "") or "",
            st.get("endTime", "") or "",
            st.get("message", "") or "",
        )
    ordered = sorted(runs.values(), key=lambda r: (r.start or "9999", r.name))
    if not head and not ordered:
        raise SubmitError(f"nothing named {name} in namespace {namespace} (no RayJob, RayCronJob or CronJob)")
    return head, ordered


def render_status(head: list[str], runs: list[RunState]) -> str:
    lines = list(head)
    if runs:
        lines.append(f"{'RAYJOB':40s} {'STATUS':10s} {'DEPLOYMENT':12s} {'START':22s} {'END':22s} MESSAGE")
        lines += [
            f"{r.name:40s} {r.job_status:10s} {r.deployment_status:12s} {r.start:22s} {r.end:22s} {r.message[:80]}"
            for r in runs
        ]
    else:
        lines.append("no runs yet")
    return "\n".join(lines)


__all__ = [
    "ConfigError",
    "SubmitError",
    "apply",
    "api_client",
    "release_name",
    "render",
    "render_status",
    "status",
    "submit_manifest",
    "to_yaml",
]
