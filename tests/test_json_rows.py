"""The compiled JSON records writer prints what pandas' ``to_json`` prints, byte for byte.

pandas (``DataFrame.to_json``, :func:`pcapstate.report.jsonout.table_json`) is
the reference; the one place they differ on purpose is nanosecond timestamps,
where pandas 3 drops the last three digits and pcapstate keeps them, as its
JSON contract says (:mod:`pcapstate.report.jsonout`).
"""
from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcapstate
from pcapstate.report import json_rows
from pcapstate.report.jsonout import table_json, write_table
from synthetic import write_synthetic

REPO = Path(__file__).resolve().parent.parent
ZEEK = REPO.parent / "shared" / "conformance" / "zeek" / "traces"
TABLES = ("flows", "transitions", "retransmissions", "retries", "anomalies")


def ours(frame) -> str:
    out = io.StringIO()
    write_table(frame, out)
    return out.getvalue()


def microsecond_captures() -> list[Path]:
    found = sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".pcap", ".pcapng"))
    if ZEEK.is_dir():
        found += sorted(p for p in ZEEK.iterdir() if p.is_file())
    return found


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """benchmarks/generate.py's capture of 2,000 connections (every kind of flow and finding)."""
    return write_synthetic(tmp_path_factory.mktemp("synth") / "synth.pcap", 2000)


def test_every_table_of_every_sample_zeek_trace_and_synthetic_capture_is_pandas_bytes(synth):
    compared = 0
    for path in microsecond_captures() + [synth]:
        try:
            analysis = pcapstate.analyze(path)
        except pcapstate.errors.PcapstateError:
            continue
        for name in TABLES:
            frame = getattr(analysis, name)
            assert ours(frame) == table_json(frame), f"{path.name}: {name}"
            compared += len(frame)
    assert compared > 20000


def test_the_columnar_tables_print_as_their_dataframes_do(synth):
    """What the command line prints (Analysis.columnar, no pandas) is to_json of the documented DataFrames."""
    for path in microsecond_captures()[:20] + [synth]:
        try:
            analysis = pcapstate.analyze(path)
        except pcapstate.errors.PcapstateError:
            continue
        for name in TABLES:
            columns = analysis.columnar(name)
            assert ours(columns) == table_json(getattr(analysis, name)), f"{path.name}: {name}"


