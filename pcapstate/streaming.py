"""Captures longer than memory: a pcap file analyzed in parts spilled to disk, its tables printed as they merge.

``pcapstate analyze BIG.pcap --format json|jsonl|csv`` on a file of more than
:data:`PARTITION_BYTES` goes this way; memory then stays about what one
partition's worth of capture needs, however long the capture.  The output is
byte for byte what the whole-file analysis prints:

1. **Decode and spill.**  The file is decoded a window of records at a time
   (:mod:`pcapstate.decode.windows`); each window's packets are cut by
   conversation into ``partitions`` parts (:func:`pcapstate.partitions.split`,
   the cut ``--engine dask`` makes) and appended to that part's file in a
   temporary directory.
2. **Analyze.**  Each part is replayed (the compiled replay, with the
   capture's end for the end-of-capture close) and analyzed as a part of the
   trace; each table, sorted in its order (:func:`pcapstate.results.in_order`),
   is spilled in chunks of ``MERGE_ROWS / partitions / jobs`` rows.  The half-open
   connections of all parts make the ``half_open_flood`` findings
   (:func:`pcapstate.partitions.floods`).  With ``jobs`` N, N - 1 helper
   processes, forked before anything is decoded, analyze their share of the
   parts side by side with this one (:class:`_Helpers`); the parts are then
   N times smaller, so as much capture is in memory at once.
3. **Number.**  One process numbers connections by their first packet
   (timestamp, then row).  With the packets in time order, that is the rank
   of the first packet's row, so the parts name each connection by that row,
   and the tables are renumbered as they merge (the ``port_reuse`` sentence
   too, :func:`pcapstate.findings.anomalies.renumbered_details`).  With
   packets out of time order, every part is first replayed alone for its
   connections' first packets (:func:`pcapstate.partitions.numbers`), and
   step 2 uses those numbers.
4. **Merge.**  Each table is a :class:`~pcapstate.columns.ChunkedTable`
   whose chunks are a k-way merge of the parts' chunks (:func:`merge_runs`),
   read while the writer prints.

pcap files are decoded a window at a time; any other file (pcapng, gzip,
tcpdump text, a pcap whose framing needs repair) is decoded whole, then cut
into parts the same way, so a rotated set of them needs the memory of its
largest file.  A set whose files overlap in time, or with a file the set
reader would skip, or a capture without TCP, is analyzed whole, as before.
"""
from __future__ import annotations

import gc
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcapstate import partitions as parts_of
from pcapstate.columns import (Categories, ChunkedTable, Nullable, Objects, Table, Texts, compacted, concat,
                               dump_table, has_nanoseconds, load_table)
from pcapstate.decode.windows import WINDOW_RECORDS, NeedsWholeFile, one_ahead, pcap_windows
from pcapstate.errors import PcapstateError
from pcapstate.table import DecodeStats

PARTITION_BYTES = 32 << 20  # of capture file in memory at once (one part, or one per job): about 330,000 packets of
# 100 bytes.  Measured on the synthetic captures: parts as small as this take about as long as the capture whole
# (synth-20k, 45 MB, two jobs: 0.66-0.71 s against 0.62-0.68 s, in 164 MiB instead of 203); smaller ones cost
# more time (parts of 24 MiB, one job, synth-100k: 0.2-0.4 s more than 48 MiB).
MAX_PARTITIONS = 512  # each part's file is open while the capture is read (1,024 open files is a common limit):
# beyond 16 GiB of capture the parts grow instead
MERGE_ROWS = 1 << 19  # rows of tables held by the merges, over all parts and processes (with helpers, each prints
# tables too, :meth:`Streamed.print_ahead`): each part spills chunks of a share.  Measured on synth-100k, two jobs:
# 2**18 took 0.04 s longer (smaller chunks, more rounds of the merge) in 5-9 MiB less; 2**20, 283 MiB.
_ROW = "global row"  # the column of a spilled packet's row in the whole trace (no packet column has a space)

__all__ = ["HelperDied", "NeedsWholeFile", "SpillError", "Streamed", "analyze", "merge_runs", "partitions_for"]


