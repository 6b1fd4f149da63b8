"""A pcap file decoded a window of records at a time, for captures too long to hold at once.

:func:`pcap_windows` yields the packet table of each run of ``records``
consecutive records, with the frame numbers of the whole file, and fills one
:class:`~pcapstate.table.DecodeStats` for the file: the tables, put end to end,
and the statistics are exactly what :func:`pcapstate.decode.fast.decode_fast`
gives for the whole file (the same compiled walk, stopped every ``records``
records and resumed where it stopped; the same dpkt fallback per window).

Memory stays that of one window: the walk's room is reused, and the pages of
the mapped file already read are given back to the system (they stay in the
page cache, but no longer count as this process's memory).

A file whose framing needs records.py's repairs (a record longer than the snap
length, a timestamp beyond 64-bit arithmetic) raises :class:`NeedsWholeFile`
where the walk finds it, maybe after some windows: the caller drops them and
decodes the file whole instead.  So does a file that is not plain pcap
(pcapng, gzip, tcpdump text), before any window.
"""
from __future__ import annotations

import itertools
import mmap

import numpy as np

from pcapstate.decode import check_link_type
from pcapstate.decode.fast import (_NO_FRAMES, Parsed, _count_outcomes, _decode_fallbacks, _merge, _pcap_record,
                                   _room, pcap_header)
from pcapstate.decode.fast_layers import END, FALLBACK, FULL, ODD, TAIL_HEADER, parse_records
from pcapstate.decode.records import _ignore_tail, sniff_format
from pcapstate.table import OPTION_COLUMNS, DecodeStats, PacketTable

WINDOW_RECORDS = 1 << 18  # ~27 MB of a capture of 100-byte packets; ~22 MB of columns


class NeedsWholeFile(Exception):
    """The file cannot be decoded a window at a time; decode it whole (``read_capture``)."""


def pcap_windows(content, source: str, stats: DecodeStats, records: int = WINDOW_RECORDS, options: bool = False,
                 views: bool = False):
    """Yield (packet table of the next ``records`` records, index of its first TCP row in the file).

    ``content``: the file's bytes (an mmap, or bytes).  ``stats`` is filled as
    the windows go; it is complete once the generator is exhausted.  Tables
    have no option columns unless ``options``.  With ``views``, a table's
    columns may be views into memory the window after next overwrites (two
    rooms, taken in turn): for a caller done with each table before it asks
    for the one after the next (a copy spared; the next window may be decoded
    on a thread while this one is used, :func:`one_ahead`).
    """
    buf = np.frombuffer(content, dtype=np.uint8)
    if len(buf) < 24 or sniff_format(bytes(buf[:4])) != "pcap":
        raise NeedsWholeFile(f"{source}: not a pcap file")
    check_link_type(content, source)
    order, header = pcap_header(buf)
    rooms = [_room(records) for _ in range(2 if views else 1)]
    first_seen: dict[str, int] = {}
    pos, first_record, first_row = 24, 0, 0
    for window in itertools.count():
        room = rooms[window % len(rooms)]
        columns, status, fallback_at = room
        pos, count, rows, fallbacks, cut, how = parse_records(buf, _NO_FRAMES, header, (pos, 0, 0, 0), columns, status,
                                                              fallback_at, options)
        if how == ODD:  # (the windows before were right; the caller drops them and reads the whole file)
            raise NeedsWholeFile(f"{source}: framing needs repair after {first_record + count} records")
        table = _window_table(content, order, header, room, count, rows, fallbacks, cut, first_record, stats,
                              first_seen, source, views)
        stats.records += count
        _release(content, pos)
        if not options:
            table = PacketTable({k: v for k, v in table.columns.items() if k not in OPTION_COLUMNS}, stats, source)
        yield table, first_row
        first_record += count
        first_row += len(table)
        if how != FULL:
            break
    if how != END:  # cut inside the last record: records.py's warning, first as the whole file's walk gives it
        _ignore_tail(stats, len(buf) - pos, "inside a record header" if how == TAIL_HEADER else "inside a record")
        stats.warnings.insert(0, stats.warnings.pop())


def one_ahead(windows):
    """``windows`` (a :func:`pcap_windows` generator with ``views``), the next window decoded on a thread while
    the caller uses this one: the compiled walk releases the GIL, and the two rooms keep the tables apart."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        coming = pool.submit(next, windows, None)
        while (window := coming.result()) is not None:
            coming = pool.submit(next, windows, None)
            yield window


def _window_table(content, order: str, header, room, count: int, rows: int, fallbacks: int, cut: int,
                  first_record: int, stats: DecodeStats, first_seen: dict, source: str, views: bool) -> PacketTable:
    """One window's rows (compiled and dpkt's, in frame order), its outcomes counted into ``stats``."""
    columns, status, fallback_at = room
    status = status[:count]
    indexes = np.flatnonzero(status == FALLBACK).tolist()
    records = [_pcap_record(content, order, header, at - 16, first_record + index + 1)
               for index, at in zip(indexes, fallback_at[:fallbacks].tolist())]
    parsed = Parsed(status, columns, rows, cut, records, {})
    fallback, seen = _decode_fallbacks(records, stats, source)
    for reason, index in seen.items():
        first_seen.setdefault(reason, index)
    _count_outcomes(parsed, stats, first_seen, first_record)
    merged = _merge(_renumbered(columns, rows, first_record), rows, fallback)
    if not len(fallback) and not views:  # views into the room, which the next window overwrites (else new arrays)
        merged = {name: column.copy() for name, column in merged.items()}
    return PacketTable(merged, stats, source)


def _renumbered(columns, rows: int, first_record: int):
    """The room's columns with the window's frame numbers made the file's (the walk counts from the window)."""
    columns.frame[:rows] += first_record
    return columns


def _release(content, upto: int) -> None:
    """Give back the mapped file's pages before byte ``upto`` (read already)."""
    if isinstance(content, mmap.mmap) and upto >= mmap.PAGESIZE:
        content.madvise(mmap.MADV_DONTNEED, 0, upto - upto % mmap.PAGESIZE)
