"""``--engine dask`` (issue 9, items 2 and 3): the analysis through Dask equals the single-process one.

Rotated sets are built from the samples (merged into one trace, then split)
and from a synthetic capture (benchmarks/generate.py), split with ``editcap
-c`` and with a ``tcpdump -C``-style splitter; the dask engine's tables must
equal, table for table, those of ``pcapstate.analyze`` on the unsplit capture
(the set's own ``file``/``file_frame`` columns aside) and on the same set
(those columns included).  Most tests use a 2-worker cluster of threads in
this process; one runs real worker processes, and one the command line.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import pcapstate

distributed = pytest.importorskip("distributed")

from pcapstate import dask_engine  # noqa: E402
from synthetic import pcap_records, with_swapped_records, write_synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TABLES = ("flows", "transitions", "retransmissions", "retries", "anomalies", "packets")
SET_COLUMNS = ("file", "file_frame", "first_file", "first_file_frame", "last_file", "last_file_frame")
needs_wireshark_tools = pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("mergecap") is None,
                                           reason="editcap and mergecap come with tshark (tests/run.sh installs it)")


@pytest.fixture(scope="module")
def client():
    """Two single-threaded workers as threads of this process (fast to start)."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "synth-300.pcap", 300)


def split_records(source: Path, directory: Path, per_file: int, name: str = "cap.pcap") -> list[Path]:
    """``tcpdump -C``-style rotation of a classic pcap: cap.pcap, cap.pcap1, … with ``per_file`` records each."""
    data = source.read_bytes()
    records = pcap_records(data)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for index, start in enumerate(range(0, len(records), per_file)):
        path = directory / (name if index == 0 else f"{name}{index}")
        path.write_bytes(data[:24] + b"".join(records[start:start + per_file]))
        files.append(path)
    return files


def editcap(source: Path, directory: Path, *how: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["editcap", *how, str(source), str(directory / "part.pcap")], check=True, capture_output=True)
    return directory


def without_set_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in SET_COLUMNS])


def assert_equal(got, want, set_columns: bool = True) -> None:
    for name in TABLES:
        g, w = getattr(got, name), getattr(want, name)
        if not set_columns:
            g, w = without_set_columns(g), without_set_columns(w)
        pd.testing.assert_frame_equal(g, w, obj=name)


# --- synthetic captures ------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_editcap_split_synthetic_equals_unsplit(client, synthetic, tmp_path, partitions):
    if shutil.which("editcap") is None:
        directory = tmp_path / "set"
        split_records(synthetic, directory, 700)
    else:
        directory = editcap(synthetic, tmp_path / "set", "-c", "700")
    assert len(list(directory.iterdir())) >= 5
    got = dask_engine.analyze(str(directory), client=client, partitions=partitions)
    assert got.is_set and len(got.flows) >= 300
    assert_equal(got, pcapstate.analyze(synthetic), set_columns=False)
    assert_equal(got, pcapstate.analyze(str(directory)))  # file and file_frame too
    assert got.warnings == pcapstate.analyze(str(directory)).warnings
    stats = dask_engine.last_stats
    assert stats.partitions == partitions and sum(stats.partition_packets) == len(got.table)


def test_rotated_synthetic_glob_and_list(client, synthetic, tmp_path):
    files = split_records(synthetic, tmp_path / "rot", 333)
    want = pcapstate.analyze(synthetic)
    got = dask_engine.analyze(str(tmp_path / "rot" / "cap.pcap*"), client=client, partitions=3)
    assert_equal(got, want, set_columns=False)
    got_list = dask_engine.analyze([str(f) for f in reversed(files)], client=client, partitions=4)
    assert_equal(got_list, pcapstate.analyze([str(f) for f in files]))


def test_overlapping_files(client, synthetic, tmp_path):
    """Two files that overlap in time (every other record each): merged on the client before the shuffle."""
    data = synthetic.read_bytes()
    records = pcap_records(data)
    files = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for index, path in enumerate(files):
        path.write_bytes(data[:24] + b"".join(records[index::2]))
    got = dask_engine.analyze([str(f) for f in files], client=client, partitions=3)
    assert_equal(got, pcapstate.analyze([str(f) for f in files]))
    # (not compared with the unsplit capture: at equal timestamps the set's merge puts the earlier file first)