def partitions_for(captures, decoder: str = "dpkt", jobs: int = 1, size: int | None = None) -> int:
    """Into how many parts a capture is cut: 1 (analyzed whole) unless the file, or the set of files
    (``captures``: a list of paths), is longer than :data:`PARTITION_BYTES` and read by the compiled decoder.

    With ``jobs`` processes analyzing parts side by side, the parts are ``jobs`` times smaller, so those
    in memory at once still hold about :data:`PARTITION_BYTES` of capture, and a multiple of ``jobs``
    (every process gets as many).  ``size``: the files' bytes, when the caller has them already."""
    from pcapstate import jit

    paths = [captures] if isinstance(captures, (str, os.PathLike)) else list(captures)
    if decoder != "dpkt" or not jit.ENABLED or not paths:
        return 1
    try:
        size = sum(os.path.getsize(path) for path in paths) if size is None else size
    except OSError:
        return 1  # the whole-file reader says what is wrong
    if size <= PARTITION_BYTES:
        return 1
    jobs = max(1, min(jobs, MAX_PARTITIONS))
    count = -(-size * jobs // PARTITION_BYTES)
    return min(MAX_PARTITIONS // jobs * jobs, -(-count // jobs) * jobs)


@dataclass
class Streamed:
    """What :func:`analyze` made: the tables to print, and the warnings to say first.  Close it when they are
    printed: that ends the helpers and removes the spill."""

    source: str
    tables: dict  # name -> ChunkedTable
    warnings: list[str]  # reading the file's, then the replay's
    read_warnings: int  # how many of ``warnings`` are the reading's
    connection_count: int
    stats: DecodeStats
    packets: int
    spill: tempfile.TemporaryDirectory = field(repr=False)
    helpers: "_Helpers | None" = field(default=None, repr=False)
    flow_keys: np.ndarray | None = field(default=None, repr=False)  # the flow column's values in the spilled
    # tables, sorted: stand-in ids, or numbers

    def chunks(self, name: str):
        """Table ``name``'s rows in order, as consecutive :class:`~pcapstate.columns.Table` s (each merged
        from the parts as it is read)."""
        return self.tables[name].chunks()

    @property
    def has_helpers(self) -> bool:
        return self.helpers is not None and self.helpers.pool is not None

    def print_ahead(self, print_rows) -> None:
        """With helper processes, the tables printed side by side before the writer goes through them.

        Each table but the first is printed into files of the spill by
        ``print_rows(table, path)`` (a module-level function that prints the
        rows without the brackets and says whether there was any), the costliest
        in the helpers, the others here, while the writer prints the first table
        itself; :attr:`ChunkedTable.printed` then gives the files, for the writer
        to copy out.  A helper's table ordered by connection (flows,
        transitions) is shared with this process when that evens the work out:
        its first connections are printed here, the others in the helper.  The
        costs are :data:`PRINT_NS_PER_ROW`.  Without helpers, nothing: the writer
        prints each table as it goes.
        """
        if not self.has_helpers:
            return
        _trim_heap()
        names = list(self.tables)
        costs = {name: len(self.tables[name]) * PRINT_NS_PER_ROW.get(name, 1000) for name in names}
        plan = _print_plan(costs, self.helpers.count + 1, first=names[0], splittable=_SPLITTABLE)
        where = Path(self.spill.name)
        stretches = {name: self._stretches(self.tables[name], plan[name]) for name in names[1:]}
        pieces = {name: [] for name in names[1:]}  # per table, in order: (wait or None, file, has rows)
        # the helpers' stretches first, so that they start while this process prints its own
        for name, (_, theirs) in stretches.items():
            if theirs is not None:
                path = where / f"{name}.later.printed"
                pieces[name].append((self.helpers.later(_trimmed_first, print_rows, theirs, path), path, None))
        for name, (mine, _) in stretches.items():
            if mine is not None:
                path = where / f"{name}.here.printed"
                try:
                    rows = print_rows(mine, path)
                except OSError as error:
                    raise SpillError(self.spill.name, error) from None
                pieces[name].insert(0, (None, path, rows))
            self.tables[name].printed = _Printed(pieces[name], self.spill.name)

    def _stretches(self, table: ChunkedTable, share: float) -> tuple:
        """(what this process prints, what a helper prints) of ``table``, None for nothing: all of it on one
        side, or the first ``share`` of its connections here and the others there."""
        if share in (0, 1):
            return (table, None) if share else (None, table)
        bound = self._flow_at(share)
        return (table.with_reader(table.reader.within(None, bound)),
                table.with_reader(table.reader.within(bound, None)))

    def _flow_at(self, share: float) -> int:
        """The first connection (as the spilled tables name it) after ``share`` of them."""
        return int(self.flow_keys[min(len(self.flow_keys) - 1, int(share * len(self.flow_keys)))])

    def close(self) -> None:
        """End the helpers, then remove the spilled parts (the tables cannot be read after)."""
        if self.helpers is not None:
            self.helpers.close()
        self.spill.cleanup()

    def __enter__(self) -> "Streamed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


PRINT_NS_PER_ROW = {"flows": 1950, "transitions": 470, "retransmissions": 670, "retries": 2400, "anomalies": 2200}
# merging and printing a row of each table as JSON, as measured on synth-100k: what shares the tables out
_SPLITTABLE = ("flows", "transitions")  # ordered by connection first: cut at a connection, printed in two


def _print_plan(costs: dict, processes: int, first: str, splittable=()) -> dict:
    """Which share of each table this process prints: 1 all, 0 none (a helper does), between: its first
    connections (a helper prints the others).

    The costliest first, each to the process with the least so far (``first``
    is this process's from the start); then, when a helper ends with the most,
    its costliest ``splittable`` table is shared with this process so that both
    end together.
    """
    loads = [0] * processes
    loads[0] = costs[first]
    owner = {first: 0}
    for name in sorted((n for n in costs if n != first), key=lambda n: -costs[n]):
        least = min(range(processes), key=lambda k: (loads[k], k))
        loads[least] += costs[name]
        owner[name] = least
    plan = {name: float(k == 0) for name, k in owner.items()}
    busiest = max(range(processes), key=lambda k: (loads[k], -k))
    shared = [n for n in splittable if owner.get(n) == busiest != 0 and costs[n] > 0]
    if shared:
        name = max(shared, key=lambda n: costs[n])
        share = (loads[busiest] - loads[0]) / (2 * costs[name])  # this process's: then both end together
        if 0.01 < share < 0.99:
            plan[name] = share
    return plan


def _trimmed_first(function, *arguments):
    """``function(*arguments)`` in a helper, after :func:`_trim_heap`."""
    _trim_heap()
    return function(*arguments)


def _trim_heap() -> None:
    """Hand back to the system the heap pages the parts' analyses freed (glibc keeps those between live
    blocks): before printing, measured on steady-4x, 199 -> 192 MiB for both processes, at no cost in time.
    (After every part: 187 MiB, but 0.1-0.2 s slower on synth-100k, the pages faulted in again.)
    Elsewhere than glibc, nothing."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class _Printed:
    """A table printed ahead in pieces, in order: each (a helper's result to wait for, or None; its file;
    whether it has rows, None until the helper says)."""

    pieces: list
    spill: str

    def __call__(self) -> list[tuple[Path, bool]]:
        """The pieces' files and whether each has rows, once the helpers have printed theirs."""
        done = []
        for wait, path, rows in self.pieces:
            if wait is not None:
                try:
                    rows = wait()
                except OSError as error:
                    raise SpillError(self.spill, error) from None
            done.append((path, rows))
        return done


def analyze(source, partitions: int, *, tables: tuple[str, ...], time_wait: float = 60.0, jobs: int = 1,
            window_records: int = WINDOW_RECORDS, spill_dir: str | None = None, zeek_checksums: bool = False,
            specs=None, **thresholds) -> Streamed:
    """The tables of the analysis of ``source``, made in ``partitions`` parts spilled to ``spill_dir``
    (default: the system's temporary directory).

    ``source``: a path, or a list of paths (a capture set, already expanded;
    ``specs``, what was asked for, names it as :func:`pcapstate.decode.capture_set.describe`
    does).  Raises :class:`NeedsWholeFile` (before anything is printed) when
    the capture must be analyzed whole: a set whose files overlap in time, or
    one with a file the set reader would skip.  Errors about one file are those
    of the whole-file reader.
    """
    from pcapstate.findings.anomalies import Thresholds

    limits = Thresholds(**thresholds)
    is_set = isinstance(source, (list, tuple))
    try:
        spill = tempfile.TemporaryDirectory(prefix="pcapstate-", dir=spill_dir, ignore_cleanup_errors=True)
    except OSError as error:
        raise SpillError(spill_dir or tempfile.gettempdir(), error) from None
    gc.freeze()  # what is loaded so far is never garbage: each part's collection skips it (helpers too)
    helpers = _Helpers(jobs - 1 if partitions > 1 else 0)  # forked now, while this process is small
    try:
        where = Path(spill.name)
        members = _members([os.fspath(p) for p in source] if is_set else [os.fspath(source)], is_set)
        spilled = _spill_packets(members, is_set, partitions, window_records, where)
        name, stats, files = _described(members, is_set, specs if specs is not None else source)
        read_warnings = len(stats.warnings)
        warnings = list(stats.warnings)
        if spilled.backwards:
            warnings.append(f"{spilled.backwards} packets are earlier than the packet before them in the file; "
                            "replayed in timestamp order")
        setting = {"source": name, "files": files, "time_wait": time_wait, "thresholds": limits,
                   "jobs": 1 if helpers.pool else jobs,  # (with helpers, a core per process)
                   "end_ns": spilled.end_ns, "zeek_checksums": zeek_checksums}
        numbers = None
        if spilled.backwards:  # the numbering needs every part's connections first
            numbers = parts_of.numbers(helpers.starmap(_keys, [(setting, where, p) for p in range(partitions)]))
        made = _spill_tables(setting, where, partitions, numbers, tuple(tables), helpers)
        number = made.renumbering()
        chunked = _chunked_tables(made, where, partitions, limits, tuple(m.path for m in members) if is_set else (),
                                  number)
        keys = number.ranked if number is not None else np.arange(made.connections, dtype=np.int64)
        return Streamed(name, chunked, warnings, read_warnings, made.connections, stats, spilled.packets, spill,
                        helpers, keys)
    except BaseException as error:  # Ctrl-C too
        helpers.close()  # before the spill is removed: a helper may still be writing its part there
        spill.cleanup()
        if isinstance(error, OSError):  # (the capture's own read errors are CaptureReadError already)
            raise SpillError(spill.name, error) from None
        raise
    finally:
        gc.unfreeze()


class SpillError(PcapstateError):
    """The parts of a long capture cannot be written where they go (a one-line error, exit status 2)."""

    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(f"{where}: cannot write the parts of a long capture there "
                         f"({error.strerror or error}); set TMPDIR to a directory with room for about twice "
                         "the capture's size")


# --- 1. decode and spill ------------------------------------------------------------------


@dataclass
class _Member:
    """A file of the capture, in the trace's order: what the spill learns of it."""

    path: str
    first_ns: int | None  # its first record's timestamp: the set's order
    stats: DecodeStats = field(default_factory=DecodeStats)
    records: int = 0
    rows: int = 0
    low: int = 0  # its first TCP packet's timestamp
    high: int = 0  # its latest TCP packet's timestamp


def _members(paths: list[str], is_set: bool) -> list[_Member]:
    """The files in set order (first record's time, then name), as the set reader orders them."""
    from pcapstate.decode import _load
    from pcapstate.decode.capture_set import _first_record_ns, natural_key
    from pcapstate.decode.records import sniff_format
    from pcapstate.errors import PcapstateError

    members = []
    for path in paths:
        if not is_set:
            return [_Member(path, None)]
        try:
            content, _warnings = _load(path)
        except PcapstateError as error:  # the set reader skips it, with a warning: let it
            raise NeedsWholeFile(str(error)) from None
        if sniff_format(bytes(content[:4])) is None:  # tcpdump text: the set reader orders it by its first row
            raise NeedsWholeFile(f"{path}: not a pcap or pcapng file")
        members.append(_Member(path, _first_record_ns(content, ())))
        _close(content)
    members.sort(key=lambda m: (m.first_ns is None, m.first_ns if m.first_ns is not None else 0, natural_key(m.path)))
    return members


def _close(content) -> None:
    try:
        content.close()
    except (AttributeError, BufferError):  # bytes, or a view still held: freed with it
        pass


@dataclass
class _Spilled:
    packets: int = 0
    end_ns: int = 0  # the latest timestamp: the trace's end
    backwards: int = 0  # packets earlier than the one before them in the file
    last: int | None = None  # the last packet's timestamp


def _spill_packets(members: list[_Member], is_set: bool, count: int, window_records: int, where: Path) -> _Spilled:
    """Every window's packets, cut by conversation, appended to the parts' files; file after file for a set,
    each packet with its global row and frame (its file's offsets plus its own)."""
    from pcapstate.decode import _load
    from pcapstate.errors import PcapstateError

    spilled = _Spilled()
    handles = [open(_packets_file(where, p), "wb") for p in range(count)]
    try:
        frames = 0
        for index, member in enumerate(members):
            try:
                content, warnings = _load(member.path)
                _spill_file(content, member, spilled, frames, index if is_set else None, window_records, handles)
                member.stats.warnings[:0] = warnings
            except PcapstateError as error:
                if is_set:  # the set reader skips it, with a warning: let it
                    raise NeedsWholeFile(str(error)) from None
                raise
            _close(content)
            frames += member.records
    finally:
        for handle in handles:
            handle.close()
    if spilled.packets == 0:
        raise NeedsWholeFile("no TCP packets")
    if not parts_of.one_after_another(members):  # the set reader interleaves their packets
        raise NeedsWholeFile("a file of the set overlaps the files before it in time")
    spilled.end_ns = max(m.high for m in members if m.rows)
    return spilled


def _spill_file(content, member: _Member, spilled: _Spilled, frames: int, file_index: int | None,
                window_records: int, handles: list) -> None:
    """One file's windows spilled; ``frames``: the records of the files before it."""
    for table, first_row in _windows(content, member, window_records):
        ts = table["ts_ns"]
        if len(ts):
            member.low = member.low if member.rows else int(ts[0])
            member.high = max(member.high, int(ts.max())) if member.rows else int(ts.max())
            spilled.backwards += int(np.count_nonzero(ts[1:] < ts[:-1]))
            spilled.backwards += int(spilled.last is not None and ts[0] < spilled.last)
            spilled.last = int(ts[-1])
        parts = parts_of.split(table, spilled.packets + first_row, frames, file_index, len(handles))
        for handle, (rows, columns) in zip(handles, parts):
            if len(rows):
                dump_table(Table({_ROW: rows, **columns}), handle)
        if len(table):
            member.records = max(member.records, int(table["frame"][-1]))
        member.rows += len(table)
    member.records = max(member.records, member.stats.records)
    spilled.packets += member.rows


def _windows(content, member: _Member, window_records: int):
    """A file's packet tables: a window of records at a time for a pcap file (:mod:`pcapstate.decode.windows`),
    else (pcapng, gzip, text, a pcap whose framing needs repair) the whole file as one window."""
    from pcapstate.decode import decode_bytes

    windows = pcap_windows(content, member.path, member.stats, window_records, views=True)  # each cut up at once
    try:
        first = next(windows, None)
    except NeedsWholeFile:  # not pcap: nothing of it is spilled yet
        table = decode_bytes(content, member.path, options=False)
        member.stats = table.stats
        yield table, 0
        return
    if first is not None:  # (a pcap whose framing needs repair further on: NeedsWholeFile, the capture whole)
        yield first
        yield from one_ahead(windows)


def _described(members: list[_Member], is_set: bool, specs) -> tuple[str, DecodeStats, tuple]:
    """The capture's name in reports, its statistics and (a set's) files, as the whole-file reader gives them."""
    from pcapstate.decode.capture_set import describe, set_stats

    if not is_set:
        return members[0].path, members[0].stats, ()
    stats, files = set_stats([(m.path, m.stats, m.records, m.rows, m.first_ns) for m in members])
    specs = [os.fspath(s) for s in specs] if isinstance(specs, (list, tuple)) else [os.fspath(specs)]
    return describe(specs, len(members), len(members)), stats, files


def _packets_file(where: Path, p: int) -> Path:
    return where / f"packets-{p:05d}.columns"


def _table_file(where: Path, name: str, p: int) -> Path:
    return where / f"{name}-{p:05d}.columns"


def _read_parts(path: Path) -> list:
    """A part's packets as spilled window by window: (global rows, columns) each."""
    parts = []
    for table in _read_each(path):
        columns = dict(table.columns)
        parts.append((columns.pop(_ROW), columns))
    return parts


def _read_each(path: Path):
    """Every table written one after the other into ``path`` (none if it is missing)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        while (table := load_table(handle)) is not None:
            yield table


# --- 3. number, for packets out of time order: every part replayed first ----------------------


def _keys(setting: dict, where: Path, p: int) -> tuple[np.ndarray, np.ndarray]:
    parts = _read_parts(_packets_file(where, p))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, tracking = parts_of.replayed(setting, *parts)
    return parts_of.keys_of(tracking, rows)


# --- 2. analyze ------------------------------------------------------------------------------


@dataclass
class _Made:
    """Per table: its column names, length and whether it has nanoseconds; the parts' half-open connections."""

    names: dict = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)
    nanoseconds: dict = field(default_factory=dict)
    half_open: list = field(default_factory=list)
    connections: int = 0
    first_rows: list = field(default_factory=list)  # per part, its connections' stand-in ids (or none)

    def renumbering(self) -> "_Renumbering | None":
        """Stand-in ids -> numbers (None when the parts were numbered already)."""
        if not self.first_rows:
            return None
        return _Renumbering(np.sort(np.concatenate(self.first_rows)))


@dataclass
class _Renumbering:
    """A connection's number from its stand-in id: the id's rank among every part's (a class, not a
    closure, so a helper can be sent it)."""

    ranked: np.ndarray

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ranked, ids).astype(np.int64)


