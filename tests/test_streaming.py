"""A long pcap analyzed in parts spilled to disk (issue 7, flat memory): the same bytes as the whole-file analysis.

:mod:`pcapstate.streaming` cuts the capture by conversation, numbers the
connections across the parts and merges the tables back while printing.  Each
test compares its output with the whole-file analysis of the same file, with
tiny windows and parts so every boundary is crossed many times.
"""
from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pcapstate import streaming
from pcapstate.analysis import analyze
from pcapstate.cli import OUTPUT_TABLES, cli
from pcapstate.columns import Table, texts
from pcapstate.decode import read_capture
from pcapstate.errors import PcapstateError
from pcapstate.report.formats import write_tables
from pcapstate.report.jsonout import write_rows_file
from synthetic import pcap_records, with_swapped_records, write_synthetic

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.pcap"))
ZEEK = sorted((ROOT.parent / "shared" / "conformance" / "zeek" / "traces").glob("*.pcap"))
LOW_FLOOD = {"flood_connections": 4, "flood_sources": 3}


def whole_json(path: Path, **thresholds) -> tuple[str, list[str]]:
    analysis = analyze(read_capture(str(path), options=False), **thresholds)
    out = io.StringIO()
    write_tables("json", {name: analysis.columnar(name) for name in OUTPUT_TABLES}, None, str(path), stdout=out)
    return out.getvalue(), analysis.warnings


def streamed_json(path: Path, partitions: int, window: int, fmt: str = "json", jobs: int = 1,
                  **thresholds) -> tuple[str, list[str]]:
    """As the command line prints it: with jobs, the helpers print JSON tables ahead."""
    with streaming.analyze(str(path), partitions, tables=OUTPUT_TABLES, window_records=window, jobs=jobs,
                           **thresholds) as streamed:
        if fmt == "json":
            streamed.print_ahead(write_rows_file)
        out = io.StringIO()
        write_tables(fmt, streamed.tables, None, str(path), stdout=out)
        return out.getvalue(), streamed.warnings


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "synth-300.pcap", 300)


@pytest.fixture(scope="module")
def reused(tmp_path_factory, synthetic) -> Path:
    """A sample's connection, then the synthetic capture, then the same connection again (the same 4-tuple,
    so ``port_reuse`` names the earlier flow by its number in the whole trace), in time order."""
    sample = (ROOT / "samples" / "client_closes_first.pcap").read_bytes()
    synth = synthetic.read_bytes()
    first, middle = pcap_records(sample), pcap_records(synth)
    start = _seconds(middle[0]) - 100
    records = _shifted(first, start - _seconds(first[0])) + middle
    records += _shifted(first, _seconds(middle[-1]) + 5 - _seconds(first[0]))
    path = tmp_path_factory.mktemp("reused") / "reused.pcap"
    path.write_bytes(synth[:24] + b"".join(records))
    return path


def _seconds(record: bytes) -> int:
    return struct.unpack_from("<I", record)[0]


def _shifted(records: list[bytes], by: int) -> list[bytes]:
    return [struct.pack("<I", _seconds(r) + by) + r[4:] for r in records]


@pytest.mark.parametrize("path", SAMPLES + ZEEK, ids=lambda p: p.name)
def test_every_sample_and_zeek_trace_in_parts_equals_the_whole(path):
    expected = whole_json(path)
    for partitions, window, jobs in ((3, 5, 1), (2, 1000, 1), (4, 7, 2)):  # (2 jobs: a forked helper)
        try:
            assert streamed_json(path, partitions, window, jobs=jobs) == expected
        except streaming.NeedsWholeFile:
            assert len(read_capture(str(path), options=False)) == 0  # only a capture without TCP is refused


@pytest.mark.parametrize("partitions,window,merge_rows", [(2, 4096, 1 << 18), (5, 777, 1 << 18), (16, 100, 1 << 18),
                                                          (3, 999, 100)])
def test_synthetic_with_floods_in_parts_equals_the_whole(synthetic, partitions, window, merge_rows, monkeypatch):
    monkeypatch.setattr(streaming, "MERGE_ROWS", merge_rows)  # 100: chunks of 64 rows, many rounds of the merge
    expected = whole_json(synthetic, **LOW_FLOOD)
    assert '"half_open_flood"' in expected[0]
    assert streamed_json(synthetic, partitions, window, **LOW_FLOOD) == expected


