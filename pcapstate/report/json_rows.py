"""A compiled writer of a table as JSON records, byte for byte what pandas' ``to_json`` writes.

``DataFrame.to_json(orient="records")`` spends most of a large analysis's
time: a million transitions take it seconds, building every value through
Python-level machinery.  Here each column of a :class:`pcapstate.columns.Table`
(no pandas needed) becomes one of four plain arrays, and one compiled loop
(:mod:`pcapstate.jit`) prints the rows, a chunk at a time, so the document
never sits in memory whole:

* ``CODES``: an index into a table of already encoded JSON values, -1 for
  null.  Categoricals, booleans, strings and other objects go this way; each
  distinct value is encoded once, escaped as pandas' encoder (ujson) escapes
  it (:func:`encode_string`: Python's JSON escaping, plus ``\\/``), floats in
  lists printed by the compiled float printer.
* ``INT``: int64 values with a null mask (nullable ``Int64`` has nulls).
* ``FLOAT``: float64, printed as pandas' encoder prints them with
  ``double_precision=6`` (NaN as null).
* ``TIME``: nanoseconds since the epoch as ISO 8601 UTC, with 6 or 9
  fractional digits (``date_unit`` "us" or "ns"); NaT as null.

pandas' float printing leaves plain decimals for exponents beyond 1e16 and
below 1e-15; :func:`supported` says when a table holds such a value (or a
time before 1970) so the caller uses ``to_json`` instead.
``tests/test_json_rows.py`` checks the bytes against ``to_json``.
"""
from __future__ import annotations

import re
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import IO

import numpy as np

from pcapstate.columns import Categories, Nullable, Objects, Table, Texts, Times
from pcapstate.jit import entry, inline, njit

CODES, INT, FLOAT, TIME = 0, 1, 2, 3
CHUNK_ROWS = 1 << 13  # rows per compiled call: a buffer of a few megabytes
_FLOAT_WIDTH = 17 + 1 + 6 + 1  # sign, up to 1e16 whole digits, point, six decimals
_INT_WIDTH = 20
_TIME_WIDTH = 2 + 26 + 3 + 2  # quotes, 9999-12-31T23:59:59.123456789Z and a 5-digit year's spare
_NULL = b"null"


