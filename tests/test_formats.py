"""--format json|jsonl|csv|parquet and -o for analyze, retries and packets: round trips, bytes, paths."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pcapstate.analysis import analyze
from command import run_pcapstate as run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ANALYZE_TABLES = ["flows", "transitions", "retransmissions", "retries", "anomalies"]


@pytest.fixture(scope="module")
def flood():
    return analyze(SAMPLES / "syn_flood.pcap")


@pytest.fixture(scope="module")
def lossy():
    return analyze(SAMPLES / "data_loss.pcap")


def restore(values: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Values read back from text (JSON or CSV) given the original's dtypes again."""
    out = pd.DataFrame(index=range(len(values)))
    for name in like.columns:
        column, dtype = values[name], like[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[name] = pd.Categorical(column.where(column.notna(), None), dtype=dtype)
        elif isinstance(dtype, pd.DatetimeTZDtype):
            out[name] = pd.to_datetime(column, utc=True, format="ISO8601").astype(dtype)
        elif name == "intervals":
            out[name] = column.map(lambda v: tuple(json.loads(v) if isinstance(v, str) else v))
        elif pd.api.types.is_bool_dtype(dtype):
            out[name] = column.map(lambda v: v in (True, "true")).astype(bool)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            out[name] = column.where(column.notna(), None).astype(object)
        else:
            out[name] = column.astype(dtype)
    return out


def assert_same(back: pd.DataFrame, original: pd.DataFrame, exact_floats: bool, empty_is_missing: bool = False):
    original = original.reset_index(drop=True)
    assert back.columns.tolist() == original.columns.tolist()
    for name in original.columns:
        got, want = back[name], original[name]
        if pd.api.types.is_object_dtype(want.dtype) or pd.api.types.is_string_dtype(want.dtype):
            if isinstance(want.dtype, pd.CategoricalDtype):
                pd.testing.assert_series_equal(got, want, check_names=False)
                continue
            clean = [None if v is None or v != v or (empty_is_missing and v == "") else v for v in want.tolist()]
            assert [None if v is None or v != v or (empty_is_missing and v == "") else v
                    for v in got.tolist()] == clean, name
            continue
        pd.testing.assert_series_equal(got, want, check_names=False, check_exact=exact_floats,
                                       rtol=0, atol=0 if exact_floats else 1e-6)


# --- round trips ------------------------------------------------------------------


def test_json_reads_back_equal_to_the_dataframes(tmp_path, flood):
    target = tmp_path / "out.json"
    run("analyze", str(SAMPLES / "syn_flood.pcap"), "--format", "json", "-o", str(target))
    document = json.loads(target.read_text())
    assert document["schema"] == "pcapstate/1"
    for name in ANALYZE_TABLES:
        original = getattr(flood, name)
        back = restore(pd.DataFrame(document[name], columns=original.columns), original)
        assert_same(back, original, exact_floats=False)  # JSON floats are rounded to microseconds


def test_jsonl_has_a_table_key_on_every_line_and_reads_back(tmp_path, lossy):
    target = tmp_path / "out.jsonl"
    run("analyze", str(SAMPLES / "data_loss.pcap"), "--format", "jsonl", "-o", str(target))
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0] == {"table": "meta", "schema": "pcapstate/1", "source": str(SAMPLES / "data_loss.pcap")}
    assert all("table" in line for line in lines)
    assert sum(1 for line in lines if line["table"] == "retransmissions") == len(lossy.retransmissions) > 0
    for name in ANALYZE_TABLES:
        original = getattr(lossy, name)
        records = [{k: v for k, v in line.items() if k != "table"} for line in lines if line["table"] == name]
        back = restore(pd.DataFrame(records, columns=original.columns), original)
        assert_same(back, original, exact_floats=False)


