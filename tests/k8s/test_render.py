"""Render every Kubernetes inventory with playbooks/render.yml and validate the files
against the Kubernetes OpenAPI schemas of the oldest and newest supported versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s_support import AIRLINES_ONLY, KUBERNETES_INVENTORIES, load, render

# Oldest and newest Kubernetes minor versions the manifests are written for. 1.30 is the
# oldest because the API container's preStop hook uses the sleep action (beta, on by
# default, since 1.30).
SUPPORTED_VERSIONS = ["1.30.0", "1.37.0"]

# Kinds from CustomResourceDefinitions, which kubernetes-validate has no schemas for;
# tests below check their fields one by one.
CUSTOM_KINDS = {"VolumeSnapshot", "ServiceMonitor", "HTTPRoute"}


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_render_writes_one_file_per_object(rendered: dict[str, list[Path]], inventory: str) -> None:
    files = rendered[inventory]
    assert files, f"no manifests rendered for {inventory}"

    for index, path in enumerate(files, start=1):
        obj = yaml.safe_load(path.read_text())
        assert path.name == f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        assert "---" not in path.read_text(), f"{path.name} holds more than one document"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_manifests_validate_against_schemas(objects: dict[str, list[dict[str, Any]]],
                                            inventory: str, version: str) -> None:
    validated = 0
    for obj in objects[inventory]:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        # strict rejects fields the schema does not know, such as a misspelt key.
        kubernetes_validate.validate(obj, version, strict=True)
        validated += 1
    assert validated >= 10


def test_render_is_repeatable(tmp_path: Path, rendered: dict[str, list[Path]]) -> None:
    out = tmp_path / "manifests"
    first, files = render("production", out, tmp_path)
    assert first.returncode == 0, first.output[-3000:]
    contents = {path.name: path.read_bytes() for path in files}

    second, files_again = render("production", out, tmp_path)

    assert second.returncode == 0, second.output[-3000:]
    assert second.recap()["changed"] == 0
    assert {path.name: path.read_bytes() for path in files_again} == contents
    # The session render of the same inventory in another directory matches byte for byte.
    assert {path.name: path.read_bytes() for path in rendered["production"]} == contents


def test_render_removes_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    out.mkdir()
    (out / "99-job-rodata-etl-old-0000000000.yaml").write_text("kind: Job\n")

    run, files = render("staging", out, tmp_path)

    assert run.returncode == 0, run.output[-3000:]
    assert "99-job-rodata-etl-old-0000000000.yaml" not in [path.name for path in files]


def test_render_skips_local_platform(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory" / "laptop"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    laptop:\n      ansible_connection: local\n      rodata_platform: local\n")
    out = tmp_path / "manifests"

    run, files = render(str(inventory), out, tmp_path)

    assert run.returncode == 0, run.output[-3000:]
    assert files == []


def test_custom_resources_have_required_fields(objects: dict[str, list[dict[str, Any]]]) -> None:
    production = objects["production"]
    snapshots = [o for o in production if o["kind"] == "VolumeSnapshot"]
    monitors = [o for o in production if o["kind"] == "ServiceMonitor"]

    assert len(snapshots) == 1
    assert snapshots[0]["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert snapshots[0]["spec"]["source"] == {"persistentVolumeClaimName": "rodata-staging"}
    assert snapshots[0]["spec"]["volumeSnapshotClassName"] == "pd-snapshots"
    assert len(monitors) == 1
    assert monitors[0]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitors[0]["metadata"]["labels"]["release"] == "prometheus"


def test_httproute_replaces_ingress(tmp_path: Path) -> None:
    run, files = render("staging", tmp_path / "manifests", tmp_path, {
        "rodata_datasets": AIRLINES_ONLY,
        "rodata_api_k8s_ingress": {"enabled": False},
        "rodata_api_k8s_gateway": {"enabled": True, "hostnames": ["rodata.staging.example.com"],
                                   "parent_refs": [{"name": "public", "namespace": "gateways"}]},
    })
    assert run.returncode == 0, run.output[-3000:]
    objs = load(files)
    kinds = [o["kind"] for o in objs]

    assert "Ingress" not in kinds
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "rodata-api", "port": 80}]
