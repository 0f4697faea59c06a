"""Static and fail-fast checks of the Ansible roles and playbooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = ["rodata_images", "rodata_etl", "rodata_api", "rodata_smoke", "rodata_volume"]
PLAYBOOKS = sorted((REPO_ROOT / "playbooks").glob("*.yml"))


def ansible_playbook() -> str:
    """Return the ansible-playbook next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if found is None:
        pytest.fail("ansible-playbook not found: install requirements/dev.txt")
    return found


def run_playbook(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [ansible_playbook(), *args], cwd=cwd, env=env, capture_output=True, text=True,
        check=False, timeout=300,
    )


def defaults_files(role: str) -> list[Path]:
    """Return the files under the role's defaults/main/, sorted by name."""
    return sorted((REPO_ROOT / "roles" / role / "defaults" / "main").glob("*.yml"))


def role_defaults(role: str) -> dict:
    """Return the defaults of every file under the role's defaults/main/, as Ansible merges them."""
    defaults: dict = {}
    for path in defaults_files(role):
        loaded = yaml.safe_load(path.read_text()) or {}
        duplicated = sorted(set(defaults) & set(loaded))
        assert not duplicated, f"{path.relative_to(REPO_ROOT)}: defaults set twice: {duplicated}"
        defaults.update(loaded)
    return defaults


def role_options(role: str) -> dict:
    specs = yaml.safe_load((REPO_ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_have_argument_specs(role: str) -> None:
    assert defaults_files(role), f"{role}: no defaults files under defaults/main/"

    undocumented = set(role_defaults(role)) - set(role_options(role))
    assert not undocumented, f"{role}: defaults without an argument spec: {sorted(undocumented)}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_defaults(role: str) -> None:
    # The validate_argument_spec action of ansible-core 2.19 never applies a spec default, so
    # the value comes from defaults/ and a spec default that differs only misleads the reader.
    # NOTE: an option without a spec default is not compared, and the older entries have none.
    defaults = role_defaults(role)
    differing = {
        name: {"spec": option["default"], "defaults": defaults.get(name, "<not set>")}
        for name, option in role_options(role).items()
        if "default" in option and option["default"] != defaults.get(name, object())
    }
    assert not differing, f"{role}: spec defaults that differ from defaults/main/: {differing}"


def validate_inventory(tmp_path: Path, inventory: str, *extra: str) -> subprocess.CompletedProcess:
    """Run only the checks of the roles' main argument spec entry point on an inventory.

    Ansible tags the check tasks `always`, so a tag that no task carries leaves them as the
    only tasks that run.
    """
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Check the role inputs of an inventory",
        "hosts": "all",
        "gather_facts": False,
        "roles": ["rodata_etl", "rodata_volume", "rodata_api"],
    }]))
    return run_playbook("-i", f"inventory/{inventory}", str(playbook),
                        "--tags", "argument-specs-only", *extra)


@pytest.mark.parametrize("inventory", ["local", "staging", "production"])
def test_inventory_passes_argument_specs(tmp_path: Path, inventory: str) -> None:
    result = validate_inventory(tmp_path, inventory)

    assert result.returncode == 0, result.stdout[-3000:]
    checks = [line for line in result.stdout.splitlines()
              if line.startswith("TASK [") and "Validating arguments against arg spec 'main'" in line]
    assert len(checks) == 3, result.stdout[-3000:]
    assert "failed=0" in result.stdout


@pytest.mark.parametrize(("value", "message"), [
    ({"rodata_api_k8s_service_type": "Ingress"},
     "value of rodata_api_k8s_service_type must be one of: ClusterIP, NodePort, LoadBalancer"),
    ({"rodata_api_k8s_ingress": {"class": "haproxy"}},
     "value of class must be one of: nginx, traefik, got: haproxy found in rodata_api_k8s_ingress"),
    ({"rodata_api_k8s_hpa": {"min_replica": 1}}, "rodata_api_k8s_hpa.min_replica"),
    ({"rodata_etl_k8s_source": {"type": "s3"}}, "got: s3 found in rodata_etl_k8s_source"),
    ({"rodata_volume_keep_generations": "two"}, "rodata_volume_keep_generations"),
], ids=["service_type", "ingress_class", "hpa_key", "source_type", "keep_generations"])
def test_invalid_kubernetes_input_named(tmp_path: Path, value: dict, message: str) -> None:
    result = validate_inventory(tmp_path, "staging", "-e", json.dumps(value))

    assert result.returncode != 0
    assert message in result.stdout