def test_port_reuse_names_the_earlier_flow_by_its_number_in_the_whole_trace(reused):
    expected = whole_json(reused)
    assert "reuses the 4-tuple of flow 0 " in expected[0]
    assert streamed_json(reused, 4, 300) == expected


def test_records_out_of_time_order(synthetic, tmp_path):
    swapped = with_swapped_records(synthetic, tmp_path / "swapped.pcap", 40, seed=3)
    expected = whole_json(swapped)
    assert any("earlier than the packet before them" in w for w in expected[1])
    assert streamed_json(swapped, 3, 500) == expected


def test_truncated_file_warns_as_the_whole(synthetic, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(synthetic.read_bytes()[:-37])
    expected = whole_json(cut)
    assert any("file truncated" in w for w in expected[1])
    assert streamed_json(cut, 3, 1000) == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_formats_print_the_same_rows(synthetic, fmt):
    analysis = analyze(read_capture(str(synthetic), options=False))
    out = io.StringIO()
    tables = {"transitions": analysis.columnar("transitions")}
    write_tables(fmt, tables, None, str(synthetic), stdout=out)
    with streaming.analyze(str(synthetic), 4, tables=("transitions",), window_records=999) as streamed:
        got = io.StringIO()
        write_tables(fmt, streamed.tables, None, str(synthetic), stdout=got)
    assert got.getvalue() == out.getvalue()


PCAPNG = sorted((ROOT.parent / "shared" / "conformance" / "zeek" / "traces").glob("*.pcapng"))


@pytest.mark.parametrize("kind", ["gzip", "pcapng", "text"])
def test_other_formats_are_decoded_whole_then_cut_into_parts(synthetic, tmp_path, kind):
    import gzip

    if kind == "gzip":
        path = tmp_path / "x.pcap.gz"
        path.write_bytes(gzip.compress(synthetic.read_bytes()))
    elif kind == "pcapng":
        path = PCAPNG[0]
    else:
        path = tmp_path / "capture.txt"
        path.write_text(subprocess.run(["tcpdump", "-n", "-r", str(ROOT / "samples" / "data_loss.pcap")],
                                       capture_output=True, text=True, check=True).stdout)
    assert streamed_json(path, 3, 100) == whole_json(path)


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "data" / "formats").iterdir()), ids=lambda p: p.name)
def test_every_format_file_in_parts_equals_the_whole_or_fails_alike(path):
    """Damaged, cut, odd link types, not captures at all: the same tables, or the same one-line error."""
    if path.suffix in (".json", ".md", ".py", ".sh"):
        return  # the directory's own notes and tools
    try:
        expected = whole_json(path)
    except PcapstateError as error:
        with pytest.raises(type(error), match=re.escape(str(error))):
            streamed_json(path, 2, 3)
        return
    try:
        assert streamed_json(path, 2, 3) == expected
        assert streamed_json(path, 2, 3, jobs=2) == expected
    except streaming.NeedsWholeFile as why:  # the command line then analyzes it whole
        assert "framing needs repair" in str(why) or len(read_capture(str(path), options=False)) == 0


