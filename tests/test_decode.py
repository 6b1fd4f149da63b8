"""The dpkt decoder on the real capture files of tests/data/formats.

manifest.json holds facts tshark extracted from each file (make_formats.sh, never
pcapstate), so every packet row here is checked against an independent dissector:
frame, time, addresses, ports, raw seq/ack, flags, window, TCP length, snap cut.
"""
from __future__ import annotations

import gzip
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pcapstate import errors
from pcapstate.decode import read_capture
from pcapstate.errors import NotACaptureError, PcapstateError

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
MANIFEST = json.loads((FORMATS / "manifest.json").read_text())["files"]
NOT_CAPTURES = {"manifest.json", "README.md", "make_formats.sh", "formats_helper.py"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# Damage that is one length field made absurd, the records behind it intact (see
# each file's "how"): the decoder resynchronises there, where tshark stops.
RESYNCED = ("huge_record_len.pcap", "bad_block_len.pcapng")

# manifest key -> table column; src/dst are compared as text through table.address().
# Not compared: interface_id (the table has no interface column) and time_epoch
# (the same instant as ts_ns, as text).
FIELDS = {"frame": "frame", "ts_ns": "ts_ns", "ip_version": "ip_version", "sport": "sport", "dport": "dport",
          "seq_raw": "seq", "ack_raw": "ack", "flags": "flags", "window": "window", "tcp_len": "payload_len",
          "truncated": "truncated"}


def named(*expect: str) -> list[str]:
    return sorted(name for name, entry in MANIFEST.items() if entry["expect"] in expect)


def table_rows(table) -> list[dict]:
    rows = []
    for i in range(len(table)):
        row = {key: table[column][i].item() for key, column in FIELDS.items()}
        row["src"], row["dst"] = table.address("src_ip", i), table.address("dst_ip", i)
        rows.append(row)
    return rows


def manifest_rows(entry: dict) -> list[dict]:
    assert [packet["frame"] for packet in entry["tcp"]] == entry["tcp_frames"]
    return [{key: packet[key] for key in (*FIELDS, "src", "dst")} for packet in entry["tcp"]]


def assert_rows(got: list[dict], want: list[dict], name: str) -> None:
    assert [row["frame"] for row in got] == [row["frame"] for row in want], f"{name}: frames with a TCP row"
    for got_row, want_row in zip(got, want):
        assert got_row == want_row, f"{name}: frame {want_row['frame']} (left: pcapstate, right: tshark)"


def file_bytes(name: str) -> bytes:
    raw = (FORMATS / name).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def pcap_packets(name: str) -> list[bytes]:
    """The captured bytes of every record of a pcap file (either byte order)."""
    raw = file_bytes(name)
    order = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    packets, pos = [], 24
    while pos + 16 <= len(raw):
        incl = struct.unpack_from(order + "I", raw, pos + 8)[0]
        packets.append(raw[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return packets


def ethertypes(frame: bytes) -> list[int]:
    """The Ethernet type field and every VLAN tag's inner type, outermost first."""
    types, pos = [struct.unpack_from("!H", frame, 12)[0]], 12
    while types[-1] in (0x8100, 0x88A8):
        pos += 4
        types.append(struct.unpack_from("!H", frame, pos)[0])
    return types


# --- the manifest itself ------------------------------------------------------------


def test_manifest_lists_every_file_and_only_known_expectations():
    on_disk = {p.name for p in FORMATS.iterdir() if p.name not in NOT_CAPTURES}
    assert on_disk == set(MANIFEST)
    assert {entry["expect"] for entry in MANIFEST.values()} <= {"ok", "partial", "error"}
    assert set(RESYNCED) <= set(named("partial"))


def magic(name: str) -> bytes:
    return file_bytes(name)[:4]


def both_ip_versions(entry: dict) -> bool:
    return {packet["ip_version"] for packet in entry["tcp"]} == {4, 6}


# Each format and link type the README lists -> the file that has it, and a check on
# the file's own bytes or tshark's facts that it really is that.
COVERAGE = {
    "pcap little-endian, microseconds": ("le_usec.pcap", lambda e: magic("le_usec.pcap") == b"\xd4\xc3\xb2\xa1"),
    "pcap little-endian, nanoseconds": ("le_nsec.pcap", lambda e: magic("le_nsec.pcap") == b"\x4d\x3c\xb2\xa1"),
    "pcap big-endian, microseconds": ("be_usec.pcap", lambda e: magic("be_usec.pcap") == b"\xa1\xb2\xc3\xd4"),
    "pcap big-endian, nanoseconds": ("be_nsec.pcap", lambda e: magic("be_nsec.pcap") == b"\xa1\xb2\x3c\x4d"),
    "pcapng, two interfaces": ("two_interfaces.pcapng",
                               lambda e: e["linktypes"] == [1, 276] and e["if_tsresol"] == [6, 9]),
    "gzip of pcap": ("le_usec.pcap.gz", lambda e: file_bytes("le_usec.pcap.gz") == file_bytes("le_usec.pcap")),
    "gzip of pcapng": ("two_interfaces.pcapng.gz",
                       lambda e: file_bytes("two_interfaces.pcapng.gz") == file_bytes("two_interfaces.pcapng")),
    "Ethernet": ("le_usec.pcap", lambda e: e["linktypes"] == [1]),
    "802.1Q VLAN": ("vlan.pcap", lambda e: ethertypes(pcap_packets("vlan.pcap")[0]) == [0x8100, 0x0800]),
    "QinQ": ("qinq.pcap", lambda e: ethertypes(pcap_packets("qinq.pcap")[0]) == [0x88A8, 0x8100, 0x0800]),
    "LINUX_SLL": ("sll.pcap", lambda e: e["linktypes"] == [113]),
    "LINUX_SLL2": ("sll2.pcap", lambda e: e["linktypes"] == [276]),
    "RAW": ("raw.pcap", lambda e: e["linktypes"] == [101] and both_ip_versions(e)),
    "IPV4": ("ipv4.pcap", lambda e: e["linktypes"] == [228]),
    "IPV6": ("ipv6.pcap", lambda e: e["linktypes"] == [229]),
    "NULL": ("null.pcap", lambda e: e["linktypes"] == [0] and both_ip_versions(e)),
    "LOOP": ("loop.pcap", lambda e: e["linktypes"] == [108] and both_ip_versions(e)),
    "IPv4 options": ("ipv4_options.pcap", lambda e: pcap_packets("ipv4_options.pcap")[0][14] & 0x0F > 5),  # IHL
    "IPv6 extension headers": ("ipv6_ext.pcap", lambda e: pcap_packets("ipv6_ext.pcap")[0][14 + 6] == 0),  # hop-by-hop
    "IPv4 and IPv6 fragments": ("fragments.pcap", lambda e: e["fragments"] > 0 and any(
        ethertypes(p) == [0x86DD] and p[14 + 6] == 44 for p in pcap_packets("fragments.pcap"))),
}


@pytest.mark.parametrize("feature", COVERAGE)
def test_manifest_covers_readme_format(feature):
    name, really_is = COVERAGE[feature]
    assert name in MANIFEST, f"{feature}: {name} missing from the manifest"
    entry = MANIFEST[name]
    assert entry["expect"] == "ok" and entry["tcp_count"] > 0
    assert really_is(entry), f"{name} is not {feature}"


# --- every file against tshark --------------------------------------------------------


@pytest.mark.parametrize("name", named("ok"))
def test_good_file_matches_tshark(name):
    entry = MANIFEST[name]
    table = read_capture(FORMATS / name)
    assert_rows(table_rows(table), manifest_rows(entry), name)
    stats = table.stats
    assert (stats.records, stats.tcp, stats.non_tcp, stats.fragments, stats.truncated_records) == (
        entry["frames"], entry["tcp_count"], entry["non_tcp"], entry["fragments"], entry["truncated_records"])
    assert (stats.undecodable, stats.bytes_ignored, stats.warnings) == (0, 0, [])


@pytest.mark.parametrize("name", [name for name in named("partial") if name not in RESYNCED])
def test_truncated_file_decodes_complete_records_and_warns(name):
    entry = MANIFEST[name]
    table = read_capture(FORMATS / name)
    assert_rows(table_rows(table), manifest_rows(entry), name)
    stats = table.stats
    assert stats.records == entry["frames"] == entry["complete_records"]
    assert stats.bytes_ignored == entry["bytes_ignored"] > 0
    assert len(stats.warnings) == 1
    assert re.fullmatch(rf"file truncated inside a .*: last {entry['bytes_ignored']} bytes ignored", stats.warnings[0])


@pytest.mark.parametrize("name", RESYNCED)
def test_absurd_length_is_skipped_and_records_behind_it_recovered(name):
    entry = MANIFEST[name]
    source = MANIFEST[entry["made_from"]]
    damaged, original = file_bytes(name), file_bytes(entry["made_from"])
    at = len(damaged) - entry["bytes_ignored"]  # tshark stopped at the damaged header
    # only the length field of that header differs, so the records behind it are the
    # original's, and tshark's facts about the original are the expected rows
    assert len(damaged) == len(original) and damaged[:at] == original[:at] and damaged[at + 12:] == original[at + 12:]
    length_at = 4 if damaged[:4] == PCAPNG_MAGIC else 8
    claimed = struct.unpack_from("<I", damaged, at + length_at)[0]
    assert claimed == int(re.search(r"0x[0-9A-F]+", entry["how"]).group(), 16)
    # what a resync should skip: the damaged pcapng block, or pcap record header + data
    skipped = struct.unpack_from("<I", original, at + length_at)[0] + (0 if length_at == 4 else 16)

    table = read_capture(FORMATS / name)
    bad = entry["complete_records"] + 1  # the damaged record's frame number in the original
    # The skipped record is not counted as a frame (stats.undecodable counts it), so
    # the records behind it are numbered one lower than tshark numbers them in the original.
    behind = [dict(row, frame=row["frame"] - 1) for row in manifest_rows(source) if row["frame"] > bad]
    assert_rows(table_rows(table), manifest_rows(entry) + behind, name)
    stats = table.stats
    assert (stats.records, stats.undecodable, stats.bytes_ignored) == (source["frames"] - 1, 1, 0)
    assert stats.non_tcp == source["non_tcp"] - (bad not in source["tcp_frames"])  # less the lost one if non-TCP
    assert len(stats.warnings) == 1
    assert f"at byte {at}" in stats.warnings[0] and str(claimed) in stats.warnings[0]
    assert f"skipped {skipped} bytes" in stats.warnings[0]


@pytest.mark.parametrize("name", named("error"))
def test_undecodable_file_raises_the_named_error(name):
    entry = MANIFEST[name]
    with pytest.raises(getattr(errors, entry["error"])) as caught:
        read_capture(FORMATS / name)
    assert isinstance(caught.value, PcapstateError)
    if "linktype" in entry:
        assert caught.value.linktype == entry["linktype"] and f"link type {entry['linktype']} (" in str(caught.value)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["not_a_capture.jpg", "empty.pcap"])
def test_not_a_capture_message(name):
    with pytest.raises(NotACaptureError) as caught:
        read_capture(FORMATS / name)
    assert str(caught.value) == f"{FORMATS / name}: not a pcap, pcapng or tcpdump text capture"


@pytest.mark.parametrize("content", [b"", b"Dear diary,\nnothing happened on the network today.\n"],
                         ids=["empty", "text"])
def test_empty_or_text_file_is_not_a_capture(tmp_path, content):
    path = tmp_path / "capture.pcap"
    path.write_bytes(content)
    with pytest.raises(NotACaptureError):
        read_capture(path)


def test_snap_length_cut_is_flagged_not_warned():
    table = read_capture(FORMATS / "snaplen64.pcap")
    assert len(table) == MANIFEST["snaplen64.pcap"]["tcp_count"] and table["truncated"].all()
    # 64 captured bytes hold no TCP payload: the length comes from the IP header
    assert table["payload_len"].max() == 10
    assert table.stats.warnings == []


@pytest.mark.parametrize("name", ["le_usec.pcap.gz", "two_interfaces.pcapng.gz"])
def test_cut_gzip_keeps_what_inflates(tmp_path, name):
    path = tmp_path / name
    raw = (FORMATS / name).read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    table = read_capture(path)
    got = table_rows(table)
    assert got and got == manifest_rows(MANIFEST[name])[: len(got)]
    assert table.stats.warnings[0].startswith("gzip stream damaged or truncated")


# --- the command line ---------------------------------------------------------------------


def run_packets(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcapstate", "packets", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_cli_not_a_capture_is_one_line_and_status_2():
    path = FORMATS / "not_a_capture.jpg"
    result = run_packets(path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"pcapstate: error: {path}: not a pcap, pcapng or tcpdump text capture\n"


def test_cli_truncated_file_warns_and_succeeds():
    path = FORMATS / "truncated_mid_record.pcap"
    result = run_packets(path)
    assert result.returncode == 0
    ignored = MANIFEST[path.name]["bytes_ignored"]
    assert result.stderr.splitlines() == [
        f"pcapstate: warning: {path}: file truncated inside a record: last {ignored} bytes ignored"]
    assert len(result.stdout.splitlines()) == MANIFEST[path.name]["tcp_count"]


def test_cli_missing_file_is_one_line_and_status_2(tmp_path):
    path = tmp_path / "no_such.pcap"
    result = run_packets(path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"pcapstate: error: {path}: No such file or directory"]


def test_cli_unsupported_link_type_names_it(tmp_path):
    path = tmp_path / "wifi.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105)  # LINKTYPE_IEEE802_11
    record = struct.pack("<IIII", 1_700_000_000, 0, 24, 24) + bytes(24)
    path.write_bytes(header + record)
    result = run_packets(path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"pcapstate: error: {path}: unsupported link type 105 (IEEE802_11)\n"
