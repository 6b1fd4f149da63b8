"""Capture sets: several files analyzed as one trace (issue 9, items 1 and 4).

The reference for a set is always one real file holding the same packets: the
capture before it was split (editcap -c / -i, or a tcpdump -C style splitter
here), or mergecap's chronological merge of the set.  The set's analysis must
equal that file's, table for table: flows, transitions, packets,
retransmissions, retry chains and anomalies, frame numbers included (a
rotated set's global frame is the frame of the capture before it was split),
with ``file`` and ``file_frame`` saying where each frame is.
"""
from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest

import pcapstate
from pcapstate.decode import read_capture
from pcapstate.decode.capture_set import expand, natural_key
from pcapstate.errors import NotACaptureError, PcapstateError
from synthetic import pcap_records as records_of
from synthetic import write_synthetic

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FORMATS = REPO / "tests" / "data" / "formats"
TABLES = ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies")
SET_COLUMNS = {"file", "file_frame", "first_file", "first_file_frame", "last_file", "last_file_frame"}

needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("mergecap") is None,
                                   reason="editcap and mergecap come with tshark (tests/run.sh installs it)")


# --- helpers ---------------------------------------------------------------------------------


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcapstate", *args], capture_output=True, text=True, cwd=cwd)


def editcap(source: Path, directory: Path, *how: str, name: str = "part.pcap") -> list[Path]:
    """Split ``source`` with editcap (``-c N`` packets or ``-i SECONDS`` per file) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["editcap", *how, str(source), str(directory / name)], check=True, capture_output=True)
    return sorted(directory.iterdir())


def mergecap(files: list[Path], target: Path) -> Path:
    """The set as one file, merged in time order by Wireshark's mergecap (pcapng: link types may differ)."""
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(target), *map(str, files)], check=True,
                   capture_output=True)
    return target


def pcap_records(path: Path) -> tuple[bytes, list[bytes], str]:
    """A classic pcap's file header, its records (header and data each), and its byte order."""
    data = path.read_bytes()
    order = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    return data[:24], records_of(data), order


def split_like_tcpdump_C(source: Path, directory: Path, per_file: int, name: str = "cap.pcap") -> list[Path]:
    """What ``tcpdump -C`` writes: cap.pcap, cap.pcap1, cap.pcap2, … (here ``per_file`` records each)."""
    header, records, _ = pcap_records(source)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for index, start in enumerate(range(0, len(records), per_file)):
        path = directory / (name if index == 0 else f"{name}{index}")
        path.write_bytes(header + b"".join(records[start:start + per_file]))
        files.append(path)
    return files


def shifted(source: Path, target: Path, seconds: float) -> Path:
    """``source`` with every timestamp moved by ``seconds`` (editcap -t)."""
    subprocess.run(["editcap", "-t", str(seconds), str(source), str(target)], check=True, capture_output=True)
    return target


def without_set_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in SET_COLUMNS])


def assert_same_analysis(got, want, warnings: bool = True) -> None:
    """Table for table, frame numbers included; the set's own columns aside."""
    assert got.is_set and not want.is_set
    for name in TABLES:
        pd.testing.assert_frame_equal(without_set_columns(getattr(got, name)), getattr(want, name), obj=name)
    if warnings:
        assert [w.split(": ", 1)[1] for w in got.warnings] == want.warnings


def assert_locations_are_true(analysis) -> None:
    """Every packet's ``file`` and ``file_frame`` name the packet in that file read alone."""
    packets = analysis.packets
    assert packets["frame"].is_monotonic_increasing and packets["frame"].is_unique
    assert list(packets["file"].cat.categories) == analysis.files["name"].tolist()
    for name in analysis.files["name"]:
        alone = read_capture(name)
        mine = packets[packets["file"] == name]
        assert mine["file_frame"].tolist() == alone["frame"].astype(int).tolist(), name
        assert mine["ts_epoch"].tolist() == (alone["ts_ns"] / 1e9).tolist(), name
        assert mine["seq"].tolist() == alone["seq"].tolist(), name
    for row in packets.sample(min(len(packets), 20), random_state=1).itertuples(index=False):
        assert analysis.locate(row.frame) == (row.file, row.file_frame)


