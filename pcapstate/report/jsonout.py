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

SCHEMA = "pcapstate/1"


def column_values(series) -> list:
    """One DataFrame column as a list of JSON-ready Python values."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return [None if v != v else str(v) for v in series.astype(object)]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return [iso_utc(v) for v in series.astype("int64").tolist()]
    if isinstance(dtype, pd.Int64Dtype):
        return [None if v is pd.NA else int(v) for v in series.astype(object)]
    if pd.api.types.is_bool_dtype(dtype):
        return [bool(v) for v in series.tolist()]
    if pd.api.types.is_float_dtype(dtype):
        return [None if v != v else round(float(v), 6) for v in series.tolist()]  # microseconds
    if pd.api.types.is_integer_dtype(dtype):
        return [int(v) for v in series.tolist()]
    return [_plain(v) for v in series.astype(object).tolist()]


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if value != value else round(value, 6)
    if value is None or value != value:
        return None
    return value if isinstance(value, (int, str)) else str(value)


def records(frame) -> list[dict]:
    columns = {name: column_values(frame[name]) for name in frame.columns}
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())] if names else []


def iso_utc(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC, to the microsecond unless nanoseconds are set."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = np.datetime64(seconds, "s").astype(str)
    fraction = f"{nanos:09d}"
    fraction = fraction[:6] if fraction.endswith("000") else fraction
    return f"{stamp}.{fraction}Z"


def write_json(tables: dict, out: IO[str], source: str = "") -> None:
    """``tables`` maps a key ("flows", "transitions", …) to a DataFrame.

    Each table is printed by the compiled records writer
    (:mod:`pcapstate.report.json_rows`), which gives the bytes of pandas'
    ``DataFrame.to_json`` with the conventions above, or by ``to_json`` itself
    for the rare table the writer cannot print exactly; the document is
    assembled around them.
    """
    out.write('{"schema": ' + json.dumps(SCHEMA) + ', "source": ' + json.dumps(source, ensure_ascii=False))
    for name, frame in tables.items():
        out.write(",\n " + json.dumps(name) + ": ")
        write_table(frame, out)
    out.write("}\n")


def write_table(frame, out: IO[str]) -> None:
    """One table as a JSON array of records (microsecond times unless the capture has nanoseconds)."""
    from pcapstate.report import json_rows

    if frame.empty:
        out.write("[]")
    elif json_rows.supported(frame):
        json_rows.write_records(frame, out, _time_unit(frame))
    else:
        out.write(table_json(frame))


def table_json(frame) -> str:
    """pandas' own printing of one table (the reference :mod:`~pcapstate.report.json_rows` matches)."""
    if frame.empty:
        return "[]"
    return frame.to_json(orient="records", date_format="iso", date_unit=_time_unit(frame), double_precision=6,
                         force_ascii=False)


def _time_unit(frame) -> str:
    import pandas as pd

    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            if (frame[column].astype("int64") % 1000).any():
                return "ns"
    return "us"