@pytest.mark.parametrize("sample", ["syn_flood", "data_loss", "fin_dropped"])
def test_csv_writes_one_file_per_table_that_reads_back_exactly(tmp_path, sample):
    out = tmp_path / "out"
    run("analyze", str(SAMPLES / f"{sample}.pcap"), "--format", "csv", "-o", str(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.csv" for name in ANALYZE_TABLES)
    a = analyze(SAMPLES / f"{sample}.pcap")
    for name in ANALYZE_TABLES:
        original = getattr(a, name)
        values = pd.read_csv(out / f"{name}.csv", dtype=object, keep_default_na=False,
                             na_values=[""])
        for column in values.columns:  # numbers come back as text: parse them like the original
            if pd.api.types.is_numeric_dtype(original[column].dtype) and not pd.api.types.is_bool_dtype(
                    original[column].dtype):
                values[column] = pd.to_numeric(values[column])
        assert_same(restore(values, original), original, exact_floats=True, empty_is_missing=True)


@pytest.mark.parametrize("sample", ["syn_flood", "data_loss"])
def test_parquet_reads_back_equal_with_its_dtypes(tmp_path, sample):
    out = tmp_path / "pq"
    run("analyze", str(SAMPLES / f"{sample}.pcap"), "--format", "parquet", "-o", str(out))
    a = analyze(SAMPLES / f"{sample}.pcap")
    for name in ANALYZE_TABLES:
        original = getattr(a, name).reset_index(drop=True)
        back = pd.read_parquet(out / f"{name}.parquet")
        for column in original.columns:
            if isinstance(original[column].dtype, pd.CategoricalDtype):
                if original.empty:  # parquet keeps a dictionary only with data: an empty column has no categories
                    assert isinstance(back[column].dtype, pd.CategoricalDtype), (name, column)
                    back[column] = back[column].astype(original[column].dtype)
                assert back[column].dtype == original[column].dtype, (name, column)  # categories and order too
            elif not pd.api.types.is_object_dtype(original[column].dtype):
                assert back[column].dtype == original[column].dtype, (name, column)
        if "intervals" in original:
            back["intervals"] = back["intervals"].map(tuple)
        assert_same(back, original, exact_floats=True)


def test_packets_in_every_format(tmp_path):
    capture = str(SAMPLES / "close_wait_leak.pcap")
    packets = analyze(capture).packets
    document = json.loads(run("packets", capture, "--format", "json").stdout)
    assert list(document) == ["schema", "source", "packets"]
    assert_same(restore(pd.DataFrame(document["packets"]), packets), packets, exact_floats=False)
    lines = run("packets", capture, "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 1 + len(packets) and json.loads(lines[1])["table"] == "packets"
    assert json.loads(lines[-1])["client_state"] == "CLOSE_WAIT"
    text = run("packets", capture, "--format", "csv").stdout  # one table: csv may go to standard output
    assert text.splitlines()[0].split(",") == packets.columns.tolist() and len(text.splitlines()) == 1 + len(packets)
    run("packets", capture, "--format", "parquet", "-o", str(tmp_path / "p.parquet"))
    back = pd.read_parquet(tmp_path / "p.parquet")
    assert back["flags"].tolist() == packets["flags"].tolist()
    assert back["server_state"].dtype == packets["server_state"].dtype
    run("packets", capture, "--format", "csv", "-o", str(tmp_path / "dir") + "/")
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["packets.csv"]


def test_retries_formats_and_one_flow(tmp_path, flood):
    capture = str(SAMPLES / "syn_flood.pcap")
    document = json.loads(run("retries", capture, "--format", "json", "--flow", "7").stdout)
    assert [r["flow"] for r in document["retries"]] == [7]
    assert {r["flow"] for r in document["retransmissions"]} == {7} and len(document["retransmissions"]) == 3
    run("retries", capture, "--format", "csv", "--flow", "7", "-o", str(tmp_path / "r"))
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["retransmissions.csv", "retries.csv"]
    rows = pd.read_csv(tmp_path / "r" / "retries.csv")
    assert rows["flow"].tolist() == [7] and json.loads(rows["intervals"].iloc[0]) == list(
        flood.retries[flood.retries["flow"] == 7]["intervals"].iloc[0])


def test_analyze_one_flow_in_parquet(tmp_path):
    run("analyze", str(SAMPLES / "syn_flood.pcap"), "--flow", "4", "--format", "parquet", "-o", str(tmp_path / "o"))
    assert pd.read_parquet(tmp_path / "o" / "flows.parquet")["flow"].tolist() == [4]
    assert set(pd.read_parquet(tmp_path / "o" / "transitions.parquet")["flow"]) == {4}


# --- the same bytes every time --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_output_is_byte_stable_across_runs(tmp_path, fmt):
    outputs = []
    for run_number in (1, 2):
        where = tmp_path / f"run{run_number}"
        where.mkdir()
        target = where / ("tables" if fmt in ("csv", "parquet") else f"out.{fmt}")
        run("analyze", str(SAMPLES / "data_loss.pcap"), "--format", fmt, "-o", str(target))
        outputs.append({str(f.relative_to(where)): f.read_bytes() for f in sorted(where.rglob("*")) if f.is_file()})
    assert len(outputs[0]) == (5 if fmt in ("csv", "parquet") else 1)
    assert outputs[0] == outputs[1]


def test_packets_parquet_is_byte_stable(tmp_path):
    for name in ("a.parquet", "b.parquet"):
        run("packets", str(SAMPLES / "syn_flood.pcap"), "--format", "parquet", "-o", str(tmp_path / name))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


# --- where output goes, and what is refused ---------------------------------------------


def test_output_goes_only_where_asked(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "csv", "-o", "tables", cwd=work)
    run("packets", str(SAMPLES / "fin_dropped.pcap"), "--format", "jsonl", "-o", "p.jsonl", cwd=work)
    run("retries", str(SAMPLES / "fin_dropped.pcap"), "--format", "json", cwd=work)  # standard output
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == [
        "p.jsonl", "tables", *sorted(f"tables/{n}.csv" for n in ANALYZE_TABLES)]


@pytest.mark.parametrize("args, message", [
    (["analyze", "--format", "csv"], "--format csv needs -o with a directory for its 5 tables"),
    (["analyze", "--format", "parquet"], "--format parquet needs -o with a directory"),
    (["packets", "--format", "parquet"], "--format parquet needs -o with a file (packets)"),
    (["retries", "--format", "parquet", "--flow", "9"], "no flow 9 (the capture has flows 0 to 0)"),
])
def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path, args, message):
    result = run(args[0], str(SAMPLES / "fin_dropped.pcap"), *args[1:], check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_several_tables_into_an_existing_file_is_refused(tmp_path):
    existing = tmp_path / "flows.csv"
    existing.write_text("mine\n")
    result = run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "csv", "-o", str(existing), check=False)
    assert result.returncode == 2 and "not a directory" in result.stderr and len(result.stderr.splitlines()) == 1
    assert existing.read_text() == "mine\n"


def test_json_into_a_directory_is_refused(tmp_path):
    result = run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "json", "-o", str(tmp_path), check=False)
    assert result.returncode == 2 and "is a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_directory_whose_parent_is_missing_is_one_line(tmp_path):
    result = run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "csv", "-o",
                 str(tmp_path / "no" / "such"), check=False)
    assert result.returncode == 2 and result.stderr.startswith("pcapstate: error:")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "no").exists()


