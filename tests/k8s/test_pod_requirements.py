"""Check the rendered manifests against the pod requirements of rodata on Kubernetes:
Guaranteed QoS, read-only data, autoscaling, probes, security, labels, quantities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from k8s_support import AIRLINES_ONLY, KUBERNETES_INVENTORIES, REPO, load, render
from rodata_k8s import canonical_quantity

Obj = dict[str, Any]

STABLE_SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
RECOMMENDED_LABELS = STABLE_SELECTOR_KEYS | {
    "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}


def one(objs: list[Obj], kind: str, component: str = "api") -> Obj:
    matches = [o for o in objs if o["kind"] == kind
               and o["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(matches) == 1, f"expected one {kind} of component {component}, found {len(matches)}"
    return matches[0]


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objs:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def all_containers(spec: Obj) -> list[Obj]:
    return spec.get("initContainers", []) + spec["containers"]


def quantities(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield (path, value) of every resource quantity in an object."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}"
            if key in ("cpu", "memory", "storage", "sizeLimit") and isinstance(value, (str, int)):
                yield child, str(value)
            else:
                yield from quantities(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from quantities(value, f"{path}[{index}]")


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_every_container_is_guaranteed(objects: dict[str, list[Obj]], inventory: str) -> None:
    checked = 0
    for name, spec in pod_specs(objects[inventory]):
        for container in all_containers(spec):
            resources = container["resources"]
            where = f"{inventory} {name} container {container['name']}"
            assert resources["requests"] == resources["limits"], where
            assert set(resources["limits"]) == {"cpu", "memory"}, where
            checked += 1
    assert checked > 5


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_api_pod_is_one_cpu_and_1024mi(objects: dict[str, list[Obj]], inventory: str) -> None:
    deployment = one(objects[inventory], "Deployment")
    spec = deployment["spec"]["template"]["spec"]

    assert spec["initContainers"], "the API pod has an init container to check"
    for container in all_containers(spec):
        assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}, container["name"]
        assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}, container["name"]


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_api_runs_one_worker_with_pinned_threads(objects: dict[str, list[Obj]], inventory: str) -> None:
    config = one(objects[inventory], "ConfigMap")["data"]
    api = one(objects[inventory], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in api["env"]}

    assert config["RODATA_WORKERS"] == "1"
    assert config["RODATA_HOST"] == "0.0.0.0"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == "1"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_data_claim_read_only_on_source_and_mount(objects: dict[str, list[Obj]], inventory: str) -> None:
    spec = one(objects[inventory], "Deployment")["spec"]["template"]["spec"]
    data_volume = next(v for v in spec["volumes"] if v["name"] == "data")

    assert data_volume["persistentVolumeClaim"]["readOnly"] is True
    for container in all_containers(spec):
        mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
        assert mount["readOnly"] is True, container["name"]


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_no_replicas_while_hpa_enabled(objects: dict[str, list[Obj]], inventory: str) -> None:
    deployment = one(objects[inventory], "Deployment")
    hpa = one(objects[inventory], "HorizontalPodAutoscaler")

    assert "replicas" not in deployment["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    cpu = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Resource")
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}


def test_hpa_bounds_and_rps_metric_from_inventory(objects: dict[str, list[Obj]]) -> None:
    staging = one(objects["staging"], "HorizontalPodAutoscaler")["spec"]
    production = one(objects["production"], "HorizontalPodAutoscaler")["spec"]

    assert (staging["minReplicas"], staging["maxReplicas"]) == (1, 3)
    assert (production["minReplicas"], production["maxReplicas"]) == (3, 30)
    assert [m["type"] for m in staging["metrics"]] == ["Resource"]
    rps = next(m for m in production["metrics"] if m["type"] == "Pods")
    assert rps["pods"]["metric"]["name"] == "http_requests_per_second"
    assert rps["pods"]["target"] == {"type": "AverageValue", "averageValue": "200"}
    assert production["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert "behavior" not in staging


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_probes_on_health_endpoints(objects: dict[str, list[Obj]], inventory: str) -> None:
    api = one(objects[inventory], "Deployment")["spec"]["template"]["spec"]["containers"][0]

    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["startupProbe"]["httpGet"]["port"] == "http"
    startup_budget = api["startupProbe"]["periodSeconds"] * api["startupProbe"]["failureThreshold"]
    assert startup_budget >= 300, "the first load of a large dataset needs minutes"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_rollout_drops_no_requests(objects: dict[str, list[Obj]], inventory: str) -> None:
    deployment = one(objects[inventory], "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    prestop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = float(one(objects[inventory], "ConfigMap")["data"]["RODATA_GRACE_SECONDS"])

    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert prestop > 0
    assert spec["terminationGracePeriodSeconds"] > prestop + shutdown


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_pods_run_restricted(objects: dict[str, list[Obj]], inventory: str) -> None:
    for name, spec in pod_specs(objects[inventory]):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in all_containers(spec):
            where = f"{name} container {container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
            assert volume["emptyDir"]["sizeLimit"], where


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_labels_and_stable_selectors(objects: dict[str, list[Obj]], inventory: str) -> None:
    objs = objects[inventory]
    for obj in objs:
        assert RECOMMENDED_LABELS - {"app.kubernetes.io/version"} <= set(obj["metadata"]["labels"]), \
            f"{obj['kind']}/{obj['metadata']['name']}"

    deployment = one(objs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == STABLE_SELECTOR_KEYS
    assert RECOMMENDED_LABELS <= set(deployment["spec"]["template"]["metadata"]["labels"])
    assert one(objs, "Service")["spec"]["selector"] == selector
    assert one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_pod_annotations_track_config_and_data(objects: dict[str, list[Obj]], inventory: str) -> None:
    annotations = one(objects[inventory], "Deployment")["spec"]["template"]["metadata"]["annotations"]
    claim = one(objects[inventory], "Deployment")["spec"]["template"]["spec"]["volumes"][0]

    assert len(annotations["checksum/config"]) == 16
    assert annotations["rodata/data-generation"]
    if inventory == "production":
        assert claim["persistentVolumeClaim"]["claimName"].endswith(annotations["rodata/data-generation"])


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_quantities_are_canonical(objects: dict[str, list[Obj]], inventory: str) -> None:
    found = 0
    for obj in objects[inventory]:
        for path, value in quantities(obj):
            assert value == canonical_quantity(value), f"{obj['kind']}/{obj['metadata']['name']}{path}"
            found += 1
    assert found > 10


@pytest.mark.parametrize(("value", "expected"), [
    ("1024Mi", "1Gi"), ("1000m", "1"), ("0.5", "500m"), ("1536Mi", "1536Mi"),
    ("1.5Gi", "1536Mi"), ("2048Mi", "2Gi"), ("100M", "100M"), ("1.5", "1500m"), ("200", "200"),
])
def test_canonical_quantity(value: str, expected: str) -> None:
    assert canonical_quantity(value) == expected


def test_validator_rejects_a_broken_manifest(objects: dict[str, list[Obj]]) -> None:
    # Proves the schema check can fail: a string where the schema wants an integer.
    deployment = dict(one(objects["staging"], "Deployment"))
    deployment["spec"] = {**deployment["spec"], "replicas": "two"}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_etl_jobs_named_by_content_hash(objects: dict[str, list[Obj]], inventory: str) -> None:
    jobs = [o for o in objects[inventory] if o["kind"] == "Job"]

    assert jobs
    for job in jobs:
        content_hash = job["metadata"]["annotations"]["rodata/content-hash"]
        assert job["metadata"]["name"].endswith("-" + content_hash)
        assert len(job["metadata"]["name"]) <= 63
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_production_shards_flights_with_merge(objects: dict[str, list[Obj]]) -> None:
    jobs = [o for o in objects["production"] if o["kind"] == "Job"]
    names = [j["metadata"]["name"] for j in jobs]
    shards = next(j for j in jobs if j["metadata"]["name"].startswith("rodata-etl-flights-"))
    merge = next(j for j in jobs if j["metadata"]["name"].startswith("rodata-merge-flights-"))

    assert shards["spec"]["completionMode"] == "Indexed"
    assert shards["spec"]["completions"] == 4
    assert shards["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["--shard-count", "4"]
    assert merge["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["rodata-etl", "merge"]
    assert "completionMode" not in merge["spec"]
    assert names.index(merge["metadata"]["name"]) == len(names) - 1, "merge Jobs come last"
    etl = shards["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert etl == {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}


def test_etl_reads_specs_from_configmap(objects: dict[str, list[Obj]]) -> None:
    objs = objects["production"]
    configmap = next(o for o in objs if o["metadata"]["name"].startswith("rodata-etl-specs-"))
    jobs = [o for o in objs if o["kind"] == "Job"]

    assert configmap["immutable"] is True
    assert configmap["data"]["flights.yaml"] == (REPO / "datasets/nycflights13/flights.yaml").read_text()
    assert set(configmap["data"]) == {f"{name}.yaml" for name in
                                      ("flights", "airports", "planes", "weather", "airlines")}
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        volume = next(v for v in spec["volumes"] if v["name"] == "specs")
        command = spec["containers"][0]["command"]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        assert command[command.index("--spec") + 1].startswith("/specs/")


def test_read_only_claims_are_never_empty(objects: dict[str, list[Obj]]) -> None:
    for inventory in KUBERNETES_INVENTORIES:
        for claim in (o for o in objects[inventory] if o["kind"] == "PersistentVolumeClaim"):
            if "ReadOnlyMany" in claim["spec"]["accessModes"]:
                assert claim["spec"]["dataSource"]["name"], claim["metadata"]["name"]


def test_strategies_follow_storage_capabilities(objects: dict[str, list[Obj]]) -> None:
    staging_claims = [o for o in objects["staging"] if o["kind"] == "PersistentVolumeClaim"]
    production_claims = [o for o in objects["production"] if o["kind"] == "PersistentVolumeClaim"]

    assert [c["spec"]["accessModes"] for c in staging_claims] == [["ReadWriteMany"]]
    assert [c["spec"]["accessModes"] for c in production_claims] == [["ReadWriteOnce"], ["ReadOnlyMany"]]
    assert production_claims[1]["spec"]["dataSource"]["kind"] == "VolumeSnapshot"
    assert "VolumeSnapshot" not in [o["kind"] for o in objects["staging"]]


def test_ingress_annotations_per_controller(objects: dict[str, list[Obj]]) -> None:
    staging = one(objects["staging"], "Ingress")
    production = one(objects["production"], "Ingress")

    assert staging["spec"]["ingressClassName"] == "traefik"
    assert staging["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert not any(key.startswith("nginx.") for key in staging["metadata"]["annotations"])
    assert production["spec"]["ingressClassName"] == "nginx"
    assert production["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert production["spec"]["tls"] == [{"hosts": ["rodata.example.com"], "secretName": "rodata-tls"}]


def test_environments_differ_where_clusters_differ(objects: dict[str, list[Obj]]) -> None:
    def image(objs: list[Obj]) -> str:
        return one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image(objects["staging"]).startswith("registry.staging.example.com/")
    assert image(objects["production"]).startswith("registry.example.com/")
    assert {o["metadata"]["namespace"] for o in objects["staging"]} == {"rodata-staging"}
    assert "NetworkPolicy" in [o["kind"] for o in objects["production"]]
    assert "NetworkPolicy" not in [o["kind"] for o in objects["staging"]]


# Variants rendered with extra variables -------------------------------------------------

def test_workers_need_proportional_limits(tmp_path: Path) -> None:
    run, _ = render("staging", tmp_path / "out", tmp_path, {
        "rodata_datasets": AIRLINES_ONLY,
        "rodata_api_k8s_workers": 2,
        "rodata_api_k8s_resources": {"cpu": "1", "memory": "1024Mi"},
    })

    assert run.returncode != 0
    assert "rodata_api_k8s_workers=2 does not fit" in run.output
    assert 'set cpu "2" and memory "2048Mi"' in run.output


def test_two_workers_with_two_cpus_render(tmp_path: Path) -> None:
    run, files = render("staging", tmp_path / "out", tmp_path, {
        "rodata_datasets": AIRLINES_ONLY,
        "rodata_api_k8s_workers": 2,
        "rodata_api_k8s_resources": {"cpu": "2", "memory": "2048Mi"},
        "rodata_api_k8s_hpa": {"enabled": False},
        "rodata_api_k8s_replicas": 3,
    })
    assert run.returncode == 0, run.output[-3000:]
    objs = load(files)
    deployment = one(objs, "Deployment")

    assert deployment["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in [o["kind"] for o in objs]
    for container in all_containers(deployment["spec"]["template"]["spec"]):
        assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
        assert container["resources"]["requests"] == {"cpu": "2", "memory": "2Gi"}
    assert one(objs, "ConfigMap")["data"]["RODATA_WORKERS"] == "2"


def test_storage_without_read_only_support_rejected(tmp_path: Path) -> None:
    run, _ = render("staging", tmp_path / "out", tmp_path, {
        "rodata_datasets": AIRLINES_ONLY,
        "rodata_volume_capabilities": {"read_write_many": False},
    })

    assert run.returncode != 0
    assert "never provisions an empty" in run.output
    assert "ReadOnlyMany claim" in run.output


def test_changed_inputs_rename_jobs_and_clone(tmp_path: Path, objects: dict[str, list[Obj]]) -> None:
    run, files = render("production", tmp_path / "out", tmp_path, {
        "rodata_etl_k8s_source_revision": "2026-12-04",
        "rodata_volume_capabilities": {"read_only_many_from_clone": True},
    })
    assert run.returncode == 0, run.output[-3000:]
    objs = load(files)
    before = {j["metadata"]["name"] for j in objects["production"] if j["kind"] == "Job"}
    after = {j["metadata"]["name"] for j in objs if j["kind"] == "Job"}
    claim = [o for o in objs if o["kind"] == "PersistentVolumeClaim"][-1]

    assert before.isdisjoint(after), "a new source revision gives every Job a new name"
    assert len(after) == len(before)
    assert "VolumeSnapshot" not in [o["kind"] for o in objs]
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "rodata-staging"}