def test_json_output_never_imports_pandas():
    import subprocess
    import sys

    code = ("import sys; from pcapstate.cli import main\n"
            "try:\n    main(['analyze', sys.argv[1], '--format', 'json', '-o', '/dev/null'])\n"
            "except SystemExit:\n    pass\n"
            "print('pandas' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "samples" / "data_loss.pcap")],
                            capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_nanosecond_captures_keep_their_nanoseconds():
    analysis = pcapstate.analyze(REPO / "tests" / "data" / "formats" / "two_interfaces.pcapng")
    frame = analysis.transitions
    got, reference = json.loads(ours(frame)), json.loads(table_json(frame))
    ns = frame["ts"].astype("int64").tolist()
    assert any(v % 1000 for v in ns), "the capture has sub-microsecond times"
    for record, expected, value in zip(got, reference, ns):
        assert record["ts"] == str(np.datetime64(value, "ns")) + "Z"  # all nine digits, as in every row
        assert record["ts"][:-4] == expected["ts"][:-4]  # pandas: the same up to the microsecond
        assert {k: v for k, v in record.items() if k != "ts"} == {k: v for k, v in expected.items() if k != "ts"}


def test_floats_are_printed_as_pandas_prints_them():
    rng = random.Random(5)
    values = [0.0, -0.0, 0.5, 1.0, 123.0, 1e15, 1e16, 5e-7, 1.5e-6, 2.5e-6, 0.0000125, 0.9999995, 0.9999994,
              -0.5, -1e-7, 1795362496.9922665, 1795362496.9922675, float("nan")]
    values += [k / 1e6 + 0.5e-6 for k in range(0, 3000, 7)]  # exact halves of the last digit
    values += [rng.uniform(0, 1e-5) for _ in range(500)] + [rng.uniform(0, 100) for _ in range(500)]
    values += [rng.uniform(1.7e9, 1.9e9) for _ in range(500)] + [-rng.uniform(0, 1e6) for _ in range(200)]
    frame = pd.DataFrame({"x": values})
    assert json_rows.supported(frame)
    assert ours(frame) == table_json(frame)


def test_every_column_kind_is_pandas_bytes():
    frame = pd.DataFrame({
        "i": np.array([0, -1, 2**62, -(2**63), 9], dtype=np.int64),
        "u": np.array([0, 1, 65535, 80, 443], dtype=np.uint16),
        "n": pd.array([1, None, -3, None, 2**40], dtype="Int64"),
        "b": [True, False, True, True, False],
        "c": pd.Categorical(["a", None, "b", "a", "é"], categories=["a", "b", "é"]),
        "s": ['plain', 'quote " and \\ slash /', None, "\x01\x1f\x7f\u2028 <script>", "ünïcode"],
        "l": [[0.5, 1.0, 2.25], [], None, [1e-7], [3.0]],
        "t": pd.to_datetime([0, 1_795_362_496_992_266_000, None, 946_684_800_000_000_000, 4_102_444_800_000_000_000],
                            utc=True),
        "f": [1.5, math.nan, 0.000001, 3.0, -2.25],
    })
    assert json_rows.supported(frame)
    assert ours(frame) == table_json(frame)


def test_a_second_or_whole_part_printed_before_is_reused_only_when_it_is_the_same():
    """The printer copies the text of a time's second, or a float's whole part, when the row before had the
    same: times and floats that repeat, change, go back, carry into the next whole, or are null between."""
    ns = [1_790_000_000_000_001_000, 1_790_000_000_999_999_000, 1_790_000_001_000_000_000, 1_789_999_999_500_000_000,
          None, 1_790_000_000_000_002_000, 1_790_086_400_000_000_000, 1_790_000_000_000_000_000]
    floats = [5.9999996, 6.25, 5.5, 5.9999996, -6.5, math.nan, 6.0, 1790000000.000001, 1790000000.5, 17.0]
    frame = pd.DataFrame({"t": pd.to_datetime(ns + [None, None], utc=True), "f": floats,
                          "g": list(reversed(floats))})
    assert json_rows.supported(frame)
    assert ours(frame) == table_json(frame)


def test_values_pandas_prints_in_exponent_notation_fall_back_to_pandas():
    for value in (3e16, 1e-20):
        frame = pd.DataFrame({"x": [1.0, value]})
        assert not json_rows.supported(frame)
        assert ours(frame) == table_json(frame)


def test_rows_spanning_several_chunks(monkeypatch):
    monkeypatch.setattr(json_rows, "CHUNK_ROWS", 3)
    frame = pcapstate.analyze(REPO / "samples" / "client_closes_first.pcap").transitions
    assert len(frame) > 7
    assert ours(frame) == table_json(frame)


def test_a_real_file_gets_the_same_bytes(tmp_path):
    frame = pcapstate.analyze(REPO / "samples" / "client_closes_first.pcap").flows
    with open(tmp_path / "out.json", "w", encoding="utf-8") as handle:
        handle.write("x")
        write_table(frame, handle)
        handle.write("y")
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == "x" + table_json(frame) + "y"


def test_the_plain_python_writer_gives_the_same_bytes(monkeypatch):
    """What ``PCAPSTATE_NO_JIT=1`` runs: the same functions, uncompiled."""
    for name, value in list(vars(json_rows).items()):
        if hasattr(value, "py_func"):
            monkeypatch.setattr(json_rows, name, value.py_func)
    assert not hasattr(json_rows._write_rows, "py_func")
    analysis = pcapstate.analyze(REPO / "samples" / "client_closes_first.pcap")
    for name in ("flows", "transitions"):
        frame = getattr(analysis, name)
        assert ours(frame) == table_json(frame)
    frame = pd.DataFrame({"x": [0.5, 5e-7, 2.5e-6, 1795362496.9922665, -0.25]})
    assert ours(frame) == table_json(frame)


@pytest.mark.parametrize("rows", [0, 1])
def test_empty_and_single_row_tables(rows):
    frame = pd.DataFrame({"a": np.arange(rows, dtype=np.int64), "b": [1.25] * rows})
    assert ours(frame) == table_json(frame)
