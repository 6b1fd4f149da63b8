"""Result tables as typed numpy columns: what an analysis computes, before pandas.

Users meet the results as pandas DataFrames (:mod:`pcapstate.analysis`), but
importing pandas costs about 0.3 s and 80 MB, and building DataFrames copies
every column.  So the tables are first built here, as plain arrays with just
enough type to become the documented DataFrame (:meth:`Table.to_pandas`), and
the command line's json, jsonl and csv writers read them directly
(:mod:`pcapstate.report`): ``pcapstate analyze --format json`` never imports
pandas.

A column is one of:

* a numpy array of numbers or booleans: the DataFrame column as it is;
* :class:`Categories`: codes into names (-1: missing), a pandas Categorical;
* :class:`Times`: nanoseconds since the epoch, ``datetime64[ns, UTC]``;
* :class:`Nullable`: int64 values with a missing mask, pandas ``Int64``;
* :class:`Texts`: codes into distinct strings (-1: None), each written once;
  pandas' string column, or ``object`` where ``keep_object`` says so;
* :class:`Objects`: any Python values (tuples of floats, strings, None), ``object``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Categories:
    codes: np.ndarray  # int, -1 = missing
    names: tuple
    ordered: bool = False

    def take(self, rows) -> "Categories":
        return Categories(self.codes[rows], self.names, self.ordered)

    def labels(self, missing=None) -> list:
        """Each row's name, ``missing`` where it has none."""
        lookup = list(self.names) + [missing]
        return [lookup[code] for code in np.asarray(self.codes).tolist()]  # (-1: the last)

    def to_pandas(self):
        import pandas as pd

        dtype = pd.CategoricalDtype(list(self.names), ordered=self.ordered)
        return pd.Categorical.from_codes(np.asarray(self.codes, dtype=np.int64), dtype=dtype)


@dataclass(frozen=True)
class Times:
    ns: np.ndarray  # int64 nanoseconds since the epoch
    missing: np.ndarray | None = None  # bool, or None when every row has a time

    def take(self, rows) -> "Times":
        return Times(self.ns[rows], None if self.missing is None else self.missing[rows])

    def to_pandas(self):
        import pandas as pd

        times = pd.to_datetime(np.asarray(self.ns, dtype=np.int64), unit="ns", utc=True)
        return times if self.missing is None else times.where(~self.missing)


@dataclass(frozen=True)
class Nullable:
    values: np.ndarray  # int64
    missing: np.ndarray  # bool

    def take(self, rows) -> "Nullable":
        return Nullable(self.values[rows], self.missing[rows])

    def to_pandas(self):
        import pandas as pd

        return pd.arrays.IntegerArray(np.asarray(self.values, dtype=np.int64), np.asarray(self.missing, dtype=bool))


@dataclass(frozen=True)
class Texts:
    codes: np.ndarray  # int, -1 = None
    values: tuple  # the distinct strings
    keep_object: bool = False  # an object column in pandas, not its inferred string dtype

    def take(self, rows) -> "Texts":
        return Texts(self.codes[rows], self.values, self.keep_object)

    def objects(self) -> np.ndarray:
        codes = np.asarray(self.codes, dtype=np.int64)
        if len(codes) < len(self.values):  # a few rows of many strings (one connection's addresses): row by row,
            found = np.empty(len(codes), dtype=object)  # not a lookup array of every string per call
            found[:] = [self.values[code] if code >= 0 else None for code in codes.tolist()]
            return found
        lookup = np.array(list(self.values) + [None], dtype=object)
        return lookup[codes]  # -1: the None at the end

    def to_pandas(self):
        if self.keep_object:
            import pandas as pd

            return pd.Series(self.objects(), dtype=object)
        return self.objects()


@dataclass(frozen=True)
class Objects:
    values: np.ndarray  # object

    def take(self, rows) -> "Objects":
        return Objects(self.values[rows])

    def to_pandas(self):
        import pandas as pd

        return pd.Series(self.values, dtype=object)


