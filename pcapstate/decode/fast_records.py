"""Compiled pcapng framing: where each packet record of a clean pcapng file lies.

The fast twin of records.py's pcapng reader, for files that need none of its
repairs.  The walker fills :class:`Frames` (one row per packet record: data
offset, captured length, wire length, timestamp, link type); it runs twice
over a file, once with empty arrays to count the records, once to fill arrays
of exactly that size.  (pcap files need no separate framing: fast_layers.
parse_records walks and parses them in one pass.)

It hands the file back to records.py (``ODD``) instead of guessing at: any
block with a bad length or trailer (records.py resynchronises), a malformed
packet block or unknown interface, a block cut by the end of the file, more
than ``MAX_INTERFACES`` interfaces, and timestamps whose exact nanosecond value
needs more than 64-bit arithmetic.

All integers are int64 and read byte by byte (``_u32``), so the very same code
runs compiled or as plain Python (``PCAPSTATE_NO_JIT=1``); the helpers are
inlined into the walker (see _compiled.inline).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from pcapstate import aot
from pcapstate.decode._compiled import inline, zeroed_arrays
from pcapstate.jit import entry, njit

# how a walk ended (as fast_layers.parse_records)
END, ODD = 0, 3

# one row per packet record; int64 except linktype (int32)
Frames = namedtuple("Frames", "offset caplen wire_len ts_ns linktype")
FRAMES = aot.Named(Frames, "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]", "i4[::1]")  # as an entry point's argument
READONLY_BYTES = "readonly u1[::1]"  # the capture's bytes (a read-only map of the file)

PCAPNG_SHB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB, PCAPNG_EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_INTERFACES = 64
NS = 1_000_000_000
_TS_LIMIT = 1 << 62  # |ticks * multiplier| stays below this, so ts_ns fits an int64
_OFFSET_LIMIT = 1 << 32  # if_tsoffset seconds we convert here (|offset| * 1e9 < 2**62)


def empty_frames(count: int) -> Frames:
    """Zeroed frames for ``count`` records, in one allocation (see _compiled.zeroed_arrays)."""
    return Frames(*zeroed_arrays(count, [("int64", ())] * 4 + [("int32", ())]))


@njit
def _u16(buf, at, little):
    a, b = np.int64(buf[np.uint64(at)]), np.int64(buf[np.uint64(at + 1)])  # unsigned: no wraparound code
    return (b << 8) | a if little else (a << 8) | b


@njit
def _u32(buf, at, little):
    lo, hi = _u16(buf, at, little), _u16(buf, at + 2, little)
    return (hi << 16) | lo if little else (lo << 16) | hi


@inline
def _store(frames, n, offset, caplen, wire_len, ts_ns, linktype):
    """Row ``n`` of ``frames``, unless this is the counting walk (empty arrays)."""
    if len(frames.offset) > 0:
        at = np.uint64(n)
        frames.offset[at] = offset
        frames.caplen[at] = caplen
        frames.wire_len[at] = wire_len
        frames.ts_ns[at] = ts_ns
        frames.linktype[at] = linktype


# --- pcapng -----------------------------------------------------------------------


@inline
def _tsresol_units(resol):
    exponent = resol & 0x7F
    if resol & 0x80:
        return np.int64(1) << min(exponent, 62)
    return np.int64(10) ** min(exponent, 18)


@inline
def _read_idb(buf, body, body_end, little, interfaces, index):
    """Link type, if_tsresol and if_tsoffset of an interface into ``interfaces[index]``.

    The row holds (link type, multiplier, divisor, offset seconds) with
    ticks * multiplier // divisor == ticks * 1e9 // units exactly; False when
    no such pair exists or the offset is too large for int64 nanoseconds.
    """
    linktype = _u16(buf, body, little) if body_end - body >= 2 else 0
    units, offset = np.int64(1_000_000), np.int64(0)
    pos = body + 8
    while pos + 4 <= body_end:  # options, as records._options reads them
        code, length = _u16(buf, pos, little), _u16(buf, pos + 2, little)
        if code == 0:
            break
        value, value_end = pos + 4, min(pos + 4 + length, body_end)
        if code == 9 and value_end - value >= 1:
            units = _tsresol_units(np.int64(buf[np.uint64(value)]))
        elif code == 14 and value_end - value >= 8:
            offset = _i64(buf, value, little)
        pos += 4 + length + (-length % 4)
    if abs(offset) > _OFFSET_LIMIT:
        return False
    interfaces[index, 0], interfaces[index, 3] = linktype, offset
    if NS % units == 0:
        interfaces[index, 1], interfaces[index, 2] = NS // units, 1
    elif units % NS == 0:
        interfaces[index, 1], interfaces[index, 2] = 1, units // NS
    else:  # e.g. 2**20 ticks per second: the exact value needs big integers
        return False
    return True


@inline
def _i64(buf, at, little):
    """A signed 64-bit field."""
    first, second = _u32(buf, at, little), _u32(buf, at + 4, little)
    hi, lo = (second, first) if little else (first, second)
    if hi >= 1 << 31:
        hi -= 1 << 32
    return hi * (1 << 32) + lo


@inline
def _packet_block(buf, btype, body, body_end, little, interfaces, count, frames, n):
    """Store one packet block's record; False when records.py would call it malformed (or ts overflows)."""
    size = body_end - body
    if btype == PCAPNG_SPB:
        if size < 4 or count == 0:
            return False
        wire_len = _u32(buf, body, little)
        _store(frames, n, body + 4, min(wire_len, size - 4), wire_len, 0, interfaces[0, 0])
        return True
    if size < 20:
        return False
    if btype == PCAPNG_EPB:
        if_id = _u32(buf, body, little)
    else:  # obsolete Packet Block: 16-bit interface id, 16-bit drops count
        if_id = _u16(buf, body, little)
    ts_high, ts_low = _u32(buf, body + 4, little), _u32(buf, body + 8, little)
    caplen, wire_len = _u32(buf, body + 12, little), _u32(buf, body + 16, little)
    if if_id >= count or caplen > size - 20 or ts_high >= 1 << 31:
        return False
    ticks = (ts_high << 32) | ts_low
    multiplier, divisor = interfaces[if_id, 1], interfaces[if_id, 2]
    if ticks > _TS_LIMIT // multiplier:
        return False
    ts_ns = ticks * multiplier // divisor + interfaces[if_id, 3] * NS
    _store(frames, n, body + 20, caplen, max(wire_len, caplen), ts_ns, interfaces[if_id, 0])
    return True


