"""Compiled link/IP/TCP header parsing into the packet table's columns.

The fast twin of :mod:`pcapstate.decode.layers`, with exactly its semantics for
the layouts it accepts; every other record gets the outcome ``FALLBACK`` and is
decoded by dpkt (layers.decode_record).  Accepted:

* links: Ethernet II with up to two 802.1Q/802.1ad tags (dpkt's rule: a second
  tag only behind 0x8100), Linux SLL and SLL2, BSD NULL/LOOP, RAW/IPV4/IPV6;
* IPv4 (with options) and IPv6 without extension headers, the whole IP header
  and at least 20 bytes of TCP captured, the version nibble matching the link
  layer's claim;
* TCP with any options (read as dpkt's ``parse_opts`` reads them, End of
  Option List included), the checksum verdict of layers.py;
* skips counted as layers.py counts them, where dpkt's outcome is certain:
  ARP and Ethernet types dpkt has no class for ("not IP"), UDP and IP protocols
  dpkt has no class for ("not TCP"), non-first IPv4 fragments.

Falls back: MPLS, LLC/802.3, triple tags, Ethernet types dpkt opens (PPPoE,
IPX, ...), ICMP and other protocols dpkt parses further, IPv6 extension
headers, any header cut or malformed, a TCP data offset beyond the IP length,
an IPv4 TSO segment over 65535 bytes (its checksum is not verified).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from pcapstate import aot
from pcapstate.decode._compiled import inline, zeroed_arrays
from pcapstate.decode.fast_records import FRAMES, READONLY_BYTES
from pcapstate.jit import entry, njit
from pcapstate.table import ADDRESS_COLUMNS, MAX_SACK_BLOCKS, SACK_COLUMN, SCALAR_COLUMNS, Known

# a record's outcome (the ``status`` array)
ROW, FALLBACK, NOT_IP, NOT_TCP, FRAGMENT, UNSUPPORTED = 0, 1, 2, 3, 4, 5
SUPPORTED = (0, 1, 101, 108, 113, 228, 229, 276)  # linktypes.SUPPORTED_LINKTYPES
_IP4, _IP6, _ANY_IP = 4, 6, 0  # what a link layer says follows it

# the table's columns, as numba reads them: one array each, in table.py's order
Columns = namedtuple("Columns", [*SCALAR_COLUMNS, *ADDRESS_COLUMNS, SACK_COLUMN])
COLUMNS = aot.Named(Columns, *(aot.array(dtype, 1) for dtype, _ in SCALAR_COLUMNS.values()),
                    *(aot.array(np.uint8, 2) for _ in ADDRESS_COLUMNS), aot.array(np.uint32, 3))

# Ethernet types dpkt's Ethernet._typesw decodes (beyond IPv4/IPv6/ARP), VLAN
# tags and MPLS: their outcome depends on dpkt's parsers, so they fall back.
_DPKT_ETHERTYPES = (0x00BB, 0x2000, 0x2004, 0x6558, 0x8137, 0x880B, 0x8864, 0x88A2,
                    0x8100, 0x88A8, 0x9100, 0x9200, 0x8847, 0x8848)
_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
# IP protocols dpkt's IP._protosw decodes (TCP and UDP aside), and IPv6
# extension headers: fall back.  Any other protocol is plainly "not TCP".
_DPKT_PROTOCOLS = (0, 1, 2, 4, 41, 43, 44, 47, 50, 51, 58, 60, 89, 103, 112, 118, 132)
_KNOWN_ALL = int(Known.ALL)


@njit
def _byte(buf, at):
    """buf[at] as an int64.  The unsigned index spares numba's negative-index
    wraparound, which would otherwise cost more than the parsing itself."""
    return np.int64(buf[np.uint64(at)])


@njit
def _u16(buf, at):
    return (_byte(buf, at) << 8) | _byte(buf, at + 1)


@njit
def _u32(buf, at):
    return (_u16(buf, at) << 16) | _u16(buf, at + 2)


@inline
def _word_sum(buf, start, stop):
    """Sum of the big-endian 16-bit words of buf[start:stop] (an odd last byte padded with 0)."""
    total = np.int64(0)
    words = (stop - start) // 2
    for k in range(words):  # a loop over 0.. with unsigned indexes: numba vectorises it
        total += _u16(buf, start + 2 * k)
    if start + 2 * words < stop:
        total += _byte(buf, stop - 1) << 8
    return total


# --- link layer -----------------------------------------------------------------


@inline
def _after_ethertype(etype, at, cooked):
    """(outcome, IP offset, family) once the link layer named ``etype``."""
    if etype == 0x0800:
        return ROW, at, _IP4
    if etype == 0x86DD:
        return ROW, at, _IP6
    if etype == 0x0806:
        return NOT_IP, at, 0
    if etype in _DPKT_ETHERTYPES and not (cooked and (etype in _VLAN or etype == 0x8847 or etype == 0x8848)):
        return FALLBACK, at, 0
    if not cooked and etype <= 1500:  # 802.3 length: dpkt reads LLC
        return FALLBACK, at, 0
    return NOT_IP, at, 0  # dpkt has no class for it: raw bytes, "not IP"


@inline
def _ethernet(buf, start, end):
    if end - start < 14:
        return FALLBACK, start, 0
    etype, at = _u16(buf, start + 12), start + 14
    if etype <= 1500:
        return FALLBACK, at, 0
    if etype in _VLAN:
        for _ in range(2):  # dpkt reads a second tag only behind 0x8100
            if end - at < 4:
                return FALLBACK, at, 0
            etype, at = _u16(buf, at + 2), at + 4
            if etype != 0x8100:
                break
    return _after_ethertype(etype, at, False)


@inline
def _link(buf, start, end, linktype):
    """(outcome, IP offset, family) of a record's link layer, as layers._network_layer reads it."""
    if linktype == 1:
        return _ethernet(buf, start, end)
    if linktype == 113:  # SLL: dpkt names the packet type "type", ahead of the protocol
        if end - start < 16 or _u16(buf, start) in (0x0800, 0x86DD):
            return FALLBACK, start, 0
        return _after_ethertype(_u16(buf, start + 14), start + 16, True)
    if linktype == 276:  # SLL2
        if end - start < 20:
            return FALLBACK, start, 0
        return _after_ethertype(_u16(buf, start), start + 20, True)
    if linktype == 0 or linktype == 108:  # BSD loopback: the family in either byte order
        if end - start < 4:
            return FALLBACK, start, 0
        family = _u32(buf, start)  # dpkt reads host order, but accepts each value byte-swapped too
        if family == 2 or family == 0x02000000:
            return ROW, start + 4, _IP4
        if family in (24, 28, 30, 0x18000000, 0x1C000000, 0x1E000000):
            return ROW, start + 4, _IP6
        return FALLBACK, start, 0
    if linktype == 101 or linktype == 228 or linktype == 229:
        return (ROW, start, _ANY_IP) if end > start else (FALLBACK, start, 0)
    return UNSUPPORTED, start, 0