def test_one_file(client, synthetic):
    got = dask_engine.analyze(str(synthetic), client=client, partitions=3)
    assert not got.is_set
    assert_equal(got, pcapstate.analyze(synthetic))


def test_flood_found_across_partitions(client, synthetic, tmp_path):
    """Half-open connections to one service from many sources land in different partitions (each its own
    4-tuple): the flood is found only once they are gathered, with the same sentence as in one process."""
    files = split_records(synthetic, tmp_path / "rot", 400)
    low = {"flood_connections": 4, "flood_sources": 3}
    got = dask_engine.analyze([str(f) for f in files], client=client, partitions=5, **low)
    want = pcapstate.analyze([str(f) for f in files], **low)
    assert_equal(got, want)
    floods = got.anomalies[got.anomalies["kind"] == "half_open_flood"]
    assert len(floods) >= 2 and floods["flow"].isna().all()
    assert floods["detail"].str.contains(r"\(flows \d+, \d+").all()


def test_records_out_of_time_order(client, synthetic, tmp_path):
    """Swapped records inside each rotated file: replayed in timestamp order, numbered by it, warned about."""
    shuffled = with_swapped_records(synthetic, tmp_path / "shuffled.pcap", swaps=150, seed=11)
    files = split_records(shuffled, tmp_path / "rot", 600)
    got = dask_engine.analyze([str(f) for f in files], client=client, partitions=3)
    want = pcapstate.analyze([str(f) for f in files])
    assert_equal(got, want)
    assert got.warnings == want.warnings and any("earlier than the packet before" in w for w in got.warnings)


def test_only_the_tables_asked_for_and_no_packets(client, synthetic, tmp_path):
    """What the command line asks for a file: five tables, the packet table only outlined."""
    files = split_records(synthetic, tmp_path / "rot", 500)
    names = ("flows", "transitions", "retransmissions", "retries", "anomalies")
    got = dask_engine.analyze([str(f) for f in files], client=client, partitions=3, tables=names, keep_table=False)
    want = pcapstate.analyze([str(f) for f in files])
    for name in names:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), obj=name)
    assert len(got.table) == len(want.table) and got.table.source == want.table.source
    assert got.warnings == want.warnings and got.is_set
    assert [f.name for f in got.table.files] == [f.name for f in want.table.files]
    assert [(f.records, f.packets, f.start_ns) for f in got.table.files] == \
        [(f.records, f.packets, f.start_ns) for f in want.table.files]
    assert got.connection_count == len(want.flows)
    with pytest.raises(KeyError, match="was not gathered"):
        got.columnar("packets")
    with pytest.raises(KeyError, match="were not gathered"):
        got.table["ts_ns"]


# --- the samples -----------------------------------------------------------------------------


@needs_wireshark_tools
def test_samples_merged_then_rotated(client, tmp_path):
    """Every sample in one trace (mergecap), split every 7 packets: cross-connection anomalies included."""
    merged = tmp_path / "samples.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), *map(str, sorted(SAMPLES.glob("*.pcap")))],
                   check=True, capture_output=True)
    directory = editcap(merged, tmp_path / "set", "-c", "7")
    want = pcapstate.analyze(merged)
    got = dask_engine.analyze(str(directory), client=client, partitions=3)
    assert_equal(got, want, set_columns=False)
    assert_equal(got, pcapstate.analyze(str(directory)))
    assert len(got.flows) > 20


def test_samples_as_a_set_each_sample(client, tmp_path):
    """The samples directory itself is a set (overlapping files, merged by time); plus a non-capture, skipped."""
    directory = tmp_path / "samples"
    directory.mkdir()
    for sample in sorted(SAMPLES.glob("*.pcap")):
        shutil.copy(sample, directory / sample.name)
    (directory / "notes.txt").write_text("not a capture\n")
    want = pcapstate.analyze(str(directory))
    got = dask_engine.analyze(str(directory), client=client, partitions=4)
    assert_equal(got, want)
    assert got.warnings == want.warnings and any("notes.txt" in w for w in got.warnings)
    assert "half_open_flood" in set(got.anomalies["kind"].astype(str))  # found after gathering