@inline
def _section_little(buf, pos, little):
    """Byte order of a Section Header Block (unchanged when its magic is neither)."""
    if _u32(buf, pos + 8, True) == BYTE_ORDER_MAGIC:
        return True
    if _u32(buf, pos + 8, False) == BYTE_ORDER_MAGIC:
        return False
    return little


@entry(READONLY_BYTES, FRAMES)
def walk_pcapng(buf, frames):
    """(records, stop offset, END or ODD) of a pcapng file."""
    interfaces = np.zeros((MAX_INTERFACES, 4), np.int64)
    pos, n, end, little, count = 0, 0, len(buf), True, 0
    while pos < end:
        if end - pos < 12:
            return n, pos, ODD
        btype = _u32(buf, pos, little)
        if btype == PCAPNG_SHB:
            little, count = _section_little(buf, pos, little), 0
        blen = _u32(buf, pos + 4, little)
        if blen < 12 or blen % 4 or pos + blen > end or _u32(buf, pos + blen - 4, little) != blen:
            return n, pos, ODD
        body, body_end = pos + 8, pos + blen - 4
        if btype == PCAPNG_IDB:
            if count == MAX_INTERFACES or not _read_idb(buf, body, body_end, little, interfaces, count):
                return n, pos, ODD
            count += 1
        elif btype == PCAPNG_EPB or btype == PCAPNG_SPB or btype == PCAPNG_PB:
            if not _packet_block(buf, btype, body, body_end, little, interfaces, count, frames, n):
                return n, pos, ODD
            n += 1
        pos += blen
    return n, pos, END
