"""The roles' apply path against the stand-in API server (tests/k8s/standin_apiserver.py).

The stand-in is not Kubernetes: it checks what the roles send and in which order, and
imitates the server behaviour they depend on (server-side apply, dry-run, immutable Job
templates, Job and Deployment status). The manifests themselves are validated against the
real schemas in test_render.py; molecule/kind runs the same roles on a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_support import PlaybookRun, run_playbook
from standin_apiserver import StandinCluster

pytestmark = pytest.mark.slow

DEPLOY = "tests/k8s/playbooks/deploy.yml"
# Two datasets keep the runs short; flights exercises the sharded Indexed Job and merge.
SMALL = {"rodata_datasets": [{"name": "airlines", "spec": "datasets/nycflights13/airlines.yaml"},
                             {"name": "flights", "spec": "datasets/nycflights13/flights.yaml"}]}


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandinCluster]:
    cluster = StandinCluster().start()
    (tmp_path / "kubeconfig").write_text(cluster.kubeconfig("production"))
    yield cluster
    cluster.stop()


def deploy(standin: StandinCluster, tmp_path: Path, extra: dict[str, Any] | None = None,
           check: bool = False) -> PlaybookRun:
    return run_playbook(DEPLOY, "production", tmp_path, {
        "rodata_k8s_kubeconfig": str(tmp_path / "kubeconfig"),
        "rodata_etl_k8s_poll_seconds": 1,
        **(extra or {}),
    }, check=check)


def applied(standin: StandinCluster) -> list[str]:
    return [f"{r.kind}/{r.name}" for r in standin.state.writes()]


def test_apply_order_and_second_run_no_change(standin: StandinCluster, tmp_path: Path) -> None:
    first = deploy(standin, tmp_path)
    assert first.returncode == 0, first.output[-4000:]
    order = [name.split("/")[0] for name in applied(standin)]
    writes = standin.state.writes()

    assert order == [
        "PersistentVolumeClaim",
        "ConfigMap",  # dataset specs
        "Job", "Job", "Job", "Job", "Job",  # run Jobs of five datasets, flights as shards
        "Job",  # merge Job of flights
        "VolumeSnapshot", "PersistentVolumeClaim",
        "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy",
        "Deployment",
        "HorizontalPodAutoscaler", "Ingress", "ServiceMonitor",
    ]
    assert applied(standin)[1].startswith("ConfigMap/rodata-etl-specs-")
    assert applied(standin)[7].startswith("Job/rodata-merge-flights-")
    assert all("apply-patch" in r.content_type for r in writes)
    assert {r.query.get("fieldManager") for r in writes} == {"rodata-ansible"}
    assert {r.query.get("force") for r in writes} == {"true"}

    # An autoscaler changes the replica count between runs; a re-run must keep it.
    deployment = standin.state.get("Deployment", "rodata", "rodata-api")
    deployment["spec"]["replicas"] = 7
    deployment["status"].update({"replicas": 7, "updatedReplicas": 7, "readyReplicas": 7,
                                 "availableReplicas": 7})
    writes_before = len(standin.state.writes())

    second = deploy(standin, tmp_path)

    assert second.returncode == 0, second.output[-4000:]
    assert second.recap()["changed"] == 0
    assert "the ETL Jobs are skipped" in second.output
    assert not any(r.kind == "Job" for r in standin.state.writes()[writes_before:])
    assert standin.state.get("Deployment", "rodata", "rodata-api")["spec"]["replicas"] == 7


def test_failed_job_fails_with_log_tail(standin: StandinCluster, tmp_path: Path) -> None:
    standin.state.failing_jobs.add("rodata-etl-flights-")

    run = deploy(standin, tmp_path, SMALL)

    assert run.returncode != 0
    assert "ETL Job rodata/rodata-etl-flights-" in run.output
    assert "BackoffLimitExceeded" in run.output
    assert "data error in flights.csv line 7, column dep_time" in run.output
    assert "reading sources" not in run.output, "only the tail of the log is shown"
    kinds = {r.kind for r in standin.state.writes()}
    assert "VolumeSnapshot" not in kinds, "nothing is published after a failed Job"
    assert "Deployment" not in kinds
    assert not any(name.startswith("Job/rodata-merge-") for name in applied(standin))


def test_rollout_not_ready_rolls_back(standin: StandinCluster, tmp_path: Path) -> None:
    good = deploy(standin, tmp_path, SMALL)
    assert good.returncode == 0, good.output[-4000:]
    good_image = standin.state.get("Deployment", "rodata", "rodata-api")["spec"]["template"]["spec"]["containers"][0]["image"]
    standin.state.broken_images.add(":broken")

    bad = deploy(standin, tmp_path, {**SMALL, "rodata_api_k8s_image": "registry.example.com/rodata/rodata-api:broken",
                                     "rodata_api_k8s_rollout_timeout": 2})

    assert bad.returncode != 0
    assert "did not become ready within 2 seconds" in bad.output
    assert "Rolled back to the previous revision" in bad.output
    deployment = standin.state.get("Deployment", "rodata", "rodata-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == good_image
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert "HorizontalPodAutoscaler" in {r.kind for r in standin.state.writes()}


def test_check_mode_uses_server_dry_run(standin: StandinCluster, tmp_path: Path) -> None:
    run = deploy(standin, tmp_path, SMALL, check=True)

    assert run.returncode == 0, run.output[-4000:]
    assert standin.state.writes() == [], "check mode changed the stand-in"
    assert standin.state.objects == {}
    dry = standin.state.writes(dry_run=True)
    assert {r.kind for r in dry} >= {"PersistentVolumeClaim", "Job", "Deployment", "ConfigMap"}
    assert run.recap()["changed"] > 0, "check mode reports what would change"


def test_new_revision_runs_new_jobs_and_prunes(standin: StandinCluster, tmp_path: Path) -> None:
    # The stand-in rejects a changed template under an existing Job name, as Kubernetes
    # does. So a new source revision succeeds only if it reaches the cluster as new Jobs.
    first = deploy(standin, tmp_path, SMALL)
    assert first.returncode == 0, first.output[-4000:]
    jobs_before = {name for name in applied(standin) if name.startswith("Job/")}
    first_claim = standin.state.get("Deployment", "rodata", "rodata-api")[
        "spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]

    second = deploy(standin, tmp_path, {**SMALL, "rodata_etl_k8s_source_revision": "2026-12-05",
                                        "rodata_volume_keep_generations": 1})

    assert second.returncode == 0, second.output[-4000:]
    jobs_after = {name for name in applied(standin) if name.startswith("Job/")} - jobs_before
    assert len(jobs_after) == len(jobs_before) == 3
    claim = standin.state.get("Deployment", "rodata", "rodata-api")[
        "spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim != first_claim, "the API moved to the new generation's claim"
    claims = sorted(name for kind, _, name in standin.state.objects if kind == "PersistentVolumeClaim")
    snapshots = sorted(name for kind, _, name in standin.state.objects if kind == "VolumeSnapshot")
    assert claims == sorted(["rodata-staging", claim]), "the old generation's claim was deleted"
    assert snapshots == [claim]
    deletes = [f"{r.kind}/{r.name}" for r in standin.state.writes() if r.method == "DELETE"]
    assert deletes == [f"PersistentVolumeClaim/{first_claim}", f"VolumeSnapshot/{first_claim}"]