class _Columns:
    """The columns of one table as plain arrays, ready for :func:`_write_rows`."""

    def __init__(self, table: Table, date_unit: str) -> None:
        n = len(table)
        names = table.names
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
            column = table[name]
            self.table_start[j] = len(encoded)
            missing = None
            if isinstance(column, Times):
                kind, values, widths[j], missing = TIME, column.ns, _TIME_WIDTH, column.missing
            elif isinstance(column, Nullable):
                kind, values, widths[j], missing = INT, column.values, _INT_WIDTH, column.missing
            elif isinstance(column, (Categories, Texts)):
                kind, values = CODES, column.codes
                encoded += encode_strings([str(v) for v in (column.names if isinstance(column, Categories)
                                                            else column.values)])
            elif isinstance(column, Objects):
                kind = CODES
                values, uniques = _distinct(column.values)
                encoded += encode_values(uniques)
            elif column.dtype == np.bool_:
                kind, values = CODES, column
                encoded += [b"false", b"true"]
            elif column.dtype.kind in "iu":
                kind, values, widths[j] = INT, column, _INT_WIDTH
            else:
                kind, values, widths[j] = FLOAT, column, _FLOAT_WIDTH
            self.kind[j] = kind
            store = floats if kind == FLOAT else ints
            self.slot[j] = len(store)
            store.append(values)
            if missing is not None and missing.any():
                self.null_slot[j] = len(nulls)
                nulls.append(missing)
            if kind == CODES:
                entries = encoded[self.table_start[j]:]
                widths[j] = max([len(_NULL)] + [len(e) for e in entries])
        # stacked a chunk at a time (:meth:`chunk`), so the whole table is never copied at once
        self.ints, self.floats, self.nulls = ints, floats, nulls
        self.table = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(1, np.uint8)
        self.table_offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
        key_bytes = [(('{' if j == 0 else ',') + _string(name) + ':').encode() for j, name in enumerate(names)]
        self.keys = np.frombuffer(b"".join(key_bytes), dtype=np.uint8)
        self.key_offsets = np.cumsum([0] + [len(k) for k in key_bytes]).astype(np.int64)
        self.row_width = int(widths.sum() + len(self.keys) + 2)
        self.nanoseconds = date_unit == "ns"
        self.rows = n

    def chunk(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``start`` to ``stop`` of the integer, float and null matrices (a row per column)."""
        def stacked(arrays, dtype):
            if not arrays:
                return np.zeros((1, stop - start), dtype=dtype)
            return np.ascontiguousarray(np.stack([a[start:stop] for a in arrays]), dtype=dtype)

        return stacked(self.ints, np.int64), stacked(self.floats, np.float64), stacked(self.nulls, np.bool_)


_PLAIN = re.compile(r'[^"\\/\x00-\x1f\x7f]*')  # nothing Python or ujson would escape (ASCII input)


def _string(text: str) -> str:
    """``text`` as a JSON string, escaped as pandas' encoder (ujson) escapes it: ``/`` too."""
    return encode_basestring(text).replace("/", "\\/")


def encode_string(text: str) -> bytes:
    """:func:`_string` as UTF-8; a lone surrogate (an undecodable file name) as a \\u escape."""
    try:
        return _string(text).encode("utf-8")
    except UnicodeEncodeError:
        return encode_basestring_ascii(text).replace("/", "\\/").encode("ascii")


def encode_strings(texts: list[str]) -> list[bytes]:
    """:func:`encode_string` of each; quicker for the usual case, plain ASCII with nothing to escape."""
    if not texts:
        return []
    joined = "".join(texts)
    if joined.isascii() and _PLAIN.fullmatch(joined):
        return [b'"' + text.encode("ascii") + b'"' for text in texts]
    return [encode_string(text) for text in texts]


def encode_values(values: list) -> list[bytes]:
    """Python values (str, bool, int, float, tuples and lists of them) as pandas' encoder prints them."""
    floats = [v for v in _walk(values) if isinstance(v, float)]
    texts = iter(float_texts(np.array(floats, dtype=np.float64)))
    if all(isinstance(v, str) for v in values):
        return encode_strings(values)
    return [_encode(v, texts).encode("utf-8", "surrogatepass") if not isinstance(v, str) else encode_string(v)
            for v in values]


def _walk(values):
    for value in values:
        if isinstance(value, (tuple, list)):
            yield from _walk(value)
        else:
            yield value


def _encode(value, texts) -> str:
    """One value; ``texts`` yields the printed floats in the order :func:`_walk` meets them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return next(texts)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_encode(v, texts) for v in value) + "]"
    return _string(str(value))


def float_texts(values: np.ndarray) -> list[str]:
    """Each float as pandas prints it with six decimals (:func:`_float6`); NaN as null."""
    if not len(values):
        return []
    buf = np.empty(len(values) * (_FLOAT_WIDTH + 1), dtype=np.uint8)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    _print_floats(buf, values, offsets)
    text = buf[:offsets[-1]].tobytes().decode("ascii")
    bounds = offsets.tolist()
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _distinct(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes into the distinct values (-1 for None/NaN), each distinct value to be encoded once."""
    index: dict = {}
    codes = np.empty(len(values), dtype=np.int64)
    try:
        for k, value in enumerate(values):
            missing = value is None or (isinstance(value, float) and value != value)
            codes[k] = -1 if missing else index.setdefault(value, len(index))
        return codes, list(index)
    except TypeError:  # unhashable values (lists): every row its own entry
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], dtype=bool)
        codes = np.where(missing, -1, np.cumsum(~missing) - 1)
        return codes, [v for v, gone in zip(values, missing) if not gone]


