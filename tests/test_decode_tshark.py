"""The tshark decoder (``decoder="pyshark"``) against the dpkt reference decoder.

Both must fill identical packet tables.  The exclusions are principled and
each is asserted rather than skipped:

* frames whose TCP packet sits behind an encapsulation dpkt does not open
  (GRE, IP-in-IP, VXLAN, Geneve, GTP-U, Teredo, 802.1ah PBB, VN-Tag): tshark
  has a row there and dpkt has none; every other row is identical;
* a few malformed-option cases where dpkt's reading is lenient or wrong (see
  ``DPKT_DIFFERS``): there the tshark value is checked against the RFC.

These tests run tshark for real (CI installs it); they are not skipped when
it is missing.
"""
from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcapstate.decode import read_capture
from pcapstate.decode import tshark as tshark_decoder
from pcapstate.errors import CaptureReadError, DecoderUnavailableError, NotACaptureError
from pcapstate.table import TableBuilder

REPO = Path(__file__).resolve().parents[1]
ZEEK_TRACES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek" / "traces"
TRACES = sorted((REPO / "samples").glob("*.pcap")) + sorted(
    p for p in ZEEK_TRACES.glob("*") if p.suffix in (".pcap", ".pcapng")
)

# Layers dpkt's reference decoder walks through before the IP header.
DPKT_LINK_LAYERS = {"eth", "ethertype", "vlan", "mpls", "sll", "null", "loop", "raw"}


# --- comparing tables -----------------------------------------------------------


def rows(table) -> dict[int, dict[str, list]]:
    frames = table["frame"].tolist()
    return {frame: {name: column[i].tolist() for name, column in table.columns.items()} for i, frame in enumerate(frames)}


def assert_same_rows(dpkt_rows: dict, tshark_rows: dict, context: str) -> None:
    assert sorted(dpkt_rows) == sorted(tshark_rows), f"{context}: different frames have rows"
    for frame, row in dpkt_rows.items():
        differing = {k: (v, tshark_rows[frame][k]) for k, v in row.items() if v != tshark_rows[frame][k]}
        assert not differing, f"{context}: frame {frame} differs (dpkt, tshark): {differing}"


def assert_identical(dpkt_table, tshark_table, context: str) -> None:
    assert set(dpkt_table.columns) == set(tshark_table.columns)
    for name, column in dpkt_table.columns.items():
        other = tshark_table.columns[name]
        assert column.dtype == other.dtype and column.shape == other.shape, f"{context}: column {name}"
        if not np.array_equal(column, other):
            assert_same_rows(rows(dpkt_table), rows(tshark_table), context)
            pytest.fail(f"{context}: column {name} differs")


COUNTS = ("records", "tcp", "non_tcp", "fragments", "undecodable", "truncated_records")


def counts(stats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in COUNTS}


def protocol_stacks(path: Path) -> dict[int, list[str]]:
    """tshark's ``frame.protocols`` of every frame, split into layers."""
    command = tshark_decoder.tshark_command(str(path), fields=("frame.number", "frame.protocols"))
    for preference in tshark_decoder.PREFERENCES:
        assert preference in command
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    stacks = {}
    for line in output.splitlines():
        number, _, protocols = line.partition("\t")
        stacks[int(number)] = protocols.split(":")
    return stacks


def beyond_dpkt(layers: list[str]) -> bool:
    """True when tshark found IP or TCP behind an encapsulation dpkt does not open."""
    at = 0
    while at < len(layers) and layers[at] in DPKT_LINK_LAYERS:
        at += 1
    rest = layers[at:]
    if not rest or rest[0] not in ("ip", "ipv6"):
        return any(name in ("ip", "ipv6", "tcp") for name in rest)  # e.g. PBB, VN-Tag
    at = 1
    while at < len(rest) and rest[at].startswith("ipv6."):  # IPv6 extension headers
        at += 1
    after = rest[at:]
    if after[:1] == ["tcp"]:
        return False
    quoted = next((i for i, name in enumerate(after) if name in ("icmp", "icmpv6")), len(after))
    return any(name in ("ip", "ipv6", "tcp") for name in after[:quoted])  # a tunnel (not an ICMP quote)