def counts_by(*columns: Categories) -> dict[tuple[int, ...], int]:
    """Rows per combination of the columns' codes, rows missing any of them left out: pandas'
    ``groupby(columns, observed=True).size()``, keyed by codes (sorted, they are in the categories' order)."""
    codes = np.stack([np.asarray(c.codes, dtype=np.int64) for c in columns])
    combinations, counts = np.unique(codes[:, (codes >= 0).all(axis=0)], axis=1, return_counts=True)
    return {tuple(key): count for key, count in zip(combinations.T.tolist(), counts.tolist())}


def texts(strings, keep_object: bool = False) -> Texts:
    """Strings (None: missing) as :class:`Texts`, each distinct one kept once."""
    index: dict = {}
    codes = np.fromiter((-1 if s is None else index.setdefault(s, len(index)) for s in strings), dtype=np.int64)
    return Texts(codes, tuple(index), keep_object)


class Table:
    """Named columns of equal length, in output order."""

    def __init__(self, columns: dict) -> None:
        self.columns = dict(columns)
        lengths = {len(_values(c)) for c in self.columns.values()}
        assert len(lengths) <= 1, f"columns of different lengths: {lengths}"
        self.rows = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, name: str):
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def insert_after(self, after: str, new: dict) -> "Table":
        """A table with the columns of ``new`` right after column ``after``."""
        columns = {}
        for name, column in self.columns.items():
            columns[name] = column
            if name == after:
                columns.update(new)
        return Table(columns)

    def take(self, rows) -> "Table":
        """The rows ``rows`` (an index array or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        # (np.take, not [rows]: many times faster for a column of several dimensions, such as addresses)
        return Table({name: np.take(column, rows, axis=0) if isinstance(column, np.ndarray) else column.take(rows)
                      for name, column in self.columns.items()})

    def slice(self, start: int, stop: int) -> "Table":
        """Rows ``start`` to ``stop``, as views into this table's columns (nothing copied)."""
        rows = slice(start, stop)
        return Table({name: column[rows] if isinstance(column, np.ndarray) else column.take(rows)
                      for name, column in self.columns.items()})

    def flow_rows(self, flow_id: int) -> np.ndarray:
        """Mask of the rows of one connection (a ``flow`` column; <NA> is no connection's)."""
        flow = self.columns["flow"]
        if isinstance(flow, Nullable):
            return ~flow.missing & (flow.values == flow_id)
        return np.asarray(flow) == flow_id

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame({name: column if isinstance(column, np.ndarray) else column.to_pandas()
                             for name, column in self.columns.items()})


def concat(tables: list[Table]) -> Table:
    """The rows of ``tables`` (the same columns, of the same kinds) one after the other.

    Categories must have the same names; texts may differ in their distinct
    strings (their codes are remapped into the union).
    """
    first = tables[0]
    return Table({name: _concat_column([t[name] for t in tables]) for name in first.names})


def _concat_column(parts: list):
    head = parts[0]
    if isinstance(head, np.ndarray):
        return np.concatenate(parts)
    if isinstance(head, Categories):
        assert all(p.names == head.names for p in parts), "categories differ"
        return Categories(np.concatenate([p.codes for p in parts]), head.names, head.ordered)
    if isinstance(head, Times):
        missing = None
        if any(p.missing is not None for p in parts):
            missing = np.concatenate([p.missing if p.missing is not None else np.zeros(len(p.ns), dtype=bool)
                                      for p in parts])
        return Times(np.concatenate([p.ns for p in parts]), missing)
    if isinstance(head, Nullable):
        return Nullable(np.concatenate([p.values for p in parts]), np.concatenate([p.missing for p in parts]))
    if isinstance(head, Texts):
        if all(p.values == head.values for p in parts):
            return Texts(np.concatenate([p.codes for p in parts]), head.values, head.keep_object)
        index: dict = {}
        codes = []
        for p in parts:  # only the strings a part uses: a few rows taken from a chunk keep all its strings
            part_codes = np.asarray(p.codes, dtype=np.int64)
            used = np.unique(part_codes[part_codes >= 0]).tolist()
            lookup = np.full(len(p.values) + 1, -1, dtype=np.int64)  # -1 (None) reads the -1 at the end
            lookup[used] = [index.setdefault(p.values[u], len(index)) for u in used]
            codes.append(lookup[part_codes])
        return Texts(np.concatenate(codes), tuple(index), head.keep_object)
    if isinstance(head, Objects):
        return Objects(np.concatenate([p.values for p in parts]))
    raise TypeError(f"not a column: {type(head).__name__}")