def test_cli_long_capture_in_parts_prints_the_same(synthetic, tmp_path, monkeypatch):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(synthetic.read_bytes()[:-37])  # and a warning to print
    runner = CliRunner()
    whole = runner.invoke(cli, ["analyze", str(cut), "--format", "json"])
    assert whole.exit_code == 0
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    assert streaming.partitions_for(str(cut)) > 3
    calls = []
    real = streaming.analyze
    monkeypatch.setattr(streaming, "analyze", lambda *a, **k: calls.append(a) or real(*a, **k))
    parts = runner.invoke(cli, ["analyze", str(cut), "--format", "json"])
    assert parts.exit_code == 0 and calls
    assert parts.stdout == whole.stdout
    assert parts.stderr == whole.stderr and "file truncated" in parts.stderr
    out = tmp_path / "out"
    assert runner.invoke(cli, ["analyze", str(cut), "--format", "csv", "-o", str(out)]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.csv" for n in OUTPUT_TABLES)


def test_spilled_parts_are_removed(synthetic, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    with streaming.analyze(str(synthetic), 3, tables=OUTPUT_TABLES, window_records=1000, spill_dir=str(spill)):
        assert any(spill.iterdir())
    assert not any(spill.iterdir())


# --- the merge ------------------------------------------------------------------------------


def _run_tables(rng, rows: int, chunk: int, run: int) -> list[Table]:
    """A sorted run of rows with two keys (many ties) and a text naming the run and row, in chunks."""
    a = np.sort(rng.integers(0, 20, rows))
    b = np.zeros(rows, dtype=np.int64)
    for value in np.unique(a):  # sorted on (a, b)
        at = a == value
        b[at] = np.sort(rng.integers(0, 3, int(at.sum())))
    label = texts([f"{run}:{i}" for i in range(rows)])
    table = Table({"a": a, "b": b, "label": label})
    return [table.take(np.arange(s, min(s + chunk, rows))) for s in range(0, rows, chunk)]


@pytest.mark.parametrize("seed", range(8))
def test_merge_runs_is_a_stable_sort_of_the_runs_end_to_end(seed):
    rng = np.random.default_rng(seed)
    runs = [_run_tables(rng, int(rng.integers(0, 60)), int(rng.integers(1, 9)), r) for r in range(int(rng.integers(1, 6)))]
    keys = lambda t: [t["a"], t["b"]]  # noqa: E731
    merged = [chunk for chunk in streaming.merge_runs(runs, keys)]
    got = [x for chunk in merged for x in chunk["label"].objects().tolist()]
    whole = [t for run in runs for t in run]
    a = np.concatenate([t["a"] for t in whole]) if whole else np.zeros(0)
    b = np.concatenate([t["b"] for t in whole]) if whole else np.zeros(0)
    labels = [x for t in whole for x in t["label"].objects().tolist()]
    expected = [labels[i] for i in np.lexsort((b, a)).tolist()]
    assert got == expected


def test_each_part_is_replayed_once_unless_records_are_out_of_time_order(synthetic, tmp_path, monkeypatch):
    """In time order a connection's number is the rank of its first packet's row, which stands in for it
    until the tables merge; out of order, every part is replayed first for the numbering."""
    from pcapstate import partitions

    calls = []
    real = partitions.replayed
    monkeypatch.setattr(partitions, "replayed", lambda *a, **k: calls.append(1) or real(*a, **k))
    streamed_json(synthetic, 3, 1000)
    assert len(calls) == 3
    calls.clear()
    streamed_json(with_swapped_records(synthetic, tmp_path / "swapped.pcap", 10, seed=5), 3, 1000)
    assert len(calls) == 6


# --- rotated capture sets -------------------------------------------------------------------


def rotated(source: Path, directory: Path, per_file: int) -> list[Path]:
    """``tcpdump -C``-style rotation: cap.pcap, cap.pcap1, … with ``per_file`` records each."""
    data = source.read_bytes()
    records = pcap_records(data)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for index, start in enumerate(range(0, len(records), per_file)):
        path = directory / ("cap.pcap" if index == 0 else f"cap.pcap{index}")
        path.write_bytes(data[:24] + b"".join(records[start:start + per_file]))
        files.append(path)
    return files


def whole_set_json(paths: list[Path], specs, **thresholds) -> tuple[str, list[str]]:
    from pcapstate.decode.capture_set import read_capture_set

    table = read_capture_set([str(p) for p in paths], specs=specs, options=False)
    analysis = analyze(table, **thresholds)
    out = io.StringIO()
    write_tables("json", {name: analysis.columnar(name) for name in OUTPUT_TABLES}, None, table.source, stdout=out)
    return out.getvalue(), analysis.warnings


def streamed_set_json(paths: list[Path], specs, partitions: int, window: int, jobs: int = 1,
                      **thresholds) -> tuple[str, list[str]]:
    with streaming.analyze([str(p) for p in paths], partitions, tables=OUTPUT_TABLES, window_records=window,
                           specs=specs, jobs=jobs, **thresholds) as streamed:
        out = io.StringIO()
        write_tables("json", streamed.tables, None, streamed.source, stdout=out)
        return out.getvalue(), streamed.warnings


def test_rotated_set_in_parts_equals_the_set_read_whole(synthetic, tmp_path):
    files = rotated(synthetic, tmp_path / "set", 1500)
    shuffled = files[::-1]  # the order given does not matter: files go by their first record's time
    expected = whole_set_json(shuffled, [str(tmp_path / "set")], **LOW_FLOOD)
    assert '"file_frame"' in expected[0] and '"half_open_flood"' in expected[0]
    assert streamed_set_json(shuffled, [str(tmp_path / "set")], 4, 700, **LOW_FLOOD) == expected
    assert streamed_set_json(shuffled, [str(tmp_path / "set")], 6, 700, jobs=2, **LOW_FLOOD) == expected


def test_rotated_set_with_a_cut_file_and_records_out_of_order(synthetic, tmp_path):
    swapped = with_swapped_records(synthetic, tmp_path / "swapped.pcap", 30, seed=11)
    files = rotated(swapped, tmp_path / "set", 2000)
    files[1].write_bytes(files[1].read_bytes()[:-21])  # cut inside its last record
    expected = whole_set_json(files, [str(p) for p in files])
    assert any("file truncated" in w for w in expected[1])
    assert streamed_set_json(files, [str(p) for p in files], 3, 512) == expected
    assert streamed_set_json(files, [str(p) for p in files], 4, 512, jobs=2) == expected  # numbering replays shared


def test_overlapping_files_are_analyzed_whole(synthetic, tmp_path):
    records = pcap_records(synthetic.read_bytes())
    head = synthetic.read_bytes()[:24]
    (tmp_path / "a.pcap").write_bytes(head + b"".join(records[0::2]))  # two captures of the same moment
    (tmp_path / "b.pcap").write_bytes(head + b"".join(records[1::2]))
    with pytest.raises(streaming.NeedsWholeFile, match="overlaps"):
        streaming.analyze([str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")], 2, tables=OUTPUT_TABLES)


def test_cli_rotated_directory_in_parts_prints_the_same(synthetic, tmp_path, monkeypatch):
    files = rotated(synthetic, tmp_path / "set", 1500)
    files[2].write_bytes(files[2].read_bytes()[:-21])
    runner = CliRunner()
    whole = runner.invoke(cli, ["analyze", str(tmp_path / "set"), "--format", "json"])
    assert whole.exit_code == 0 and "file truncated" in whole.stderr
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    calls = []
    real = streaming.analyze
    monkeypatch.setattr(streaming, "analyze", lambda *a, **k: calls.append(a) or real(*a, **k))
    parts = runner.invoke(cli, ["analyze", str(tmp_path / "set"), "--format", "json"])
    assert parts.exit_code == 0 and calls
    assert (parts.stdout, parts.stderr) == (whole.stdout, whole.stderr)
    (tmp_path / "set" / "notes.txt").write_text("not a capture\n")  # the set reader skips it: analyzed whole
    skipped = runner.invoke(cli, ["analyze", str(tmp_path / "set"), "--format", "json"])
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 1 << 40)
    assert (skipped.exit_code, skipped.stdout, skipped.stderr) == (0, *_outputs(runner, tmp_path / "set"))
    assert "notes.txt: not a pcap" in skipped.stderr


def _outputs(runner, capture) -> tuple[str, str]:
    result = runner.invoke(cli, ["analyze", str(capture), "--format", "json"])
    return result.stdout, result.stderr


def test_parts_grow_rather_than_open_too_many_files(tmp_path, monkeypatch):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\0" * 10_000)
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 10)
    assert streaming.partitions_for(str(path)) == streaming.MAX_PARTITIONS
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 4_000)
    assert streaming.partitions_for(str(path)) == 3
    assert streaming.partitions_for(str(path), decoder="pyshark") == 1  # tshark's decoder: whole


def test_parts_are_smaller_and_as_many_per_process_with_jobs(tmp_path, monkeypatch):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\0" * 10_000)
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 4_000)
    assert streaming.partitions_for(str(path), jobs=2) == 6  # parts of 2,000 bytes at most, 3 per process
    assert streaming.partitions_for(str(path), jobs=3) == 9
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 10_000)  # short enough to hold: whole, however many jobs
    assert streaming.partitions_for(str(path), jobs=2) == 1


