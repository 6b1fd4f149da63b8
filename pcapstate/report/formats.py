"""Machine-readable output: ``--format json|jsonl|csv|parquet`` and where it goes.

Every writer takes the tables a command produces (a dict of name to
:class:`~pcapstate.columns.Table`, or DataFrame, in output order) and writes
them unchanged, one record per row with the documented column names (those of
the DataFrames :mod:`pcapstate.analysis` gives); json, jsonl and csv never
import pandas:

* ``json``: one document ``{"schema": "pcapstate/1", "source": …, "<table>": [records]}``
  (:mod:`pcapstate.report.jsonout`), to ``-o FILE`` or standard output.
* ``jsonl``: one JSON object per line, each with a ``"table"`` key naming its
  table; the first line is ``{"table": "meta", "schema": …, "source": …}``.
* ``csv``: one file per table with a header row.  Categories as their names,
  datetimes as ISO 8601 UTC (``…Z``), booleans ``true``/``false``, floats at
  full precision (``repr``), tuples (``intervals``) as a JSON array, and an
  empty field for a missing value.
* ``parquet`` (pyarrow): one file per table; categoricals (with their unused
  categories and order), nullable integers and timezones survive the round trip
  through ``pandas.read_parquet``, except that an empty table's categorical
  columns come back without categories (parquet stores a dictionary only with data).

With one table, ``-o`` names the file (csv may also go to standard output);
with several, ``-o`` names a directory (created if missing, its parent must
exist) that receives ``<table>.csv`` or ``<table>.parquet`` and nothing else.
An ``-o`` that exists as a directory or ends with ``/`` is always a directory.
The same input gives the same bytes in every format: no timestamps of the run,
fixed key and column order.  pyarrow is imported only to write parquet.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import IO

import numpy as np

from pcapstate.columns import ChunkedTable, Table
from pcapstate.errors import PcapstateError
from pcapstate.report.jsonout import SCHEMA, as_table, column_values, write_json

FORMATS = ("json", "jsonl", "csv", "parquet")
_SUFFIX = {"csv": ".csv", "parquet": ".parquet"}


class OutputError(PcapstateError):
    """The output cannot be written where ``-o`` points (a one-line error, exit status 2)."""


def write_tables(fmt: str, tables: dict, output: str | None, source: str = "",
                 stdout: IO[str] | None = None, jobs: int = 1) -> list[Path]:
    """Write ``tables`` as ``fmt`` to ``output`` (None: standard output); the paths written.

    ``jobs``: threads printing JSON ahead of the writer.
    """
    stdout = sys.stdout if stdout is None else stdout
    if fmt in ("json", "jsonl"):
        if output is not None and _is_directory(output):
            raise OutputError(f"{output}: is a directory; --format {fmt} writes one file")
        if output is None:
            _write_json_like(fmt, tables, stdout, source, jobs)
            return []
        with _open_text(output) as handle:
            _write_json_like(fmt, tables, handle, source, jobs)
        return [Path(output)]
    if fmt not in _SUFFIX:
        raise OutputError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if output is None:
        if fmt == "csv" and len(tables) == 1:
            write_csv(next(iter(tables.values())), stdout)
            return []
        need = "a file" if len(tables) == 1 else f"a directory for its {len(tables)} tables"
        raise OutputError(f"--format {fmt} needs -o with {need} ({', '.join(tables)})")
    return [_write_one(fmt, frame, path) for path, frame in _targets(fmt, tables, output)]


def _write_json_like(fmt: str, tables: dict, out: IO[str], source: str, jobs: int) -> None:
    if fmt == "json":
        write_json(tables, out, source, jobs)
    else:
        write_jsonl(tables, out, source)


def write_jsonl(tables: dict, out: IO[str], source: str = "") -> None:
    """One JSON object per line: a ``meta`` line, then every record with its ``table``."""
    out.write(_json_line({"table": "meta", "schema": SCHEMA, "source": source}))
    for name, table in tables.items():
        for chunk in _chunks(table):
            columns = [column_values(chunk[column]) for column in chunk.names]
            for values in zip(*columns):
                out.write(_json_line({"table": name, **dict(zip(chunk.names, values))}))


def write_csv(table, out: IO[str]) -> None:
    """One table as CSV with a header row (value conventions: module docstring)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.names if isinstance(table, (Table, ChunkedTable)) else list(table.columns))
    for chunk in _chunks(table):
        columns = [csv_values(chunk[name]) for name in chunk.names]
        writer.writerows(zip(*columns))


