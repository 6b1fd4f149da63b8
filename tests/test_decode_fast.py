"""The fast decoder (pcapstate.decode.fast) against the dpkt reference decoder.

Both must give identical tables (every column: name, order, dtype, shape,
values) and identical DecodeStats (counters, skip reasons in the same order,
warnings), or raise the same error with the same message.  Checked on every
real capture we have, on the benchmark generator's output, on a few thousand
generated captures mutated at random (headers, lengths, link types, VLAN tags,
file framing), and once with the compiled functions replaced by their plain
Python selves (what ``PCAPSTATE_NO_JIT=1`` runs).
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from pcapstate import jit
from pcapstate.decode import _load, decode_bytes, fast, fast_layers, fast_records, read_capture
from pcapstate.table import DecodeStats
from synthetic import write_synthetic
from test_decode_tshark import AGREE, DPKT_DIFFERS, T0, UDP, ether, ipv4, ipv6, pcap, tcp

REPO = Path(__file__).resolve().parents[1]
ZEEK_TRACES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek" / "traces"
FORMATS = REPO / "tests" / "data" / "formats"
CASES = 1500 if jit.ENABLED else 100  # plain Python (PCAPSTATE_NO_JIT=1) is slow
FILES = (sorted((REPO / "samples").glob("*.pcap")) + sorted(ZEEK_TRACES.glob("*"))
         + sorted(p for p in FORMATS.iterdir() if p.suffix not in (".json", ".md", ".sh", ".py")))


# --- comparing -----------------------------------------------------------------------


def outcome(decode, *args, **kwargs):
    """("table", table) or ("error", type name, message) of one decoding."""
    try:
        return ("table", decode(*args, **kwargs))
    except Exception as error:  # the reference's own failures must be the fast path's too
        return ("error", type(error).__name__, str(error))


def assert_same(fast_result, reference, context: str) -> None:
    if reference[0] == "error" or fast_result[0] == "error":
        assert fast_result == reference, context
        return
    got, want = fast_result[1], reference[1]
    assert list(got.columns) == list(want.columns), context
    for name, column in want.columns.items():
        other = got.columns[name]
        assert (other.dtype, other.shape) == (column.dtype, column.shape), f"{context}: column {name}"
        if not np.array_equal(other, column):
            row = int(np.flatnonzero((other != column).reshape(len(column), -1).any(axis=1))[0])
            pytest.fail(f"{context}: column {name}, frame {want['frame'][row]}: fast {other[row]}, dpkt {column[row]}")
    assert got.stats == want.stats, context
    assert list(got.stats.skipped.items()) == list(want.stats.skipped.items()), f"{context}: skip reasons' order"
    assert got.source == want.source


def compare_bytes(content: bytes, context: str) -> None:
    assert_same(outcome(decode_bytes, content, "mem", fast=True), outcome(decode_bytes, content, "mem", fast=False),
                context)


def record_outcomes(content) -> np.ndarray:
    """How many records the compiled parser decoded, skipped, or left to dpkt (by outcome code)."""
    status = fast.parse_capture(content, DecodeStats()).status
    return np.bincount(status, minlength=fast_layers.UNSUPPORTED + 1)


# --- real captures ----------------------------------------------------------------------


def test_there_are_captures():
    assert ZEEK_TRACES.is_dir() and len(FILES) > 80


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_capture(path: Path):
    assert_same(outcome(read_capture, path), outcome(read_capture, path, decoder="dpkt-reference"), path.name)


def test_most_real_records_take_the_compiled_path():
    counts = sum(record_outcomes(_load(str(p))[0]) for p in FILES if p.stat().st_size and p.name != "not_a_capture.jpg"
                 and p.suffix != ".txt")
    assert counts[fast_layers.FALLBACK] < 0.02 * counts.sum()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """benchmarks/generate.py's capture of 300 connections."""
    return write_synthetic(tmp_path_factory.mktemp("synth") / "synth.pcap", 300)


def test_benchmark_generator_output(synth):
    assert_same(outcome(read_capture, synth), outcome(read_capture, synth, decoder="dpkt-reference"), "synth")
    counts = record_outcomes(synth.read_bytes())
    assert counts[fast_layers.ROW] == counts.sum() > 6000  # nothing falls back


