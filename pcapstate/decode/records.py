"""Capture file framing: pcap and pcapng records, either byte order, gzip or not.

Yields one :class:`Record` per packet record, numbered 1.. in file order as
Wireshark and tshark number frames.  Only framing lives here; link and protocol
headers are decoded in :mod:`pcapstate.decode.layers`.

Broken files are normal in this field, so the readers never raise past the
file header: a record cut short at the end of the file is dropped with a
warning naming the bytes ignored; a record header claiming an absurd length
(larger than the rest of the file, the snap length, or 256 KiB) is skipped by
resynchronising on the next plausible header, with a warning.  Nothing is
allocated beyond the file's own bytes.

References: the pcap format (draft-ietf-opsawg-pcap), the pcapng format
(draft-ietf-opsawg-pcapng), sections "Section Header Block", "Interface
Description Block" (if_tsresol, if_tsoffset), "Enhanced/Simple Packet Block".
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from pcapstate.table import DecodeStats

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_RECORD = 262144
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1  # the largest snap length libpcap writes

PCAPNG_IDB = 0x00000001
PCAPNG_OBSOLETE_PB = 0x00000002
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
_PCAPNG_KNOWN_BLOCKS = {PCAPNG_SHB, PCAPNG_IDB, PCAPNG_OBSOLETE_PB, PCAPNG_SPB, 0x4, 0x5, PCAPNG_EPB, 0x7, 0x9, 0xA, 0xBAD, 0x40000BAD}


@dataclass(frozen=True, slots=True)
class Record:
    frame: int  # 1-based, every packet record of the file
    linktype: int
    ts_ns: int
    data: memoryview  # captured bytes
    wire_len: int  # length on the wire (>= len(data) unless the file lies)
    offset: int = -1  # where ``data`` starts in the file's buffer (the fast decoder's fallback reads it)


def sniff_format(head: bytes) -> str | None:
    """'pcap', 'pcapng' or None, from the first bytes of a file."""
    if len(head) >= 4:
        for order in "<>":
            magic = struct.unpack(order + "I", head[:4])[0]
            if magic in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
                return "pcap"
        if struct.unpack("<I", head[:4])[0] == PCAPNG_SHB:
            return "pcapng"
    return None


def pcap_linktype(buf) -> int | None:
    """The link type in a pcap file header (None for pcapng or a short file)."""
    if len(buf) < 24 or sniff_format(bytes(buf[:4])) != "pcap":
        return None
    order = "<" if struct.unpack("<I", buf[:4])[0] in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC) else ">"
    return struct.unpack_from(order + "I", buf, 20)[0] & 0x03FFFFFF


def read_records(buf: bytes | memoryview, stats: DecodeStats) -> Iterator[Record]:
    """Records of a whole pcap or pcapng file held in ``buf``."""
    kind = sniff_format(bytes(buf[:4]))
    if kind == "pcap":
        return _pcap_records(memoryview(buf), stats)
    if kind == "pcapng":
        return _pcapng_records(memoryview(buf), stats)
    raise ValueError("not a pcap or pcapng file")


# --- pcap -------------------------------------------------------------------


def _pcap_records(buf: memoryview, stats: DecodeStats) -> Iterator[Record]:
    if len(buf) < 24:
        stats.bytes_ignored += len(buf)
        stats.warn(f"file ends inside the 24-byte pcap header; {len(buf)} bytes ignored")
        return
    order = "<" if struct.unpack("<I", buf[:4])[0] in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC) else ">"
    magic, _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(order + "IHHiIII", buf[:24])
    nano = magic == PCAP_MAGIC_NSEC
    linktype = network & 0x03FFFFFF  # upper bits carry FCS length flags
    limit = snaplen if 0 < snaplen < MAX_RECORD else MAX_RECORD
    header = struct.Struct(order + "IIII")
    pos, frame, end = 24, 0, len(buf)
    while pos < end:
        if end - pos < 16:
            _ignore_tail(stats, end - pos, "inside a record header")
            return
        sec, frac, incl, orig = header.unpack_from(buf, pos)
        if incl > limit:
            nxt = _pcap_resync(buf, pos + 1, header, limit)
            skipped = (nxt if nxt is not None else end) - pos
            stats.undecodable += 1
            stats.warn(f"record header at byte {pos} claims {incl} bytes (snap length {snaplen}); "
                       f"skipped {skipped} bytes to the next plausible record")
            if nxt is None:
                stats.bytes_ignored += skipped
                return
            pos = nxt
            continue
        if pos + 16 + incl > end:
            _ignore_tail(stats, end - pos, "inside a record")
            return
        frame += 1
        ts_ns = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        yield Record(frame, linktype, ts_ns, buf[pos + 16 : pos + 16 + incl], max(orig, incl), pos + 16)
        pos += 16 + incl


def _pcap_resync(buf: memoryview, start: int, header: struct.Struct, limit: int) -> int | None:
    """Offset of the next position whose record header and successor look valid."""
    end = len(buf)
    for pos in range(start, end - 15):
        _sec, frac, incl, orig = header.unpack_from(buf, pos)
        if incl == 0 or incl > limit or orig < incl or orig > MAX_RECORD or frac >= 1_000_000_000:
            continue
        nxt = pos + 16 + incl
        if nxt == end:
            return pos
        if nxt + 16 <= end:
            _s, f2, i2, o2 = header.unpack_from(buf, nxt)
            if 0 < i2 <= limit and o2 >= i2 and f2 < 1_000_000_000:
                return pos
    return None


def _ignore_tail(stats: DecodeStats, count: int, where: str) -> None:
    stats.bytes_ignored += count
    stats.warn(f"file truncated {where}: last {count} bytes ignored")


# --- pcapng -----------------------------------------------------------------


@dataclass
class _Interface:
    linktype: int
    units_per_second: int  # from if_tsresol
    offset_s: int  # if_tsoffset


def _pcapng_records(buf: memoryview, stats: DecodeStats) -> Iterator[Record]:
    order = "<"
    interfaces: list[_Interface] = []
    pos, frame, end = 0, 0, len(buf)
    while pos < end:
        if end - pos < 12:
            _ignore_tail(stats, end - pos, "inside a block header")
            return
        btype = struct.unpack_from(order + "I", buf, pos)[0]
        if btype == PCAPNG_SHB:
            order = _section_byte_order(buf, pos) or order
            interfaces = []
        blen = struct.unpack_from(order + "I", buf, pos + 4)[0]
        if blen < 12 or blen % 4 or pos + blen > end or _trailer_len(buf, pos, blen, order) != blen:
            nxt = _pcapng_resync(buf, pos + 4, order)
            if nxt is None:
                _ignore_tail(stats, end - pos, "inside a block")
                return
            stats.undecodable += 1
            stats.warn(f"pcapng block at byte {pos} has a bad length ({blen}); skipped {nxt - pos} bytes")
            pos = nxt
            continue
        body = buf[pos + 8 : pos + blen - 4]
        if btype == PCAPNG_IDB:
            interfaces.append(_parse_idb(body, order))
        elif btype in (PCAPNG_EPB, PCAPNG_SPB, PCAPNG_OBSOLETE_PB):
            packet = _parse_packet_block(btype, body, order, interfaces)
            if packet is None:
                stats.undecodable += 1
                stats.warn(f"pcapng packet block at byte {pos} is malformed or names an unknown interface")
            else:
                frame += 1
                linktype, ts_ns, data_at, data, wire_len = packet
                if not _INT64_MIN <= ts_ns <= _INT64_MAX:  # decoding skips it: said here, where damage is found
                    stats.warn(f"pcapng packet block at byte {pos} (frame {frame}) has a timestamp beyond the "
                               "range of 64-bit nanoseconds; skipped")
                yield Record(frame, linktype, ts_ns, data, wire_len, pos + 8 + data_at)
        pos += blen


def _section_byte_order(buf: memoryview, pos: int) -> str | None:
    if len(buf) - pos < 12:
        return None
    for order in "<>":
        if struct.unpack_from(order + "I", buf, pos + 8)[0] == PCAPNG_BYTE_ORDER_MAGIC:
            return order
    return None


def _trailer_len(buf: memoryview, pos: int, blen: int, order: str) -> int:
    return struct.unpack_from(order + "I", buf, pos + blen - 4)[0]


def _pcapng_resync(buf: memoryview, start: int, order: str) -> int | None:
    """Next 4-aligned offset holding a known block type with matching lengths."""
    end = len(buf)
    pos = start + (-start % 4)
    while pos + 12 <= end:
        btype, blen = struct.unpack_from(order + "II", buf, pos)
        if btype in _PCAPNG_KNOWN_BLOCKS and blen >= 12 and blen % 4 == 0 and pos + blen <= end:
            if _trailer_len(buf, pos, blen, order) == blen:
                return pos
        pos += 4
    return None


def _options(body: memoryview, order: str) -> Iterator[tuple[int, memoryview]]:
    pos = 0
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            return
        yield code, body[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length % 4)


def _parse_idb(body: memoryview, order: str) -> _Interface:
    linktype = struct.unpack_from(order + "H", body, 0)[0] if len(body) >= 2 else 0
    units, offset = 1_000_000, 0
    for code, value in _options(body[8:], order):
        if code == 9 and len(value) >= 1:  # if_tsresol
            units = _tsresol_units(value[0])
        elif code == 14 and len(value) >= 8:  # if_tsoffset, seconds
            offset = struct.unpack_from(order + "q", value, 0)[0]
    return _Interface(linktype, units, offset)


def _tsresol_units(resol: int) -> int:
    exponent = resol & 0x7F
    if resol & 0x80:
        return 1 << min(exponent, 62)
    return 10 ** min(exponent, 18)


def _parse_packet_block(btype: int, body: memoryview, order: str, interfaces: list[_Interface]):
    if btype == PCAPNG_SPB:
        if len(body) < 4 or not interfaces:
            return None
        wire_len = struct.unpack_from(order + "I", body, 0)[0]
        data = body[4 : 4 + min(wire_len, len(body) - 4)]
        return interfaces[0].linktype, 0, 4, data, wire_len
    if btype == PCAPNG_EPB:
        if len(body) < 20:
            return None
        if_id, ts_high, ts_low, caplen, wire_len = struct.unpack_from(order + "IIIII", body, 0)
        data_at = 20
    else:  # obsolete Packet Block: 16-bit interface id and drops count
        if len(body) < 20:
            return None
        if_id, _drops, ts_high, ts_low, caplen, wire_len = struct.unpack_from(order + "HHIIII", body, 0)
        data_at = 20
    if if_id >= len(interfaces) or caplen > len(body) - data_at:
        return None
    iface = interfaces[if_id]
    ticks = (ts_high << 32) | ts_low
    ts_ns = ticks * 1_000_000_000 // iface.units_per_second + iface.offset_s * 1_000_000_000
    return iface.linktype, ts_ns, data_at, body[data_at : data_at + caplen], max(wire_len, caplen)
