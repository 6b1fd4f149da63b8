"""tcpdump's text back into the packet table (pcapstate.decode.text).

Round trip: the ``tcpdump -n -r`` text of every Zeek trace and sample capture
decodes to the same TCP packets, flags, ports, absolute and relative sequence
numbers as the capture itself (rows matched through tcpdump's ``-#`` frame
numbers), also with ``-v``, ``-vv``, ``-e``, ``-nn``, ``-t``, ``-tt``, ``-tttt``
on a few captures.  Then the seeds' pasted lines, hand-written edge cases, and
recognising tcpdump text from a file's first bytes.
"""
from __future__ import annotations

import random
import re

import numpy as np
import pytest

from _tcpdump_ref import REPO, ZEEK_TRACES, captures, line_frames, option_set, run_tcpdump
from pcapstate.decode import read_capture
from pcapstate.decode.text import decode_text, looks_like_tcpdump_text, parse_tcp
from pcapstate.flags import Flag, from_tcpdump
from pcapstate.table import Known
from pcapstate.tcpdump_lines import relative_seq_ack, render_lines

SEEDS = sorted((REPO.parent / "shared" / "seeds").glob("*.txt"))
DAY_NS = 86_400 * 10**9
S, A, P, F, R = Flag.SYN, Flag.ACK, Flag.PSH, Flag.FIN, Flag.RST


# --- round trip through real tcpdump -------------------------------------------


def _round_trip(capture, *options):
    """Decode tcpdump's text of ``capture``; compare every TCP row with the capture's table."""
    lines = run_tcpdump(capture, "-n", *options)
    owners = line_frames(capture, *options)  # same text with -#: line -> frame
    assert len(owners) == len(lines)
    text_table = decode_text(lines, str(capture))
    table = read_capture(capture)
    row_of_frame = {int(frame): row for row, frame in enumerate(table["frame"])}
    matched = []
    for text_row in range(len(text_table)):
        frame = owners[int(text_table["frame"][text_row]) - 1]
        assert frame is not None, "a TCP row must start on a packet's first line"
        if frame in row_of_frame:
            matched.append((row_of_frame[frame], text_row))
        else:  # tcpdump opened a tunnel the reader does not (GRE, Geneve, VXLAN)
            assert re.search(r"GREv|Geneve|VXLAN", "\n".join(lines[int(text_table["frame"][text_row]) - 1:][:2]))
    pcap_rows, text_rows = (np.array(rows, dtype=int) for rows in zip(*matched)) if matched else (np.array([], int),) * 2
    _compare_rows(table, pcap_rows, text_table, text_rows)
    _compare_relative(table, pcap_rows, text_table, text_rows)
    assert text_table.stats.records == len([owner for owner in owners if owner is not None])
    return table, text_table, pcap_rows, text_rows


def _compare_rows(table, pcap_rows, text_table, text_rows):
    for column in ("flags", "sport", "dport", "src_ip", "dst_ip", "ip_version"):
        assert np.array_equal(table[column][pcap_rows], text_table[column][text_rows]), column
    known = text_table["known"][text_rows].astype(int)
    for column, bit in (("seq", Known.SEQ), ("ack", Known.ACK), ("window", Known.WIN), ("payload_len", Known.LEN)):
        has = (known & bit) != 0
        assert np.array_equal(table[column][pcap_rows][has], text_table[column][text_rows][has]), column
        assert np.all(text_table[column][text_rows][~has] == 0), f"absent {column} must be 0"
    assert np.all(known & Known.WIN) and np.all(known & Known.LEN)
    with_options = (known & Known.OPTIONS) != 0
    assert _options(table, pcap_rows[with_options]) == _options(text_table, text_rows[with_options])


def _options(table, rows):
    """The option set each row renders to (the columns' option values)."""
    found = []
    for line in render_lines(table, rows):
        match = re.search(r"options \[([^\]]*)\]", line)
        found.append(option_set(match[1] if match else None))
    return found