def _chunks(table):
    """A table's rows as Tables: a :class:`~pcapstate.columns.ChunkedTable`'s chunks, or the whole."""
    return table.chunks() if isinstance(table, ChunkedTable) else [as_table(table)]


def write_parquet(table, path: Path) -> None:
    """One table as a parquet file (pyarrow; the pandas metadata restores the dtypes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, ChunkedTable):
        table = table.whole()  # (a dataset of row groups would not keep every column's type across them)
    frame = table.to_pandas() if isinstance(table, Table) else table.reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def parquet_datasets(names, output: str) -> dict[str, Path]:
    """Per table, the directory ``output/<table>.parquet`` of a partitioned dataset (one part a writer),
    created, and emptied of the parts of an earlier run: ``pandas.read_parquet`` reads it whole, as it
    reads the single file of that name that one process writes."""
    targets = _targets("parquet", dict.fromkeys(names), output)
    datasets = {}
    for path, _ in targets:
        if path.is_file():
            path.unlink()
        try:
            path.mkdir(exist_ok=True)
        except OSError as error:
            raise OutputError(f"{path}: cannot create the directory: {error.strerror or error}") from None
        for stale in path.glob("part-*.parquet"):
            stale.unlink()
        datasets[path.name[: -len(_SUFFIX["parquet"])]] = path
    return datasets


def _remove_dataset(path: Path) -> None:
    """A partitioned dataset of an earlier ``--engine dask`` run where one file is to go now."""
    try:
        for part in path.glob("part-*.parquet"):
            part.unlink()
        path.rmdir()
    except OSError as error:
        raise OutputError(f"{path}: is a directory and cannot be replaced: {error.strerror or error}") from None


def write_parquet_part(table, dataset: Path, part: int) -> Path:
    """One writer's part of a partitioned dataset (:func:`parquet_datasets`)."""
    return _write_one("parquet", table, dataset / f"part-{part:05d}.parquet")


def csv_values(column) -> list[str]:
    """One column of a :class:`~pcapstate.columns.Table` as CSV fields."""
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return ["" if v != v else repr(v) for v in column.astype(np.float64).tolist()]
    return [_csv_field(v) for v in column_values(column)]


def _csv_field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def _targets(fmt: str, tables: dict, output: str) -> list[tuple[Path, object]]:
    """Where each table goes: ``output`` itself for one table, else ``output/<table><suffix>``."""
    path = Path(output)
    if len(tables) == 1 and not _is_directory(output):
        return [(path, next(iter(tables.values())))]
    if path.exists() and not path.is_dir():
        raise OutputError(f"{output}: not a directory; --format {fmt} writes {len(tables)} tables "
                          f"({', '.join(tables)}), one file each, into a directory")
    try:
        path.mkdir(exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the directory: {error.strerror or error}") from None
    return [(path / f"{name}{_SUFFIX[fmt]}", frame) for name, frame in tables.items()]


def _write_one(fmt: str, frame, path: Path) -> Path:
    if fmt == "parquet" and path.is_dir():
        _remove_dataset(path)
    try:
        if fmt == "csv":
            with open(path, "w", encoding="utf-8", newline="") as handle:
                write_csv(frame, handle)
        else:
            write_parquet(frame, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from None
    return path


def _is_directory(output: str) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def _open_text(path: str):
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as error:
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from None