def test_room_grows_when_records_are_many(synth, monkeypatch):
    """The pcap walk reserves rows from the file size; a file of smaller records makes it grow."""
    monkeypatch.setattr(fast, "_SMALL_RECORD", 10**9)  # room for 1024 records at first
    grown = []
    monkeypatch.setattr(fast, "_grow", lambda room, *state, grow=fast._grow: grown.append(state) or grow(room, *state))
    content = synth.read_bytes()
    assert_same(outcome(decode_bytes, content, "mem", fast=True), outcome(decode_bytes, content, "mem", fast=False),
                "grown")
    assert [records for records, _rows, _fallbacks in grown] == [1024, 2048, 4096]
    compare_bytes(content[:24], "the file header alone")


def test_progress_is_told_between_chunks(synth, monkeypatch):
    monkeypatch.setattr(fast, "_CHUNK", 1000)

    class Recorder:
        def __init__(self):
            self.updates = []

        def update(self, done_bytes, packets):
            self.updates.append((done_bytes, packets))

    progress = Recorder()
    content = synth.read_bytes()
    assert_same(("table", decode_bytes(content, "mem", progress, fast=True)),
                outcome(decode_bytes, content, "mem", fast=False), "in chunks")
    records = decode_bytes(content, "mem", fast=False).stats.records
    assert [packets for _, packets in progress.updates] == [*range(1000, records, 1000), records]
    assert progress.updates[-1][0] == len(content) and sorted(progress.updates) == progress.updates


def test_unknown_decoder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dpkt-reference"):
        read_capture(tmp_path / "x.pcap", decoder="dpkt-fast")


# --- generated and mutated captures -------------------------------------------------------

MSS_WS_SACK_TS = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x08\x0a" + struct.pack("!II", 7, 9) + b"\x01\x01"
SACKS = b"\x01\x01\x05\x12" + struct.pack("!IIII", 100, 200, 300, 400)
# network-layer packets the link layers below carry
NETWORK = [
    ipv4(tcp(opts=MSS_WS_SACK_TS)), ipv4(tcp(flags=0x18, payload=b"hello world")), ipv4(tcp(flags=0x10, opts=SACKS)),
    ipv4(tcp(flags=0x11), opts=b"\x01\x01\x01\x00", hl=6), ipv4(tcp(payload=b"p" * 40), mf=True),
    ipv4(b"f" * 30, frag=8), ipv4(UDP, proto=17), ipv4(b"\x08\x00\x00\x00" * 3, proto=1), ipv4(b"gre!" * 4, proto=47),
    ipv4(tcp(flags=0x10, payload=b"tso"), length=0), ipv6(tcp(flags=0x12, opts=MSS_WS_SACK_TS)),
    ipv6(tcp(flags=0x18, payload=b"six")), ipv6(UDP, nxt=17),
    ipv6(tcp(), nxt=0, ext=b"\x06\x00\x01\x04\x00\x00\x00\x00"),
    ipv6(tcp(flags=0x10), plen=0), ipv6(b"\x80\x00" * 6, nxt=58), ipv6(b"none", nxt=59),
]
ETHERTYPES = (0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x8847, 0x88CC, 0x8864, 0x0600, 0x6558)
SPECIAL_BYTES = (0x00, 0xFF, 0x45, 0x46, 0x4F, 0x60, 0x06, 0x11, 0x2C, 0x81, 0x08, 0x86, 0xDD, 0x05, 0x50, 0xF0)