def _compare_relative(table, pcap_rows, text_table, text_rows):
    ours = [column[pcap_rows] for column in relative_seq_ack(table)]
    theirs = [column[text_rows] for column in relative_seq_ack(text_table)]
    assert np.array_equal(ours[2], theirs[2]) and np.array_equal(ours[3], theirs[3])
    assert np.array_equal(ours[0][ours[2]], theirs[0][theirs[2]]), "relative seq"
    assert np.array_equal(ours[1][ours[3]], theirs[1][theirs[3]]), "relative ack"


@pytest.mark.parametrize("capture", captures(), ids=lambda path: path.name)
def test_round_trip_of_tcpdump_text(capture):
    table, text_table, pcap_rows, text_rows = _round_trip(capture)
    tod = table["ts_ns"][pcap_rows] // 1000 * 1000 % DAY_NS
    assert np.array_equal(text_table["ts_ns"][text_rows] % DAY_NS, tod)
    assert not np.any(text_table["known"] & Known.TS), "a time of day has no date"


VARIANT_CAPTURES = ["http__get.pcap", "ftp__ipv6.pcap", "mixed-vlan-mpls.pcap", "tunnels__vxlan-encapsulated-http.pcap"]


@pytest.mark.parametrize("options", [("-v",), ("-vv",), ("-nn", "-e"), ("-tttt",), ("-tt", "-v"), ("-t",), ("-e", "-v", "-tttt")])
@pytest.mark.parametrize("name", VARIANT_CAPTURES)
def test_round_trip_with_tcpdump_options(name, options):
    table, text_table, pcap_rows, text_rows = _round_trip(ZEEK_TRACES / name, *options)
    assert len(text_rows) == len(table)
    stamps = text_table["ts_ns"][text_rows]
    if "-t" in options:
        assert np.all(stamps == 0)
    elif "-tttt" in options or "-tt" in options:
        assert np.array_equal(stamps, table["ts_ns"][pcap_rows] // 1000 * 1000)
        assert np.all(text_table["known"] & Known.TS)


def test_frame_is_the_line_number_of_the_packet_first_line():
    lines = run_tcpdump(ZEEK_TRACES / "http__get.pcap", "-n", "-v")
    table = decode_text(lines)
    stamped = [number for number, line in enumerate(lines, 1) if re.match(r"\d\d:\d\d:\d\d\.\d{6} ", line)]
    assert table["frame"].tolist() == stamped and stamped[:3] == [1, 3, 5]  # -v: IP header line first


def test_read_capture_detects_text_from_content(tmp_path):
    path = tmp_path / "looks-binary.pcap"
    path.write_text("\n".join(run_tcpdump(ZEEK_TRACES / "http__get.pcap", "-n")) + "\n")
    table = read_capture(path)
    assert len(table) == 14 and render_lines(table)[2].endswith("Flags [.], ack 1, win 8235, options [nop,nop,TS val 374005094 ecr 797524569], length 0")


# --- the seeds' pasted lines ----------------------------------------------------

_PASTED = re.compile(r"\S > \S+: Flags \[([^\]]*)\]")


@pytest.mark.parametrize("seed", SEEDS, ids=lambda path: path.name)
def test_seed_lines_flags_are_read(seed):
    text = seed.read_text(encoding="utf-8")
    for line in text.splitlines():
        pasted = _PASTED.findall(line)
        if pasted:
            assert parse_tcp(line).flags == from_tcpdump(pasted[-1]), line
    table = decode_text(text.splitlines(), seed.name)  # prose: counted, never raised
    assert table.stats.undecodable > 0 or not text.strip()
    assert not looks_like_tcpdump_text(text.encode()[:4096]), "a blog post is not a capture"


def test_seed_handshake_data_and_close_excerpt():
    lines = (REPO.parent / "shared" / "seeds" / "002_74b3cf5121775ae1.txt").read_text(encoding="utf-8").splitlines()
    table = decode_text(lines, "seed")
    numeric = [n for n, line in enumerate(lines, 1) if re.match(r"\d\d:\d\d:\d\d\.\d+ IP [\d.]+ > [\d.]+: ", line)]
    assert table["frame"].tolist() == numeric
    assert [f"[{render_lines(table, [row])[0].split('Flags [')[1].split(']')[0]}]" for row in range(len(table))] == [
        "[S]", "[S.]", "[.]", "[P.]", "[.]", "[F.]", "[.]"]
    isn_c, isn_s = 734888645, 1632166146
    known = table["known"]
    assert table["seq"][:2].tolist() == [isn_c, isn_s] and table["ack"][1] == isn_c + 1
    assert table["ack"][2] == isn_s + 1 and not known[2] & Known.SEQ and table["seq"][2] == 0
    assert (table["seq"][3], table["payload_len"][3], table["ack"][4]) == (isn_c + 1, 10, isn_c + 11)
    # 48206's FIN: the excerpt starts mid-connection with "seq 1, ack 1": kept relative
    assert (table["seq"][5], table["ack"][5], table["ack"][6]) == (1, 1, 2)
    assert not np.any(known & Known.TS)
    names = [w for w in table.stats.warnings if "host or port names" in w]
    assert len(names) == 1 and names[0].startswith("8 ")


# --- hand-written lines -----------------------------------------------------------

HANDSHAKE = """\
reading from file x.pcap, link-type EN10MB (Ethernet), snapshot length 262144
23:59:59.500000 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 4294967290, win 64240, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0
23:59:59.600000 IP 10.0.0.2.80 > 10.0.0.1.40000: Flags [S.], seq 100, ack 4294967291, win 65160, options [mss 1460,sackOK,TS val 2 ecr 1,nop,wscale 7], length 0
00:00:00.100000 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [.], ack 1, win 502, options [nop,nop,TS val 3 ecr 2], length 0
00:00:00.200000 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [P.], seq 1:11, ack 1, win 502, options [nop,nop,TS val 4 ecr 2], length 10: HTTP: GET / HTTP/1.1
00:00:00.300000 IP 10.0.0.2.80 > 10.0.0.1.40000: Flags [.], ack 11, win 510, options [nop,nop,TS val 5 ecr 4,nop,nop,sack 1 {21:31}], length 0
"""


def test_handshake_values_and_midnight():
    table = decode_text(HANDSHAKE.splitlines())
    assert table["frame"].tolist() == [2, 3, 4, 5, 6]
    assert table["flags"].tolist() == [S, S | A, A, P | A, A]
    assert table["seq"].tolist() == [4294967290, 100, 0, 4294967291, 0]
    assert table["ack"].tolist() == [0, 4294967291, 101, 101, 5]  # 4294967291 + 10 wraps to 5
    assert table["ts_ns"].tolist()[1:3] == [(86_399 * 10**9 + 600_000_000), DAY_NS + 100_000_000]
    assert table["mss"][0] == 1460 and table["wscale"][0] == 7 and table["sack_permitted"][0]
    assert (table["ts_val"][4], table["ts_ecr"][4], table["sack_count"][4]) == (5, 4, 1)
    assert table["sack"][4][0].tolist() == [(4294967291 + 20) % 2**32, (4294967291 + 30) % 2**32]
    assert render_lines(table) == [line.split(": HTTP")[0] for line in HANDSHAKE.splitlines()[1:]]
    assert table.stats.records == 5 and not table.stats.warnings


def test_known_bits_follow_what_was_printed():
    table = decode_text(HANDSHAKE.splitlines())
    known = table["known"].tolist()
    assert known[0] == Known.SEQ | Known.WIN | Known.LEN | Known.OPTIONS  # no ACK flag, no date
    assert known[2] == Known.ACK | Known.WIN | Known.LEN | Known.OPTIONS  # pure ACK: no seq


def test_other_protocols_garbage_and_names_are_counted_not_raised():
    lines = [
        "12:00:00.000001 IP 10.0.0.1.53 > 10.0.0.2.5353: 1+ A? example. (30)",
        "12:00:00.000002 ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28",
        "12:00:00.000003 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64",
        "12:00:00.000004 IP 10.0.0.1.68 > 10.0.0.2.67: UDP, length 300",
        "this line is not tcpdump output",
        "12:00:00.000005 IP host.example.com.http > 10.0.0.2.40000: Flags [S.], seq 1, ack 2, win 10, length 0",
        "12:00:00.000006 IP 10.0.0.1.40000 > 10.0.0.2.80: [|tcp]",
        "12:00:00.000007 IP 10.0.0.1.40000 > 10.0.0.2.http: Flags [S], seq 5, win 10, length 0",
        "12:00:00.000008 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [Q], seq 5, win 10, length 0",
        "another stray line",
    ]
    table = decode_text(lines, "mixed")
    stats = table.stats
    assert (len(table), stats.non_tcp, stats.undecodable, stats.records) == (1, 4, 5, 8)
    assert table["dport"][0] == 80 and table["frame"][0] == 8  # service name read as a port
    assert len(stats.warnings) == 4 and any(w.startswith("2 lines that are not tcpdump") for w in stats.warnings)


def test_verbose_ipv6_link_level_and_tunnels():
    lines = [
        "1700000000.000001 IP (tos 0x0, ttl 64, id 1, offset 0, flags [DF], proto TCP (6), length 60)",
        "    10.0.0.1.40000 > 10.0.0.2.80: Flags [S], cksum 0x1c46 (correct), seq 7, win 64240, length 0",
        "1700000000.000002 IP6 (flowlabel 0x1, hlim 64, next-header TCP (6) payload length: 20) 2001:db8::2.80 > 2001:db8::1.40000: Flags [R.], cksum 0x0 (incorrect -> 0x1), seq 0, ack 8, win 0, length 0",
        "1700000000.000003 00:11:22:33:44:55 > 66:77:88:99:aa:bb, ethertype IPv4 (0x0800), length 54: 10.0.0.3.1 > 10.0.0.4.2: Flags [F.], seq 9, ack 9, win 1, length 0",
        "1700000000.000004 IP 10.1.200.131.50000 > 10.1.1.172.4789: VXLAN, flags [I] (0x08), vni 1",
        "IP 172.16.11.201.40354 > 54.86.237.188.80: Flags [SEW], seq 3, win 64240, length 0",
    ]
    table = decode_text(lines)
    assert table["frame"].tolist() == [1, 3, 4, 5]
    assert table["ip_version"].tolist() == [4, 6, 4, 4]
    assert table["flags"].tolist() == [S, R | A, F | A, S | Flag.ECE | Flag.CWR]
    assert table.address("src_ip", 1) == "2001:db8::2" and table.address("dst_ip", 3) == "54.86.237.188"
    assert table["ts_ns"][3] == 1_700_000_000_000_004_000 and np.all(table["known"] & Known.TS)


def test_number_prefix_nanoseconds_and_dates():
    lines = [
        "    1  2024-02-29 13:14:15.123456789 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0",
        "    2  IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0",
    ]
    table = decode_text(lines)
    assert table["ts_ns"][0] == 1709212455123456789 and table["known"][0] & Known.TS
    assert table["ts_ns"][1] == 0 and not table["known"][1] & Known.TS


def test_one_sided_capture_takes_the_base_from_the_syn():
    """SYN seen, SYN-ACK not: the pure ACK records a seq tcpdump did not print (SYN's + 1)."""
    lines = [
        "18:49:06.874907 IP 10.1.2.1.11001 > 10.34.0.1.23: Flags [S], seq 2553417723, win 4128, length 0",
        "18:49:06.875812 IP 10.1.2.1.11001 > 10.34.0.1.23: Flags [.], ack 2379583141, win 4128, length 0",
        "18:49:06.875932 IP 10.1.2.1.11001 > 10.34.0.1.23: Flags [P.], seq 0:9, ack 1, win 4128, length 9",
    ]
    table = decode_text(lines)
    assert table["seq"][2] == 2553417724 and table["ack"][2] == 2379583141
    assert printed_seq(table) == [2553417723, None, 0]


def printed_seq(table):
    seq, _, show, _ = relative_seq_ack(table)
    return [int(value) if shown else None for value, shown in zip(seq, show)]


def test_absolute_numbers_with_relative_false():
    lines = ["12:00:00.000000 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [.], seq 5:9, ack 3000000000, win 1, length 4"] * 2
    assert decode_text(lines, relative=False)["seq"].tolist() == [5, 5]
    assert decode_text(lines)["seq"].tolist() == [5, 10]  # relative: the second is 5 past the first


def test_cut_lines_keep_what_was_printed():
    table = decode_text([
        "21:42:06.869344 IP 141.142.228.5.59856 > 192.150.187.43.80: Flags [S], seq 4263588410, win 65535, options [mss 1460,nop, [|tcp]",
    ])
    assert table["truncated"][0] and table["mss"][0] == 1460
    assert table["known"][0] == Known.SEQ | Known.WIN  # no length, options incomplete


# --- recognising tcpdump text ---------------------------------------------------


@pytest.mark.parametrize("options", [(), ("-v",), ("-e",), ("-tttt",), ("-t",), ("-#",), ("-x",), ("-vv", "-e")])
def test_tcpdump_output_is_recognised(options):
    text = "\n".join(run_tcpdump(ZEEK_TRACES / "ftp__ipv6.pcap", "-n", *options)).encode()
    assert looks_like_tcpdump_text(text[:4096])
    assert looks_like_tcpdump_text(text[:1000])  # cut mid-line
    banner = b"reading from file x.pcap, link-type EN10MB (Ethernet), snapshot length 65535\n"
    assert looks_like_tcpdump_text(banner + text[:500])


def _pcap_head(path):
    return path.read_bytes()[:4096]


NOT_TEXT = {
    "empty": b"",
    "blank": b"\n \n\t\n",
    "jpeg": bytes.fromhex("ffd8ffe000104a46494600010101004800480000ffdb004300") + bytes(range(256)) * 4,
    "random": random.Random(7).randbytes(4096),
    "latin1 noise": bytes(range(128, 256)) * 8,
    "prose": b"The quick brown fox jumps over the lazy dog.\nTCP has eleven states.\n" * 30,
    "csv": b"frame,ts,src,dst,flags\n1,0.1,10.0.0.1,10.0.0.2,S\n" * 20,
    "json": b'{"states": [{"time": "12:00:00.000001", "old": "SYN_SENT", "new": "ESTABLISHED"}]}\n',
    "one line among prose": b"Here is what I saw:\n12:00:00.000001 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0\n"
    + b"and then the server never answered, which means\nthe firewall dropped it.\nWe tried again.\n",
    "timestamps without packets": b"12:00:00.000001 service started\n12:00:01.000000 service stopped\n",
}


@pytest.mark.parametrize("name", sorted(NOT_TEXT))
def test_non_tcpdump_content_is_rejected(name):
    assert not looks_like_tcpdump_text(NOT_TEXT[name])


def test_captures_and_source_files_are_rejected():
    assert not looks_like_tcpdump_text(_pcap_head(ZEEK_TRACES / "http__get.pcap"))
    assert not looks_like_tcpdump_text(_pcap_head(ZEEK_TRACES / "irc-dcc-send.pcapng"))
    assert not looks_like_tcpdump_text(_pcap_head(REPO / "pcapstate" / "decode" / "text.py"))
