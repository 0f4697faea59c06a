#!/usr/bin/python
"""Ansible module: write Kubernetes objects to a directory, one YAML file per object."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rodata_manifest_dir
short_description: Write Kubernetes objects to a directory, one YAML file per object
description:
  - Writes each object to its own file with sorted keys, so an unchanged object gives a
    byte-identical file and the task reports no change.
  - Removes C(*.yaml) files of the directory that are not in O(files), so that a renamed
    object leaves no stale manifest for a GitOps tool to apply.
  - One module run for all files; a copy task per file costs a process per object.
options:
  path:
    description: Output directory; created when missing.
    type: path
    required: true
  files:
    description: File name (no directory part) to Kubernetes object.
    type: dict
    required: true
"""

import os

import yaml
from ansible.module_utils.basic import AnsibleModule


class _Dumper(yaml.SafeDumper):
    """YAML dumper that writes multi-line strings (dataset specs, scripts) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True, indent=2, width=100)


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True},
                       "files": {"type": "dict", "required": True}},
        supports_check_mode=True,
    )
    path = module.params["path"]
    files = module.params["files"]

    for name in files:
        # A name with a directory part would write outside the output directory.
        if os.path.basename(name) != name or not name.endswith(".yaml"):
            module.fail_json(msg=f"invalid manifest file name {name!r}: expected NAME.yaml without a directory")

    existing = set()
    if os.path.isdir(path):
        existing = {entry for entry in os.listdir(path) if entry.endswith(".yaml")}

    written, removed = [], sorted(existing - set(files))
    contents = {name: _dump(obj) for name, obj in files.items()}
    for name, text in sorted(contents.items()):
        target = os.path.join(path, name)
        try:
            with open(target, encoding="utf-8") as handle:
                if handle.read() == text:
                    continue
        except FileNotFoundError:
            pass
        written.append(name)

    if not module.check_mode:
        os.makedirs(path, exist_ok=True)
        for name in written:
            temporary = os.path.join(path, f".{name}.tmp")
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(contents[name])
            os.replace(temporary, os.path.join(path, name))
        for name in removed:
            os.unlink(os.path.join(path, name))

    module.exit_json(changed=bool(written or removed), path=path, written=written, removed=removed,
                     files=sorted(files))


if __name__ == "__main__":
    main()