def test_unknown_format_is_a_usage_error():
    result = run("packets", str(SAMPLES / "refused.pcap"), "--format", "xml", check=False)
    assert result.returncode == 2 and "'xml' is not one of" in result.stderr


def test_table_format_still_writes_text_to_a_file(tmp_path):
    run("packets", str(SAMPLES / "refused.pcap"), "-o", str(tmp_path / "p.txt"))
    assert (tmp_path / "p.txt").read_text() == run("packets", str(SAMPLES / "refused.pcap")).stdout
    run("retries", str(SAMPLES / "fin_dropped.pcap"), "-o", str(tmp_path / "r.txt"))
    assert "linear-then-doubling" in (tmp_path / "r.txt").read_text()


def test_one_decorator_gives_the_three_commands_the_same_options():
    from pcapstate.cli import cli

    def options(name):
        return {tuple(p.opts): (getattr(p.type, "choices", None), p.default, p.help)
                for p in cli.commands[name].params if p.name in ("fmt", "output")}

    assert options("analyze") == options("retries") == options("packets")
    assert options("packets")[("--format",)][0] == ("table", "json", "jsonl", "csv", "parquet")


def test_the_packets_table_path_imports_neither_matplotlib_nor_pyarrow():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", "packets",
                             str(SAMPLES / "refused.pcap")], capture_output=True, text=True)
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "pcapstate.cli" in imported  # the check looks at the right thing
    assert not {m for m in imported if m.split(".")[0] in ("matplotlib", "pyarrow", "pandas")}


def _outs(tmp_path):
    """Every kind of text output a table printed ahead is copied into: in memory, a text layer over
    bytes in memory (no file descriptor), a real file."""
    import io

    real = open(tmp_path / "real.json", "w", encoding="utf-8")
    return {"text": io.StringIO(), "bytes": io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), "file": real}


def _written(out, tmp_path) -> str:
    import io

    out.flush()
    if isinstance(out, io.StringIO):
        return out.getvalue()
    if isinstance(out.buffer, io.BytesIO):
        return out.buffer.getvalue().decode("utf-8")
    out.close()
    return (tmp_path / "real.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("sendfile_fails", [False, True])
def test_a_table_printed_ahead_is_copied_out_whole_after_what_was_written(tmp_path, monkeypatch, sendfile_fails):
    """jsonout._copy_out: the file's text after what the text layer still holds, into every kind of
    output; where the kernel cannot send it (os.sendfile fails at once), by copying."""
    import errno
    import os

    from pcapstate.report import jsonout

    if sendfile_fails:
        def unsupported(*args):
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(os, "sendfile", unsupported)
    printed = tmp_path / "rows.printed"
    text = '{"flow":0,"note":"é ✓ \\u2028"},' * 50_000  # several blocks of the copy, multi-byte characters
    printed.write_text(text, encoding="utf-8")
    for kind, out in _outs(tmp_path).items():
        out.write("[before")
        jsonout._copy_out(printed, out)
        out.write("after]")
        assert _written(out, tmp_path) == "[before" + text + "after]", kind