# --- --jobs: parts analyzed in forked processes ---------------------------------------------------


def _recording_processes(monkeypatch, tmp_path) -> Path:
    """Makes every part's analysis note its process id in a file (the forked helpers inherit the patch)."""
    import os

    from pcapstate import partitions

    pids = tmp_path / "pids"
    real = partitions.analyze_partition

    def noted(*args, **kwargs):
        with open(pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(partitions, "analyze_partition", noted)
    return pids


@pytest.mark.parametrize("jobs,partitions", [(2, 6), (3, 5)])
def test_parts_analyzed_side_by_side_in_processes_print_the_same(synthetic, tmp_path, monkeypatch, jobs, partitions):
    import multiprocessing
    import os

    expected = whole_json(synthetic, **LOW_FLOOD)
    pids = _recording_processes(monkeypatch, tmp_path)
    with streaming.analyze(str(synthetic), partitions, tables=OUTPUT_TABLES, window_records=700, jobs=jobs,
                           **LOW_FLOOD) as streamed:
        out = io.StringIO()
        write_tables("json", streamed.tables, None, str(synthetic), stdout=out)
    assert (out.getvalue(), streamed.warnings) == expected
    seen = pids.read_text().split()
    assert len(seen) == partitions and str(os.getpid()) in seen
    assert 2 <= len(set(seen)) <= jobs  # (helpers take the parts that are not this process's as they come free)
    assert not multiprocessing.active_children()  # the helpers are gone


def test_records_out_of_time_order_with_jobs(synthetic, tmp_path):
    swapped = with_swapped_records(synthetic, tmp_path / "swapped.pcap", 40, seed=4)
    expected = whole_json(swapped)
    with streaming.analyze(str(swapped), 4, tables=OUTPUT_TABLES, window_records=500, jobs=2) as streamed:
        out = io.StringIO()
        write_tables("json", streamed.tables, None, str(swapped), stdout=out)
    assert (out.getvalue(), streamed.warnings) == expected


def test_cli_jobs_2_in_parts_prints_the_same(synthetic, tmp_path, monkeypatch):
    runner = CliRunner()
    whole = runner.invoke(cli, ["analyze", str(synthetic), "--format", "jsonl", "--jobs", "1"])
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 150_000)
    pids = _recording_processes(monkeypatch, tmp_path)
    parts = runner.invoke(cli, ["analyze", str(synthetic), "--format", "jsonl", "--jobs", "2"])
    assert parts.exit_code == 0 and len(set(pids.read_text().split())) == 2
    assert (parts.stdout, parts.stderr) == (whole.stdout, whole.stderr)


