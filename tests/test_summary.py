"""The terminal summary (pcapstate.report.summary) read a chunk at a time.

The summary streams: it sees each table as consecutive pieces (whole, or as
they merge from parts spilled to disk) and keeps only what it prints.  So
the same capture cut into pieces of any size must print the same lines, and
each part of the summary must say what pandas says of the whole table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcapstate.analysis import analyze
from pcapstate.columns import Table
from pcapstate.decode import read_capture
from pcapstate.report.summary import SUMMARY_TABLES, census_lines, summary_lines
from synthetic import write_synthetic

ROOT = Path(__file__).resolve().parent.parent
LOW_FLOOD = {"flood_connections": 4, "flood_sources": 3}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """300 connections of every kind the generator makes, and floods that the low limits find."""
    path = write_synthetic(tmp_path_factory.mktemp("summary") / "synth-300.pcap", 300)
    return analyze(read_capture(str(path), options=False), **LOW_FLOOD)


def in_pieces(analysis, rows: int):
    """``chunks`` for summary_lines: each table in slices of ``rows`` rows, as a merge of parts gives them."""
    def chunks(name):
        table = analysis.columnar(name)
        return [table.slice(start, min(start + rows, len(table))) for start in range(0, len(table), rows)]
    return chunks


def lines_of(analysis, chunks=None, max_rows=50) -> list[str]:
    return summary_lines(chunks or analysis.chunks, analysis.table.source, len(analysis.table), max_rows)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 11, 49, 50, 51, 1000])
def test_a_table_in_pieces_of_any_size_prints_what_the_whole_table_prints(synthetic, rows):
    assert lines_of(synthetic, in_pieces(synthetic, rows)) == lines_of(synthetic)
    assert lines_of(synthetic, in_pieces(synthetic, rows), None) == lines_of(synthetic, None, None)


@pytest.mark.parametrize("sample", ["syn_flood", "fin_dropped", "close_wait_leak", "refused"])
def test_samples_in_pieces_of_one_row(sample):
    analysis = analyze(read_capture(str(ROOT / "samples" / f"{sample}.pcap"), options=False))
    assert lines_of(analysis, in_pieces(analysis, 1)) == lines_of(analysis)


def test_the_header_counts_packets_and_connections_over_the_whole_span(synthetic):
    flows = synthetic.flows
    span = float(flows["end_epoch"].max() - flows["start_epoch"].min())
    header = lines_of(synthetic, in_pieces(synthetic, 7))[0]
    assert header.startswith(f"{synthetic.table.source}: {len(synthetic.table)} TCP packets, 300 connections, ")
    assert header.endswith(f"{int(span // 60)} min {span % 60:.1f} s")


def test_the_first_fifty_connections_are_listed_then_how_many_more(synthetic):
    lines = lines_of(synthetic, in_pieces(synthetic, 7))
    listed = [line.split()[0] for line in lines[4:4 + 50]]
    assert listed == [str(f) for f in synthetic.flows["flow"].head(50)]
    assert lines[4 + 50] == "... 250 more connections (--all shows them; --format json writes every one)"
    every = lines_of(synthetic, in_pieces(synthetic, 7), None)
    assert [line.split()[0] for line in every[4:4 + 300]] == [str(f) for f in synthetic.flows["flow"]]


def test_census_counts_state_pairs_as_pandas_groupby_does(synthetic):
    flows = synthetic.flows
    pairs = flows.groupby(["client_state", "server_state"], observed=True).size()
    expected = sorted(((c, s, n) for (c, s), n in pairs.items()),
                      key=lambda p: (-p[2], flows["client_state"].cat.categories.get_loc(p[0]),
                                     flows["server_state"].cat.categories.get_loc(p[1])))
    lines = census_lines(synthetic.columnar("flows"))
    assert lines[0] == "connections by final state"
    assert [tuple(line.split()) for line in lines[3:]] == [(c, s, str(n)) for c, s, n in expected]
    assert sum(n for _, _, n in expected) == 300 and len(expected) > 3


def test_anomalies_are_grouped_by_kind_as_pandas_groups_them(synthetic):
    lines = lines_of(synthetic, in_pieces(synthetic, 5))
    section = lines[lines.index("anomalies, worst first") + 1:]
    section = section[:section.index("")] if "" in section else section
    anomalies = synthetic.anomalies
    heads = [line for line in section if line.startswith("  ") and not line.startswith("    ")]
    groups = [(kind, group) for kind, group in anomalies.groupby("kind", observed=True, sort=True)]
    assert heads == [f"  {kind} ({len(group)})" for kind, group in groups]
    assert "half_open_flood" in {kind for kind, _ in groups}  # (a row of the whole capture, without a flow)
    for kind, group in groups:
        at = section.index(f"  {kind} ({len(group)})")
        for row, line in zip(group.head(3).itertuples(), section[at + 1:at + 4]):
            where = "capture" if pd.isna(row.flow) else f"flow {row.flow}"
            assert line == f"    {where}: {row.detail}"
        if len(group) > 3:
            flows = ", ".join(str(f) for f in group["flow"].iloc[3:].dropna().head(10))
            assert section[at + 4].startswith(f"    ... {len(group) - 3} more like these (flows {flows}")


def test_irregular_packets_are_counted_by_note_with_their_first_frames(synthetic):
    notes = synthetic.packet_notes
    lines = lines_of(synthetic, in_pieces(synthetic, 3))
    start = lines.index("packets that repeat a step or make no sense in the state they met")
    rows = [line.split(None, 3) for line in lines[start + 3:]]
    assert rows, "the synthetic capture has retransmissions: repeated steps"
    for note, role, count, frames in rows:
        mine = notes[notes[f"{role}_note"] == note]["frame"].tolist()
        assert int(count) == len(mine)
        assert frames == ", ".join(map(str, mine[:5])) + (", ..." if len(mine) > 5 else "")


def test_summary_reads_only_its_tables(synthetic):
    read = []

    def chunks(name):
        read.append(name)
        return (synthetic.columnar(name),)

    lines_of(synthetic, chunks)
    assert sorted(read) == sorted(SUMMARY_TABLES)


def test_an_empty_capture_is_one_line(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes((ROOT / "samples" / "refused.pcap").read_bytes()[:24])
    analysis = analyze(read_capture(str(path), options=False))
    assert lines_of(analysis) == [f"{path}: 0 TCP packets, 0 connections, 0.000000 s"]


def test_census_ties_go_in_the_states_rfc_order_and_unknown_states_are_left_out():
    from pcapstate.results import states
    from pcapstate.states import State

    pairs = [("TIME_WAIT", "CLOSED"), ("ESTABLISHED", "CLOSE_WAIT"), ("ESTABLISHED", "ESTABLISHED"),
             ("SYN_SENT", "CLOSED")] * 2 + [("FIN_WAIT_2", "CLOSE_WAIT")] * 3
    client = [State[c] for c, _ in pairs] + [-1]  # (a state the replay could not tell)
    server = [State[s] for _, s in pairs] + [State.CLOSED]
    n = len(client)
    flows = Table({"start_epoch": np.zeros(n), "end_epoch": np.ones(n), "roles_guessed": np.zeros(n, bool),
                   "client_state": states(np.array(client)), "server_state": states(np.array(server))})
    assert [tuple(line.split()) for line in census_lines(flows)[3:]] == [
        ("FIN_WAIT_2", "CLOSE_WAIT", "3"), ("SYN_SENT", "CLOSED", "2"), ("ESTABLISHED", "ESTABLISHED", "2"),
        ("ESTABLISHED", "CLOSE_WAIT", "2"), ("TIME_WAIT", "CLOSED", "2")]