# --- every sample and conformance trace -------------------------------------------


def test_traces_are_there():
    assert ZEEK_TRACES.is_dir(), f"conformance traces missing: {ZEEK_TRACES}"
    assert TRACES


@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_both_decoders_give_the_same_table(path: Path):
    dpkt_table = read_capture(path)
    tshark_table = read_capture(path, decoder="pyshark")
    assert tshark_table.stats.records == dpkt_table.stats.records
    assert tshark_table.stats.truncated_records == dpkt_table.stats.truncated_records
    same = len(dpkt_table) == len(tshark_table) and all(
        np.array_equal(column, tshark_table.columns[name]) for name, column in dpkt_table.columns.items()
    )
    if same:
        assert_identical(dpkt_table, tshark_table, path.name)
        assert counts(tshark_table.stats) == counts(dpkt_table.stats)
        assert tshark_table.stats.skipped == dpkt_table.stats.skipped
        return
    # Only frames behind an encapsulation dpkt does not open may differ: there
    # tshark has the inner TCP packet as a row and dpkt has no row.
    stacks = protocol_stacks(path)
    tunnelled = {frame for frame, layers in stacks.items() if beyond_dpkt(layers)}
    assert tunnelled, f"{path.name}: the tables differ, but no frame is behind an encapsulation dpkt lacks"
    dpkt_rows, tshark_rows = rows(dpkt_table), rows(tshark_table)
    assert not tunnelled & set(dpkt_rows), f"{path.name}: dpkt decoded a tunnelled frame"
    outside = {frame: row for frame, row in tshark_rows.items() if frame not in tunnelled}
    assert_same_rows(dpkt_rows, outside, path.name)  # dpkt's rows are a subset of tshark's
    inner = set(tshark_rows) - set(outside)
    assert inner and len(tshark_table) > len(dpkt_table)
    for frame in inner:  # the row is the tunnelled TCP packet, with the inner addresses
        assert "tcp" in stacks[frame]


def test_tunnel_rows_are_the_inner_packets():
    path = ZEEK_TRACES / "tunnels__vxlan-encapsulated-http.pcap"
    table = read_capture(path, decoder="pyshark")
    assert len(read_capture(path)) == 0 and len(table) > 0
    command = tshark_decoder.tshark_command(str(path), fields=("frame.number", "ip.src", "tcp.srcport"))
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    inner = {}
    for line in output.splitlines():
        number, sources, port = line.split("\t")
        if port:
            inner[int(number)] = (sources.split(",")[-1], int(port))
    for i, frame in enumerate(table["frame"].tolist()):
        assert (table.address("src_ip", i), int(table["sport"][i])) == inner[frame]


# --- hand-made packets --------------------------------------------------------------

T0 = 1_700_000_000_123_456_789


def tcp(sport=1234, dport=80, seq=1000, ack=0, flags=0x02, win=65535, opts=b"", payload=b"", off=None, urg=0):
    if off is None:
        off = (20 + len(opts)) // 4
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (off << 12) | (flags & 0x1FF), win, 0, urg) + opts + payload


def ipv4(payload, src="10.0.0.1", dst="10.0.0.2", proto=6, length=None, hl=5, frag=0, mf=False, opts=b""):
    if length is None:
        length = hl * 4 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | hl, 0, length, 1, (0x2000 if mf else 0) | frag, 64, proto, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return header + opts + payload


def ipv6(payload, src="2001:db8::1", dst="2001:db8::2", nxt=6, plen=None, ext=b""):
    if plen is None:
        plen = len(ext) + len(payload)
    return struct.pack("!IHBB16s16s", 0x60000000, plen, nxt, 64, ipaddress.ip_address(src).packed,
                       ipaddress.ip_address(dst).packed) + ext + payload


def ether(payload, ethertype=0x0800, tags=()):
    header = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
    for tpid, tci in tags:
        header += struct.pack("!HH", tpid, tci)
    return header + struct.pack("!H", ethertype) + payload