def in_time_order(analysis) -> bool:
    starts = analysis.files["start"]
    known = starts.notna().tolist()
    return bool(starts[starts.notna()].is_monotonic_increasing) and known == sorted(known, reverse=True)  # empty last


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """benchmarks/generate.py's capture of 300 connections (6,744 packets over 63 s, every kind of flow)."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "synth-300.pcap", 300)


# --- a rotated set is the capture it was split from ------------------------------------------


@needs_editcap
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap")))
def test_every_sample_split_by_count_is_the_sample(sample, tmp_path):
    records = read_capture(SAMPLES / sample).stats.records
    files = editcap(SAMPLES / sample, tmp_path / "set", "-c", str(max(1, records // 4)))
    assert len(files) >= min(records, 4)
    random.Random(sample).shuffle(files)  # the order given does not matter
    got, want = pcapstate.analyze(files), pcapstate.analyze(SAMPLES / sample)
    assert_same_analysis(got, want)
    assert_locations_are_true(got)
    assert in_time_order(got) and len(got.files) == len(files)


@needs_editcap
@pytest.mark.parametrize("how", [("-c", "500"), ("-i", "4")], ids=["editcap -c 500", "editcap -i 4"])
def test_synthetic_capture_split_is_stitched_back(synthetic, tmp_path, how):
    files = editcap(synthetic, tmp_path / "set", *how)
    random.Random(7).shuffle(files)
    got, want = pcapstate.analyze(files), pcapstate.analyze(synthetic)
    assert_same_analysis(got, want)
    assert_locations_are_true(got)
    flows = got.flows
    spanning = flows[flows["first_file"] != flows["last_file"]]
    assert len(spanning) >= 20  # connections across file edges, replayed as one
    # nothing at the file edges: these kinds are exactly those of the whole capture
    for kind in ("no_handshake", "open_at_end"):
        assert (got.anomalies["kind"] == kind).sum() == (want.anomalies["kind"] == kind).sum(), kind
    assert not spanning["flow"].isin(got.anomalies.loc[got.anomalies["kind"] == "no_handshake", "flow"]).any()
    # the first and last frame of a spanning flow are in different files, each with its own number
    row = spanning.iloc[0]
    assert got.locate(row["first_frame"]) == (row["first_file"], row["first_file_frame"])
    assert got.locate(row["last_frame"]) == (row["last_file"], row["last_file_frame"])
    for chain in got.retries.itertuples(index=False):
        assert got.locate(chain.first_frame) == (chain.first_file, chain.first_file_frame)
    for table in ("transitions", "retransmissions", "anomalies"):
        rows = getattr(got, table).dropna(subset=["frame"])
        assert [got.locate(f) for f in rows["frame"]] == list(zip(rows["file"], rows["file_frame"])), table


def test_tcpdump_C_names_sort_by_time_not_by_name(synthetic, tmp_path):
    files = split_like_tcpdump_C(synthetic, tmp_path / "rotated", per_file=600)
    assert len(files) == 12 and sorted(f.name for f in files)[:3] == ["cap.pcap", "cap.pcap1", "cap.pcap10"]
    got = pcapstate.analyze(tmp_path / "rotated")  # a directory
    assert [Path(n).name for n in got.files["name"]] == [f.name for f in files]  # cap.pcap, cap.pcap1, … cap.pcap11
    assert_same_analysis(got, pcapstate.analyze(synthetic))
    assert_locations_are_true(got)
    globbed = pcapstate.analyze(str(tmp_path / "rotated" / "cap.pcap*"))  # a glob
    pd.testing.assert_frame_equal(globbed.packets, got.packets)


@needs_editcap
def test_tcpdump_G_names_across_midnight(synthetic, tmp_path):
    parts = editcap(synthetic, tmp_path / "parts", "-i", "10")
    clock = 23 * 3600 + 59 * 60 + 40  # the first file starts at 23:59:40: the names wrap at midnight
    directory = tmp_path / "hourly"
    directory.mkdir()
    for index, part in enumerate(parts):
        t = (clock + 10 * index) % 86400
        part.rename(directory / f"cap-{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}.pcap")
    names = sorted(p.name for p in directory.iterdir())
    assert names[0] == "cap-000000.pcap"  # by name, midnight comes first
    got = pcapstate.analyze(directory)
    assert Path(got.files["name"].iloc[0]).name == "cap-235940.pcap" and in_time_order(got)
    assert_same_analysis(got, pcapstate.analyze(synthetic))


def test_non_tcp_records_keep_the_frame_numbers_of_the_whole(tmp_path):
    """Frames count every record: ARP, ICMP and UDP records between files keep the global numbers exact."""
    whole = FORMATS / "loop.pcap"  # 26 records, 20 TCP, loopback link type
    files = split_like_tcpdump_C(whole, tmp_path / "set", per_file=5)
    got, want = pcapstate.analyze(files[::-1]), pcapstate.analyze(whole)
    assert_same_analysis(got, want)
    assert got.files["records"].sum() == 26 and got.packets["frame"].tolist() == want.packets["frame"].tolist()
    assert_locations_are_true(got)


# --- overlapping files are merged in time order ------------------------------------------------


@needs_editcap
def test_two_captures_of_the_same_time_merge_like_mergecap(tmp_path):
    """Two captures taken at once (different connections): one trace, packets interleaved by time."""
    first = SAMPLES / "client_closes_first.pcap"
    start = pcapstate.analyze(first).packets["ts_epoch"]
    other = pcapstate.analyze(SAMPLES / "server_closes_first.pcap").packets["ts_epoch"]
    offset = round(float(start.iloc[0] - other.iloc[0]) + 0.050123, 6)  # starts 50 ms after the first
    second = shifted(SAMPLES / "server_closes_first.pcap", tmp_path / "b.pcap", offset)
    got = pcapstate.analyze([second, first])
    want = pcapstate.analyze(mergecap([first, second], tmp_path / "merged.pcapng"))
    assert_same_analysis(got, want)
    assert_locations_are_true(got)
    files = got.packets["file"].cat.codes.to_numpy()
    assert (np.diff(files) != 0).sum() >= 3  # really interleaved, not one file after the other
    assert got.packets["ts_epoch"].is_monotonic_increasing
    assert got.files["name"].tolist() == [str(first), str(second)]  # by first packet, not as given


def test_a_capture_split_by_connection_merges_back(tmp_path):
    """The SYN flood's 30 connections in two files by source port: overlapping all along."""
    header, records, order = pcap_records(SAMPLES / "syn_flood.pcap")
    linktype = struct.unpack_from(order + "I", header, 20)[0]
    assert linktype == 1
    even, odd = [], []
    for record in records:
        ip = dpkt.ethernet.Ethernet(record[16:]).data
        (even if (ip.data.sport + ip.data.dport) % 2 == 0 else odd).append(record)
    assert even and odd
    (tmp_path / "even.pcap").write_bytes(header + b"".join(even))
    (tmp_path / "odd.pcap").write_bytes(header + b"".join(odd))
    got = pcapstate.analyze([tmp_path / "odd.pcap", tmp_path / "even.pcap"])
    assert_locations_are_true(got)
    files = got.packets["file"].cat.codes.to_numpy()
    assert (np.diff(files) != 0).sum() >= 20  # interleaved all along
    # the original capture: the same packets in the same time order, the same connections, states and
    # findings.  Only packets the two halves hold for the very same microsecond cannot be put back in
    # the original's order: the stable merge takes the earlier file's first (and numbers them so).
    whole = pcapstate.analyze(SAMPLES / "syn_flood.pcap")
    assert (got.packets["ts_epoch"] == whole.packets["ts_epoch"]).all()
    tied = got.packets["ts_epoch"].duplicated(keep=False)
    assert (got.packets["frame"] == whole.packets["frame"])[~tied].all()
    key = ["ts_epoch", "src_port", "dst_port", "seq", "ack", "flow", "client_state", "server_state"]
    pd.testing.assert_frame_equal(without_set_columns(got.packets).drop(columns="frame").sort_values(key)
                                  .reset_index(drop=True),
                                  whole.packets.drop(columns="frame").sort_values(key).reset_index(drop=True))
    timing = ["first_frame", "last_frame"]
    pd.testing.assert_frame_equal(without_set_columns(got.flows).drop(columns=timing), whole.flows.drop(columns=timing))
    pd.testing.assert_frame_equal(got.anomalies[["flow", "kind", "endpoint"]],
                                  whole.anomalies[["flow", "kind", "endpoint"]])


