"""Link, IP and TCP headers of one record, through dpkt, into the packet table.

The reference decoder: dpkt parses the link layer (Ethernet with 802.1Q/QinQ
and MPLS, Linux SLL and SLL2, BSD loopback, raw IP) and the IP layer (IPv4 with
options, IPv6 with extension headers); the TCP fields are read from dpkt's TCP
object.  dpkt silently leaves raw bytes where a layer failed to parse; here
every such case is counted under a named reason in ``DecodeStats.skipped``
instead (STYLE.md: count and report what could not be decoded).

``bad_checksum`` marks a packet whose IPv4 header checksum or TCP checksum
(over the IPv4/IPv6 pseudo-header) is wrong; it is only verified when the
whole segment was captured and is not an IP fragment.
"""
from __future__ import annotations

import struct

import dpkt
from dpkt import ethernet, ip, ip6, loopback, sll, sll2, tcp

from pcapstate.decode.linktypes import LINKTYPE_NAMES, SUPPORTED_LINKTYPES, linktype_name  # noqa: F401 (theirs)
from pcapstate.decode.records import Record
from pcapstate.table import TableBuilder

_TCP_OPT_TIMESTAMP = 8
_TCP_OPT_SACK = 5


def _network_layer(linktype: int, data: bytes):
    """The dpkt IP/IP6 object of a frame, or None (reason as second value)."""
    if linktype == 1:
        frame = ethernet.Ethernet(data)
    elif linktype == 113:
        frame = sll.SLL(data)
    elif linktype == 276:
        frame = sll2.SLL2(data)
    elif linktype in (0, 108):
        frame = loopback.Loopback(data)
    else:  # RAW, IPV4, IPV6: the version nibble says which
        if not data:
            return None, "empty"
        return (ip.IP(data) if data[0] >> 4 == 4 else ip6.IP6(data)), None
    layer = frame.data
    if isinstance(layer, (ip.IP, ip6.IP6)):
        return layer, None
    ethertype = getattr(frame, "type", None) or getattr(frame, "ethtype", None)
    if ethertype in (ethernet.ETH_TYPE_IP, ethernet.ETH_TYPE_IP6) or getattr(frame, "family", 0) in (2, 24, 28, 30):
        return None, "malformed IP header"
    return None, "not IP"


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def decode_record(record: Record, builder: TableBuilder) -> None:
    """Append the record's TCP packet to ``builder``, or count why it has none."""
    stats = builder.stats
    if not _INT64_MIN <= record.ts_ns <= _INT64_MAX:  # a damaged pcapng timestamp (records.py warned)
        stats.skip("timestamp beyond 64-bit nanoseconds", tcp_related=True)
        return
    data = bytes(record.data)
    truncated = record.wire_len > len(data)
    if truncated:
        stats.truncated_records += 1
    try:
        net, reason = _network_layer(record.linktype, data)
    except (dpkt.UnpackError, struct.error, IndexError, AttributeError):
        # AttributeError: dpkt's IPv6 parser reads ``frag_off`` from whatever extension
        # header came last when the next-header field says 44 (found by fuzzing).
        net, reason = None, "malformed link or IP header"
    if net is None:
        stats.skip(reason, tcp_related=reason != "not IP")
        return
    if isinstance(net, ip.IP):
        _decode_ipv4(record, net, builder, truncated)
    else:
        _decode_ipv6(record, net, builder, truncated)


def _decode_ipv4(record: Record, packet: ip.IP, builder: TableBuilder, truncated: bool) -> None:
    if packet.offset:  # non-first fragment: no transport header in it
        builder.stats.fragments += 1
        return
    if packet.p != ip.IP_PROTO_TCP:
        builder.stats.skip("not TCP")
        return
    ip_payload = packet.len - packet.hl * 4 if packet.len else None  # 0: TSO, use what was captured
    bad_header = not _checksum_ok(packet.pack_hdr() + bytes(packet.opts))
    _decode_tcp(record, packet.src, packet.dst, packet.data, ip_payload, builder, truncated,
                fragment=bool(packet.mf), bad_header=bad_header)