def pcap(packets, linktype=1, nano=False) -> bytes:
    """packets: (ts_ns, captured bytes, wire length or None)."""
    out = struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for ts, data, wire in packets:
        fraction = ts % 10**9 if nano else ts % 10**9 // 1000
        out += struct.pack("<IIII", ts // 10**9, fraction, len(data), wire or len(data)) + data
    return out


MSS, NOP, WSCALE, SACK_OK = b"\x02\x04\x05\xb4", b"\x01", b"\x03\x03\x07", b"\x04\x02"
TIMESTAMPS = b"\x08\x0a" + struct.pack("!II", 111, 222)


def sack(*blocks):
    return bytes([5, 2 + 8 * len(blocks)]) + b"".join(struct.pack("!II", left, right) for left, right in blocks)


UDP = b"\x00\x35\x00\x35\x00\x08\x00\x00"

# frames both decoders must read the same way, alone or cut by a snap length
AGREE = {
    "syn with options": ether(ipv4(tcp(opts=MSS + NOP + WSCALE + SACK_OK + TIMESTAMPS))),
    "all nine flags": ether(ipv4(tcp(flags=0x1FF))),
    "payload": ether(ipv4(tcp(flags=0x18, payload=b"hello"))),
    "urgent": ether(ipv4(tcp(flags=0x38, urg=3, payload=b"abcd"))),
    "ethernet padding": ether(ipv4(tcp(flags=0x10))) + b"\0" * 6,
    "eol padding": ether(ipv4(tcp(opts=MSS + b"\x00\x00\x00\x00"))),
    "mss wrong length": ether(ipv4(tcp(opts=b"\x02\x05\x05\xb4\x00\x01\x01\x01"))),
    "sack-permitted wrong length": ether(ipv4(tcp(opts=b"\x04\x03\x00\x01"))),
    "timestamps wrong length": ether(ipv4(tcp(opts=b"\x08\x08\x00\x00\x00\x01\x00\x00"))),
    "option past the header": ether(ipv4(tcp(opts=MSS + b"\x01\x01\x08\x0a\x00\x00"))),
    "two mss": ether(ipv4(tcp(opts=MSS + b"\x02\x04\x01\x00"))),
    "window scale 20": ether(ipv4(tcp(opts=b"\x03\x03\x14\x01"))),
    "sack 1 block": ether(ipv4(tcp(flags=0x10, opts=NOP + NOP + sack((5000, 6000))))),
    "sack 3 blocks": ether(ipv4(tcp(flags=0x10, opts=NOP + NOP + sack((5000, 6000), (7000, 8000), (9000, 9500))))),
    "sack 4 blocks": ether(ipv4(tcp(flags=0x10, opts=NOP + NOP + sack((1, 2), (3, 4), (5, 6), (7, 8))))),
    "sack length 14": ether(ipv4(tcp(flags=0x10, opts=bytes([5, 14]) + struct.pack("!III", 10, 20, 30) + NOP * 2))),
    "sack length 10": ether(ipv4(tcp(flags=0x10, opts=bytes([5, 10]) + struct.pack("!II", 10, 20) + NOP * 2))),
    "two sack options": ether(ipv4(tcp(flags=0x10, opts=sack((1, 2)) + sack((3, 4), (5, 6)) + NOP * 4))),
    # a lone left edge in the first of two options: -T fields cannot tell whose; the JSON pass can
    "two sack options, first odd": ether(ipv4(tcp(
        flags=0x10, opts=bytes([5, 14]) + struct.pack("!III", 10, 20, 30) + sack((3, 4)) + NOP * 2))),
    "data offset 4": ether(ipv4(tcp(off=4))),
    "data offset past the segment": ether(ipv4(tcp(off=15, payload=b"x" * 8))),
    "data offset past the ip length": ether(ipv4(tcp(off=8) + b"\x01" * 12, length=44)),
    "10-byte tcp header": ether(ipv4(tcp()[:10])),
    "ip length 0 (tso)": ether(ipv4(tcp(flags=0x10, payload=b"abcdef"), length=0)),
    "ip length below header": ether(ipv4(tcp(), length=10)),
    "ip length below tcp header": ether(ipv4(tcp(), length=30)),
    "ip header length 4": ether(ipv4(tcp(), hl=4)),
    "ip options": ether(ipv4(tcp(), hl=6, opts=b"\x01\x01\x01\x00")),
    "12-byte ip header": ether(ipv4(tcp())[:12]),
    "first fragment": ether(ipv4(tcp(payload=b"y" * 16), mf=True)),
    "later fragment of tcp": ether(ipv4(b"z" * 40, frag=3)),
    "later fragment of udp": ether(ipv4(b"z" * 40, frag=3, proto=17)),
    "tiny first fragment": ether(ipv4(tcp()[:8], mf=True)),
    "udp": ether(ipv4(UDP, proto=17)),
    "arp": ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, 0x0806),
    "icmp error quoting tcp": ether(ipv4(b"\x03\x03\x00\x00\x00\x00\x00\x00" + ipv4(tcp(opts=MSS)), proto=1)),
    "ipv6": ether(ipv6(tcp(opts=MSS + SACK_OK + NOP + NOP)), 0x86DD),
    "ipv6 hop-by-hop": ether(ipv6(tcp(flags=0x10, payload=b"q"), nxt=0, ext=b"\x06\x00\x01\x04\x00\x00\x00\x00"), 0x86DD),
    "ipv6 first fragment": ether(ipv6(tcp(payload=b"w" * 8), nxt=44, ext=b"\x06\x00\x00\x01\x00\x00\x00\x07"), 0x86DD),
    "ipv6 hop-by-hop, first fragment": ether(ipv6(tcp(payload=b"w" * 8), nxt=0, ext=(
        b"\x2c\x00\x01\x04\x00\x00\x00\x00" + b"\x06\x00\x00\x01\x00\x00\x00\x07")), 0x86DD),
    "ipv6 later fragment": ether(ipv6(b"w" * 16, nxt=44, ext=b"\x06\x00\x00\x10\x00\x00\x00\x07"), 0x86DD),
    "ipv6 later fragment of udp": ether(ipv6(b"w" * 16, nxt=44, ext=b"\x11\x00\x00\x10\x00\x00\x00\x07"), 0x86DD),
    "ipv6 hop-by-hop, later fragment": ether(ipv6(b"w" * 16, nxt=0, ext=(
        b"\x2c\x00\x01\x04\x00\x00\x00\x00" + b"\x06\x00\x00\x10\x00\x00\x00\x07")), 0x86DD),
    "ipv6 payload length 0": ether(ipv6(tcp(flags=0x10, payload=b"abc"), plen=0), 0x86DD),
    "ipv6 udp": ether(ipv6(UDP, nxt=17), 0x86DD),
    "ipv6 header cut": ether(ipv6(tcp())[:30], 0x86DD),
    "vlan": ether(ipv4(tcp()), tags=((0x8100, 10),)),
    "qinq": ether(ipv4(tcp()), tags=((0x88A8, 10), (0x8100, 20))),
    "mpls": ether(struct.pack("!I", (100 << 12) | 0x100 | 64) + ipv4(tcp()), 0x8847),
}
SNAP_CUTS = (14 + 20 + 10, 14 + 20 + 20, 14 + 20 + 24, 14 + 40 + 20, 14 + 40 + 30, 14 + 40 + 44)
NO_SNAP_VARIANTS = {  # cut by a snap length, these differ: see DPKT_DIFFERS
    "mss wrong length", "option past the header", "ip length 0 (tso)", "ipv6 payload length 0"}