class ChunkedTable:
    """A table read as consecutive :class:`Table` s, its rows in order: one too long to hold at once.

    ``chunks`` is called once per reading and yields the pieces (a merge of
    parts spilled to disk, in :mod:`pcapstate.streaming`).  ``nanoseconds``:
    whether any of its times has a part below the microsecond (what the JSON
    writer must know before the first row).  The writers print it a chunk at
    a time; :meth:`whole` puts it together, for what needs it all.
    ``reader`` is what ``chunks`` calls.  ``printed``: None, or a callable
    giving the files that hold the table's records already printed as JSON
    (``(path, has rows)`` each, in order; by helper processes,
    :meth:`pcapstate.streaming.Streamed.print_ahead`), for the JSON writer to
    copy out.
    """

    def __init__(self, names: list[str], length: int, nanoseconds: bool, reader) -> None:
        self.names, self.length, self.nanoseconds, self.reader = list(names), length, nanoseconds, reader
        self.printed = None

    def with_reader(self, reader) -> "ChunkedTable":
        """A table of the same columns read by ``reader`` (a stretch of this one's rows: its ``length`` is
        this one's, an upper bound)."""
        return ChunkedTable(self.names, self.length, self.nanoseconds, reader)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "printed": None}  # (a file printed ahead is for this process to copy out)

    def __len__(self) -> int:
        return self.length

    def chunks(self):
        return self.reader()

    def whole(self) -> Table:
        parts = [chunk for chunk in self.chunks() if len(chunk)]
        return concat(parts) if parts else Table({})


def has_nanoseconds(table: Table) -> bool:
    """Whether a time of ``table`` has a part below the microsecond."""
    for column in table.columns.values():
        if isinstance(column, Times):
            ns = column.ns if column.missing is None else column.ns[~column.missing]
            if (ns % 1000).any():
                return True
    return False


def compacted(table: Table) -> Table:
    """``table`` with each :class:`Texts` column holding only the strings its rows use (a slice of a
    table otherwise carries every string of the whole)."""
    columns = dict(table.columns)
    for name, column in columns.items():
        if isinstance(column, Texts) and len(column.values):
            codes = np.asarray(column.codes, dtype=np.int64)
            used = np.zeros(len(column.values), dtype=bool)
            used[codes[codes >= 0]] = True
            kept = np.flatnonzero(used)
            renumbered = np.append(np.cumsum(used) - 1, -1)  # a used string's new code; -1 (None) stays -1
            columns[name] = Texts(renumbered[codes], tuple(column.values[i] for i in kept.tolist()),
                                  column.keep_object)
    return Table(columns)