def test_a_stable_merge_keeps_each_file_order_and_breaks_ties_by_file(tmp_path):
    from builder import Talk

    a = Talk(client_port=40001, start=1_700_000_000.0, step=0.010)
    b = Talk(client_port=40002, start=1_700_000_000.0, step=0.010)  # the very same timestamps
    for talk in (a, b):
        talk.client("S")
        talk.server("S.")
        talk.client(".")
    first, second = a.write(tmp_path, "a.pcap"), b.write(tmp_path, "b.pcap")
    got = pcapstate.analyze([second, first])
    packets = got.packets
    # equal times: the file first in set order (same start: by name) goes first, each keeps its own order
    assert packets["file"].astype(str).map(lambda n: Path(n).name).tolist() == ["a.pcap", "b.pcap"] * 3
    assert packets["file_frame"].tolist() == [1, 1, 2, 2, 3, 3]
    assert packets["frame"].tolist() == [1, 2, 3, 4, 5, 6]
    assert got.flows["handshake"].tolist() == ["complete", "complete"]


# --- bad input in a set ------------------------------------------------------------------------


@needs_editcap
def test_a_truncated_file_is_named_and_the_rest_analyzed(tmp_path):
    files = editcap(SAMPLES / "data_loss.pcap", tmp_path / "set", "-F", "pcap", "-c", "10")
    damaged = files[1]
    _, records, _ = pcap_records(damaged)
    damaged.write_bytes(damaged.read_bytes()[:-30])  # cut inside its last record
    result = run("analyze", str(tmp_path / "set"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"pcapstate: warning: {damaged}: file truncated inside a record: "
                                          f"last {len(records[-1]) - 30} bytes ignored"]
    got = pcapstate.analyze(files)
    want = pcapstate.analyze(SAMPLES / "data_loss.pcap")
    assert len(got.packets) == len(want.packets) - 1  # only the cut record is missing
    mine = got.packets[got.packets["file"] == str(damaged)]
    assert mine["file_frame"].tolist() == list(range(1, 10))  # its 10th record was cut
    missing = set(want.packets["ts_epoch"]) - set(got.packets["ts_epoch"])
    assert missing == {float(want.packets.loc[want.packets["frame"] == 20, "ts_epoch"].iloc[0])}
    assert got.warnings[0].startswith(f"{damaged}: file truncated inside a record")
    # the files after it are numbered on from the records it has: one less than before the cut
    assert got.packets["frame"].iloc[-1] == want.packets["frame"].iloc[-1] - 1
    assert_locations_are_true(got)


@needs_editcap
def test_a_file_that_is_no_capture_is_skipped_with_a_warning(tmp_path):
    directory = tmp_path / "set"
    files = editcap(SAMPLES / "fin_dropped.pcap", directory, "-c", "4")
    shutil.copy(FORMATS / "not_a_capture.jpg", directory / "notes.jpg")
    shutil.copy(FORMATS / "prose.txt", directory / "README.txt")
    result = run("analyze", str(directory))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"pcapstate: warning: {directory / 'README.txt'}: not a pcap, pcapng or tcpdump text capture; skipped",
        f"pcapstate: warning: {directory / 'notes.jpg'}: not a pcap, pcapng or tcpdump text capture; skipped"]
    alone = run("analyze", str(SAMPLES / "fin_dropped.pcap")).stdout.splitlines()
    assert result.stdout.splitlines()[0] == (f"{directory} ({len(files)} of {len(files) + 2} files): "
                                             + alone[0].split(": ", 1)[1])
    assert result.stdout.splitlines()[1:] == alone[1:]
    got = pcapstate.analyze(directory)
    assert len(got.files) == len(files) and len(got.warnings) == 2
    assert_same_analysis(got, pcapstate.analyze(SAMPLES / "fin_dropped.pcap"), warnings=False)


