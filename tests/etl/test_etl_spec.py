"""Spec parsing: valid specs load, invalid ones name the field to fix."""

from __future__ import annotations

import pytest

from etl.spec import SpecError, dump_spec, load_spec, parse_spec

BASE = {"name": "flights", "sources": ["flights.csv"], "row_id": "id"}


def test_minimal_spec_defaults():
    spec = parse_spec(dict(BASE))
    assert spec.key == ["id"]
    assert spec.format == "csv"
    assert spec.max_rejects == 0
    assert spec.missing == ("",)
    assert spec.allow_duplicate_keys is False
    assert spec.csv.delimiter == ","


def test_column_missing_overrides_default():
    spec = parse_spec({**BASE, "missing": ["", "NA"],
                       "columns": [{"name": "tailnum", "type": "string", "missing": []}]})
    assert spec.missing_for("tailnum") == ()
    assert spec.missing_for("other") == ("", "NA")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "../x"}, "'name'"),
        ({"sources": []}, "'sources'"),
        ({"format": "xlsx"}, "'format' 'xlsx' is not supported"),
        ({"colour": 1}, "unknown field(s) ['colour']"),
        ({"columns": [{"name": "t", "time_zone": "UTC"}]}, "column 't': unknown field(s)"),
        ({"columns": [{"name": "a", "type": "int128"}]}, "type 'int128' is unknown"),
        ({"columns": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
        ({"columns": [{"name": "a", "nullable": "no"}]}, "'nullable' must be true or false"),
        ({"row_id": None, "key": None}, "'key' must name one or more columns"),
        ({"max_rejects": -1}, "'max_rejects' must be an integer >= 0"),
        ({"csv": {"delimiter": ",,"}}, "'csv.delimiter' must be one ASCII character"),
        ({"csv": {"header": False}}, "'csv.header' must be true"),
        ({"columns": [{"name": "a", "type": "int8", "encoding": "dictionary"}]},
         "dictionary encoding applies to strings only"),
        ({"columns": [{"name": "a", "type": "date", "timezone": "UTC"}]},
         "'timezone' applies to type timestamp only"),
        ({"columns": [{"name": "a", "type": "timestamp", "timezone": "Mars/Olympus"}]},
         "'timezone' 'Mars/Olympus' is not a known time zone"),
        ({"columns": [{"name": "a", "type": "timestamp", "timezone": "../etc/passwd"}]},
         "is not a known time zone"),
    ],
)
def test_invalid_spec_names_field(change, message):
    raw = {**BASE, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(SpecError) as error:
        parse_spec(raw, origin="demo.yaml")
    assert "demo.yaml" in str(error.value)
    assert message in str(error.value)


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml: invalid YAML"):
        load_spec(path)


def test_dump_then_load_round_trip(tmp_path):
    spec = parse_spec({**BASE, "columns": [
        {"name": "a", "type": "int16", "missing": ["NA"]},
        {"name": "b", "type": "string", "nullable": False, "encoding": "plain"},
        {"name": "c", "type": "timestamp", "timezone": "America/New_York"},
    ]})
    dump_spec(spec, tmp_path / "pinned.yaml")
    again = load_spec(tmp_path / "pinned.yaml")
    assert again.to_dict() == spec.to_dict()
    assert again.column("c").timezone == "America/New_York"
    assert again.digest() == spec.digest()


def test_reference_specs_load():
    from support import NYCFLIGHTS13_TABLES, SPEC_DIR

    for table in NYCFLIGHTS13_TABLES:
        spec = load_spec(SPEC_DIR / f"{table}.yaml")
        assert spec.name == table
        assert spec.fully_typed()
    assert load_spec(SPEC_DIR / "weather.yaml").key == ["origin", "time_hour"]
    assert load_spec(SPEC_DIR / "flights.yaml").row_id == "id"