def write(tmp_path: Path, name: str, packets, **options) -> Path:
    path = tmp_path / name
    path.write_bytes(pcap(packets, **options))
    return path


def test_hand_made_packets(tmp_path):
    path = write(tmp_path, "agree.pcap", [(T0 + i * 1_000_001, data, None) for i, data in enumerate(AGREE.values())])
    dpkt_table, tshark_table = read_capture(path), read_capture(path, decoder="pyshark")
    names = dict(enumerate(AGREE, start=1))
    try:
        assert_identical(dpkt_table, tshark_table, "hand-made")
    except AssertionError as error:
        raise AssertionError(f"{error}\nframes: {names}") from None
    assert counts(tshark_table.stats) == counts(dpkt_table.stats)
    assert len(tshark_table) > 25


def test_hand_made_packets_cut_by_the_snap_length(tmp_path):
    packets = [
        (T0 + i, data[:cut], len(data))
        for i, (name, data) in enumerate(AGREE.items())
        if name not in NO_SNAP_VARIANTS
        for cut in SNAP_CUTS
        if len(data) > cut
    ]
    path = write(tmp_path, "cut.pcap", packets)
    dpkt_table, tshark_table = read_capture(path), read_capture(path, decoder="pyshark")
    assert_identical(dpkt_table, tshark_table, "cut by the snap length")
    assert counts(tshark_table.stats) == counts(dpkt_table.stats)
    assert tshark_table["truncated"].all() and tshark_table.stats.truncated_records == len(packets)