PRINTERS_NOTED = """
import os, sys
from pcapstate import streaming
from pcapstate.cli import main
from pcapstate.report import jsonout
real = jsonout.write_rows_file
def noted(table, path):
    with open(sys.argv[1], "a") as printers:
        printers.write(f"{path.name} {os.getpid()}\\n")
    return real(table, path)
jsonout.write_rows_file = noted
streaming.PARTITION_BYTES = 100_000
main(["analyze", sys.argv[2], "--format", "json", "--jobs", sys.argv[3]] + sys.argv[4:])
"""


@pytest.mark.parametrize("to_file", [False, True])
def test_cli_jobs_2_json_tables_printed_ahead_by_the_helper_print_the_same(synthetic, tmp_path, to_file):
    """The largest table is printed into the spill by the helper while the main process prints the first
    (flows) and the small ones; the document is byte for byte the one-process, whole-capture one."""
    import os

    whole = CliRunner().invoke(cli, ["analyze", str(synthetic), "--format", "json", "--jobs", "1"])
    printers = tmp_path / "printers"
    out = ["-o", str(tmp_path / "out.json")] if to_file else []
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}  # (parts: compiled)
    run = subprocess.run([sys.executable, "-c", PRINTERS_NOTED, str(printers), str(synthetic), "2"] + out,
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    printed = (tmp_path / "out.json").read_text() if to_file else run.stdout
    assert (printed, run.stderr) == (whole.stdout, whole.stderr)
    by = dict(line.split() for line in printers.read_text().splitlines())
    # the helper prints most of the transitions, this process the first connections' and the small tables
    assert sorted(by) == sorted([f"{name}.here.printed" for name in OUTPUT_TABLES if name != "flows"]
                                + ["transitions.later.printed"])
    assert by["transitions.later.printed"] != by["transitions.here.printed"] == by["retries.here.printed"]


def test_tables_are_shared_out_for_printing_by_cost():
    costs = {"flows": 230, "transitions": 990, "retransmissions": 52, "retries": 21, "anomalies": 20}
    assert streaming._print_plan(costs, 2, first="flows") == {
        "flows": 1, "transitions": 0, "retransmissions": 1, "retries": 1, "anomalies": 1}
    # the helper's transitions shared: 323 + 334 here, 656 there
    plan = streaming._print_plan(costs, 2, first="flows", splittable=("flows", "transitions"))
    assert plan["transitions"] == pytest.approx((990 - 323) / (2 * 990))
    assert {name: share for name, share in plan.items() if name != "transitions"} == {
        "flows": 1, "retransmissions": 1, "retries": 1, "anomalies": 1}
    costs = {"flows": 900, "transitions": 500, "retransmissions": 450, "retries": 1, "anomalies": 1}
    assert streaming._print_plan(costs, 3, first="flows", splittable=("flows", "transitions")) == {
        "flows": 1, "transitions": 0, "retransmissions": 0, "retries": 0, "anomalies": 0}  # (this one is busiest)
    assert streaming._print_plan({"flows": 1, "transitions": 9}, 1, first="flows") == {"flows": 1, "transitions": 1}


@pytest.mark.parametrize("transitions_ns", [1, 470, 2000, 10**6])
def test_a_table_printed_in_two_stretches_is_the_same(synthetic, monkeypatch, transitions_ns):
    """However the transitions are cut between this process and the helper (here: not at all, after a
    seventh of the connections, two fifths, half), the document is the whole capture's."""
    monkeypatch.setitem(streaming.PRINT_NS_PER_ROW, "transitions", transitions_ns)
    assert streamed_json(synthetic, 4, 700, jobs=2, **LOW_FLOOD) == whole_json(synthetic, **LOW_FLOOD)


def test_within_keeps_the_rows_of_a_range_of_connections():
    flows = [np.array([0, 0, 2, 5]), np.array([5, 7]), np.array([9, 12, 12])]
    run = [Table({"flow": f, "x": f * 10}) for f in flows]
    got = lambda since, until: [t["flow"].tolist() for t in streaming._within(iter(run), since, until)]  # noqa: E731
    assert got(None, None) == [[0, 0, 2, 5], [5, 7], [9, 12, 12]]
    assert got(None, 5) == [[0, 0, 2]]
    assert got(5, None) == [[5], [5, 7], [9, 12, 12]]
    assert got(3, 10) == [[5], [5, 7], [9]]
    assert got(13, None) == [] and got(None, 0) == []


HELPER_FILLS_THE_DISK = """
def fails_in_a_helper(table, handle):
    if os.getpid() != parent and "packets" not in handle.name:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(table, handle)
streaming.dump_table = fails_in_a_helper
"""
HELPER_IS_KILLED = """
def fails_in_a_helper(table, handle):
    if os.getpid() != parent and "packets" not in handle.name:
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
    return real(table, handle)
streaming.dump_table = fails_in_a_helper
"""

HELPER_PRINTING_FILLS_THE_DISK = """
from pcapstate.report import jsonout
real_print = jsonout.write_rows_file
def fails_in_a_helper(table, path):
    if os.getpid() != parent:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_print(table, path)
jsonout.write_rows_file = fails_in_a_helper
"""
HELPER_PRINTING_IS_KILLED = HELPER_PRINTING_FILLS_THE_DISK.replace(
    'raise OSError(errno.ENOSPC, "No space left on device")', "os.kill(os.getpid(), signal.SIGKILL)")


@pytest.mark.parametrize("failure,said", [(HELPER_FILLS_THE_DISK, "No space left on device"),
                                          (HELPER_IS_KILLED, "stopped before it was done (out of memory?)"),
                                          (HELPER_PRINTING_FILLS_THE_DISK, "No space left on device"),
                                          (HELPER_PRINTING_IS_KILLED, "stopped before it was done (out of memory?)")],
                         ids=["spilling, disk full", "spilling, killed", "printing, disk full", "printing, killed"])
def test_a_helper_process_failing_is_a_one_line_error_and_nothing_is_left(synthetic, tmp_path, failure, said):
    """A forked process fails while it writes its part's tables, or prints a table ahead: a one-line
    error, the spill removed."""
    import os

    spill = tmp_path / "spill"
    spill.mkdir()
    script = "import errno, os, signal\nfrom pcapstate import streaming\nfrom pcapstate.cli import main\n"
    script += "parent, real = os.getpid(), streaming.dump_table\n" + failure
    script += "streaming.PARTITION_BYTES = 100_000\n"
    script += f"main(['analyze', {str(synthetic)!r}, '--format', 'json', '--jobs', '2', '-o', {str(tmp_path / 'o')!r}])"
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}  # (parts: compiled)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**env, "TMPDIR": str(spill)})
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and said in run.stderr
    assert not any(spill.iterdir())