def _spill_tables(setting: dict, where: Path, count: int, numbers: list[np.ndarray] | None, tables: tuple,
                  helpers: "_Helpers") -> _Made:
    """Each part analyzed, its tables spilled in order.  ``numbers``: per part, its connections' numbers;
    None when the packets are in time order: then a connection's number is the rank of its first packet's
    row, so that row stands in for it (:attr:`_Made.first_rows`) until every part is known, and the tables
    are renumbered as they merge.  That spares every part a replay only for the numbering."""
    made = _Made(lengths=dict.fromkeys(tables, 0), nanoseconds=dict.fromkeys(tables, False))
    # Tried: two parts at once on two threads (0.1-0.2 s sooner on synth-100k, 1.7x the memory), and the next
    # part replayed on a thread while this one's tables are made (0.1 s sooner, 1.6x the memory; with parts
    # half as large, as fast and as big as this).
    numbered = [None if numbers is None else numbers[p] for p in range(count)]
    chunk_rows = max(64, MERGE_ROWS // count // (helpers.count + 1))
    for one in helpers.starmap(_one_part, [(setting, where, chunk_rows, tables, p, numbered[p]) for p in range(count)]):
        if one is None:
            continue
        if numbers is None:
            made.first_rows.append(one["flow_ids"])
        made.connections += len(one["flow_ids"])
        for name, (names, length, nanoseconds) in one["tables"].items():
            made.names[name] = names
            made.lengths[name] += length
            made.nanoseconds[name] |= nanoseconds
        if one["half_open"] is not None:
            made.half_open.append(one["half_open"])
    return made


class _Helpers:
    """``--jobs N`` for the parts: N - 1 processes forked at the start (so they share only this process's
    modules, not the decoded capture's heap), analyzing parts while this process analyzes its own share:
    every N-th part is this one's, the others go to the helpers as they come free.  The parts' analyses
    are mostly Python, which threads could not run side by side."""

    def __init__(self, count: int) -> None:
        self.pool, self.count = None, count
        if count > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                self.pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"),
                                                initializer=_helper_started, initargs=(os.getpid(),))
                self.pool.submit(os.getpid).result()  # forks them all now
            except (OSError, ValueError):  # no fork here, or no room for a process: one after the other
                self.close()

    def starmap(self, function, arguments: list[tuple]) -> list:
        """``function(*a)`` for each ``a`` of ``arguments``, in order: every N-th here (the 0th first), the
        others in the helpers.  ``function`` must be a module's own (a helper finds it by name)."""
        if self.pool is None:
            return [function(*a) for a in arguments]
        processes = self.count + 1
        others = {p: self.later(function, *a) for p, a in enumerate(arguments) if p % processes}
        mine = {p: function(*a) for p, a in enumerate(arguments) if p % processes == 0}
        return [mine[p] if p in mine else others[p]() for p in range(len(arguments))]

    def later(self, function, *arguments):
        """``function(*arguments)`` in the first helper free: a callable that waits for its result."""
        future = self.pool.submit(function, *arguments)

        def result():
            from concurrent.futures.process import BrokenProcessPool

            try:
                return future.result()
            except BrokenProcessPool:  # (the system ran out of memory and stopped one, say)
                raise HelperDied() from None

        return result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)  # (its work is done, or failed: nothing is left to wait for)
            self.pool = None