def supported(table) -> bool:
    """Whether every column of ``table`` (Table or DataFrame) is one this writer prints exactly as pandas does."""
    from pcapstate.report.jsonout import as_table

    table = as_table(table)
    for name in table.names:
        column = table[name]
        if isinstance(column, np.ndarray) and column.dtype.kind == "f":
            values = np.abs(column.astype(np.float64))
            finite = values[np.isfinite(values)]
            if len(finite) != int((~np.isnan(values)).sum()):
                return False  # infinities: pandas raises or prints them its own way
            if (finite > 1e16).any() or ((finite > 0) & (finite < 1e-15)).any():
                return False  # pandas switches to exponent notation there
        if isinstance(column, Times):
            ns = column.ns if column.missing is None else column.ns[~column.missing]
            if len(ns) and ns.min() < 0:
                return False  # before 1970: left to pandas
    return True


def write_records(table, out: IO[str], date_unit: str, jobs: int = 1) -> None:
    """Write ``table`` (Table or DataFrame) as a JSON array of records (``to_json(orient="records")``'s bytes).

    With ``jobs`` > 1, that many threads print chunks ahead (the printer
    releases the GIL), written out in order.
    """
    out.write("[")
    write_rows(table, out, date_unit, jobs)
    out.write("]")


def write_rows(table, out: IO[str], date_unit: str, jobs: int = 1) -> None:
    """The records of ``table``, comma-separated, without the brackets: all of a short array, or a stretch
    of a long one (:class:`~pcapstate.columns.ChunkedTable`)."""
    from pcapstate.report.jsonout import as_table

    columns = _Columns(as_table(table), date_unit)
    raw = getattr(out, "buffer", None)  # a text file's bytes underneath: no decoding on the way out
    if raw is not None:
        out.flush()
    starts = range(0, columns.rows, CHUNK_ROWS)
    if jobs <= 1 or len(starts) <= 1:
        buffer = np.empty(min(columns.rows, CHUNK_ROWS) * (columns.row_width + 1) + 16, dtype=np.uint8)
        for start in starts:
            _emit(out, raw, _print_chunk(columns, start, buffer))
    else:
        _print_ahead(columns, starts, jobs, lambda printed: _emit(out, raw, printed))