def test_render_checks_argument_specs(tmp_path: Path) -> None:
    out = tmp_path / "manifests"

    result = run_playbook("-i", "inventory/staging", "playbooks/render.yml",
                          "-e", f"rodata_render_dir={out}", "-e", "rodata_api_k8s_service_type=Ingress")

    assert result.returncode != 0
    assert "Validating arguments against arg spec 'kubernetes_manifests'" in result.stdout
    assert "value of rodata_api_k8s_service_type must be one of" in result.stdout
    assert not out.exists()


@pytest.mark.parametrize("role", ROLES)
def test_variables_prefixed_with_role(role: str) -> None:
    names = set(role_defaults(role)) | set(role_options(role))
    unprefixed = sorted(n for n in names if not n.startswith(role + "_"))
    assert not unprefixed, f"{role}: variables without the role prefix: {unprefixed}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_commented(role: str) -> None:
    # Every default carries a comment right above it (or shares one with the line above).
    for path in defaults_files(role):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line and not line[0].isspace() and not line.startswith(("#", "---")):
                previous = lines[number - 1] if number else ""
                assert previous.startswith("#") or (previous and not previous[0].isspace()
                                                    and not previous.startswith("---")), (
                    f"{path.relative_to(REPO_ROOT)}:{number + 1}: {line.split(':')[0]} has no comment"
                )


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_syntax(playbook: Path) -> None:
    result = run_playbook("--syntax-check", str(playbook))
    assert result.returncode == 0, result.stdout + result.stderr


def test_invalid_runtime_named(tmp_path: Path) -> None:
    result = run_playbook("playbooks/site.yml", "-e", "rodata_runtime=kubelet",
                          "-e", f"rodata_state_dir={tmp_path}")

    assert result.returncode != 0
    assert "rodata_images_runtime" in result.stdout
    assert "kubelet" in result.stdout
    assert not any(tmp_path.iterdir())


def run_role(tmp_path: Path, name: str, role: str, role_vars: dict) -> subprocess.CompletedProcess:
    """Write a one-play playbook that applies `role` on localhost, run it and return the result."""
    playbook = tmp_path / f"{role}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": name,
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{"role": role, "vars": role_vars}],
    }]))
    return run_playbook(str(playbook))


def test_worker_limits_mismatch_named(tmp_path: Path) -> None:
    result = run_role(tmp_path, "Start the API with two workers and one CPU", "rodata_api", {
        "rodata_api_runtime": "process", "rodata_api_venv_dir": str(tmp_path / "venv"),
        "rodata_api_state_dir": str(tmp_path), "rodata_api_data_root": str(tmp_path),
        "rodata_api_workers": 2, "rodata_api_cpus": 1, "rodata_api_memory_mib": 1024,
    })

    assert result.returncode != 0
    assert "rodata_api_workers=2 needs rodata_api_cpus=2 and rodata_api_memory_mib=2048" in result.stdout
    assert not (tmp_path / "run").exists()


def test_missing_dataset_field_named(tmp_path: Path) -> None:
    result = run_role(tmp_path, "Publish a dataset declared without its spec", "rodata_etl", {
        "rodata_etl_runtime": "process", "rodata_etl_venv_dir": str(tmp_path / "venv"),
        "rodata_etl_state_dir": str(tmp_path), "rodata_etl_data_root": str(tmp_path / "data"),
        "rodata_etl_source_dir": str(tmp_path), "rodata_etl_datasets": [{"name": "flights"}],
    })

    assert result.returncode != 0
    assert "spec" in result.stdout
    assert "rodata_etl_datasets" in result.stdout
    assert not (tmp_path / "data").exists()


def test_missing_spec_file_named(tmp_path: Path) -> None:
    result = run_role(tmp_path, "Publish a dataset whose spec file does not exist", "rodata_etl", {
        "rodata_etl_runtime": "process", "rodata_etl_venv_dir": str(tmp_path / "venv"),
        "rodata_etl_project_dir": str(REPO_ROOT),
        "rodata_etl_state_dir": str(tmp_path), "rodata_etl_data_root": str(tmp_path / "data"),
        "rodata_etl_source_dir": str(tmp_path),
        "rodata_etl_datasets": [{"name": "trips", "spec": "datasets/trips.yaml"}],
    })

    assert result.returncode != 0
    assert "Dataset spec not found: datasets/trips.yaml" in result.stdout
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_check_mode_first_run(tmp_path: Path) -> None:
    state = tmp_path / "state"

    result = run_playbook("playbooks/site.yml", "--check", "-e", "rodata_runtime=process",
                          "-e", f"rodata_state_dir={state}", "-e", "rodata_api_port=1")

    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed=0" in result.stdout
    assert not state.exists()
