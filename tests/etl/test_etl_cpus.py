"""Worker count from fake cgroup v1/v2 files, the affinity mask and the overrides."""

from __future__ import annotations

import pytest

from etl.cpus import cgroup_cpu_limit, choose_workers


def fake_v2(tmp_path, cpu_max: str, path: str = "/"):
    root = tmp_path / "cgroup"
    directory = root / path.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.max").write_text(cpu_max + "\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::{path}\n")
    return root, proc


def fake_v1(tmp_path, quota: int, period: int = 100000, path: str = "/kubepods/pod1"):
    root = tmp_path / "cgroup"
    directory = root / "cpu,cpuacct" / path.lstrip("/")
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (directory / "cpu.cfs_period_us").write_text(f"{period}\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"4:memory:{path}\n3:cpu,cpuacct:{path}\n0::/\n")
    return root, proc


def test_v2_quota_rounds_up(tmp_path):
    root, proc = fake_v2(tmp_path, "150000 100000")
    assert cgroup_cpu_limit(cgroup_root=root, proc_cgroup=proc) == 1.5
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=8)
    assert choice.workers == 2
    assert "cgroup CPU quota of 1.5 CPUs" in choice.reason


def test_v2_unlimited_uses_affinity(tmp_path):
    root, proc = fake_v2(tmp_path, "max 100000")
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=3)
    assert choice.workers == 3
    assert "affinity mask" in choice.reason


def test_v2_parent_quota_applies(tmp_path):
    root, proc = fake_v2(tmp_path, "max 100000", path="/kubepods/pod1/ctr")
    (root / "kubepods" / "cpu.max").write_text("100000 100000\n")
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=4)
    assert choice.workers == 1


def test_v1_quota(tmp_path):
    root, proc = fake_v1(tmp_path, 250000)
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=16)
    assert choice.workers == 3


def test_v1_unlimited(tmp_path):
    root, proc = fake_v1(tmp_path, -1)
    assert cgroup_cpu_limit(cgroup_root=root, proc_cgroup=proc) is None
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=2)
    assert choice.workers == 2


def test_quota_above_affinity_uses_affinity(tmp_path):
    root, proc = fake_v2(tmp_path, "800000 100000")
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=2)
    assert choice.workers == 2


def test_small_quota_gives_one_worker(tmp_path):
    root, proc = fake_v2(tmp_path, "20000 100000")
    choice = choose_workers(environ={}, cgroup_root=root, proc_cgroup=proc, affinity=2)
    assert choice.workers == 1


def test_environment_overrides_detection(tmp_path):
    root, proc = fake_v2(tmp_path, "100000 100000")
    choice = choose_workers(environ={"RODATA_ETL_WORKERS": "5"}, cgroup_root=root,
                            proc_cgroup=proc, affinity=2)
    assert choice.workers == 5
    assert "RODATA_ETL_WORKERS" in choice.reason


def test_option_overrides_environment():
    choice = choose_workers(3, environ={"RODATA_ETL_WORKERS": "5"})
    assert choice.workers == 3
    assert "--workers" in choice.reason


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_invalid_environment_value(value):
    with pytest.raises(ValueError, match="RODATA_ETL_WORKERS must be an integer >= 1"):
        choose_workers(environ={"RODATA_ETL_WORKERS": value})


def test_cli_logs_chosen_count(tmp_path):
    import os

    from support import run_etl

    result = run_etl("run", "--spec", str(tmp_path / "missing.yaml"), "--data-root",
                     str(tmp_path), env={**os.environ, "RODATA_ETL_WORKERS": "3"}, check=False)
    assert "using 3 worker(s) from RODATA_ETL_WORKERS" in result.stderr
    assert result.returncode == 2
