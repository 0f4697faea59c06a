"""Type inference over the whole input, and the pinned spec it writes."""

from __future__ import annotations

from etl_helpers import column_bytes, current_dir, read_rows, write_spec

from etl.engine import RunOptions, run
from etl.spec import load_spec


def test_types_inferred_over_all_shards(tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    lines = ["k,count,ratio,flag,day,stamp,label"]
    for index in range(2000):
        # `ratio` looks like an integer until the last rows, `label` until the very last one.
        ratio = "0.5" if index == 1999 else str(index)
        label = "x" if index == 1999 else str(index)
        lines.append(f"{index},{index},{ratio},true,2013-01-02,2013-01-01T10:00:00Z,{label}")
    lines.append("2000,,,,,,")
    (sources / "data.csv").write_text("\n".join(lines) + "\n")
    spec = write_spec(tmp_path / "spec.yaml", "name: guess\nsources: [data.csv]\nkey: [k]\n")

    root = tmp_path / "root"
    summary = run(RunOptions(spec=str(spec), data_root=str(root), source_dir=str(sources),
                             workers=2, shard_bytes=4096, show_progress=False))
    assert summary.rows_published == 2001

    pinned = load_spec(root / "guess" / "inferred-spec.yaml")
    types = {c.name: c.type for c in pinned.columns}
    assert types == {"k": "int64", "count": "int64", "ratio": "float64", "flag": "bool",
                     "day": "date", "stamp": "timestamp", "label": "string"}
    nullable = {c.name for c in pinned.columns if c.nullable}
    assert nullable == {"count", "ratio", "flag", "day", "stamp", "label"}  # not the key, k
    rows = read_rows(root / "guess")
    assert rows["ratio"][1999] == 0.5
    assert rows["count"][2000] is None
    assert rows["label"][:2] == ["0", "1"]
    assert rows["label"][2000] is None

    # Running the pinned spec gives the same column bytes.
    pinned_root = tmp_path / "pinned"
    run(RunOptions(spec=str(root / "guess" / "inferred-spec.yaml"), data_root=str(pinned_root),
                   source_dir=str(sources), workers=1, show_progress=False))
    assert column_bytes(current_dir(pinned_root / "guess")) == column_bytes(
        current_dir(root / "guess")
    )
