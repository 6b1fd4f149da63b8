"""A compiled writer of a DataFrame as JSON records, byte for byte what pandas writes.

``DataFrame.to_json(orient="records")`` spends most of a large analysis's
time: a million transitions take it seconds, building every value through
Python-level machinery.  Here each column becomes one of four plain arrays,
and one compiled loop (:mod:`pcapstate.jit`) prints the rows, a chunk at a
time, so the document never sits in memory whole:

* ``CODES``: an index into a table of already encoded JSON values, -1 for
  null.  Categoricals, booleans, strings and other objects go this way; each
  distinct value is encoded once by pandas' own encoder (``ujson_dumps``), so
  strings are escaped exactly as ``to_json`` escapes them.
* ``INT``: int64 values with a null mask (nullable ``Int64`` has nulls).
* ``FLOAT``: float64, printed as pandas' encoder prints them with
  ``double_precision=6`` (NaN as null).
* ``TIME``: nanoseconds since the epoch as ISO 8601 UTC, with 6 or 9
  fractional digits (``date_unit`` "us" or "ns"); NaT as null.

pandas' float printing leaves plain decimals for exponents beyond 1e16 and
below 1e-15; :func:`supported` says when a table holds such a value (or a
dtype this writer does not know) so the caller uses ``to_json`` instead.
``tests/test_json_rows.py`` checks the bytes against ``to_json``.
"""
from __future__ import annotations

from typing import IO

import numpy as np

from pcapstate.jit import entry, njit

CODES, INT, FLOAT, TIME = 0, 1, 2, 3
CHUNK_ROWS = 1 << 16
_FLOAT_WIDTH = 17 + 1 + 6 + 1  # sign, up to 1e16 whole digits, point, six decimals
_INT_WIDTH = 20
_TIME_WIDTH = 2 + 26 + 3 + 2  # quotes, 9999-12-31T23:59:59.123456789Z and a 5-digit year's spare
_NULL = b"null"


class _Columns:
    """The columns of one table as plain arrays, ready for :func:`_write_rows`."""

    def __init__(self, frame, date_unit: str) -> None:
        import pandas as pd
        from pandas.io.json import ujson_dumps

        n = len(frame)
        names = list(frame.columns)
        self.kind = np.empty(len(names), dtype=np.int64)
        # Each column's values sit in one row of ``ints`` (codes, integers, times) or ``floats``,
        # row ``slot[j]``; integers and times that may be null have a row of ``null`` (``null_slot[j]``).
        self.slot = np.zeros(len(names), dtype=np.int64)
        self.null_slot = np.full(len(names), -1, dtype=np.int64)
        ints: list[np.ndarray] = []
        floats: list[np.ndarray] = []
        nulls: list[np.ndarray] = []
        encoded: list[bytes] = []
        self.table_start = np.zeros(len(names), dtype=np.int64)  # first entry of each column's table
        widths = np.zeros(len(names), dtype=np.int64)
        for j, name in enumerate(names):
            series = frame[name]
            dtype = series.dtype
            self.table_start[j] = len(encoded)
            if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
                kind, values, widths[j] = TIME, series.to_numpy(dtype="datetime64[ns]").view(np.int64), _TIME_WIDTH
            elif isinstance(dtype, pd.CategoricalDtype):
                kind, values = CODES, series.cat.codes.to_numpy(dtype=np.int64)
                encoded += [ujson_dumps(str(v), ensure_ascii=False).encode() for v in dtype.categories]
            elif pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
                kind, values = CODES, series.to_numpy(dtype=np.int64)
                encoded += [b"false", b"true"]
            elif pd.api.types.is_integer_dtype(dtype):
                kind, values, widths[j] = INT, series.to_numpy(dtype=np.int64, na_value=0), _INT_WIDTH
            elif pd.api.types.is_float_dtype(dtype):
                kind, values, widths[j] = FLOAT, series.to_numpy(dtype=np.float64), _FLOAT_WIDTH
            else:  # strings, lists (retry intervals), anything else pandas can encode
                kind, values = CODES, None
                values, uniques = _distinct(series.astype(object).to_numpy())
                encoded += [ujson_dumps(v, ensure_ascii=False, double_precision=6).encode() for v in uniques]
            self.kind[j] = kind
            store = floats if kind == FLOAT else ints
            self.slot[j] = len(store)
            store.append(values)
            if kind in (INT, TIME):
                missing = series.isna().to_numpy()
                if missing.any():
                    self.null_slot[j] = len(nulls)
                    nulls.append(missing)
            if kind == CODES:
                entries = encoded[self.table_start[j]:]
                widths[j] = max([len(_NULL)] + [len(e) for e in entries])
        self.ints = np.array(ints, dtype=np.int64) if ints else np.zeros((1, n), dtype=np.int64)
        self.floats = np.array(floats, dtype=np.float64) if floats else np.zeros((1, n), dtype=np.float64)
        self.null = np.array(nulls, dtype=np.bool_) if nulls else np.zeros((1, n), dtype=np.bool_)
        self.table = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(1, np.uint8)
        self.table_offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
        keys = [('{' if j == 0 else ',') + ujson_dumps(name) + ':' for j, name in enumerate(names)]
        key_bytes = [k.encode() for k in keys]
        self.keys = np.frombuffer(b"".join(key_bytes), dtype=np.uint8)
        self.key_offsets = np.cumsum([0] + [len(k) for k in key_bytes]).astype(np.int64)
        self.row_width = int(widths.sum() + len(self.keys) + 2)
        self.nanoseconds = date_unit == "ns"
        self.rows = n


