"""Damaged captures: each kind of damage, on a real capture with one field broken.

Every case starts from a real sample (Linux kernel traffic captured by
tcpdump), breaks one thing the way broken files break in the field, and checks
that decoding and analysis neither raise nor lose the packets that were intact,
that the damage is counted or warned about, and that nothing allocates beyond
what the file holds.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pcapstate.analysis import analyze
from pcapstate.decode import read_capture

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "client_closes_first.pcap"  # 11 packets, Ethernet, pcap, snap length 128
PCAPNG = ROOT / "tests" / "data" / "formats" / "two_interfaces.pcapng"


def records(data: bytes) -> list[tuple[int, int]]:
    """(offset of the record header, captured length) of every record of a little-endian pcap."""
    found, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        found.append((pos, caplen))
        pos += 16 + caplen
    return found


def damaged(tmp_path: Path, change, name: str = "damaged.pcap", source: Path = SAMPLE) -> Path:
    data = bytearray(source.read_bytes())
    change(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def frame_offset(data: bytes, number: int) -> int:
    """Where the Ethernet frame of record ``number`` (1-based) starts."""
    return records(bytes(data))[number - 1][0] + 16


def intact_except(path: Path, lost: int, reasons: tuple[str, ...] = ()) -> None:
    """All 11 packets but ``lost`` decoded; the loss counted under one of ``reasons``; analysis runs."""
    table = read_capture(path)
    assert len(table) == 11 - lost
    if lost:
        assert table.stats.undecodable + sum(table.stats.skipped.values()) >= lost
        assert not reasons or any(r in k for r in reasons for k in table.stats.skipped)
    a = analyze(path)
    assert len(a.flows) == 1


def test_record_length_of_2_to_the_32_minus_1(tmp_path):
    path = damaged(tmp_path, lambda d: struct.pack_into("<I", d, records(bytes(d))[4][0] + 8, 0xFFFFFFFF))
    table = read_capture(path)
    assert len(table) == 10  # the damaged record is skipped, the stream resynchronised after it
    assert any("claims 4294967295 bytes" in w for w in table.stats.warnings)


def test_record_longer_than_the_file(tmp_path):
    def change(d):
        last, _ = records(bytes(d))[-1]
        struct.pack_into("<I", d, last + 8, 100_000)
    table = read_capture(damaged(tmp_path, change))
    assert len(table) == 10 and table.stats.bytes_ignored > 0


def test_zero_length_record(tmp_path):
    def change(d):
        pos, caplen = records(bytes(d))[2]
        struct.pack_into("<II", d, pos + 8, 0, 0)
        del d[pos + 16:pos + 16 + caplen]
    intact_except(damaged(tmp_path, change), lost=1)


def test_backwards_timestamps(tmp_path):
    def change(d):
        pos, _ = records(bytes(d))[5]
        seconds = struct.unpack_from("<I", d, pos)[0]
        struct.pack_into("<I", d, pos, seconds - 3600)  # an hour in the past
    a = analyze(damaged(tmp_path, change))
    assert len(a.packets) == 11
    assert any("earlier than the packet before them" in w for w in a.warnings)


def test_ipv4_header_length_below_20(tmp_path):
    def change(d):
        at = frame_offset(d, 4) + 14
        d[at] = 0x44  # IHL 4: 16 bytes, less than the fixed header
    intact_except(damaged(tmp_path, change), lost=1, reasons=("malformed",))


@pytest.mark.parametrize("offset", [4, 15])
def test_tcp_data_offset_too_small_or_beyond_the_packet(tmp_path, offset):
    def change(d):
        at = frame_offset(d, 4) + 14 + 20 + 12
        d[at] = (offset << 4) | (d[at] & 0x0F)
    intact_except(damaged(tmp_path, change), lost=1, reasons=("malformed", "beyond"))


def test_options_running_past_the_header(tmp_path):
    def change(d):
        at = frame_offset(d, 1) + 14 + 20 + 20  # the SYN's first option (MSS, 4 bytes)
        d[at + 1] = 40  # claims 40 bytes: runs past the 20 bytes of options
    table = read_capture(damaged(tmp_path, change))
    assert len(table) == 11  # the packet is kept; only its options are unreadable
    assert table["mss"][0] == 0


def test_window_scale_beyond_any_valid_shift(tmp_path):
    def change(d):
        syn = frame_offset(d, 1) + 14 + 20 + 20
        opts = bytes(d[syn:syn + 20])
        at = syn + opts.index(b"\x03\x03") + 2  # kind 3, length 3: window scale
        d[at] = 200
    path = damaged(tmp_path, change)
    table = read_capture(path)
    assert table["wscale"][0] == 200  # kept raw, as tcpdump prints it
    assert len(analyze(path).flows) == 1


def test_ipv4_tso_segment_over_65535_bytes(tmp_path):
    """A BIG TCP segment captured on the sender: IPv4 total length 0, 70,000 bytes of TCP."""
    data = bytearray(SAMPLE.read_bytes())
    struct.pack_into("<I", data, 16, 262144)  # snap length large enough for the record
    pos, caplen = records(bytes(data))[3]
    frame = bytearray(data[pos + 16:pos + 16 + caplen])
    struct.pack_into("!H", frame, 14 + 2, 0)  # IP total length 0: segmentation offload
    struct.pack_into("!H", frame, 14 + 10, 0)
    words = struct.unpack("!10H", bytes(frame[14:34]))
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", frame, 14 + 10, ~total & 0xFFFF)  # a valid IPv4 header checksum again
    frame += bytes(70_000 - (len(frame) - 34 - 20) - 20 + 20)
    struct.pack_into("<II", data, pos + 8, len(frame), len(frame))
    data[pos + 16:pos + 16 + caplen] = frame
    path = tmp_path / "tso.pcap"
    path.write_bytes(bytes(data))
    table = read_capture(path)
    assert len(table) == 11
    assert table["payload_len"][3] == len(frame) - 14 - 20 - 32
    assert not table["bad_checksum"][3]  # nothing to verify: the NIC computes it


def test_pcapng_timestamp_beyond_64_bit_nanoseconds(tmp_path):
    data = bytearray(PCAPNG.read_bytes())
    pos, blocks = 0, []
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            blocks.append(pos)
        pos += blen
    struct.pack_into("<I", data, blocks[1] + 12, 0xFFFFFFFF)  # timestamp (high)
    path = tmp_path / "ts.pcapng"
    path.write_bytes(bytes(data))
    table = read_capture(path)
    original = read_capture(PCAPNG)
    assert len(table) == len(original) - 1
    assert any("(frame 2) has a timestamp beyond the range of 64-bit nanoseconds" in w for w in table.stats.warnings)
    assert table["frame"].tolist() == [f for f in original["frame"].tolist() if f != 2]  # numbering kept