# --- IP -------------------------------------------------------------------------


@inline
def _ipv4(buf, at, end):
    """(outcome, TCP start, TCP end, IP payload length or -1, more fragments, header checksum bad)."""
    if end - at < 20 or _byte(buf, at) >> 4 != 4:
        return FALLBACK, 0, 0, 0, False, False
    header_len = (_byte(buf, at) & 0x0F) * 4
    if header_len < 20 or end - at < header_len:  # dpkt raises, or reads options cut short
        return FALLBACK, 0, 0, 0, False, False
    total, flags_offset, protocol = _u16(buf, at + 2), _u16(buf, at + 6), _byte(buf, at + 9)
    if flags_offset & 0x1FFF:  # non-first fragment: dpkt keeps raw bytes, any protocol
        return FRAGMENT, 0, 0, 0, False, False
    if protocol != 6:
        return (FALLBACK if protocol in _DPKT_PROTOCOLS else NOT_TCP), 0, 0, 0, False, False
    tcp_at = at + header_len
    if total:  # dpkt slices buf[header_len:total]
        tcp_end, ip_payload = max(min(at + total, end), tcp_at), total - header_len
    else:  # TSO: total length 0, the captured segment is all there is
        tcp_end, ip_payload = end, np.int64(-1)
        if end - tcp_at > 0xFFFF:  # layers.py's IPv4 pseudo-header packs it as 16 bits: raises
            return FALLBACK, 0, 0, 0, False, False
    bad_header = _word_sum(buf, at, at + header_len) % 0xFFFF != 0
    return ROW, tcp_at, tcp_end, ip_payload, (flags_offset & 0x2000) != 0, bad_header