def test_the_json_pass_reads_as_the_fields_pass(tmp_path):
    """Frames with several TCP headers go through tshark's JSON; it must agree."""
    packets = [(T0 + i, data, None) for i, data in enumerate(AGREE.values())]
    packets += [(T0 + i, data[:cut], len(data)) for i, data in enumerate(AGREE.values()) for cut in SNAP_CUTS
                if len(data) > cut]
    paths = [write(tmp_path, "all.pcap", packets), ZEEK_TRACES / "ftp__ipv6.pcap",
             ZEEK_TRACES / "tunnels__gre-sample.pcap"]
    for path in paths:
        by_fields = tshark_decoder.read_with_tshark(path)
        builder = TableBuilder(str(path))
        tshark_decoder._append_from_json(str(path), tshark_decoder.tshark_path(),
                                         list(range(1, by_fields.stats.records + 1)), builder)
        by_json = tshark_decoder._in_frame_order(builder.finish())
        assert_identical(by_fields, by_json, f"JSON pass on {path.name}")


def test_tcp_carried_tunnel_row_is_the_outer_tcp(tmp_path, monkeypatch):
    """RPCAP over TCP carries captured frames: two TCP headers in one frame.

    ``-T fields`` would mix the two headers' options; the JSON pass keeps the
    outer TCP header as the row, as dpkt reads it.
    """
    inner = ether(ipv4(tcp(sport=5555, dport=443, seq=42, flags=0x12, opts=b"\x02\x04\x05\x78\x04\x02\x01\x01"),
                       src="192.168.1.1", dst="192.168.1.2"))
    packet_header = struct.pack("!IIIII", 1_700_000_000, 5, len(inner), len(inner), 1)
    message = struct.pack("!BBHI", 0, 7, 0, len(packet_header) + len(inner)) + packet_header + inner
    outer = ether(ipv4(tcp(sport=2002, dport=40000, seq=7, ack=9, flags=0x18,
                           opts=b"\x01\x01\x08\x0a" + struct.pack("!II", 5, 6), payload=message)))
    path = write(tmp_path, "rpcap.pcap", [(T0, outer, None)])
    # the link type of the captured frames is normally learnt from the RPCAP session
    monkeypatch.setattr(tshark_decoder, "PREFERENCES", tshark_decoder.PREFERENCES + ("rpcap.linktype:1",))
    assert protocol_stacks(path)[1].count("tcp") == 2
    calls = []
    real = tshark_decoder._append_from_json
    monkeypatch.setattr(tshark_decoder, "_append_from_json", lambda *a: calls.append(a[2]) or real(*a))
    table = tshark_decoder.read_with_tshark(path)
    assert calls == [[1]]
    assert_identical(read_capture(path), table, "rpcap")
    assert (int(table["sport"][0]), int(table["mss"][0]), bool(table["sack_permitted"][0])) == (2002, 0, False)
    assert (int(table["ts_val"][0]), int(table["ts_ecr"][0])) == (5, 6)


