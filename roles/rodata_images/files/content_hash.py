"""Print the content hash that tags rodata's images and virtualenvs.

The hash covers every file that ends up in an image (Python sources, packaging metadata, the
runtime pins and the Containerfiles) plus the build settings passed as arguments, so an unchanged
tree yields the same tag and nothing is rebuilt. Output is one JSON object:
{"source": <sha256>, "dependencies": <sha256>, "tag": <first 12 hex digits of both combined>}.
"""

import hashlib
import json
import sys
from pathlib import Path

SOURCE_DIRS = ("rodata", "etl", "app")
SOURCE_FILES = ("pyproject.toml", "README.md")
DEPENDENCY_FILES = ("requirements/runtime.txt",)
BUILD_GLOBS = ("containers/*.Containerfile",)


def hash_files(root: Path, paths: list[Path]) -> str:
    """Return the sha256 of the paths (relative to root) and their contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: content_hash.py PROJECT_DIR [BUILD_SETTING ...]", file=sys.stderr)
        return 2
    root = Path(sys.argv[1]).resolve()
    settings = sys.argv[2:]

    sources = [p for d in SOURCE_DIRS for p in (root / d).rglob("*.py")]
    sources += [root / f for f in SOURCE_FILES if (root / f).is_file()]
    sources += [p for pattern in BUILD_GLOBS for p in root.glob(pattern)]
    dependencies = [root / f for f in DEPENDENCY_FILES]
    missing = [str(p) for p in dependencies if not p.is_file()]
    if missing:
        print(f"missing dependency pins: {', '.join(missing)}", file=sys.stderr)
        return 1

    source_hash = hash_files(root, sources)
    dependency_hash = hashlib.sha256(
        (hash_files(root, dependencies) + "\0" + "\0".join(settings)).encode()
    ).hexdigest()
    tag = hashlib.sha256((source_hash + dependency_hash).encode()).hexdigest()[:12]
    print(json.dumps({"source": source_hash, "dependencies": dependency_hash, "tag": tag}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