def test_unsupported_link_type_and_missing_files_are_skipped_too(tmp_path):
    missing = tmp_path / "gone.pcap"
    files = [SAMPLES / "refused.pcap", FORMATS / "unsupported_linktype.pcap", missing]
    got = pcapstate.analyze(files)
    assert len(got.files) == 1 and len(got.packets) == 2
    assert got.warnings[0].startswith(f"{FORMATS / 'unsupported_linktype.pcap'}: unsupported link type 147")
    assert got.warnings[0].endswith("; skipped")
    assert got.warnings[1] == f"{missing}: No such file or directory; skipped"


def test_no_capture_at_all_is_one_line_and_status_2(tmp_path):
    directory = tmp_path / "junk"
    directory.mkdir()
    shutil.copy(FORMATS / "not_a_capture.jpg", directory / "a.jpg")
    shutil.copy(FORMATS / "prose.txt", directory / "b.txt")
    result = run("analyze", str(directory))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"pcapstate: error: none of the 2 files is a capture pcapstate can read ({directory / 'a.jpg'}: not a pcap, "
        f"pcapng or tcpdump text capture; {directory / 'b.txt'}: not a pcap, pcapng or tcpdump text capture)"]
    with pytest.raises(NotACaptureError):  # one file: its own error
        pcapstate.analyze([directory / "a.jpg"])
    for args, message in [([str(tmp_path / "nothing*.pcap")], f"{tmp_path / 'nothing*.pcap'}: no file matches"),
                          ([str(tmp_path / "empty") + "/"], "no files in this directory")]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = run("analyze", *args)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr
    with pytest.raises(PcapstateError):
        pcapstate.analyze(str(tmp_path / "empty"))


