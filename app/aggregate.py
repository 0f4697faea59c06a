"""count, sum, mean, min and max over a row range, optionally grouped by a dictionary column.

The range is processed in chunks so that temporary arrays stay small whatever the range, and
the caller caps the range length. Nulls are skipped, so each function reads only the valid
values of its column. NaN values of float columns propagate into sum, mean, min and max.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import query

CHUNK = 1 << 20


def _label(function: str, name: str | None) -> str:
    return function if name is None else f"{function}:{name}"


def _to_python(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    if type_name == "date":
        return np.datetime64(int(value), "D").item()
    if type_name == "timestamp":
        return np.datetime64(int(value), "us").item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def compute(loaded: Any, specs: list[tuple[str, str | None]], group_by: str | None,
            filters: list[query.Filter], begin: int, end: int) -> tuple[dict[str, list], int]:
    """Return ({output column: values}, rows matched by the filters) for rows [begin, end)."""
    groups = 1
    if group_by is not None:
        groups = len(loaded.dictionary(group_by)) + 1  # the last group collects null keys
    accumulators = {spec: _Accumulator(loaded, spec, groups) for spec in dict.fromkeys(specs)}
    matched = 0

    for a in range(begin, end, CHUNK):
        b = min(end, a + CHUNK)
        mask = query.matching(filters, a, b) if filters else np.ones(b - a, dtype=bool)
        matched += int(mask.sum())
        if group_by is None:
            codes = np.zeros(b - a, dtype=np.intp)
        else:
            column = loaded.columns[group_by]
            codes = column.values[a:b].astype(np.intp)
            if column.null_count:
                codes[~column.valid_mask(a, b)] = groups - 1
        for accumulator in accumulators.values():
            accumulator.add(a, b, mask, codes)

    table: dict[str, list] = {}
    if group_by is not None:
        present = np.flatnonzero(accumulators_rows(accumulators, groups))
        names = loaded.dictionary(group_by) + [None]
        table[group_by] = [names[g] for g in present.tolist()]
    else:
        present = np.array([0])
    for spec in specs:
        table[_label(*spec)] = accumulators[spec].result(present)
    return table, matched


def accumulators_rows(accumulators: dict, groups: int) -> np.ndarray:
    """Return a mask of the groups that had at least one matching row."""
    seen = np.zeros(groups, dtype=bool)
    for accumulator in accumulators.values():
        seen |= accumulator.rows > 0
    return seen


class _Accumulator:
    """Running state of one aggregate function over chunks, per group."""

    def __init__(self, loaded: Any, spec: tuple[str, str | None], groups: int) -> None:
        self.function, self.name = spec
        self.groups = groups
        self.rows = np.zeros(groups, dtype=np.int64)  # matching rows, nulls included
        self.count = np.zeros(groups, dtype=np.int64)  # matching non-null values
        self.column = None if self.name is None else loaded.columns[self.name]
        self.type_name = "int64" if self.name is None else loaded.schema[self.name].type
        if self.column is not None:
            dtype = self.column.values.dtype
            if dtype.kind == "M":
                self.kind = "time"
                self.work = np.int64
            elif dtype.kind == "f":
                self.kind = "float"
                self.work = np.float64
            elif dtype.kind == "u":
                self.kind = "int"
                self.work = np.uint64
            else:
                self.kind = "int"
                self.work = np.int64
            if self.function in ("sum", "mean"):
                self.total = np.zeros(groups, dtype=self.work)
            if self.function == "min":
                self.extreme = np.full(groups, _max_of(self.work), dtype=self.work)
            if self.function == "max":
                self.extreme = np.full(groups, _min_of(self.work), dtype=self.work)

    def add(self, a: int, b: int, mask: np.ndarray, codes: np.ndarray) -> None:
        """Fold the rows of [a, b) selected by `mask` into the state."""
        self.rows += np.bincount(codes[mask], minlength=self.groups)
        if self.column is None:
            self.count += np.bincount(codes[mask], minlength=self.groups)
            return
        keep = mask
        if self.column.null_count:
            keep = mask & self.column.valid_mask(a, b)
        group = codes[keep]
        self.count += np.bincount(group, minlength=self.groups)
        if self.function == "count":
            return
        values = self.column.values[a:b][keep]
        if self.kind == "time":
            values = values.view(np.int64)
        values = values.astype(self.work, copy=False)
        if self.function in ("sum", "mean"):
            if self.groups == 1:
                self.total[0] += values.sum(dtype=self.work)
            else:
                np.add.at(self.total, group, values)
        elif self.function == "min":
            np.minimum.at(self.extreme, group, values)
        else:
            np.maximum.at(self.extreme, group, values)

    def result(self, present: np.ndarray) -> list[Any]:
        """Return the function's value for each group in `present`; None where no values."""
        out: list[Any] = []
        for g in present.tolist():
            if self.function == "count":
                out.append(int(self.count[g]))
            elif self.count[g] == 0:
                out.append(None)
            elif self.function == "sum":
                out.append(_to_python(self.total[g], self.type_name))
            elif self.function == "mean":
                out.append(float(self.total[g]) / int(self.count[g]))
            else:
                out.append(_to_python(self.extreme[g], self.type_name))
        return out


def _max_of(dtype: type) -> Any:
    return np.inf if dtype is np.float64 else np.iinfo(dtype).max


def _min_of(dtype: type) -> Any:
    return -np.inf if dtype is np.float64 else np.iinfo(dtype).min