# Where the tables differ on purpose.  Each entry: frame, what tshark must give.
DPKT_DIFFERS = {
    # RFC 9293 3.1: End of Option List ends the options; what follows is
    # padding.  dpkt's parse_opts reads on past it and finds an MSS.
    "options after End of Option List": (ether(ipv4(tcp(opts=b"\x00" + MSS + b"\x01\x01\x01"))), {"mss": 0}),
    # an option length below 2 is illegal (RFC 9293 3.1); tshark stops reading
    # the options, dpkt skips 2 bytes and reads on
    "option length 0": (ether(ipv4(tcp(opts=b"\x02\x00" + MSS + b"\x01\x01"))), {"mss": 0}),
    "option length 1": (ether(ipv4(tcp(opts=b"\x22\x01" + MSS + b"\x01\x01"))), {"mss": 0}),
    # a SACK option claiming more bytes than the header holds: dpkt keeps the
    # blocks that fit, tshark discards the option
    "sack option past the header": (ether(ipv4(tcp(flags=0x10, opts=sack((1, 2), (3, 4), (5, 6), (7, 8))))),
                                    {"sack_count": 0}),
    # the header says IPv6 behind the IPv4 ethertype: tshark believes the header
    "ipv6 header behind the ipv4 ethertype": (ether(ipv6(tcp()), 0x0800), {"ip_version": 6, "sport": 1234}),
    # tunnels dpkt does not open
    "ip in ip": (ether(ipv4(ipv4(tcp(), src="192.168.0.1"), proto=4)), {"ip_version": 4, "sport": 1234}),
    "ipv6 in ipv4": (ether(ipv4(ipv6(tcp()), proto=41)), {"ip_version": 6, "sport": 1234}),
}
DPKT_DIFFERS_CUT = {
    # option length 5 (wrong for MSS) cut to a 2-byte value by the snap length:
    # dpkt takes it for an MSS, tshark sees the wrong length
    "mss of wrong length cut": (ether(ipv4(tcp(opts=b"\x02\x05\x05\xb4\x00\x01\x01\x01"))), 58, {"mss": 0}),
    # IP length 0 (TSO) and cut: dpkt counts the captured payload, tshark the
    # frame's length on the wire (the better estimate; 6 bytes were sent)
    "tso cut": (ether(ipv4(tcp(flags=0x10, payload=b"abcdef"), length=0)), 56, {"payload_len": 6}),
    "ipv6 tso cut": (ether(ipv6(tcp(flags=0x10, payload=b"abc"), plen=0), 0x86DD), 74, {"payload_len": 3}),
}


@pytest.mark.parametrize("name", sorted(DPKT_DIFFERS) + sorted(DPKT_DIFFERS_CUT))
def test_documented_differences(tmp_path, name):
    if name in DPKT_DIFFERS:
        data, expected = DPKT_DIFFERS[name]
        packet = (T0, data, None)
    else:
        data, cut, expected = DPKT_DIFFERS_CUT[name]
        packet = (T0, data[:cut], len(data))
    path = write(tmp_path, "one.pcap", [packet])
    table = read_capture(path, decoder="pyshark")
    assert len(table) == 1
    assert {key: table[key][0].tolist() for key in expected} == expected


# --- link types, timestamps, files ---------------------------------------------------


def test_link_types_and_exact_timestamps(tmp_path):
    packet = ipv4(tcp(flags=0x18, payload=b"hi"))
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800)
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\0" * 8)
    files = {
        "nano.pcap": ([(T0, ether(packet), None), (T0 + 5, ether(packet), None)], {"nano": True}),
        "raw.pcap": ([(T0, packet, None), (T0 + 1000, ipv6(tcp()), None)], {"linktype": 101}),
        "ipv4.pcap": ([(T0, packet, None)], {"linktype": 228}),
        "null.pcap": ([(T0, struct.pack("<I", 2) + packet, None), (T0, struct.pack("<I", 30) + ipv6(tcp()), None)],
                      {"linktype": 0}),
        "sll.pcap": ([(T0, sll + packet, None)], {"linktype": 113}),
        "sll2.pcap": ([(T0, sll2 + packet, None)], {"linktype": 276}),
    }
    for name, (packets, options) in files.items():
        path = write(tmp_path, name, packets, **options)
        dpkt_table, tshark_table = read_capture(path), read_capture(path, decoder="pyshark")
        assert len(tshark_table) == len(packets), name
        assert_identical(dpkt_table, tshark_table, name)
    nano = read_capture(tmp_path / "nano.pcap", decoder="pyshark")
    assert nano["ts_ns"].tolist() == [T0, T0 + 5]