@needs_editcap
def test_link_types_mix_in_one_set(tmp_path):
    """Raw IPv4, BSD loopback, Linux SLL2 and Ethernet/IPv6 captures (non-TCP records too) as one trace."""
    apart = [FORMATS / name for name in ("ipv4.pcap", "vlan.pcap", "null.pcap", "sll2.pcap")]  # one after another
    linktypes = [struct.unpack_from("<I", p.read_bytes(), 20)[0] for p in apart]
    assert linktypes == [228, 1, 0, 276]  # raw IPv4, Ethernet with a VLAN tag, BSD loopback, Linux SLL2
    got = pcapstate.analyze(apart)
    assert [Path(n).name for n in got.files["name"]] == ["sll2.pcap", "null.pcap", "ipv4.pcap", "vlan.pcap"]
    # the reference: one pcapng with an interface per link type, merged by mergecap
    assert_same_analysis(got, pcapstate.analyze(mergecap(apart, tmp_path / "merged.pcapng")))
    assert_locations_are_true(got)
    # overlapping in time, non-TCP records included, gzip too: every packet once, each where it was
    overlapping = apart + [FORMATS / "eth_ipv6.pcap", FORMATS / "le_usec.pcap.gz"]
    got = pcapstate.analyze(overlapping)
    assert len(got.packets) == sum(len(read_capture(p)) for p in overlapping)
    assert got.files["records"].sum() == sum(read_capture(p).stats.records for p in overlapping)
    assert got.packets["frame"].max() <= got.files["records"].sum()
    assert_locations_are_true(got)
    assert in_time_order(got)


# --- the command line --------------------------------------------------------------------------