HELPERS_NOTED = """
import os, signal, sys, time
from pcapstate import partitions, streaming
from pcapstate.cli import main
parent, started = os.getpid(), streaming._Helpers.__init__
def noted(self, count):
    started(self, count)
    with open(sys.argv[1], "w") as pids:
        pids.write(" ".join(str(pid) for pid in self.pool._processes))
streaming._Helpers.__init__ = noted
real = partitions.analyze_partition
def stopped_in_the_main_process(*args):
    if os.getpid() == parent:
        STOP
    return real(*args)
partitions.analyze_partition = stopped_in_the_main_process
streaming.PARTITION_BYTES = 100_000
main(["analyze", sys.argv[2], "--format", "json", "--jobs", "2", "-o", os.devnull])
"""


def _run_stopped(synthetic, tmp_path, stop: str):
    import os

    spill = tmp_path / "spill"
    spill.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}
    pids = tmp_path / "helpers"
    run = subprocess.run([sys.executable, "-c", HELPERS_NOTED.replace("STOP", stop), str(pids), str(synthetic)],
                         capture_output=True, text=True, timeout=120, env={**env, "TMPDIR": str(spill)},
                         start_new_session=True)  # (its Ctrl-C goes to its own process group only)
    return run, [int(pid) for pid in pids.read_text().split()], spill


