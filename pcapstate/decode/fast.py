"""The fast decoder: the packet table of a pcap or pcapng file through compiled code, dpkt for the rest.

It fills exactly the table and :class:`DecodeStats` (counters, skip reasons in
first-seen order, warnings) that the dpkt reference decoder
(:mod:`pcapstate.decode.layers` over :mod:`pcapstate.decode.records`) fills, in
three steps:

1. Framing, compiled: where each record lies.  pcap in both byte orders,
   micro- or nanosecond, including a file cut inside its last record, is
   walked and parsed in one pass (fast_layers.parse_records); pcapng with any
   number of sections (either byte order) and up to 64 interfaces with their
   ``if_tsresol``/``if_tsoffset`` is walked first (fast_records).  Anything
   needing repair (a record longer than the snap length, a damaged or cut
   pcapng block, a malformed packet block, a timestamp beyond 64-bit
   arithmetic) makes the whole file go through records.py's Python framing,
   which resynchronises and warns as it always has; its records still take
   steps 2 and 3.
2. Headers (:mod:`pcapstate.decode.fast_layers`, compiled): each record becomes
   a TCP row, a counted skip ("not IP", "not TCP", fragment, unsupported link
   type), or "fall back": Ethernet (VLAN, QinQ), SLL, SLL2, NULL/LOOP and raw
   links; IPv4 with options and IPv6 without extension headers; TCP with all
   options and the checksum verdict.  Everything else (MPLS, IPv6 extension
   headers, ICMP, malformed or cut headers, ...) falls back.
3. Fallback: those records go one by one through dpkt (layers.decode_record),
   and their rows are merged with the compiled rows in frame order.

``decode_fast`` is what ``read_capture(path)`` uses; ``decoder="dpkt-reference"``
runs the reference decoder alone.  With ``PCAPSTATE_NO_JIT=1`` the same
functions run as plain Python, for debugging (``decode_bytes(..., fast=True)``):
slower than dpkt, so ``read_capture`` then defaults to the reference.
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

import numpy as np

from pcapstate.decode.fast_layers import (END, FALLBACK, FRAGMENT, FULL, NOT_IP, NOT_TCP, ODD, ROW, SUPPORTED,
                                          TAIL_HEADER, UNSUPPORTED, Columns, allocate_columns, parse_records)
from pcapstate.decode.fast_records import Frames, empty_frames, walk_pcapng
from pcapstate.decode.records import (MAX_RECORD, PCAP_MAGIC_NSEC, PCAP_MAGIC_USEC, Record, _ignore_tail,
                                      read_records, sniff_format)
from pcapstate.table import DecodeStats, PacketTable, TableBuilder

_SKIP_REASONS = {NOT_IP: "not IP", NOT_TCP: "not TCP"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# bytes per pcap record (header and packet) below which captures are rare: room for
# (file size / this) records is reserved, and doubled when a file needs more
_SMALL_RECORD = 56
_CHUNK = 1 << 20  # records between two progress reports
_NO_FRAMES = empty_frames(0)
_READ_FRAMES = (False, False, False, 0, 0)  # parse_records: the records of ``frames``, not a pcap walk


@dataclass
class Parsed:
    """What the compiled code made of a file."""

    status: np.ndarray  # each record's outcome (fast_layers: ROW, FALLBACK, NOT_IP, ...)
    columns: Columns  # the TCP rows, packed at the top
    rows: int
    cut: int  # records not left to dpkt whose wire length exceeds what was captured
    fallbacks: list[Record]  # the records left to dpkt, in file order
    unsupported: dict[int, int]  # link type -> records of it (pcapng interfaces)


def decode_fast(content, source: str = "", progress=None, options: bool = True) -> PacketTable:
    """The packet table of a pcap or pcapng file held in ``content`` (bytes or mmap).

    ``options=False``: the option columns (``table.OPTION_COLUMNS``) are never
    written, so their pages never take memory (the caller drops them).
    """
    from pcapstate.decode import _report_unsupported

    stats = DecodeStats()
    parsed = parse_capture(content, stats, progress, options)
    stats.records = len(parsed.status)
    if progress is not None:
        progress.update(len(content), stats.records)
    fallback, first_seen = _decode_fallbacks(parsed.fallbacks, stats, source)
    _count_outcomes(parsed, stats, first_seen)
    _report_unsupported(source, stats, parsed.unsupported)
    return PacketTable(_merge(parsed.columns, parsed.rows, fallback), stats, source)


def parse_capture(content, stats: DecodeStats, progress=None, options: bool = True) -> Parsed:
    """Steps 1 and 2 over the whole file; framing warnings go to ``stats``."""
    buf = np.frombuffer(content, dtype=np.uint8)
    kind = sniff_format(bytes(buf[:4]))
    parsed = _parse_pcap(content, buf, stats, progress, options) if kind == "pcap" and len(buf) >= 24 else None
    if parsed is not None:
        return parsed
    frames, originals = (_frame_pcapng(buf) if kind == "pcapng" else None), {}
    if frames is None:
        frames, originals = _frame_in_python(content, stats)
    return _parse_frames(content, buf, frames, originals, options)


# --- pcap: one compiled walk ---------------------------------------------------------


def _parse_pcap(content, buf: np.ndarray, stats: DecodeStats, progress=None, options: bool = True) -> Parsed | None:
    """The whole pcap file in one compiled walk, or None when it needs records.py's repairs.

    The walk stops every ``_CHUNK`` records (a shorter ``status`` makes it
    report FULL) to tell ``progress``, and when the room is really full, to grow it.
    """
    order, header = pcap_header(buf)
    room = _room(max(1024, len(buf) // _SMALL_RECORD))
    state, cut = (24, 0, 0, 0), 0  # byte offset, records, rows, fallbacks
    while True:
        columns, status, fallback_at = room
        chunk = status[:state[1] + _CHUNK]
        *state, more_cut, how = parse_records(buf, _NO_FRAMES, header, tuple(state), columns, chunk, fallback_at,
                                              options)
        cut += more_cut
        if how != FULL:
            break
        if progress is not None:
            progress.update(state[0], state[1])
        if state[1] == len(status):
            room = _grow(room, *state[1:])
    if how == ODD:
        return None
    pos, records, rows, fallbacks = state
    if how != END:  # cut inside the last record: records.py's warning
        _ignore_tail(stats, len(buf) - pos, "inside a record header" if how == TAIL_HEADER else "inside a record")
    columns, status, fallback_at = room
    status = status[:records]
    indexes = np.flatnonzero(status == FALLBACK).tolist()
    fallback_records = [_pcap_record(content, order, header, at - 16, index + 1)
                        for index, at in zip(indexes, fallback_at[:fallbacks].tolist())]
    return Parsed(status, columns, rows, cut, fallback_records, {})


def pcap_header(buf: np.ndarray) -> tuple[str, tuple]:
    """A pcap file's byte order ("<" or ">") and parse_records' ``pcap`` tuple for walking its records."""
    little = struct.unpack("<I", bytes(buf[:4]))[0] in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC)
    order = "<" if little else ">"
    magic, _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(order + "IHHiIII", bytes(buf[:24]))
    return order, (True, little, magic == PCAP_MAGIC_NSEC, snaplen if 0 < snaplen < MAX_RECORD else MAX_RECORD,
                   network & 0x03FFFFFF)


def _room(capacity: int) -> tuple[Columns, np.ndarray, np.ndarray]:
    """Columns, outcomes and fallback offsets for ``capacity`` records (untouched pages cost nothing)."""
    return allocate_columns(capacity), np.zeros(capacity, np.uint8), np.zeros(capacity, np.int64)


def _grow(room, records: int, rows: int, fallbacks: int):
    """Twice the room, holding what was filled."""
    columns, status, fallback_at = room
    bigger = _room(2 * len(status))
    for new, old in zip(bigger[0], columns):
        new[:rows] = old[:rows]
    bigger[1][:records] = status[:records]
    bigger[2][:fallbacks] = fallback_at[:fallbacks]
    return bigger


def _pcap_record(content, order: str, header, at: int, frame: int) -> Record:
    """The Record records.py makes of the pcap record header at byte ``at``."""
    _walk, _little, nano, _limit, linktype = header
    sec, frac, incl, orig = struct.unpack_from(order + "IIII", content, at)
    ts_ns = sec * 1_000_000_000 + (frac if nano else frac * 1000)
    return Record(frame, linktype, ts_ns, memoryview(content)[at + 16:at + 16 + incl], max(orig, incl), at + 16)


# --- pcapng, or any file records.py must repair: framing, then the compiled parser ---------


def _frame_pcapng(buf: np.ndarray) -> Frames | None:
    count, _stop, how = walk_pcapng(buf, empty_frames(0))  # first walk: count
    if how != END:
        return None
    frames = empty_frames(count)
    walk_pcapng(buf, frames)
    return frames


def _frame_in_python(content, stats: DecodeStats) -> tuple[Frames, dict[int, Record]]:
    """records.py's framing (resync, warnings), its records turned into arrays.

    A record of a supported link type whose timestamp does not fit an int64 is
    kept as a Record and given link type -1, so the compiled parser leaves it
    alone and dpkt decodes it (and fails exactly as the reference does); the
    timestamp of any other record is never used.
    """
    offsets, caplens, wire_lens, stamps, linktypes = array("q"), array("q"), array("q"), array("q"), array("i")
    originals: dict[int, Record] = {}
    for index, record in enumerate(read_records(content, stats)):
        ts_ns, linktype = record.ts_ns, record.linktype
        if not _INT64_MIN <= ts_ns <= _INT64_MAX:
            if linktype in SUPPORTED:  # (records of other link types are only counted)
                originals[index] = record
                linktype = -1
            ts_ns = 0
        offsets.append(record.offset)
        caplens.append(len(record.data))
        wire_lens.append(record.wire_len)
        stamps.append(ts_ns)
        linktypes.append(linktype)
    arrays = [np.asarray(column, dtype=np.int64) for column in (offsets, caplens, wire_lens, stamps)]
    return Frames(*arrays, np.asarray(linktypes, dtype=np.int32)), originals


def _parse_frames(content, buf: np.ndarray, frames: Frames, originals: dict[int, Record],
                  options: bool = True) -> Parsed:
    status = np.empty(len(frames.offset), np.uint8)
    columns = allocate_columns(len(status))
    _pos, _records, rows, _fallbacks, _cut, _how = parse_records(buf, frames, _READ_FRAMES, (0, 0, 0, 0), columns,
                                                                 status, np.empty(len(status), np.int64), options)
    status[list(originals)] = FALLBACK  # records the arrays could not describe
    decoded = (status != FALLBACK) & (status != UNSUPPORTED)
    cut = int(np.count_nonzero(decoded & (frames.wire_len > frames.caplen)))
    view = memoryview(content)
    fallbacks = []
    for index in np.flatnonzero(status == FALLBACK).tolist():
        offset, caplen = int(frames.offset[index]), int(frames.caplen[index])
        fallbacks.append(originals.get(index) or Record(index + 1, int(frames.linktype[index]),
                                                        int(frames.ts_ns[index]), view[offset:offset + caplen],
                                                        int(frames.wire_len[index]), offset))
    linktypes, counts = np.unique(frames.linktype[status == UNSUPPORTED], return_counts=True)
    return Parsed(status, columns, rows, cut, fallbacks, dict(zip(linktypes.tolist(), counts.tolist())))


# --- step 3: fallback, counting, merging ----------------------------------------------


def _decode_fallbacks(records: list[Record], stats: DecodeStats, source: str) -> tuple[PacketTable, dict[str, int]]:
    """The dpkt reference on every record left to it, counting into ``stats``.

    Also returns, for each skip reason dpkt gave, the first record index that
    got it: the reference decoder's dict of reasons is in that order.
    """
    builder = TableBuilder(source)
    builder.stats = stats
    first_seen: dict[str, int] = {}
    if records:  # (dpkt is imported only when there is something for it)
        from pcapstate.decode.layers import decode_record
    for record in records:
        decode_record(record, builder)
        if len(stats.skipped) > len(first_seen):
            first_seen.update((reason, record.frame - 1) for reason in stats.skipped if reason not in first_seen)
    return builder.finish(), first_seen


def _count_outcomes(parsed: Parsed, stats: DecodeStats, first_seen: dict[str, int], first_record: int = 0) -> None:
    """Add the compiled records' outcomes to ``stats`` (dpkt's own are already in).

    ``first_record``: the index of ``parsed``'s first record in the file (a window of it).
    """
    status = parsed.status
    counts = np.bincount(status, minlength=UNSUPPORTED + 1)
    stats.tcp += int(counts[ROW])
    stats.fragments += int(counts[FRAGMENT])
    stats.truncated_records += parsed.cut
    for code, reason in _SKIP_REASONS.items():
        if counts[code]:
            stats.non_tcp += int(counts[code])
            stats.skipped[reason] = stats.skipped.get(reason, 0) + int(counts[code])
            first = first_record + int(np.argmax(status == code))
            first_seen[reason] = min(first_seen.get(reason, first), first)
    stats.skipped = dict(sorted(stats.skipped.items(), key=lambda item: first_seen[item[0]]))


def _merge(columns: Columns, rows: int, fallback: PacketTable) -> dict[str, np.ndarray]:
    """The compiled rows (the first ``rows`` of each column) and dpkt's rows, in frame order."""
    merged = {name: column[:rows] for name, column in zip(Columns._fields, columns)}  # the rest was never touched
    if len(fallback):
        order = np.argsort(np.concatenate([merged["frame"], fallback["frame"]]), kind="stable")
        merged = {name: np.concatenate([column, fallback[name]])[order] for name, column in merged.items()}
    return merged