@needs_editcap
def test_command_line_takes_files_a_directory_and_a_glob(tmp_path):
    directory = tmp_path / "rot"
    files = editcap(SAMPLES / "close_wait_leak.pcap", directory, "-c", "3", name="cap.pcap")
    whole = run("analyze", str(SAMPLES / "close_wait_leak.pcap")).stdout.splitlines()
    for args, label in [([str(f) for f in files[::-1]], None), ([str(directory)], f"{directory} (3 files)"),
                        ([str(directory / "cap_*.pcap")], f"{directory / 'cap_*.pcap'} (3 files)")]:
        result = run("analyze", *args)
        assert result.returncode == 0 and result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[1:] == whole[1:]
        assert lines[0].endswith(": 9 TCP packets, 1 connection, 0.243 s")
        if label:
            assert lines[0].startswith(label + ":")
    got = json.loads(run("analyze", str(directory), "--format", "json").stdout)
    want = json.loads(run("analyze", str(SAMPLES / "close_wait_leak.pcap"), "--format", "json").stdout)
    for name in ("flows", "transitions", "retransmissions", "retries", "anomalies"):
        assert [{k: v for k, v in r.items() if k not in SET_COLUMNS} for r in got[name]] == want[name], name
    assert {r["file"] for r in got["transitions"] if r["file"]} <= {str(f) for f in files}
    packet_rows = json.loads(run("packets", str(directory), "--format", "json").stdout)["packets"]
    assert [(r["file"], r["file_frame"]) for r in packet_rows] == [(str(f), i) for f in files for i in (1, 2, 3)]
    packets = run("packets", str(directory)).stdout
    assert packets == run("packets", str(SAMPLES / "close_wait_leak.pcap")).stdout
    retries = run("retries", *map(str, files)).stdout.splitlines()
    assert retries[1:] == run("retries", str(SAMPLES / "close_wait_leak.pcap")).stdout.splitlines()[1:]
    report = run("report", str(directory), "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0 and report.stdout.startswith(f"{tmp_path / 'r.html'}: 1 connection")
    assert str(directory) in (tmp_path / "r.html").read_text()


@needs_editcap
def test_check_a_set_against_its_expectations(tmp_path):
    directory = tmp_path / "rot"
    files = editcap(SAMPLES / "syn_dropped.pcap", directory, "-c", "2", name="cap.pcap")
    created = run("check", "--set", str(directory) + "/", "--update")
    target = tmp_path / "rot.expected.json"  # beside the directory: `check rot/` alone would not take it
    assert created.returncode == 0 and f"created  {target}" in created.stdout
    document = json.loads(target.read_text())
    assert document["files"] == [f.name for f in files]
    whole = json.loads((SAMPLES / "syn_dropped.expected.json").read_text())
    for name in ("flows", "transitions", "retransmissions", "retries", "anomalies"):
        assert document[name] == whole[name], name
    result = run("check", "--set", str(directory / "cap_*"), "--expected", str(target))  # the same set
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[0] == f"  ok  {directory / 'cap_*'} ({len(files)} files)"
    beside_first = run("check", "--set", *map(str, files[::-1]), "--update")  # files: beside the first in time
    assert f"created  {files[0].with_name(files[0].stem + '.expected.json')}" in beside_first.stdout
    assert result.stdout.splitlines()[-1] == "1 capture checked: 1 ok, 0 failed"
    files[-1].unlink()  # the set lost its last file: the last retries are gone
    result = run("check", "--set", str(directory))
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_expand_orders_names_as_numbers_and_skips_hidden_and_expectations(tmp_path):
    for name in ("cap.pcap", "cap.pcap1", "cap.pcap2", "cap.pcap10", ".hidden", "cap.expected.json"):
        (tmp_path / name).write_bytes(b"")
    assert [Path(p).name for p in expand([tmp_path])] == ["cap.pcap", "cap.pcap1", "cap.pcap2", "cap.pcap10"]
    assert natural_key("cap-9.pcap") < natural_key("cap-10.pcap")
    assert expand([tmp_path / "cap.pcap", str(tmp_path / "cap.pcap")]) == [str(tmp_path / "cap.pcap")]


def test_single_file_tables_are_unchanged():
    a = pcapstate.analyze(SAMPLES / "fin_dropped.pcap")
    assert not a.is_set
    assert not SET_COLUMNS & (set(a.packets.columns) | set(a.flows.columns) | set(a.transitions.columns))
    assert a.files[["name", "records", "packets"]].values.tolist() == [[str(SAMPLES / "fin_dropped.pcap"), 13, 13]]


def test_read_capture_takes_a_list():
    files = [SAMPLES / "server_closes_first.pcap", SAMPLES / "client_closes_first.pcap"]
    table = pcapstate.read_capture(files)
    assert table.is_set and [Path(f.name).name for f in table.files] == ["client_closes_first.pcap",
                                                                          "server_closes_first.pcap"]
    assert table["frame"].tolist() == list(range(1, 23))
    assert table["file"].tolist() == [0] * 11 + [1] * 11 and table["file_frame"].tolist() == list(range(1, 12)) * 2
    assert table.source == f"{files[0]} {files[1]} (2 files)"
    assert not pcapstate.read_capture(files[0]).is_set
