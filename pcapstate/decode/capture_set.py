"""Capture sets: several capture files read as one trace.

Busy links are captured as sets of files: ``tcpdump -C 100 -w cap.pcap`` writes
cap.pcap, cap.pcap1, cap.pcap2, …; ``tcpdump -G 60 -w 'cap-%H%M%S.pcap'`` one
file a minute; two hosts capture the same moment.  A set is given as several
paths, a directory (every file in it) or a glob pattern (``'cap*.pcap'``,
expanded here so that it also works quoted) — :func:`expand` — and read by
:func:`read_capture_set` into one :class:`~pcapstate.table.PacketTable`, so
the tracker sees one trace and a connection that spans files is one connection.

Order.  Files are put in order of their first packet's timestamp, never of
their names (``cap.pcap10`` sorts before ``cap.pcap2``, and ``-G`` names may
wrap at midnight); equal starts go by name, numbers compared as numbers.
Packets are merged in timestamp order where files overlap in time: a stable
merge, in which each file keeps its own packet order and, at equal
timestamps, the earlier file in set order goes first.  (A file whose clock
steps backwards keeps its order; the tracker replays such packets in
timestamp order and says so, as for one file.)

Frame numbers.  ``frame`` is the global frame number: the packet's position
in the merged trace, counting every record of every file (non-TCP ones too),
so it is what a merged file (``mergecap -w all.pcap``) would number it.  For
files that do not overlap in time, which is what a rotated set is, this is
exact: a packet's frame is its frame in the capture before it was split.
Where files overlap, records without a TCP packet (whose timestamps the
table does not keep) are counted just before their file's next TCP packet.
Global frames increase along the table.  ``file`` (index into
``table.files``) and ``file_frame`` (the frame number inside that file, as
``tshark -r`` on that file shows it) say where each packet is.

Bad input.  A file that is not a capture, is of an unsupported link type or
cannot be opened is skipped with a warning naming it; a damaged or cut file
keeps what was readable, its decoder warnings prefixed with its name.  Only
when no file of the set can be read is that an error.  Files of different
link types mix freely: link layers are decoded per record.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from pcapstate.errors import CaptureReadError, DecoderUnavailableError, PcapstateError
from pcapstate.table import SET_COLUMNS, CaptureFile, DecodeStats, PacketTable

GLOB_CHARACTERS = "*?["
EXPECTED_SUFFIX = ".expected.json"  # pcapstate check's expectation files, never captures
_COUNTERS = ("records", "tcp", "non_tcp", "fragments", "undecodable", "truncated_records", "bytes_ignored")


class CaptureSetError(PcapstateError):
    """No file of a capture set could be read (or a glob or directory named none)."""


def is_glob(spec: str) -> bool:
    """A pattern to expand: wildcard characters, and no file of that very name."""
    return any(c in spec for c in GLOB_CHARACTERS) and not os.path.exists(spec)


def is_set(specs: Sequence[str]) -> bool:
    """Whether command-line CAPTURE arguments name a capture set rather than one file."""
    return len(specs) != 1 or os.path.isdir(specs[0]) or is_glob(os.fspath(specs[0]))


def natural_key(name: str) -> list:
    """Sort key comparing the digit runs of a name as numbers: cap.pcap < cap.pcap2 < cap.pcap10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def expand(specs: Iterable) -> list[str]:
    """The files of a set: each spec a file, a directory (its files) or a glob pattern.

    A directory gives every regular file directly in it except hidden files and
    ``*.expected.json`` (whether each is a capture is decided by its content when
    read).  A pattern matching no file, or a directory without files, is a
    :class:`CaptureSetError`.  A file named twice is read once.  The order here
    is by name; :func:`merge` orders by time.
    """
    files: list[str] = []
    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            try:
                found = [os.path.join(spec, e.name) for e in os.scandir(spec)
                         if e.is_file() and not e.name.startswith(".") and not e.name.endswith(EXPECTED_SUFFIX)]
            except OSError as error:
                raise CaptureReadError(f"{spec}: {error.strerror or error}") from None
            if not found:
                raise CaptureSetError(f"{spec}: no files in this directory")
            files += sorted(found, key=natural_key)
        elif is_glob(spec):
            found = [m for m in glob.glob(spec) if os.path.isfile(m) and not m.endswith(EXPECTED_SUFFIX)]
            if not found:
                raise CaptureSetError(f"{spec}: no file matches")
            files += sorted(found, key=natural_key)
        else:
            files.append(spec)
    seen: set[str] = set()
    unique = []
    for name in files:
        real = os.path.realpath(name)
        if real not in seen:
            seen.add(real)
            unique.append(name)
    return unique