def test_pcapng_resolution_and_offset(tmp_path):
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    section = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9)
                      + struct.pack("<HHq", 14, 8, 100) + struct.pack("<HH", 0, 0))
    data = ether(ipv4(tcp()))

    def packet(ts):
        return block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)

    path = tmp_path / "ns.pcapng"
    path.write_bytes(section + interface + packet(T0) + packet(T0 + 7))
    table = read_capture(path, decoder="pyshark")
    assert table["ts_ns"].tolist() == [T0 + 100 * 10**9, T0 + 100 * 10**9 + 7]
    assert_identical(read_capture(path), table, "pcapng")


def test_gzip_and_cut_files(tmp_path):
    import gzip

    whole = pcap([(T0 + i * 1000, ether(ipv4(tcp(seq=i))), None) for i in range(5)])
    (tmp_path / "c.pcap.gz").write_bytes(gzip.compress(whole))
    (tmp_path / "cut.pcap").write_bytes(whole[:-7])
    assert_identical(read_capture(tmp_path / "c.pcap.gz"), read_capture(tmp_path / "c.pcap.gz", decoder="pyshark"),
                     "gzip")
    cut = read_capture(tmp_path / "cut.pcap", decoder="pyshark")
    assert len(cut) == 4 and cut.stats.records == 4
    assert any("cut short" in warning for warning in cut.stats.warnings)


def test_frames_count_every_packet(tmp_path):
    packets = [ether(ipv4(UDP, proto=17)), ether(ipv4(tcp(seq=1))), ether(b"\0" * 28, 0x0806), ether(ipv4(tcp(seq=2)))]
    path = write(tmp_path, "mixed.pcap", [(T0 + i, data, None) for i, data in enumerate(packets)])
    table = read_capture(path, decoder="pyshark")
    assert table["frame"].tolist() == [2, 4]
    assert counts(table.stats) == {"records": 4, "tcp": 2, "non_tcp": 2, "fragments": 0, "undecodable": 0,
                                   "truncated_records": 0}
    assert table.stats.skipped == {"not TCP": 1, "not IP": 1}


def test_odd_file_names_are_one_argument(tmp_path):
    path = write(tmp_path, "a b;$(touch x)'\".pcap", [(T0, ether(ipv4(tcp())), None)])
    command = tshark_decoder.tshark_command(str(path))
    assert isinstance(command, list) and str(path) in command
    assert len(read_capture(path, decoder="pyshark")) == 1
    assert not (tmp_path / "x").exists()


def test_bad_input(tmp_path):
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "prose.txt").write_text("hello world\n")
    (tmp_path / "tcpdump.txt").write_text(
        "12:00:00.000000 IP 10.0.0.1.1234 > 10.0.0.2.80: Flags [S], seq 1, win 65535, length 0\n")
    with pytest.raises(NotACaptureError):
        read_capture(tmp_path / "empty.pcap", decoder="pyshark")
    with pytest.raises(NotACaptureError):
        read_capture(tmp_path / "prose.txt", decoder="pyshark")
    with pytest.raises(CaptureReadError, match="dpkt decoder"):
        read_capture(tmp_path / "tcpdump.txt", decoder="pyshark")
    with pytest.raises(CaptureReadError, match="No such file"):
        read_capture(tmp_path / "missing.pcap", decoder="pyshark")
    with pytest.raises(CaptureReadError, match="directory"):
        read_capture(tmp_path, decoder="pyshark")
    header_only = write(tmp_path, "header.pcap", [])
    assert len(read_capture(header_only, decoder="pyshark")) == 0


# --- the optional extra missing ---------------------------------------------------------


def test_without_pyshark(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyshark", None)  # import fails
    with pytest.raises(DecoderUnavailableError) as error:
        read_capture(tmp_path / "any.pcap", decoder="pyshark")
    message = str(error.value)
    assert "pip install 'pcapstate[pyshark]'" in message and "apt-get install tshark" in message
    assert "\n" not in message


def test_without_tshark(monkeypatch, tmp_path):
    import shutil

    from pcapstate.decode import tshark as tshark_decoder

    monkeypatch.setattr(shutil, "which", lambda name: None)  # not on the PATH
    monkeypatch.setattr(tshark_decoder, "_TSHARK_PLACES", ())  # nor anywhere else
    with pytest.raises(DecoderUnavailableError, match="apt-get install tshark"):
        read_capture(tmp_path / "any.pcap", decoder="pyshark")