def _distinct(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes into the distinct values (-1 for None/NaN), each distinct value to be encoded once."""
    import pandas as pd

    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return codes, list(uniques)
    except TypeError:  # unhashable values (lists): every row its own entry
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], dtype=bool)
        codes = np.where(missing, -1, np.cumsum(~missing) - 1)
        return codes, [v for v, gone in zip(values, missing) if not gone]


def supported(frame) -> bool:
    """Whether every column is one this writer prints exactly as pandas does."""
    import pandas as pd

    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_float_dtype(series.dtype):
            values = np.abs(series.to_numpy(dtype=np.float64))
            finite = values[np.isfinite(values)]
            if len(finite) != int((~np.isnan(values)).sum()):
                return False  # infinities: pandas raises or prints them its own way
            if (finite > 1e16).any() or ((finite > 0) & (finite < 1e-15)).any():
                return False  # pandas switches to exponent notation there
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            if str(series.dtype.tz) != "UTC":
                return False
            ns = series.to_numpy(dtype="datetime64[ns]").view(np.int64)[series.notna().to_numpy()]
            if len(ns) and ns.min() < 0:
                return False  # before 1970: left to pandas
    return True


def write_records(frame, out: IO[str], date_unit: str) -> None:
    """Write ``frame`` as a JSON array of records (``to_json(orient="records")``'s bytes)."""
    columns = _Columns(frame, date_unit)
    out.write("[")
    raw = getattr(out, "buffer", None)  # a text file's bytes underneath: no decoding on the way out
    if raw is not None:
        out.flush()
    buffer = np.empty(min(columns.rows, CHUNK_ROWS) * (columns.row_width + 1) + 16, dtype=np.uint8)
    for start in range(0, columns.rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, columns.rows)
        used = _write_rows(buffer, start, stop, columns.kind, columns.slot, columns.null_slot, columns.ints,
                           columns.floats, columns.null, columns.table, columns.table_offsets, columns.table_start, columns.keys,
                           columns.key_offsets, columns.nanoseconds)
        if raw is not None:
            raw.write(memoryview(buffer)[:used])
        else:
            out.write(buffer[:used].tobytes().decode("utf-8"))
    out.write("]")


# --- the compiled printer --------------------------------------------------------------


@entry("u1[::1]", "i8", "i8", "i8[::1]", "i8[::1]", "i8[::1]", "i8[:, ::1]", "f8[:, ::1]", "b1[:, ::1]", "readonly u1[::1]", "i8[::1]", "i8[::1]", "readonly u1[::1]", "i8[::1]", "b1")
def _write_rows(buf, start, stop, kind, slot, null_slot, ints, floats, null, table, table_offsets, table_start, keys,
                key_offsets, nanoseconds):
    """Rows ``start`` to ``stop`` as records (a comma before each but the very first); bytes written."""
    at = 0
    for row in range(start, stop):
        if row > 0:
            buf[at] = 44  # ,
            at += 1
        for j in range(kind.shape[0]):
            at = _copy(buf, at, keys, key_offsets[j], key_offsets[j + 1])
            values = slot[j]
            if kind[j] == CODES:
                code = ints[values, row]
                if code < 0:
                    at = _null(buf, at)
                else:
                    entry = table_start[j] + code
                    at = _copy(buf, at, table, table_offsets[entry], table_offsets[entry + 1])
            elif null_slot[j] >= 0 and null[null_slot[j], row]:
                at = _null(buf, at)
            elif kind[j] == INT:
                at = _integer(buf, at, ints[values, row])
            elif kind[j] == FLOAT:
                value = floats[values, row]
                at = _null(buf, at) if value != value else _float6(buf, at, value)
            else:
                at = _iso_time(buf, at, ints[values, row], nanoseconds)
        buf[at] = 125  # }
        at += 1
    return at


@njit
def _copy(buf, at, source, begin, end):
    for i in range(begin, end):
        buf[at] = source[i]
        at += 1
    return at


@njit
def _null(buf, at):
    buf[at], buf[at + 1], buf[at + 2], buf[at + 3] = 110, 117, 108, 108
    return at + 4


@njit
def _digits(buf, at, value, width):
    """``value`` (>= 0) in decimal, left-padded with zeros to ``width`` digits (0: no padding)."""
    count = 1
    probe = value
    while probe >= 10:
        probe //= 10
        count += 1
    if count < width:
        count = width
    for i in range(count - 1, -1, -1):
        buf[at + i] = 48 + value % 10
        value //= 10
    return at + count


@njit
def _integer(buf, at, value):
    if value < 0:
        buf[at] = 45  # -
        at += 1
        if value == -9223372036854775807 - 1:  # no positive counterpart in int64
            return _copy_text_min64(buf, at)
        value = -value
    return _digits(buf, at, value, 0)


@njit
def _copy_text_min64(buf, at):
    at = _digits(buf, at, 922337203685477580, 0)
    buf[at] = 56  # the final 8
    return at + 1


@njit
def _float6(buf, at, value):
    """The way pandas' JSON encoder prints a double with six decimals (its modp_dtoa):

    the fraction is rounded to six digits (halves up when the last digit is
    odd or zero), trailing zeros dropped, ".0" when nothing is left.
    """
    if value < 0:
        buf[at] = 45
        at += 1
        value = -value
    whole = np.uint64(value)
    scaled = (value - np.float64(whole)) * 1e6
    frac = np.uint64(scaled)
    diff = scaled - np.float64(frac)
    if diff > 0.5 or (diff == 0.5 and (frac == np.uint64(0) or frac & np.uint64(1))):
        frac += np.uint64(1)
        if frac >= np.uint64(1000000):  # .9999995 and up: the whole part carries
            frac = np.uint64(0)
            whole += np.uint64(1)
    at = _digits(buf, at, np.int64(whole), 0)
    buf[at] = 46  # .
    at += 1
    if frac == np.uint64(0):
        buf[at] = 48
        return at + 1
    digits = 6
    f = np.int64(frac)
    while f % 10 == 0:
        f //= 10
        digits -= 1
    return _digits(buf, at, f, digits)


@njit
def _iso_time(buf, at, ns, nanoseconds):
    """``"YYYY-MM-DDTHH:MM:SS.ffffff[fff]Z"``: truncated to microseconds unless ``nanoseconds``."""
    seconds = ns // 1000000000
    sub = ns - seconds * 1000000000
    days = seconds // 86400
    second_of_day = seconds - days * 86400
    year, month, day = _civil_from_days(days)
    buf[at] = 34  # "
    at = _digits(buf, at + 1, year, 4)
    buf[at] = 45
    at = _digits(buf, at + 1, month, 2)
    buf[at] = 45
    at = _digits(buf, at + 1, day, 2)
    buf[at] = 84  # T
    at = _digits(buf, at + 1, second_of_day // 3600, 2)
    buf[at] = 58  # :
    at = _digits(buf, at + 1, (second_of_day // 60) % 60, 2)
    buf[at] = 58
    at = _digits(buf, at + 1, second_of_day % 60, 2)
    buf[at] = 46  # .
    if nanoseconds:
        at = _digits(buf, at + 1, sub, 9)
    else:
        at = _digits(buf, at + 1, sub // 1000, 6)
    buf[at], buf[at + 1] = 90, 34  # Z"
    return at + 2


@njit
def _civil_from_days(days):
    """Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return (year + 1 if month <= 2 else year), month, day