def total_size(paths: Iterable[str]) -> int:
    total = 0
    for path in paths:
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total


def describe(specs: Sequence[str], files: int, named: int | None = None) -> str:
    """The set's name in reports: what was asked for, and how many files were read."""
    specs = [os.fspath(s) for s in specs]
    asked = " ".join(specs) if len(specs) <= 3 else f"{specs[0]} … {specs[-1]}"
    count = f"{files} file{'' if files == 1 else 's'}" if named in (None, files) else f"{files} of {named} files"
    return f"{asked} ({count})"


def read_capture_set(paths: Sequence, decoder: str = "dpkt", progress=None, source: str | None = None,
                     specs: Sequence[str] | None = None, options: bool = True) -> PacketTable:
    """Read the files ``paths`` (no directories or patterns: see :func:`expand`) as one trace.

    Every file that can be read is decoded as ``read_capture`` would decode it
    alone, then the tables are merged (:func:`merge`).  A file that cannot be
    read (not a capture, unsupported link type, missing, unreadable) is left
    out with a warning ``"<file>: <why>; skipped"``; warnings of the files read
    are prefixed with their name.  When none can be read: with one file, its
    own error; with several, a :class:`CaptureSetError` naming them.
    ``source`` names the set in reports (default: :func:`describe` of
    ``specs``, themselves ``paths`` unless given).
    """
    from pcapstate.decode import read_file

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise CaptureSetError("no capture files given")
    members: list[tuple[str, PacketTable, int | None]] = []
    problems: list[str] = []
    errors: list[PcapstateError] = []
    done_bytes = 0
    for path in paths:
        shifted = None if progress is None else _Shifted(progress, done_bytes, sum(m[1].stats.records for m in members))
        try:
            table, content = read_file(path, decoder, shifted, options)
        except DecoderUnavailableError:
            raise
        except PcapstateError as error:
            errors.append(error)
            problems.append(f"{error}; skipped")
            continue
        finally:
            done_bytes += total_size([path])
        members.append((path, table, _first_record_ns(content, table)))
    if not members:
        if len(errors) == 1:
            raise errors[0]
        shown = "; ".join(str(e) for e in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise CaptureSetError(f"none of the {len(paths)} files is a capture pcapstate can read ({shown})")
    if source is None:
        source = describe(specs if specs is not None else paths, len(members), len(paths))
    merged = merge(members, source)
    merged.stats.warnings[:0] = problems
    return merged


class _Shifted:
    """A progress report for one file of a set: its bytes and packets after those of the files before."""

    def __init__(self, progress, done_bytes: int, done_packets: int) -> None:
        self.progress, self.done_bytes, self.done_packets = progress, done_bytes, done_packets

    def update(self, done_bytes: int, packets: int) -> None:
        self.progress.update(self.done_bytes + done_bytes, self.done_packets + packets)


def _first_record_ns(content, table: PacketTable) -> int | None:
    """The timestamp of the file's first record (any packet, TCP or not), else of its first TCP row."""
    if content is not None and len(content) >= 4:
        from pcapstate.decode.records import read_records, sniff_format

        if sniff_format(bytes(content[:4])) is not None:
            try:
                for record in read_records(content, DecodeStats()):
                    return int(record.ts_ns)
            except Exception:  # noqa: BLE001  damaged framing: only an ordering hint is lost, the table says enough
                pass
    return int(table["ts_ns"][0]) if len(table) else None


def merge(members: Sequence[tuple[str, PacketTable, int | None]], source: str = "") -> PacketTable:
    """One table from the tables of a set's files: ``(name, table, first record's timestamp)`` each.

    Files in order of first record (no record: last), then name; rows merged
    by timestamp, stably (see the module docstring), with ``file``,
    ``file_frame`` and the global ``frame``.  Statistics are summed; warnings
    are prefixed with their file's name.
    """
    ordered = sorted(members, key=lambda m: (m[2] is None, m[2] if m[2] is not None else 0, natural_key(m[0])))
    tables = [m[1] for m in ordered]
    lengths = np.array([len(t) for t in tables], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    n = int(ends[-1]) if len(ends) else 0
    records = [max(t.stats.records, int(t["frame"][-1]) if len(t) else 0) for t in tables]

    file_index = np.repeat(np.arange(len(tables), dtype=np.int64), lengths)
    file_frame = np.concatenate([t["frame"].astype(np.int64) for t in tables]) if n else np.zeros(0, np.int64)
    key = np.concatenate([np.maximum.accumulate(t["ts_ns"]) if len(t) else t["ts_ns"] for t in tables])
    key = key.astype(np.int64)
    if n == 0 or bool(np.all(key[1:] >= key[:-1])):  # files one after the other: nothing to interleave
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.lexsort((np.arange(n), file_index, key))
    merged_key, merged_file = key[order], file_index[order]

    # global frames: every file's records before each row, in merged order
    step = np.diff(file_frame, prepend=0)
    step[starts[lengths > 0]] = file_frame[starts[lengths > 0]]  # a file's first row: its leading records
    frames = np.cumsum(step[order])
    later = np.zeros(n + 1, dtype=np.int64)  # records counted from a merged position onwards
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    for f, table in enumerate(tables):
        if len(table):  # its records after its last TCP row follow that row
            later[position[ends[f] - 1] + 1] += records[f] - int(file_frame[ends[f] - 1])
        elif records[f]:  # no TCP at all: its records sit where its first record's time puts them
            at = n if ordered[f][2] is None else _insertion_point(merged_key, merged_file, ordered[f][2], f)
            later[at] += records[f]
    frames += np.cumsum(later)[:n]

    columns: dict[str, np.ndarray] = {}
    for name, column in tables[0].columns.items():
        if name in SET_COLUMNS:
            continue
        joined = np.concatenate([t[name] for t in tables]) if len(tables) > 1 else column
        columns[name] = joined[order] if n else joined
    columns["frame"] = frames.astype(columns["frame"].dtype)
    columns["file"] = merged_file.astype(SET_COLUMNS["file"])
    columns["file_frame"] = file_frame[order].astype(SET_COLUMNS["file_frame"])

    stats, files = set_stats([(name, table.stats, count, len(table), start_ns)
                              for (name, table, start_ns), count in zip(ordered, records)])
    return PacketTable(columns, stats, source, files)


def set_stats(members: Sequence[tuple[str, DecodeStats, int, int, int | None]]) -> tuple[DecodeStats, tuple]:
    """A set's statistics and :class:`CaptureFile` list from its files' own, in set order:
    ``(name, stats, records, TCP packets, first record's timestamp)`` each.  Counters are summed;
    warnings are prefixed with their file's name."""
    stats = DecodeStats()
    files = []
    for name, own, count, packets, start_ns in members:
        for counter in _COUNTERS:
            setattr(stats, counter, getattr(stats, counter) + getattr(own, counter))
        for reason, times in own.skipped.items():
            stats.skipped[reason] = stats.skipped.get(reason, 0) + times
        stats.warnings += [f"{name}: {message}" for message in own.warnings]
        files.append(CaptureFile(name, count, packets, start_ns, own))
    return stats, tuple(files)


def _insertion_point(merged_key: np.ndarray, merged_file: np.ndarray, ts_ns: int, file: int) -> int:
    """Where a row of ``file`` at ``ts_ns`` would go in the merged order."""
    low = int(np.searchsorted(merged_key, ts_ns, side="left"))
    high = int(np.searchsorted(merged_key, ts_ns, side="right"))
    return low + int(np.count_nonzero(merged_file[low:high] < file))