def link_frame(rng: random.Random, linktype: int, net: bytes) -> bytes:
    """``net`` behind a link-layer header of ``linktype``, sometimes with a surprising type field."""
    ethertype = 0x86DD if net[0] >> 4 == 6 else 0x0800
    if rng.random() < 0.1:
        ethertype = rng.choice(ETHERTYPES)
    if linktype == 1:
        count = rng.choice((0, 0, 0, 0, 1, 1, 2, 3))
        tags = [(rng.choice((0x8100, 0x88A8, 0x9100)), rng.getrandbits(12)) for _ in range(count)]
        if tags and rng.random() < 0.7:  # a well-formed stack: 0x88A8/0x8100 outside, 0x8100 inside
            tags = [(0x88A8 if i < len(tags) - 1 else 0x8100, tci) for i, (_, tci) in enumerate(tags)]
        if rng.random() < 0.05:
            return ether(struct.pack("!I", (16 << 12) | 0x100 | 64) + net, 0x8847)
        return ether(net, ethertype, tags=tuple(tags))
    if linktype == 113:
        return struct.pack("!HHH8sH", rng.choice((0, 4, 0, 4, 0x0800)), 1, 6, b"\0" * 8, ethertype) + net
    if linktype == 276:
        return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, rng.choice((0, 4)), 6, b"\0" * 8) + net
    if linktype in (0, 108):
        family = 2 if net[0] >> 4 == 4 else rng.choice((24, 28, 30))
        return struct.pack(rng.choice("<>") + "I", rng.choice((family,) * 6 + (7,))) + net
    return net  # RAW, IPV4, IPV6


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip or set a few header bytes, cut the frame short, or pad it."""
    data = bytearray(data)
    for _ in range(rng.choice((0, 0, 0, 0, 1, 1, 2, 4))):
        if data:
            at = min(int(rng.expovariate(1 / 30)), len(data) - 1)  # mostly the headers
            data[at] = rng.choice(SPECIAL_BYTES) if rng.random() < 0.5 else rng.getrandbits(8)
    if rng.random() < 0.1:
        data = data[:rng.randrange(len(data) + 1)]
    if rng.random() < 0.05:
        data += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 12)))
    return bytes(data)


def packet(rng: random.Random, linktype: int, i: int) -> tuple[int, bytes, int | None]:
    """(ts_ns, captured bytes, wire length or None) of the ``i``-th packet of a capture."""
    if linktype == 1 and rng.random() < 0.15:
        data = rng.choice(list(AGREE.values()) + [frame for frame, _ in DPKT_DIFFERS.values()])
    else:  # half of them plain TCP, the rest anything
        data = link_frame(rng, linktype, rng.choice(NETWORK[:5] + NETWORK[10:12] if rng.random() < 0.5 else NETWORK))
    data, wire = mutate(rng, data), None
    if rng.random() < 0.15:  # cut by a snap length
        wire, data = len(data), data[:rng.randrange(len(data) + 1)]
    return T0 + i * rng.choice((1, 999_999_999, 10**12)), data, wire


def packets(rng: random.Random, linktype: int) -> list[tuple[int, bytes, int | None]]:
    return [packet(rng, linktype, i) for i in range(rng.randrange(1, 10))]


def pcap_file(rng: random.Random) -> bytes:
    linktype = rng.choice((1, 1, 1, 113, 276, 0, 108, 101, 228, 229))
    content = bytearray(pcap(packets(rng, linktype), linktype=linktype, nano=rng.random() < 0.5))
    if rng.random() < 0.3:  # big-endian: swap every field of the file and record headers
        content = bytearray(_to_big_endian(bytes(content)))
    if rng.random() < 0.1:  # an absurd record length (resync) or a small snap length
        at = 24 + 8 if rng.random() < 0.5 else 16
        content[at:at + 4] = struct.pack("<I" if content[0] == 0xD4 or content[0] == 0x4D else ">I",
                                         rng.choice((0xFFFFFF, 40, 1 << 20)))
    if rng.random() < 0.1:
        content = content[:rng.randrange(len(content) + 1)]
    return bytes(content)


def _to_big_endian(content: bytes) -> bytes:
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", content)
    out, pos = [struct.pack(">IHHiIII", magic, major, minor, zone, sigfigs, snaplen, linktype)], 24
    while pos + 16 <= len(content):
        sec, frac, incl, orig = struct.unpack_from("<IIII", content, pos)
        out.append(struct.pack(">IIII", sec, frac, incl, orig) + content[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return b"".join(out)


def pcapng_block(order: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(order + "II", kind, 12 + len(body)) + body + struct.pack(order + "I", 12 + len(body))


def pcapng_file(rng: random.Random) -> bytes:
    order, blocks = rng.choice("<>"), []
    interfaces = [rng.choice((1, 1, 113, 276, 101, 0, 105)) for _ in range(rng.choice((1, 1, 2, 3)))]
    blocks.append(pcapng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
    for linktype in interfaces:
        options = b""
        if rng.random() < 0.5:
            options += struct.pack(order + "HHB3x", 9, 1, rng.choice((6, 9, 3, 0, 12, 0x80 | 10, 0x80 | 20)))
        if rng.random() < 0.3:
            options += struct.pack(order + "HHq", 14, 8, rng.choice((100, -5, 1 << 40, -(1 << 62))))
        blocks.append(pcapng_block(order, 1, struct.pack(order + "HHI", linktype, 0, 65535) + options
                                   + struct.pack(order + "HH", 0, 0)))
    for i in range(rng.randrange(1, 10)):
        kind = rng.choice((6, 6, 6, 3, 2, 5))
        if_id = rng.randrange(len(interfaces) + (rng.random() < 0.05))  # sometimes no such interface
        ts, data, wire = packet(rng, interfaces[min(if_id, len(interfaces) - 1)], i)
        ticks = ts // 1000 if rng.random() < 0.9 else rng.getrandbits(rng.choice((40, 63, 64)))
        wire = wire or len(data)
        if kind == 6:
            head = struct.pack(order + "IIIII", if_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire)
        elif kind == 2:
            head = struct.pack(order + "HHIIII", if_id, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire)
        elif kind == 3:
            head = struct.pack(order + "I", wire)
        else:  # a block type without packets
            head = b"\0" * 8
        blocks.append(pcapng_block(order, kind, head + data))
    content = bytearray(b"".join(blocks))
    if rng.random() < 0.1:  # a damaged block length
        at = rng.randrange(0, len(content) - 4, 4)
        content[at:at + 4] = struct.pack(order + "I", rng.getrandbits(rng.choice((8, 32))))
    if rng.random() < 0.1:
        content = content[:rng.randrange(len(content) + 1)]
    return bytes(content)


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_mutated_captures(kind):
    rng = random.Random(20240601 if kind == "pcap" else 7)
    make = pcap_file if kind == "pcap" else pcapng_file
    counts = np.zeros(fast_layers.UNSUPPORTED + 1, np.int64)
    for case in range(CASES):
        content = make(rng)
        compare_bytes(content, f"{kind} case {case}: {content.hex()}")
        if content[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                           b"\x0a\x0d\x0d\x0a") and len(content) >= 24:
            counts += record_outcomes(content)
    # the mutations reach every outcome (unsupported link types only in pcapng: a pcap file of one is
    # an error), and many records still take the compiled path to a TCP row
    assert counts[:fast_layers.UNSUPPORTED + (kind == "pcapng")].all()
    assert counts[fast_layers.ROW] > 0.2 * counts.sum()


def test_each_agree_frame_alone_and_cut():
    for name, data in AGREE.items():
        for cut in (len(data), 60, 54, 40, 14):
            compare_bytes(pcap([(T0, data[:cut], len(data))]), f"{name} cut at {cut}")


# --- the plain-Python versions (PCAPSTATE_NO_JIT=1) ------------------------------------------


@pytest.fixture
def plain_python(monkeypatch):
    """Every compiled function of the fast decoder replaced by the Python function it compiles."""
    for module in (fast_layers, fast_records, fast):
        for name, value in list(vars(module).items()):
            if hasattr(value, "py_func"):
                monkeypatch.setattr(module, name, value.py_func)


@pytest.mark.parametrize("name", ["refused.pcap", "two_interfaces.pcapng", "vlan.pcap", "ipv6.pcap", "fragments.pcap"])
def test_plain_python_gives_the_same_table(plain_python, name):
    path = REPO / "samples" / name if (REPO / "samples" / name).exists() else FORMATS / name
    assert not hasattr(fast_layers._packet, "py_func") and not hasattr(fast.parse_records, "py_func")
    assert_same(outcome(read_capture, path), outcome(read_capture, path, decoder="dpkt-reference"), name)


def test_plain_python_on_mutated_captures(plain_python):
    rng = random.Random(3)
    for case in range(40):
        compare_bytes(pcap_file(rng) if case % 2 else pcapng_file(rng), f"plain Python case {case}")
