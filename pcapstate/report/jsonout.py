"""JSON output: ``{"schema": …, "flows": [...], "transitions": [...]}``.

Records carry the DataFrame columns under the same names.  Values are plain
JSON: categories as their names (null when unknown), datetimes as ISO 8601 UTC
strings, nullable integers as null, floats rounded to microseconds (nanoseconds, when the capture has them, stay in the ISO strings).
The same input gives the same bytes.
"""
from __future__ import annotations

import json
from typing import IO

import numpy as np

from pcapstate.columns import Categories, ChunkedTable, Nullable, Objects, Table, Texts, Times, has_nanoseconds

SCHEMA = "pcapstate/1"


def column_values(column) -> list:
    """One column of a :class:`~pcapstate.columns.Table` as JSON-ready Python values."""
    if isinstance(column, Categories):
        return column.labels()
    if isinstance(column, Texts):
        return column.objects().tolist()
    if isinstance(column, Times):
        missing = column.missing if column.missing is not None else np.zeros(len(column.ns), dtype=bool)
        return [None if gone else iso_utc(v) for v, gone in zip(column.ns.tolist(), missing.tolist())]
    if isinstance(column, Nullable):
        return [None if gone else v for v, gone in zip(column.values.tolist(), column.missing.tolist())]
    if isinstance(column, Objects):
        return [_plain(v) for v in column.values.tolist()]
    if column.dtype == np.bool_:
        return column.tolist()
    if column.dtype.kind == "f":
        return [None if v != v else round(v, 6) for v in column.astype(np.float64).tolist()]  # microseconds
    return column.astype(np.int64).tolist() if column.dtype.kind in "iu" else [_plain(v) for v in column.tolist()]


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if value != value else round(value, 6)
    if value is None or value != value:
        return None
    return value if isinstance(value, (int, str)) else str(value)


def records(table) -> list[dict]:
    """The rows of a table (Table or DataFrame) as dicts of JSON-ready values."""
    table = as_table(table)
    columns = {name: column_values(table[name]) for name in table.names}
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())] if names else []


def as_table(table) -> Table:
    """A :class:`~pcapstate.columns.Table` as it is; a DataFrame as one (pandas is then imported already)."""
    if isinstance(table, Table):
        return table
    if isinstance(table, ChunkedTable):
        return table.whole()
    return Table({name: from_pandas_column(table[name]) for name in table.columns})