@inline
def _ipv6(buf, at, end):
    """As _ipv4, for an IPv6 header without extension headers."""
    if end - at < 40 or _byte(buf, at) >> 4 != 6:
        return FALLBACK, 0, 0, 0, False, False
    payload, next_header = _u16(buf, at + 4), _byte(buf, at + 6)
    if next_header != 6:
        return (FALLBACK if next_header in _DPKT_PROTOCOLS else NOT_TCP), 0, 0, 0, False, False
    tcp_at = at + 40
    if payload:
        return ROW, tcp_at, min(tcp_at + payload, end), payload, False, False
    return ROW, tcp_at, end, np.int64(-1), False, False  # jumbogram or TSO: what was captured


# --- TCP ------------------------------------------------------------------------


@inline
def _options(buf, at, stop):
    """Options of buf[at:stop] as dpkt.tcp.parse_opts and layers._parse_options read them.

    Returns (mss, wscale, sack_permitted, ts_val, ts_ecr, has_timestamps,
    sack_count, offset of the SACK blocks).  A later option of a kind replaces
    an earlier one, as in layers.py's dict.
    """
    mss, wscale, sack_ok, ts_val, ts_ecr, has_ts, sack_count, sack_at = 0, -1, False, 0, 0, False, 0, 0
    while at < stop:
        kind = _byte(buf, at)
        if kind <= 1:  # EOL and NOP are one byte; dpkt reads on after an EOL
            at += 1
            continue
        if at + 1 >= stop:  # no length byte: parse_opts ends the list
            break
        length = max(2, _byte(buf, at + 1))
        value, value_end = at + 2, min(at + length, stop)  # a value past the end is cut short
        size = value_end - value
        if kind == 2 and size == 2:
            mss = _u16(buf, value)
        elif kind == 3 and size == 1:
            wscale = _byte(buf, value)
        elif kind == 4:
            sack_ok = True
        elif kind == 8 and size == 8:
            ts_val, ts_ecr, has_ts = _u32(buf, value), _u32(buf, value + 4), True
        elif kind == 5 and size >= 8:
            sack_count, sack_at = min(size // 8, MAX_SACK_BLOCKS), value
        at += length
    return mss, wscale, sack_ok, ts_val, ts_ecr, has_ts, sack_count, sack_at


@inline
def _tcp_checksum_bad(buf, tcp_at, tcp_end, ip_payload, addr_at, addr_len):
    """layers._tcp_checksum_bad: the pseudo-header and segment sum, unless the segment is partial."""
    size = tcp_end - tcp_at
    if ip_payload >= 0 and size != ip_payload:
        return False
    pseudo = _word_sum(buf, addr_at, addr_at + 2 * addr_len) + 6 + (size >> 16) + (size & 0xFFFF)
    return (pseudo + _word_sum(buf, tcp_at, tcp_end)) % 0xFFFF != 0


@inline
def _network(buf, start, end, linktype):
    """(outcome, family, IP offset, TCP start, TCP end, IP payload or -1, more fragments, IPv4 checksum bad)."""
    outcome, ip_at, family = _link(buf, start, end, linktype)
    if outcome != ROW:
        return outcome, 0, 0, 0, 0, 0, False, False
    if family == _ANY_IP:  # raw IP: dpkt reads IPv6 unless the version nibble says 4
        family = _IP4 if _byte(buf, ip_at) >> 4 == 4 else _IP6
    if family == _IP4:
        outcome, tcp_at, tcp_end, ip_payload, fragment, bad = _ipv4(buf, ip_at, end)
    else:
        outcome, tcp_at, tcp_end, ip_payload, fragment, bad = _ipv6(buf, ip_at, end)
    return outcome, family, ip_at, tcp_at, tcp_end, ip_payload, fragment, bad


@inline
def _packet(buf, start, end, linktype, cut):
    """Everything a row needs beyond the fixed TCP fields, or an outcome other than ROW.

    Returns (outcome, family, address offset, TCP offset, payload length,
    truncated, bad checksum, then the eight values of _options).
    """
    outcome, family, ip_at, tcp_at, tcp_end, ip_payload, fragment, bad = _network(buf, start, end, linktype)
    size = tcp_end - tcp_at
    header_len = (_byte(buf, tcp_at + 12) >> 4) * 4 if outcome == ROW and size >= 20 else 0
    if header_len < 20 or (ip_payload >= 0 and header_len > ip_payload):  # dpkt: malformed, or data offset beyond
        outcome = FALLBACK if outcome == ROW else outcome
        return outcome, 0, 0, 0, 0, False, False, 0, -1, False, 0, 0, False, 0, 0
    options = _options(buf, tcp_at + 20, min(tcp_at + header_len, tcp_end))
    cut = cut or size < header_len  # options cut by the snap length count as cut
    addr_at, addr_len = (ip_at + 12, 4) if family == _IP4 else (ip_at + 8, 16)
    if not (bad or cut or fragment):
        bad = _tcp_checksum_bad(buf, tcp_at, tcp_end, ip_payload, addr_at, addr_len)
    payload_len = max((ip_payload if ip_payload >= 0 else size) - header_len, 0)
    return (ROW, family, addr_at, tcp_at, payload_len, cut, bad, options[0], options[1], options[2], options[3],
            options[4], options[5], options[6], options[7])


@inline
def _address_byte(buf, at, addr_len, k):
    """Byte ``k`` of the 16-byte column value of the address at ``at``: IPv4 as ::ffff:a.b.c.d."""
    if k >= 16 - addr_len:
        return _byte(buf, at + k - (16 - addr_len))
    return 0xFF if k >= 10 else 0


# how parse_records stopped: at the end, at a pcap record cut by the end of the file (its
# header, or its data), at a pcap record longer than the limit (ODD: records.py
# resynchronises there), or out of room (FULL: call again with more)
END, TAIL_HEADER, TAIL_RECORD, ODD, FULL = 0, 1, 2, 3, 4


@njit
def _u32_ordered(buf, at, little):
    if little:
        return (_byte(buf, at + 3) << 24) | (_byte(buf, at + 2) << 16) | (_byte(buf, at + 1) << 8) | _byte(buf, at)
    return _u32(buf, at)


@inline
def _pcap_record(buf, pos, little, nano, limit):
    """(how, data offset, captured length, wire length, ts_ns) of the pcap record at ``pos``."""
    if len(buf) - pos < 16:
        return TAIL_HEADER, 0, 0, 0, 0
    incl, orig = _u32_ordered(buf, pos + 8, little), _u32_ordered(buf, pos + 12, little)
    if incl > limit or pos + 16 + incl > len(buf):
        return (ODD if incl > limit else TAIL_RECORD), 0, 0, 0, 0
    frac = _u32_ordered(buf, pos + 4, little)
    ts_ns = _u32_ordered(buf, pos, little) * 1_000_000_000 + (frac if nano else frac * 1000)
    return END, pos + 16, incl, max(orig, incl), ts_ns


@entry(READONLY_BYTES, FRAMES, ("b1", "b1", "b1", "i8", "i8"), ("i8", "i8", "i8", "i8"), COLUMNS, "u1[::1]", "i8[::1]",
       "b1")
def parse_records(buf, frames, pcap, state, cols, status, fallback_at, options):
    """Parse records into TCP rows (packed at the top of ``cols``) and outcomes (``status``).

    The records are those of ``frames``, or, when ``pcap`` = (True, little-endian,
    nanoseconds, length limit, link type), the pcap records walked from byte
    ``state[0]``: framing and parsing in one pass over the file.  ``state`` =
    (byte offset, records, rows, fallbacks) says how much of ``status``,
    ``cols`` and ``fallback_at`` (where each FALLBACK record starts) earlier
    calls filled.  Returns (byte offset, records, rows, fallbacks, cut, how):
    ``cut`` counts records not left to dpkt whose wire length exceeds what was
    captured; ``how`` is END, FULL, or why a pcap walk stopped.  Without
    ``options`` the option columns (``table.OPTION_COLUMNS``) are left untouched.

    Every column is written here, from arrays unpacked before the loop: numba
    counts a reference each time an array is taken out of a tuple or handed to
    a helper, and inside the loop that would cost more than the parsing.
    """
    offset, caplen, wire_len, ts_ns, linktype = frames
    (frame, stamp, ip_version, sport, dport, seq, ack, flags, window, payload_len, mss, wscale, sack_permitted,
     ts_val, ts_ecr, has_timestamps, sack_count, truncated, bad_checksum, known, src_ip, dst_ip, sack) = cols
    walk, little, nano, limit, pcap_link = pcap
    pos, records, rows, fallbacks = state
    cut, how = 0, END
    while (pos < len(buf)) if walk else (records < len(offset)):
        if records == len(status):
            how = FULL
            break
        u = np.uint64(records)  # unsigned indexes: no wraparound code (see _byte)
        if walk:
            how, start, size, wire, ts = _pcap_record(buf, pos, little, nano, limit)
            link = pcap_link
            if how != END:
                break
        else:
            start, size, wire, ts, link = offset[u], caplen[u], wire_len[u], ts_ns[u], linktype[u]
        found = _packet(buf, start, start + size, link, wire > size)
        status[u] = found[0]
        if found[0] == ROW:
            r, family, addr_at, tcp_at = np.uint64(rows), found[1], found[2], found[3]
            frame[r], stamp[r], ip_version[r] = records + 1, ts, family
            sport[r], dport[r], seq[r], ack[r] = _u16(buf, tcp_at), _u16(buf, tcp_at + 2), _u32(buf, tcp_at + 4), \
                _u32(buf, tcp_at + 8)
            flags[r], window[r] = _u16(buf, tcp_at + 12) & 0x1FF, _u16(buf, tcp_at + 14)
            payload_len[r], truncated[r], bad_checksum[r] = found[4], found[5], found[6]
            addr_len = 4 if family == _IP4 else 16
            for k in range(16):
                src_ip[r, np.uint64(k)] = _address_byte(buf, addr_at, addr_len, k)
                dst_ip[r, np.uint64(k)] = _address_byte(buf, addr_at + addr_len, addr_len, k)
            if options:
                mss[r], wscale[r], sack_permitted[r], ts_val[r], ts_ecr[r] = found[7], found[8], found[9], \
                    found[10], found[11]
                has_timestamps[r], sack_count[r], known[r] = found[12], found[13], _KNOWN_ALL
                for block in range(MAX_SACK_BLOCKS):
                    sack[r, np.uint64(block), 0], sack[r, np.uint64(block), 1] = _sack_block(buf, found, block)
            rows += 1
        elif found[0] == FALLBACK:
            fallback_at[np.uint64(fallbacks)] = start
            fallbacks += 1
        cut += found[0] != FALLBACK and found[0] != UNSUPPORTED and wire > size
        records += 1
        pos = start + size
    return pos, records, rows, fallbacks, cut, how


@inline
def _sack_block(buf, found, block):
    """(left, right) edges of SACK block ``block`` of a _packet result; zeros past its count."""
    if block >= found[13]:
        return 0, 0
    return _u32(buf, found[14] + 8 * block), _u32(buf, found[14] + 8 * block + 4)


def allocate_columns(count: int) -> Columns:
    """Zeroed columns for ``count`` rows, in one allocation (see _compiled.zeroed_arrays)."""
    layouts = [(dtype, ()) for dtype, _ in SCALAR_COLUMNS.values()]
    layouts += [("uint8", (16,)) for _ in ADDRESS_COLUMNS] + [("uint32", (MAX_SACK_BLOCKS, 2))]
    return Columns(*zeroed_arrays(count, layouts))