def test_each_sample_alone(client):
    for sample in sorted(SAMPLES.glob("*.pcap")):
        assert_equal(dask_engine.analyze(str(sample), client=client, partitions=2), pcapstate.analyze(sample))


# --- real processes, the command line --------------------------------------------------------


def test_worker_processes(synthetic, tmp_path):
    files = split_records(synthetic, tmp_path / "rot", 1000)
    with dask_engine.connect(workers=2, processes=True) as c:
        got = dask_engine.analyze([str(f) for f in files], client=c)
        assert len(c.scheduler_info()["workers"]) == 2
    assert dask_engine.last_stats.partitions == 2
    assert_equal(got, pcapstate.analyze(synthetic), set_columns=False)
    assert dask_engine.last_stats.shuffle_bytes > 0  # parts cut on one worker were replayed on the other


def test_cli_engine_dask_json_is_identical(synthetic, tmp_path):
    files = split_records(synthetic, tmp_path / "rot", 1500)

    def run(*extra):
        done = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", *map(str, files), "--format", "json",
                               *extra], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    single, dask = run(), run("--engine", "dask")
    assert dask == single
    assert len(json.loads(dask)["flows"]) >= 300


def test_cli_bad_files_in_a_set_are_reported_as_in_one_process(tmp_path):
    """A truncated file, a damaged one and a text file in a set: the same warnings, word for word, and the
    same tables from what could be read."""
    directory = tmp_path / "set"
    directory.mkdir()
    for sample in ("refused.pcap", "fin_dropped.pcap"):
        shutil.copy(SAMPLES / sample, directory / sample)
    (directory / "cut.pcap").write_bytes((SAMPLES / "client_closes_first.pcap").read_bytes()[:300])
    (directory / "corrupt.pcap").write_bytes(b"\xd4\xc3\xb2\xa1garbage")
    (directory / "readme.txt").write_text("hello\n")

    def run(*extra):
        done = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", str(directory), *extra],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr

    single, dask = run(), run("--engine", "dask")
    assert dask == single
    assert "readme.txt: not a pcap, pcapng or tcpdump text capture; skipped" in dask[1]
    assert dask[1].count("not a pcap") == 1 and "cut.pcap: file truncated" in dask[1]


def test_cli_parquet_is_written_by_the_workers_as_partitioned_datasets(synthetic, tmp_path):
    """``--format parquet -o DIR``: each worker writes its partition's part of every table; read back whole
    (``pandas.read_parquet`` of ``DIR/<table>.parquet``) and put in the table's order, the same rows as one
    process writes."""
    files = split_records(synthetic, tmp_path / "rot", 700)
    single, dask = tmp_path / "single", tmp_path / "dask"
    (dask / "flows.parquet").mkdir(parents=True)
    (dask / "flows.parquet" / "part-00099.parquet").write_bytes(b"a stale part of an earlier run")
    for directory, extra in ((single, ()), (dask, ("--engine", "dask"))):
        done = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", *map(str, files), "--format", "parquet",
                               "-o", str(directory), *extra], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (dask / "flows.parquet").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    order = {"flows": ["flow"], "transitions": ["flow"], "retransmissions": ["ts", "frame"],
             "retries": ["start", "flow"], "anomalies": ["kind", "ts_epoch", "flow"]}
    for name, keys in order.items():
        want = pd.read_parquet(single / f"{name}.parquet")
        got = pd.read_parquet(dask / f"{name}.parquet")
        got = got.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
        assert len(got) == len(want) > 0, name
        pd.testing.assert_frame_equal(got, want, check_categorical=False, obj=name)
    # and one process writing there afterwards replaces the datasets with its files
    done = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", *map(str, files), "--format", "parquet",
                           "-o", str(dask)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (dask / "flows.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(dask / "flows.parquet"), pd.read_parquet(single / "flows.parquet"))


def test_errors_keep_their_message_through_pickling():
    """A worker's error reaches the client pickled: its message must not be built twice."""
    import pickle

    from pcapstate.errors import FlowNotFoundError, NotACaptureError

    for error in (NotACaptureError("a.txt"), FlowNotFoundError("a.pcap", 9, 2)):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)


def test_dask_is_not_imported_by_the_cli():
    done = subprocess.run([sys.executable, "-c", "import sys; from pcapstate import cli; "
                           "print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
