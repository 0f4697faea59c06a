"""Fixtures for the Kubernetes tests: the manifests of every Kubernetes inventory, rendered
once per session with playbooks/render.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from k8s_support import KUBERNETES_INVENTORIES, load, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Files rendered for every Kubernetes inventory, keyed by inventory name."""
    result = {}
    for inventory in KUBERNETES_INVENTORIES:
        tmp = tmp_path_factory.mktemp(f"render-{inventory}")
        run, files = render(inventory, tmp / "manifests", tmp)
        assert run.returncode == 0, run.output[-4000:]
        result[inventory] = files
    return result


@pytest.fixture(scope="session")
def objects(rendered: dict[str, list[Path]]) -> dict[str, list[dict[str, Any]]]:
    """Objects rendered for every Kubernetes inventory, keyed by inventory name."""
    return {inventory: load(files) for inventory, files in rendered.items()}