def _helper_started(parent: int) -> None:
    """In a helper: Ctrl-C is for the main process (which stops the helpers), and the helper ends with it
    even when it is killed outright (a forked helper would otherwise wait for work forever)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        # (the process's own symbols, libc's among them: ctypes.util.find_library would run ldconfig)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # it was gone already
        os._exit(1)


class HelperDied(PcapstateError):
    """A process analyzing parts of the capture ended before it was done (one line, exit status 2)."""

    def __init__(self) -> None:
        super().__init__("a process analyzing parts of the capture was stopped before it was done "
                         "(out of memory?); --jobs 1 analyzes them in this process only")


def _one_part(setting: dict, where: Path, chunk_rows: int, tables: tuple, p: int, numbered) -> dict | None:
    """Part ``p`` analyzed with its connections named ``numbered`` (None: by their first packet's row), its
    tables spilled in chunks of ``chunk_rows``; what :func:`_spill_tables` keeps of it (None for a part
    without packets)."""
    from pcapstate.results import in_order

    parts = _read_parts(_packets_file(where, p))
    _packets_file(where, p).unlink(missing_ok=True)  # read for the last time: its room is the tables' now
    if not parts:
        return None
    part = parts_of.analyze_partition(setting, *parts)
    del parts
    if numbered is None:
        numbered = parts_of.keys_of(part.analysis.tracking, part.rows)[1]
    part.analysis.tracking.flow_ids = numbered
    made, table = {}, None
    for name in tables:
        table = in_order(name, part.analysis.columnar(name))
        made[name] = (table.names, len(table), has_nanoseconds(table))
        with open(_table_file(where, name, p), "wb") as handle:
            for start in range(0, len(table), chunk_rows):
                dump_table(compacted(table.slice(start, min(start + chunk_rows, len(table)))), handle)
    half = parts_of.half_open_of(part.analysis) if "anomalies" in tables else None
    del part, table  # before the next part is read, and its reference cycles with it (the CLI turns off gc)
    gc.collect()
    return {"flow_ids": numbered, "tables": made, "half_open": half}


# --- 4. merge ---------------------------------------------------------------------------------


def _chunked_tables(made: _Made, where: Path, count: int, limits, names: tuple, number) -> dict:
    """Each table as a :class:`ChunkedTable` merging the parts' runs; ``number``: :meth:`_Made.renumbering`."""
    from pcapstate.results import in_order

    extra = {}
    if "anomalies" in made.names:
        if number is not None:
            made.half_open = [{**h, "flow": number(h["flow"])} for h in made.half_open]
        floods = in_order("anomalies", parts_of.floods(made.half_open, limits, names))
        extra["anomalies"] = floods
        made.lengths["anomalies"] += len(floods)
        made.nanoseconds["anomalies"] |= has_nanoseconds(floods)
    return {name: ChunkedTable(names, made.lengths[name], made.nanoseconds[name],
                               _Merge(where, count, name, extra.get(name), number))
            for name, names in made.names.items()}


@dataclass
class _Merge:
    """A table's chunks, read from the parts' spilled runs as they merge: what a :class:`ChunkedTable`
    of :func:`_chunked_tables` calls for them (a class, not a closure, so a helper can be sent it)."""

    where: Path
    count: int
    name: str
    extra: Table | None  # a run of rows made after the parts (the floods), or None
    number: _Renumbering | None  # stand-in ids -> numbers, or None when the parts were numbered already
    since: int | None = None  # only the rows whose flow (as spilled) is at least this
    until: int | None = None  # and below this

    def within(self, since: int | None, until: int | None) -> "_Merge":
        """The rows of connections ``since`` to ``until`` only (flows and transitions: ordered by connection)."""
        return _Merge(self.where, self.count, self.name, self.extra, self.number, since, until)

    def __call__(self):
        from pcapstate.results import order_keys

        runs = [_read_each(_table_file(self.where, self.name, p)) for p in range(self.count)]
        if self.extra is not None:
            runs.append([self.extra])
        if self.since is not None or self.until is not None:
            runs = [_within(run, self.since, self.until) for run in runs]
        merged = merge_runs(runs, lambda table: order_keys(self.name, table))  # (stand-ins sort as numbers)
        return merged if self.number is None else (_renumbered(chunk, self.number) for chunk in merged)


def _within(run, since: int | None, until: int | None):
    """The rows of a run (ordered by ``flow``) whose flow is ``since`` or more and below ``until``."""
    for chunk in run:
        flow = chunk["flow"]
        start = 0 if since is None else int(np.searchsorted(flow, since))
        stop = len(flow) if until is None else int(np.searchsorted(flow, until))
        if start < stop:
            yield chunk if stop - start == len(flow) else chunk.slice(start, stop)
        if stop < len(flow):
            return  # the rest of the run is past ``until``


def _renumbered(chunk: Table, number) -> Table:
    """A chunk whose connections are named by stand-in ids, with their numbers instead (``number``)."""
    from pcapstate.findings.anomalies import renumbered_details

    columns = dict(chunk.columns)
    flow = columns.get("flow")
    if isinstance(flow, Nullable):
        columns["flow"] = Nullable(np.where(flow.missing, flow.values, number(flow.values)), flow.missing)
    elif flow is not None:
        columns["flow"] = np.where(flow >= 0, number(flow), flow).astype(flow.dtype)  # -1: no connection
    if isinstance(columns.get("kind"), Categories) and isinstance(columns.get("detail"), (Texts, Objects)):
        columns["detail"] = renumbered_details(columns["kind"], columns["detail"], number)
    return Table(columns)


def merge_runs(runs: list, keys_of):
    """Runs of Tables (each run's rows sorted on ``keys_of``, most significant key first) merged: yields
    Tables whose rows, one after the other, are what a stable sort of all the runs put end to end gives
    (among equal keys, an earlier run's rows first).  Holds one chunk of each run at a time."""
    runs = [iter(run) for run in runs]
    heads = [_next_rows(run) for run in runs]
    keys = [None if head is None else keys_of(head) for head in heads]
    while True:
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        # Rows up to the smallest last key held (with its run: ties go to the earlier run) can go out: no
        # row still on disk can come before them.
        bound = min(live, key=lambda i: (tuple(k[-1] for k in keys[i]), i))
        limit = tuple(k[-1] for k in keys[bound])
        taken, taken_keys = [], []
        for i in live:
            n = _rows_up_to(keys[i], limit, inclusive=i <= bound)
            if n == 0:
                continue
            head = heads[i]
            taken.append(head if n == len(head) else head.slice(0, n))
            taken_keys.append([k[:n] for k in keys[i]])
            if n == len(head):
                heads[i] = _next_rows(runs[i])
                keys[i] = None if heads[i] is None else keys_of(heads[i])
            else:
                heads[i] = head.slice(n, len(head))
                keys[i] = [k[n:] for k in keys[i]]
        merged = [np.concatenate([k[j] for k in taken_keys]) for j in range(len(limit))]
        yield concat(taken).take(np.lexsort(merged[::-1]))


def _next_rows(run) -> Table | None:
    """The run's next chunk with rows, or None at its end."""
    for chunk in run:
        if len(chunk):
            return chunk
    return None


def _rows_up_to(keys: list[np.ndarray], limit: tuple, inclusive: bool) -> int:
    """How many of the (sorted) rows have keys before ``limit``, or equal to it when ``inclusive``."""
    before = np.zeros(len(keys[0]), dtype=bool)
    equal = np.ones(len(keys[0]), dtype=bool)
    for key, bound in zip(keys, limit):
        before |= equal & (key < bound)
        equal &= key == bound
    return int(np.count_nonzero(before | equal if inclusive else before))