def _print_chunk(columns: _Columns, start: int, buffer: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start`` to ``start + CHUNK_ROWS`` printed: the used part of ``buffer`` (a new one if None)."""
    stop = min(start + CHUNK_ROWS, columns.rows)
    if buffer is None:
        buffer = np.empty((stop - start) * (columns.row_width + 1) + 16, dtype=np.uint8)
    ints, floats, null = columns.chunk(start, stop)
    width = len(columns.kind)  # (the caches are the caller's: the compiled printer then allocates nothing)
    used = _write_rows(buffer, start, stop - start, columns.kind, columns.slot, columns.null_slot, ints, floats,
                       null, columns.table, columns.table_offsets, columns.table_start, columns.keys,
                       columns.key_offsets, columns.nanoseconds, np.empty((width, _CACHED), dtype=np.uint8),
                       np.full(width, _NO_KEY, dtype=np.int64), np.zeros(width, dtype=np.int64))
    return buffer[:used]


def _print_ahead(columns: _Columns, starts: range, jobs: int, emit) -> None:
    """Chunks printed by ``jobs`` threads, at most two each ahead of the writer, emitted in order."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: deque = deque()
        for start in starts:
            pending.append(pool.submit(_print_chunk, columns, start))
            if len(pending) >= 2 * jobs:
                emit(pending.popleft().result())
        while pending:
            emit(pending.popleft().result())


def _emit(out: IO[str], raw, printed: np.ndarray) -> None:
    if raw is not None:
        raw.write(memoryview(printed))
    else:
        out.write(printed.tobytes().decode("utf-8"))


# --- the compiled printer --------------------------------------------------------------


_NO_KEY = -(1 << 63)  # a cache's key before its first value (no time's second, no float's whole part)
_CACHED = 24  # bytes a cache keeps: a quote and "YYYY-MM-DDTHH:MM:SS" (20), or a whole part's digits (up to 17)


@entry("u1[::1]", "i8", "i8", "i8[::1]", "i8[::1]", "i8[::1]", "i8[:, ::1]", "f8[:, ::1]", "b1[:, ::1]", "readonly u1[::1]", "i8[::1]", "i8[::1]", "readonly u1[::1]", "i8[::1]", "b1", "u1[:, ::1]", "i8[::1]", "i8[::1]")
def _write_rows(buf, first, count, kind, slot, null_slot, ints, floats, null, table, table_offsets, table_start, keys,
                key_offsets, nanoseconds, cache, cache_key, cache_length):
    """``count`` rows of the chunk matrices as records, row ``first`` of the table first (a comma before each
    but the table's very first); bytes written.

    Each time and float column keeps in ``cache`` (a row a column, ``cache_key`` :data:`_NO_KEY` at first)
    the text of its last value's second (date and time of day) or whole part: rows near in time share it,
    and copying it is quicker than printing it again.
    """
    columns = kind.shape[0]
    at = 0
    for row in range(count):
        if first + row > 0:
            buf[at] = 44  # ,
            at += 1
        for j in range(columns):
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
                if value != value:
                    at = _null(buf, at)
                else:
                    at = _float6_cached(buf, at, value, cache[j], cache_key, cache_length, j)
            else:
                at = _iso_time(buf, at, ints[values, row], nanoseconds, cache[j], cache_key, j)
        buf[at] = 125  # }
        at += 1
    return at


@entry("u1[::1]", "f8[::1]", "i8[::1]")
def _print_floats(buf, values, offsets):
    """Each value as :func:`_float6` prints it (NaN: null), end to end; ``offsets[k + 1]`` ends value k."""
    at = 0
    for k in range(values.shape[0]):
        value = values[k]
        at = _null(buf, at) if value != value else _float6(buf, at, value)
        offsets[k + 1] = at


@inline
def _copy(buf, at, source, begin, end):
    # unsigned positions: numba then indexes without its negative-index wraparound, two thirds of the
    # instructions of this loop (objdump), which copies most of the bytes printed
    to, start = np.uint64(at), np.uint64(begin)
    for i in range(np.uint64(end - begin)):
        buf[to + i] = source[start + i]
    return at + (end - begin)


@inline
def _null(buf, at):
    buf[at], buf[at + 1], buf[at + 2], buf[at + 3] = 110, 117, 108, 108
    return at + 4


@inline
def _digits(buf, at, value, width):
    """``value`` (>= 0) in decimal, left-padded with zeros to ``width`` digits (0: no padding): two digits a
    division, from the last."""
    count = 1
    bound = 10
    while count < 19 and value >= bound:
        count += 1
        bound *= 10
    if count < width:
        count = width
    end = at + count
    i = end
    while value >= 100:
        rest = value // 100
        pair = value - rest * 100
        tens = pair // 10
        buf[i - 2] = 48 + tens
        buf[i - 1] = 48 + pair - tens * 10
        i -= 2
        value = rest
    if value >= 10:
        tens = value // 10
        buf[i - 2] = 48 + tens
        buf[i - 1] = 48 + value - tens * 10
        i -= 2
    else:
        buf[i - 1] = 48 + value
        i -= 1
    while i > at:
        i -= 1
        buf[i] = 48
    return end


@inline
def _integer(buf, at, value):
    if value < 0:
        buf[at] = 45  # -
        at += 1
        if value == -9223372036854775807 - 1:  # no positive counterpart in int64
            return _copy_text_min64(buf, at)
        value = -value
    return _digits(buf, at, value, 0)


@inline
def _copy_text_min64(buf, at):
    at = _digits(buf, at, 922337203685477580, 0)
    buf[at] = 56  # the final 8
    return at + 1


@inline
def _float6_parts(value):
    """The whole part and the six-digit fraction (with its trailing zeros) that pandas' JSON encoder (its
    modp_dtoa) prints for ``value`` >= 0: the fraction rounded to six digits, halves up when the last digit
    is odd or zero; .9999995 and up carries into the whole part."""
    whole = np.uint64(value)
    scaled = (value - np.float64(whole)) * 1e6
    frac = np.uint64(scaled)
    diff = scaled - np.float64(frac)
    if diff > 0.5 or (diff == 0.5 and (frac == np.uint64(0) or frac & np.uint64(1))):
        frac += np.uint64(1)
        if frac >= np.uint64(1000000):
            frac = np.uint64(0)
            whole += np.uint64(1)
    return np.int64(whole), np.int64(frac)


@inline
def _fraction6(buf, at, frac):
    """``.`` and the six-digit fraction without its trailing zeros (``.0`` for none)."""
    buf[at] = 46  # .
    at += 1
    if frac == 0:
        buf[at] = 48
        return at + 1
    digits = 6
    while frac % 10 == 0:
        frac //= 10
        digits -= 1
    return _digits(buf, at, frac, digits)


@inline
def _float6(buf, at, value):
    """The way pandas' JSON encoder prints a double with six decimals: trailing zeros of the fraction
    dropped, ".0" when nothing is left (:func:`_float6_parts`)."""
    if value < 0:
        buf[at] = 45
        at += 1
        value = -value
    whole, frac = _float6_parts(value)
    at = _digits(buf, at, whole, 0)
    return _fraction6(buf, at, frac)


@inline
def _float6_cached(buf, at, value, cached, cache_key, cache_length, j):
    """:func:`_float6`, the whole part's digits copied from ``cached`` (column ``j``'s) when it is the last
    one's."""
    if value < 0:
        buf[at] = 45
        at += 1
        value = -value
    whole, frac = _float6_parts(value)
    if whole != cache_key[j]:
        cache_length[j] = _digits(cached, 0, whole, 0)
        cache_key[j] = whole
    at = _copy(buf, at, cached, 0, cache_length[j])
    return _fraction6(buf, at, frac)


@inline
def _iso_time(buf, at, ns, nanoseconds, cached, cache_key, j):
    """``"YYYY-MM-DDTHH:MM:SS.ffffff[fff]Z"``: truncated to microseconds unless ``nanoseconds``; the text up to
    the seconds copied from ``cached`` (column ``j``'s) when it is the last time's."""
    seconds = ns // 1000000000
    sub = ns - seconds * 1000000000
    if seconds != cache_key[j]:
        _date_and_time(cached, seconds)
        cache_key[j] = seconds
    at = _copy(buf, at, cached, 0, 20)
    buf[at] = 46  # .
    if nanoseconds:
        at = _digits(buf, at + 1, sub, 9)
    else:
        at = _digits(buf, at + 1, sub // 1000, 6)
    buf[at], buf[at + 1] = 90, 34  # Z"
    return at + 2


@inline
def _date_and_time(cached, seconds):
    """``"YYYY-MM-DDTHH:MM:SS`` (20 bytes) of a second since the epoch into ``cached``."""
    days = seconds // 86400
    second_of_day = seconds - days * 86400
    year, month, day = _civil_from_days(days)
    cached[0] = 34  # "
    at = _digits(cached, 1, year, 4)
    cached[at] = 45
    at = _digits(cached, at + 1, month, 2)
    cached[at] = 45
    at = _digits(cached, at + 1, day, 2)
    cached[at] = 84  # T
    at = _digits(cached, at + 1, second_of_day // 3600, 2)
    cached[at] = 58  # :
    at = _digits(cached, at + 1, (second_of_day // 60) % 60, 2)
    cached[at] = 58
    _digits(cached, at + 1, second_of_day % 60, 2)


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