def from_pandas_column(series):
    """A DataFrame column as a :mod:`pcapstate.columns` column, for the writers."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return Times(series.to_numpy(dtype="datetime64[ns]").view(np.int64), series.isna().to_numpy())
    if isinstance(dtype, pd.CategoricalDtype):
        return Categories(series.cat.codes.to_numpy(dtype=np.int64), tuple(str(c) for c in dtype.categories),
                          bool(dtype.ordered))
    if pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
        return series.to_numpy(dtype=np.bool_)
    if pd.api.types.is_integer_dtype(dtype):
        missing = series.isna().to_numpy()
        if missing.any():
            return Nullable(series.to_numpy(dtype=np.int64, na_value=0), missing)
        return series.to_numpy(dtype=np.int64) if isinstance(dtype, pd.Int64Dtype) else series.to_numpy()
    if pd.api.types.is_float_dtype(dtype):
        return series.to_numpy(dtype=np.float64)
    return Objects(series.astype(object).to_numpy())


def iso_utc(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC, to the microsecond unless nanoseconds are set."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = np.datetime64(seconds, "s").astype(str)
    fraction = f"{nanos:09d}"
    fraction = fraction[:6] if fraction.endswith("000") else fraction
    return f"{stamp}.{fraction}Z"


def write_json(tables: dict, out: IO[str], source: str = "", jobs: int = 1) -> None:
    """``tables`` maps a key ("flows", "transitions", …) to a Table (or a DataFrame).

    Each table is printed by the compiled records writer
    (:mod:`pcapstate.report.json_rows`), which gives the bytes of pandas'
    ``DataFrame.to_json`` with the conventions above, or by ``to_json`` itself
    for the rare table the writer cannot print exactly; the document is
    assembled around them.
    """
    out.write('{"schema": ' + json.dumps(SCHEMA) + ', "source": ' + json.dumps(source, ensure_ascii=False))
    for name, frame in tables.items():
        out.write(",\n " + json.dumps(name) + ": ")
        write_table(frame, out, jobs)
    out.write("}\n")


def write_table(table, out: IO[str], jobs: int = 1) -> None:
    """One table (Table, ChunkedTable or DataFrame) as a JSON array of records (microsecond times unless it
    has nanoseconds)."""
    from pcapstate.report import json_rows

    if isinstance(table, ChunkedTable):
        out.write("[")
        if table.printed is not None:
            _copy_pieces(table.printed(), out)
        else:
            _write_chunked_rows(table, out, jobs)
        out.write("]")
        return
    table = as_table(table)
    if not len(table):
        out.write("[]")
    elif json_rows.supported(table):
        json_rows.write_records(table, out, _time_unit(table), jobs)
    else:
        out.write(table_json(table.to_pandas()))


def write_rows_file(table: ChunkedTable, path) -> bool:
    """The records of ``table`` (comma-separated, without the brackets) into a new file ``path``; whether
    there was any.  A table, or a stretch of one, printed ahead in a helper process
    (:meth:`pcapstate.streaming.Streamed.print_ahead`)."""
    with open(path, "w", encoding="utf-8") as handle:
        return _write_chunked_rows(table, handle, 1)


def _copy_pieces(pieces: list, out: IO[str]) -> None:
    """The records printed ahead into files (``(path, has rows)`` each, in order), comma-separated."""
    written = False
    for path, rows in pieces:
        if rows:
            if written:
                out.write(",")
            _copy_out(path, out)
            written = True


def _copy_out(path, out: IO[str]) -> None:
    """The text of file ``path`` written to ``out``: as bytes into a text file's binary buffer (by the kernel
    where it can), else as text."""
    import shutil

    raw = getattr(out, "buffer", None)
    if raw is None:
        with open(path, encoding="utf-8") as source:
            shutil.copyfileobj(source, out, 1 << 20)
        return
    out.flush()  # (what the text layer holds goes first)
    with open(path, "rb") as source:
        _send(source, raw)
        shutil.copyfileobj(source, raw, 1 << 20)  # what the kernel did not send


def _send(source, raw) -> None:
    """As much of ``source`` as ``os.sendfile`` sends to the file descriptor under ``raw`` (none when it has
    none, or the system cannot), ``source`` left after it."""
    import errno
    import io
    import os

    try:
        target = raw.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # (an in-memory buffer)
        return
    raw.flush()
    size, offset = os.fstat(source.fileno()).st_size, 0
    try:
        while offset < size:
            sent = os.sendfile(target, source.fileno(), offset, size - offset)
            if sent == 0:
                break
            offset += sent
    except OSError as error:
        if offset or error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise  # (a closed pipe, a full disk: as any write would)
    source.seek(offset)


def _write_chunked_rows(table: ChunkedTable, out: IO[str], jobs: int) -> bool:
    """The records :func:`write_table` prints of the whole table, without the brackets, printed a chunk at a
    time; whether there was any."""
    from pcapstate.report import json_rows

    unit = "ns" if table.nanoseconds else "us"
    written = False
    for chunk in table.chunks():
        if not len(chunk):
            continue
        if written:
            out.write(",")
        if json_rows.supported(chunk):
            json_rows.write_rows(chunk, out, unit, jobs)
        else:
            out.write(table_json(chunk.to_pandas(), unit)[1:-1])
        written = True
    return written


def table_json(frame, unit: str | None = None) -> str:
    """pandas' own printing of one DataFrame (the reference :mod:`~pcapstate.report.json_rows` matches)."""
    if frame.empty:
        return "[]"
    return frame.to_json(orient="records", date_format="iso", date_unit=unit or _time_unit(as_table(frame)),
                         double_precision=6, force_ascii=False)


def _time_unit(table: Table) -> str:
    return "ns" if has_nanoseconds(table) else "us"
