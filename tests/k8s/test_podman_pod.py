"""Run the rendered ETL and API pod specs for real with podman.

The ETL Jobs' containers run with `podman run` (same image, command, user, CPU and memory
limits, read-only root), and the API Deployment runs with `podman kube play`. The API must
then answer through the published port, with the data volume mounted read-only and the
pod's limits in place. Needs podman and the images that rodata_images builds; the images
are taken from RODATA_TEST_API_IMAGE and RODATA_TEST_ETL_IMAGE, else the newest
localhost/rodata-api and localhost/rodata-etl. The test is skipped when any is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import REPO, load, render

pytestmark = [pytest.mark.podman, pytest.mark.slow]

DATASETS = [{"name": "airlines", "spec": "datasets/nycflights13/airlines.yaml"},
            {"name": "flights", "spec": "datasets/nycflights13/flights.yaml"}]

# This machine's podman needs runc, cgroupfs and file events, and lacks CAP_SYS_RESOURCE
# for the default ulimits. The settings belong to the test machine, not to the product.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman(*args: str, env: dict[str, str], timeout: int = 120, check: bool = True) -> str:
    proc = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def newest_image(repository: str, env: dict[str, str]) -> str | None:
    out = podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.CreatedAt}}", repository,
                 env=env, check=False)
    rows = [line.split(" ", 1) for line in out.splitlines() if line.strip() and "<none>" not in line]
    return max(rows, key=lambda row: row[1])[0] if rows else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def podman_env(tmp_path: Path) -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture
def images(podman_env: dict[str, str]) -> dict[str, str]:
    api = os.environ.get("RODATA_TEST_API_IMAGE") or newest_image("localhost/rodata-api", podman_env)
    etl = os.environ.get("RODATA_TEST_ETL_IMAGE") or newest_image("localhost/rodata-etl", podman_env)
    if not api or not etl:
        pytest.skip("no rodata-api or rodata-etl image; build them with playbooks/site.yml first")
    return {"api": api, "etl": etl}


@pytest.fixture
def data_volume(podman_env: dict[str, str]) -> Iterator[str]:
    name = f"rodata-k8stest-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name, env=podman_env)
    yield name
    # The test names its pod after the volume; a pod left by a failed run holds the volume.
    podman("pod", "rm", "--force", f"{name}-pod-0", env=podman_env, check=False)
    podman("volume", "rm", "--force", name, env=podman_env, check=False)


def fetch_sources(dest: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "etl", "fetch-nycflights13", "--dest", str(dest)],
                   env=env, check=True, capture_output=True, timeout=300)


def run_etl_job(job: dict[str, Any], image: str, volume: str, sources: Path, specs: Path,
                env: dict[str, str]) -> dict[str, Any]:
    """Run the container of a rendered ETL Job the way its pod spec describes it."""
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    limits = container["resources"]["limits"]
    user = f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"
    out = podman(
        "run", "--rm", "--cpus", str(limits["cpu"]), "--memory", limits["memory"].replace("Gi", "g"),
        "--user", user, "--read-only", "--cap-drop", "ALL", "--tmpfs", "/tmp",
        "-v", f"{volume}:/data", "-v", f"{sources}:/sources:ro", "-v", f"{specs}:/specs:ro",
        "--entrypoint", container["command"][0], image, *container["command"][1:],
        env=env, timeout=600,
    )
    return json.loads(out.strip().splitlines()[-1])


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}/readyz did not answer 200 within {seconds} s")
        time.sleep(0.5)


def test_rendered_pods_run_in_podman(tmp_path: Path, podman_env: dict[str, str], images: dict[str, str],
                                     data_volume: str) -> None:
    run, files = render("staging", tmp_path / "manifests", tmp_path, {
        "rodata_datasets": DATASETS,
        "rodata_images_api_image": images["api"],
        "rodata_images_etl_image": images["etl"],
    })
    assert run.returncode == 0, run.output[-3000:]
    objs = load(files)
    specs_configmap = next(o for o in objs if o["metadata"]["name"].startswith("rodata-etl-specs-"))
    api_config = next(o for o in objs if o["metadata"]["name"] == "rodata-api-config")
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    jobs = [o for o in objs if o["kind"] == "Job"]

    sources, specs = tmp_path / "sources", tmp_path / "specs"
    specs.mkdir()
    for name, text in specs_configmap["data"].items():
        (specs / name).write_text(text)
    fetch_sources(sources)
    # fsGroup makes a claim writable for the ETL on Kubernetes; podman has no fsGroup.
    podman("run", "--rm", "--user", "0", "--entrypoint", "chown", "-v", f"{data_volume}:/data",
           images["etl"], "10001:10001", "/data", env=podman_env)

    summaries = [run_etl_job(job, images["etl"], data_volume, sources, specs, podman_env) for job in jobs]

    assert [s["dataset"] for s in summaries] == ["airlines", "flights"]
    assert summaries[1]["rows_published"] == 336776
    assert summaries[1]["workers"] == 2, "the ETL sizes its pool from the 2-CPU limit"

    port = free_port()
    pod_spec = deployment["spec"]["template"]["spec"]
    pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] = data_volume
    pod_spec["containers"][0]["ports"][0].update({"hostPort": port, "hostIP": "127.0.0.1"})
    # podman 4.3 applies the pod's restart policy (Always for a Deployment) to init containers
    # too, restarting the data check until its removal races with a restart and kube play
    # fails. OnFailure lets the check exit once; a failing API container still restarts.
    pod_spec["restartPolicy"] = "OnFailure"
    deployment["metadata"]["name"] = data_volume
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(api_config))
    podman("kube", "play", "--configmap", str(tmp_path / "configmap.yaml"), str(tmp_path / "deployment.yaml"),
           env=podman_env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 60)
        with urllib.request.urlopen(url + "/v1/datasets/flights/rows/1", timeout=5) as response:
            row = json.loads(response.read())["row"]
        container = f"{data_volume}-pod-0-api"
        limits = json.loads(podman("inspect", container, env=podman_env))[0]["HostConfig"]
        touch = subprocess.run(["podman", "exec", container, "touch", "/data/probe"], env=podman_env,
                               capture_output=True, text=True, timeout=60, check=False)
        threads = podman("exec", container, "printenv", "OMP_NUM_THREADS", env=podman_env).strip()
    finally:
        podman("kube", "down", str(tmp_path / "deployment.yaml"), env=podman_env, check=False)

    assert (row["carrier"], row["flight"], row["tailnum"]) == ("UA", 1545, "N14228")
    assert (row["origin"], row["dest"]) == ("EWR", "IAH")
    assert limits["NanoCpus"] == 1_000_000_000 or limits["CpuQuota"] == limits["CpuPeriod"]
    assert limits["Memory"] == 1024 * 1024 * 1024
    assert limits["ReadonlyRootfs"] is True
    assert touch.returncode != 0
    assert "Read-only file system" in touch.stderr
    assert threads == "1"
