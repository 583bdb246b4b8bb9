"""`data=csv`: a CSV table read and checked cell by cell, so a bad file is refused with its row and column."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from modelforge.core.config.schema import CsvData
from modelforge.data.finite import check_finite
from modelforge.data.labels import encode_classes, regression_targets
from modelforge.data.paths import user_path
from modelforge.errors import ConfigError, closest

# Cells read as a missing value.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


@dataclass
class Table:
    """A CSV file's features (float32) and targets, with the feature and class names."""

    x: Any
    y: Any
    features: tuple[str, ...]
    classes: tuple[str, ...] | None


def _column(name: str, header: list[str], key: str, shown: str) -> int:
    if name not in header:
        near = closest(name, header)
        raise ConfigError(f"{key}={name!r}: {shown} has no column {name!r}"
                          + (f" (did you mean {near!r}?)" if near else "") + f"; its columns: {', '.join(header)}")
    return header.index(name)


def _columns(header: list[str], data: CsvData, shown: str) -> tuple[int, list[str], list[int]]:
    """The target's index, the feature names and their indices, from the header row."""
    if not any(header):
        raise ConfigError(f"data.path: {shown} is empty; a CSV for modelforge starts with a header row naming "
                          "the columns, then one row per sample")
    doubled = sorted({h for h in header if header.count(h) > 1})
    if doubled:
        raise ConfigError(f"data.path: {shown} names the column {doubled[0]!r} twice; give each column its own "
                          "name in the header row")
    target = _column(data.target, header, "data.target", shown)
    names = data.features if data.features is not None else [h for h in header if h != data.target]
    columns = [_column(n, header, "data.features", shown) for n in names]
    if not columns:
        raise ConfigError(f"data.features: {shown} has no column besides the target {data.target!r} to learn from")
    return target, list(names), columns


def _features(row: list[str], line: int, header: list[str], columns: list[int], data: CsvData, shown: str
              ) -> list[float]:
    """One row's feature cells as numbers, or an error naming the line and column."""
    if len(row) != len(header):
        raise ConfigError(f"data.path: {shown}, line {line} has {len(row)} cells but the header has {len(header)}: "
                          f"the file is ragged. Fix that row (a missing or extra {data.delimiter!r}, or a quote), "
                          f"or set data.delimiter if it is not {data.delimiter!r}")
    values = []
    for i in columns:
        cell = row[i].strip()
        if cell.lower() in MISSING:
            raise ConfigError(f"data.path: {shown}, line {line}, column {header[i]!r} has a missing value "
                              f"({cell!r}); fill or drop such rows first, or leave the column out with data.features")
        try:
            values.append(float(cell))
        except ValueError:
            raise ConfigError(f"data.path: {shown}, line {line}, column {header[i]!r} holds {cell!r}, which is not "
                              "a number; feature columns must be numeric (encode categories as numbers first, or "
                              "leave the column out with data.features)") from None
    return values


def _rows(text: str, data: CsvData, shown: str) -> tuple[list[str], list[list[float]], list[str], list[int]]:
    """The feature names, each row's features and target, and the file's line number of each row kept."""
    rows: list[list[float]] = []
    targets: list[str] = []
    lines: list[int] = []
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, delimiter=data.delimiter)
        header = [h.strip() for h in next(reader, [])]
        target, names, columns = _columns(header, data, shown)
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue  # blank lines
            rows.append(_features(row, reader.line_num, header, columns, data, shown))
            label = row[target].strip()
            if label.lower() in MISSING:
                raise ConfigError(f"data.path: {shown}, line {reader.line_num}, target column {data.target!r} is "
                                  "missing; every row needs a target")
            targets.append(label)
            lines.append(reader.line_num)
    if not rows:
        raise ConfigError(f"data.path: {shown} has a header but no rows of data")
    return names, rows, targets, lines


def read_table(data: CsvData) -> Table:
    """Reads `data.path`: a header row, then one row per sample.

    Raises:
        ConfigError: a missing or empty file, an unknown column, a ragged row, a missing or non-numeric cell, or
            a target with one class; the message names the file, the row (as a line number) and the column.
    """
    import numpy as np

    path = user_path(data.path, "file")
    shown = str(path)
    names, rows, targets, lines = _rows(_decoded(path.read_bytes(), data.encoding, shown), data, shown)
    check_finite(rows, f"data.path: {shown}", lambda at: f"line {lines[at[0]]}, column {names[at[1]]!r}")
    where = f"data.target: {shown}, column {data.target!r}"
    if data.task == "classification":
        y, classes = encode_classes(targets, where)
        return Table(np.asarray(rows, dtype=np.float32), y, tuple(names), classes)
    try:
        numbers = [float(t) for t in targets]
    except ValueError as err:
        raise ConfigError(f"{where} holds a value that is not a number ({err}); data.task=regression needs "
                          "numbers, or set data.task=classification") from None
    check_finite(numbers, where, lambda at: f"line {lines[at[0]]}")
    return Table(np.asarray(rows, dtype=np.float32), regression_targets(numbers, where), tuple(names), None)


def _decoded(raw: bytes, encoding: str, shown: str) -> str:
    """The file's text in `data.encoding` (UTF-8's byte-order mark dropped), or an error naming the first byte
    that is not of that encoding."""
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(codec)
    except LookupError:
        raise ConfigError(f"data.encoding={encoding!r} is not an encoding Python knows; e.g. utf-8, latin-1, "
                          "cp1252") from None
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"data.path: {shown} is not {encoding} text: byte {err.start} (line {line}) is "
                          f"{raw[err.start:err.start + 1]!r}; save the file as UTF-8, or say what it is with "
                          "data.encoding=latin-1 (or cp1252, ...)") from None