def _decode_ipv6(record: Record, packet: ip6.IP6, builder: TableBuilder, truncated: bool) -> None:
    fragment = packet.extension_hdrs.get(ip.IP_PROTO_FRAGMENT)
    if fragment is not None and fragment.frag_off > 0:
        builder.stats.fragments += 1
        return
    if getattr(packet, "p", packet.nxt) != ip.IP_PROTO_TCP:
        builder.stats.skip("not TCP")
        return
    ext_len = sum(ext.length for ext in packet.all_extension_headers)
    ip_payload = packet.plen - ext_len if packet.plen else None
    _decode_tcp(record, packet.src, packet.dst, packet.data, ip_payload, builder, truncated,
                fragment=fragment is not None and bool(fragment.m_flag))


def _tcp_checksum_bad(src: bytes, dst: bytes, segment: tcp.TCP, ip_payload: int | None) -> bool:
    """Whether the TCP checksum over the pseudo-header and the whole segment is wrong."""
    raw = segment.pack_hdr() + bytes(segment.opts) + bytes(segment.data)
    if ip_payload is not None and len(raw) != ip_payload:
        return False  # not all of the segment was captured: cannot tell
    # (with an IP length of 0, TSO, the captured segment is checked, as tshark does)
    if len(src) == 4:
        if len(raw) > 0xFFFF:  # a TSO/BIG TCP segment captured on the sender: no real checksum to verify
            return False
        pseudo = struct.pack("!4s4sxBH", src, dst, ip.IP_PROTO_TCP, len(raw))
    else:
        pseudo = struct.pack("!16s16sI3xB", src, dst, len(raw), ip.IP_PROTO_TCP)
    return not _checksum_ok(pseudo + raw)


def _checksum_ok(data: bytes) -> bool:
    """The Internet checksum over ``data`` (checksum field included) verifies.

    Its one's-complement sum of 16-bit words is 0xFFFF exactly when their plain
    sum is a non-zero multiple of 0xFFFF, and since 2**16 = 1 (mod 0xFFFF) that
    is the whole buffer read as one big-endian number, modulo 0xFFFF (the data
    here is never all zeros: it holds the IP version or protocol).
    """
    if len(data) % 2:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF == 0


def _decode_tcp(record, src, dst, segment, ip_payload, builder: TableBuilder, truncated: bool, *,
                fragment: bool = False, bad_header: bool = False) -> None:
    """One TCP row; the TCP checksum is checked unless cut by the snap length or in a first IP fragment."""
    if not isinstance(segment, tcp.TCP):
        reason = "TCP header cut by snap length" if truncated and len(segment) < 20 else "malformed TCP header"
        builder.stats.skip(reason, tcp_related=True)
        return
    header_len = segment.off * 4
    if ip_payload is not None and header_len > ip_payload:
        builder.stats.skip("TCP data offset beyond the packet", tcp_related=True)
        return
    payload_len = (ip_payload if ip_payload is not None else 20 + len(segment.opts) + len(segment.data)) - header_len
    options = _parse_options(bytes(segment.opts))
    if len(segment.opts) < header_len - 20:
        truncated = True  # options cut by the snap length: keep what was read
    builder.append(
        frame=record.frame,
        ts_ns=record.ts_ns,
        src=src,
        dst=dst,
        sport=segment.sport,
        dport=segment.dport,
        flags=segment.flags,
        seq=segment.seq,
        ack=segment.ack,
        window=segment.win,
        payload_len=max(payload_len, 0),
        truncated=truncated,
        bad_checksum=bad_header or (not (truncated or fragment) and _tcp_checksum_bad(src, dst, segment, ip_payload)),
        **options,
    )


def _parse_options(raw: bytes) -> dict:
    """MSS, window scale, SACK-permitted, SACK blocks and timestamps, if present."""
    found: dict = {}
    for option in tcp.parse_opts(raw):
        if option is None:  # option running past the header
            break
        kind, value = option
        if kind == tcp.TCP_OPT_MSS and len(value) == 2:
            found["mss"] = struct.unpack("!H", value)[0]
        elif kind == tcp.TCP_OPT_WSCALE and len(value) == 1:
            found["wscale"] = value[0]
        elif kind == tcp.TCP_OPT_SACKOK:
            found["sack_permitted"] = True
        elif kind == _TCP_OPT_TIMESTAMP and len(value) == 8:
            found["ts_val"], found["ts_ecr"] = struct.unpack("!II", value)
            found["has_timestamps"] = True
        elif kind == _TCP_OPT_SACK and len(value) >= 8:
            count = len(value) // 8
            found["sack_blocks"] = tuple(struct.unpack_from("!II", value, 8 * i) for i in range(count))
    return found
