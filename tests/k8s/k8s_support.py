"""Helpers for the Kubernetes tests: run this repository's playbooks and render inventories.

They live here rather than in conftest.py because every test folder has a conftest module of
its own, so `from conftest import ...` would pick whichever one was imported first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
KUBERNETES_INVENTORIES = ["staging", "production"]
# One small dataset, for variants that check the API objects only.
AIRLINES_ONLY = [{"name": "airlines", "spec": "datasets/nycflights13/airlines.yaml"}]

# The roles' Jinja filters, so the tests can call the same canonical quantity function.
sys.path.insert(0, str(REPO / "plugins" / "filter"))


@dataclass
class PlaybookRun:
    """Result of one ansible-playbook run: exit code, output and the recap counters."""

    returncode: int
    output: str

    def recap(self) -> dict[str, int]:
        match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", self.output)
        assert match, f"no PLAY RECAP in ansible-playbook output:\n{self.output[-3000:]}"
        ok, changed, unreachable, failed = map(int, match.groups())
        return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def run_playbook(playbook: str, inventory: str, tmp_path: Path, extra_vars: dict[str, Any] | None = None,
                 check: bool = False) -> PlaybookRun:
    """Run a playbook of this repository with its roles; temporary files stay in tmp_path."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # The kubernetes client caches API discovery under TMPDIR, keyed by server URL.
        "TMPDIR": str(tmp_path),
    })
    command = [str(PLAYBOOK_BIN), "-i", str(REPO / "inventory" / inventory), str(REPO / playbook)]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)


def render(inventory: str, out_dir: Path, tmp_path: Path,
           extra_vars: dict[str, Any] | None = None) -> tuple[PlaybookRun, list[Path]]:
    """Render an inventory with playbooks/render.yml into out_dir; return the run and files."""
    run = run_playbook("playbooks/render.yml", inventory, tmp_path,
                       {"rodata_render_dir": str(out_dir), **(extra_vars or {})})
    return run, sorted(out_dir.glob("*.yaml"))


def load(files: list[Path]) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in files]