def dump_table(table: Table, handle) -> None:
    """Append ``table`` to the binary file ``handle``; :func:`load_table` reads it back exactly.

    A length-prefixed JSON header (column kinds, their names and strings,
    each array's dtype and shape) followed by the arrays' raw bytes: no
    pickle, so reading it back can never run code.
    """
    header, arrays = [], []

    def array(values: np.ndarray) -> list:
        values = np.ascontiguousarray(values)
        assert values.dtype != object, "object arrays go in the header"
        arrays.append(values)
        return [values.dtype.str, list(values.shape)]

    for name, column in table.columns.items():
        if isinstance(column, np.ndarray):
            header.append([name, "array", array(column)])
        elif isinstance(column, Categories):
            header.append([name, "categories", array(column.codes), list(column.names), column.ordered])
        elif isinstance(column, Times):
            header.append([name, "times", array(column.ns), None if column.missing is None else array(column.missing)])
        elif isinstance(column, Nullable):
            header.append([name, "nullable", array(column.values), array(column.missing)])
        elif isinstance(column, Texts):
            header.append([name, "texts", array(column.codes), list(column.values), column.keep_object])
        elif isinstance(column, Objects):
            values = column.values.tolist()
            header.append([name, "objects", [list(v) if isinstance(v, tuple) else v for v in values],
                           [isinstance(v, tuple) for v in values]])
        else:
            raise TypeError(f"not a column: {type(column).__name__}")
    encoded = json.dumps(header).encode()
    handle.write(len(encoded).to_bytes(8, "little"))
    handle.write(encoded)
    for values in arrays:
        handle.write(memoryview(values).cast("B"))


def load_table(handle) -> Table | None:
    """The next table :func:`dump_table` wrote to ``handle``, or None at the end of the file."""
    size = handle.read(8)
    if len(size) < 8:
        return None
    header = json.loads(handle.read(int.from_bytes(size, "little")))

    def array(spec) -> np.ndarray:
        values = np.empty(spec[1], dtype=np.dtype(spec[0]))
        if values.nbytes and handle.readinto(memoryview(values).cast("B")) != values.nbytes:
            raise EOFError("a table cut short")
        return values

    columns = {}
    for name, kind, *rest in header:
        if kind == "array":
            columns[name] = array(rest[0])
        elif kind == "categories":
            columns[name] = Categories(array(rest[0]), tuple(rest[1]), rest[2])
        elif kind == "times":
            ns = array(rest[0])
            columns[name] = Times(ns, None if rest[1] is None else array(rest[1]))
        elif kind == "nullable":
            values = array(rest[0])
            columns[name] = Nullable(values, array(rest[1]))
        elif kind == "texts":
            columns[name] = Texts(array(rest[0]), tuple(rest[1]), rest[2])
        else:
            values = np.empty(len(rest[0]), dtype=object)
            for i, (value, was_tuple) in enumerate(zip(rest[0], rest[1])):
                values[i] = tuple(value) if was_tuple else value  # (a slice assignment would unpack tuples)
            columns[name] = Objects(values)
    return Table(columns)


def packed(table: Table) -> list:
    """``table`` for the wire (a Dask worker's result): integer arrays in the narrowest type that holds
    their values (most columns are small codes stored as int64); :func:`unpacked` restores it exactly."""
    def pack(column):
        if isinstance(column, np.ndarray):
            return _narrowed(column)
        return type(column), {f.name: pack(getattr(column, f.name)) if isinstance(getattr(column, f.name), np.ndarray)
                              else getattr(column, f.name) for f in fields(column)}

    return [(name, pack(column)) for name, column in table.columns.items()]


def unpacked(wire: list) -> Table:
    def unpack(packed):
        if isinstance(packed[0], np.ndarray):
            array, dtype = packed
            return array if dtype is None else array.astype(dtype)
        kind, values = packed
        return kind(**{name: unpack(v) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], np.ndarray)
                       else v for name, v in values.items()})

    return Table({name: unpack(packed) for name, packed in wire})


def _narrowed(array: np.ndarray) -> tuple:
    """(the array in the narrowest integer type for its values, its own type), or (array, None) as it is."""
    if array.dtype.kind not in "iu" or array.dtype.itemsize == 1 or not array.size:
        return array, None
    low, high = int(array.min()), int(array.max())
    for small in (np.int8, np.int16, np.int32):
        info = np.iinfo(small)
        if info.min <= low and high <= info.max:
            return (array.astype(small), array.dtype) if np.dtype(small).itemsize < array.dtype.itemsize \
                else (array, None)
    return array, None


def _values(column):
    if isinstance(column, np.ndarray):
        return column
    for field in ("codes", "ns", "values"):
        if hasattr(column, field):
            return getattr(column, field)
    raise TypeError(f"not a column: {type(column).__name__}")