def _ended(pid: int, within: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":  # ended, not yet reaped
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_stops_the_helpers_and_removes_the_parts(synthetic, tmp_path):
    run, helpers, spill = _run_stopped(synthetic, tmp_path, "os.killpg(os.getpgrp(), signal.SIGINT); time.sleep(5)")
    assert run.returncode == 130 and run.stderr.strip() == "pcapstate: aborted"
    assert helpers and all(_ended(pid) for pid in helpers)
    assert not any(spill.iterdir())


def test_helpers_end_when_the_main_process_is_killed(synthetic, tmp_path):
    run, helpers, _spill = _run_stopped(synthetic, tmp_path, "os.kill(os.getpid(), signal.SIGKILL)")
    assert run.returncode == -9
    assert helpers and all(_ended(pid) for pid in helpers)  # not left waiting for work forever


def test_a_full_disk_is_a_one_line_error_and_nothing_is_left(synthetic, tmp_path, monkeypatch, capsys):
    import errno

    def full(table, handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr(streaming.tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.setattr(streaming, "dump_table", full)
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    import gc

    from pcapstate import engine
    from pcapstate.cli import main

    monkeypatch.setattr(engine, "choose_for", lambda paths: None)  # (it may set PCAPSTATE_NO_JIT for good)

    try:
        with pytest.raises(SystemExit) as exit_status:
            main(["analyze", str(synthetic), "--format", "json", "-o", str(tmp_path / "out.json")])
    finally:
        gc.enable()  # (main turns the cycle collector off for its short run)
    stderr = capsys.readouterr().err
    assert exit_status.value.code == 2
    assert stderr.count("\n") == 1 and "No space left on device" in stderr and "set TMPDIR" in stderr
    assert not any(spill.iterdir())


@pytest.mark.parametrize("seed", range(6))
def test_in_order_keeps_a_table_already_sorted_and_sorts_any_other(seed):
    """A part's flows and transitions come in order: :func:`in_order` returns them as they are, and
    sorts (stably) whatever is not, NaN keys last as the sort puts them."""
    from pcapstate.results import _in_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    a = rng.integers(0, 4, n)
    b = rng.choice([0.5, 1.5, np.nan], n) if seed % 2 else rng.integers(0, 3, n).astype(float)
    keys = [a, b]
    order = np.lexsort(keys[::-1])
    assert _in_order(keys) == (order.tolist() == list(range(n)))
    assert _in_order([k[order] for k in keys]) == (seed % 2 == 0 or not np.isnan(b).any())
    assert _in_order([np.array([1.0, np.nan])]) is False and _in_order([np.array([np.nan, 1.0])]) is False
    assert _in_order([np.array([3, 3, 2]), np.array([0, 1, 0])]) is False
    assert _in_order([np.array([3, 3, 4]), np.array([1, 0, 0])]) is False
    assert _in_order([np.array([3, 3, 4]), np.array([0, 1, 0])]) is True


@pytest.mark.parametrize("options", [[], ["--all"], ["--jobs", "2"], ["--all", "--jobs", "2"]])
def test_cli_summary_of_a_long_capture_in_parts_prints_the_same(synthetic, tmp_path, monkeypatch, options):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(synthetic.read_bytes()[:-37])  # and a warning to print
    runner = CliRunner()
    whole = runner.invoke(cli, ["analyze", str(cut), *options])
    assert whole.exit_code == 0 and "connections by final state" in whole.stdout
    assert ("... 250 more connections" in whole.stdout) == ("--all" not in options)
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    asked = []
    real = streaming.analyze
    monkeypatch.setattr(streaming, "analyze", lambda *a, **k: asked.append(k["tables"]) or real(*a, **k))
    pids = _recording_processes(monkeypatch, tmp_path)
    parts = runner.invoke(cli, ["analyze", str(cut), *options])
    assert parts.exit_code == 0 and asked == [("flows", "anomalies", "packet_notes")]
    assert len(set(pids.read_text().split())) == (2 if "--jobs" in options else 1)
    assert (parts.stdout, parts.stderr) == (whole.stdout, whole.stderr) and "file truncated" in parts.stderr
    written = tmp_path / "summary.txt"
    assert runner.invoke(cli, ["analyze", str(cut), *options, "-o", str(written)]).exit_code == 0
    assert written.read_text() == whole.stdout


def test_cli_timeline_and_one_flow_read_the_capture_whole(synthetic, monkeypatch):
    """A timeline draws every packet of a connection: it needs the packet table, so no parts."""
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    monkeypatch.setattr(streaming, "analyze", lambda *a, **k: pytest.fail("analyzed in parts"))
    runner = CliRunner()
    for options in (["--timeline"], ["--flow", "3"]):
        result = runner.invoke(cli, ["analyze", str(synthetic), *options])
        assert result.exit_code == 0 and "flow 3" in result.stdout


def test_cli_summary_never_imports_pandas(synthetic):
    """The command people run most: pandas would double its start-up on a small capture."""
    code = ("import sys; from pcapstate import streaming; from pcapstate.cli import main\n"
            "streaming.PARTITION_BYTES = int(sys.argv[2])\n"
            "try:\n    main(['analyze', sys.argv[1]])\n"
            "except SystemExit:\n    pass\n"
            "print('pandas' in sys.modules, file=sys.stderr)")
    for capture, part_bytes in ((ROOT / "samples" / "data_loss.pcap", 1 << 40), (synthetic, 100_000)):
        result = subprocess.run([sys.executable, "-c", code, str(capture), str(part_bytes)],
                                capture_output=True, text=True)
        assert "connections by final state" in result.stdout
        assert result.stderr.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("options", [[], ["--flow", "9"], ["--format", "json"], ["--format", "jsonl", "--flow", "9"],
                                     ["--format", "csv", "-o", "{out}"], ["--flow", "300"]])
def test_cli_retries_of_a_long_capture_in_parts_prints_the_same(synthetic, tmp_path, monkeypatch, options):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(synthetic.read_bytes()[:-37])  # and a warning to print
    runner = CliRunner()

    def run(name):
        out = tmp_path / name
        result = runner.invoke(cli, ["retries", str(cut), *[o.format(out=out) for o in options]])
        written = sorted((p.name, p.read_text()) for p in out.iterdir()) if out.is_dir() else None
        return result.exit_code, result.stdout, result.stderr, written, str(result.exception)

    whole = run("whole")
    assert (whole[0] != 0) == ("300" in options) and "file truncated" in whole[2]
    assert ("no flow 300 (the capture has flows 0 to 299)" in whole[4]) == ("300" in options)
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    asked = []
    real = streaming.analyze
    monkeypatch.setattr(streaming, "analyze", lambda *a, **k: asked.append(k["tables"]) or real(*a, **k))
    assert run("parts") == whole and asked == [("retries", "retransmissions")]
    if options == ["--flow", "9"]:
        assert ": 1 segment sent more than once" in whole[1] and "\n   9  " in whole[1]


def test_cli_retries_says_the_records_are_out_of_order_whole_or_in_parts(synthetic, tmp_path, monkeypatch):
    swapped = with_swapped_records(synthetic, tmp_path / "swapped.pcap", 40, seed=3)
    runner = CliRunner()
    whole = runner.invoke(cli, ["retries", str(swapped)])
    assert whole.exit_code == 0 and "earlier than the packet before them" in whole.stderr
    monkeypatch.setattr(streaming, "PARTITION_BYTES", 100_000)
    parts = runner.invoke(cli, ["retries", str(swapped)])
    assert (parts.exit_code, parts.stdout, parts.stderr) == (0, whole.stdout, whole.stderr)
