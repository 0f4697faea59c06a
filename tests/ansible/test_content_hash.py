"""The content hash that tags images and virtualenvs: stable for a tree, new for any change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "roles" / "rodata_images" / "files" / "content_hash.py"


def content_hash(project: Path, *settings: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(project), *settings],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """Return a minimal project tree with one file of each hashed kind."""
    (tmp_path / "rodata").mkdir()
    (tmp_path / "rodata" / "format.py").write_text("VERSION = 1\n")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "runtime.txt").write_text("numpy==2.4.6\n")
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "api.Containerfile").write_text("FROM scratch\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'rodata'\n")
    return tmp_path


def test_hash_stable_for_same_tree(project: Path, tmp_path_factory) -> None:
    copy = tmp_path_factory.mktemp("copy") / "project"
    shutil.copytree(project, copy)

    first = content_hash(project, "runtime=podman")

    assert content_hash(project, "runtime=podman") == first
    assert content_hash(copy, "runtime=podman") == first
    assert len(first["tag"]) == 12


def test_source_change_changes_tag(project: Path) -> None:
    before = content_hash(project)
    (project / "rodata" / "format.py").write_text("VERSION = 2\n")

    after = content_hash(project)

    assert after["source"] != before["source"]
    assert after["dependencies"] == before["dependencies"]
    assert after["tag"] != before["tag"]


def test_pin_change_changes_tag(project: Path) -> None:
    before = content_hash(project)
    (project / "requirements" / "runtime.txt").write_text("numpy==2.4.5\n")

    after = content_hash(project)

    assert after["source"] == before["source"]
    assert after["dependencies"] != before["dependencies"]
    assert after["tag"] != before["tag"]


def test_containerfile_and_setting_change_tag(project: Path) -> None:
    before = content_hash(project, "python_source=wheelhouse")

    assert content_hash(project, "python_source=index")["tag"] != before["tag"]
    (project / "containers" / "api.Containerfile").write_text("FROM scratch\nUSER 10001\n")
    assert content_hash(project, "python_source=wheelhouse")["tag"] != before["tag"]


def test_unhashed_file_keeps_tag(project: Path) -> None:
    before = content_hash(project)
    (project / "notes.txt").write_text("not part of any image\n")

    assert content_hash(project) == before


def test_missing_pins_rejected(project: Path) -> None:
    (project / "requirements" / "runtime.txt").unlink()

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(project)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 1
    assert "requirements/runtime.txt" in result.stderr
