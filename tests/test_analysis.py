"""The Python API: pcapstate.analyze() and its DataFrames, column by column."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import pcapstate
from pcapstate.analysis import STATE_DTYPE, analyze
from pcapstate.states import STATE_NAMES

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

FLOW_DTYPES = {
    "flow": "int64", "client_addr": "str", "client_port": "uint16", "server_addr": "str",
    "server_port": "uint16", "start": "datetime64[ns, UTC]", "end": "datetime64[ns, UTC]",
    "start_epoch": "float64", "end_epoch": "float64", "duration": "float64", "packets": "int64",
    "client_packets": "int64", "server_packets": "int64", "client_state": "category",
    "server_state": "category", "handshake": "category", "roles_guessed": "bool",
    "first_frame": "int64", "last_frame": "int64", "conn_state": "category", "history": "str",
    "zeek_orig": "category", "zeek_split": "bool",
}
TRANSITION_DTYPES = {
    "flow": "int64", "endpoint": "category", "ts": "datetime64[ns, UTC]", "ts_epoch": "float64",
    "frame": "Int64", "from_state": "category", "to_state": "category", "flags": "str",
    "cause": "category", "evidence_frame": "Int64",
}


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_string_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype):
        return "str"
    return str(series.dtype)


@pytest.fixture(scope="module")
def close():
    return analyze(SAMPLES / "client_closes_first.pcap")


def test_top_level_analyze_is_the_api():
    a = pcapstate.analyze(SAMPLES / "refused.pcap")
    assert isinstance(a.flows, pd.DataFrame) and isinstance(a.transitions, pd.DataFrame)


def test_flow_columns_and_dtypes(close):
    assert {c: _kind(close.flows[c]) for c in close.flows.columns} == FLOW_DTYPES


def test_transition_columns_and_dtypes(close):
    assert {c: _kind(close.transitions[c]) for c in close.transitions.columns} == TRANSITION_DTYPES


def test_states_are_ordered_categoricals_in_rfc_order(close):
    assert close.flows.client_state.dtype == STATE_DTYPE
    assert list(STATE_DTYPE.categories) == list(STATE_NAMES)
    assert STATE_NAMES[:3] == ("CLOSED", "LISTEN", "SYN_SENT") and STATE_NAMES[-1] == "LAST_ACK"


def test_flow_facts_of_the_sample(close):
    flow = close.flows.iloc[0]
    assert (flow.client_addr, flow.client_port, flow.server_addr, flow.server_port) == \
        ("10.77.0.1", 40003, "10.77.0.2", 5000)
    assert (flow.packets, flow.client_packets, flow.server_packets) == (11, 6, 5)
    assert flow.duration == pytest.approx(flow.end_epoch - flow.start_epoch)
    assert flow.start == pd.Timestamp(flow.start_epoch, unit="s", tz="UTC").round("us")


def test_transitions_are_in_time_order_per_flow(close):
    t = close.transitions
    assert t.ts.is_monotonic_increasing
    assert t.frame.dropna().between(1, 11).all()


def test_packets_table_carries_flags_flow_and_states(close):
    p = close.packets
    assert p["flags"].tolist()[:3] == ["S", "S.", "."]
    assert p.sender.tolist()[:2] == ["client", "server"]
    assert p.server_state.iloc[0] == "LISTEN"  # known once the server answered
    assert p.client_state.iloc[-1] == "TIME_WAIT" and p.server_state.iloc[-1] == "CLOSED"


def test_one_flow_slice(close):
    parts = close.flow(0)
    assert set(parts) == {"flows", "transitions", "packets", "retransmissions", "retries", "anomalies"}
    assert len(parts["packets"]) == 11


def test_accepts_a_decoded_table_and_tcpdump_text(tmp_path):
    from pcapstate.decode import read_capture

    table = read_capture(SAMPLES / "half_close.pcap")
    from_table = analyze(table)
    assert from_table.flows.client_state.tolist() == ["TIME_WAIT"]


def test_an_empty_capture_has_empty_tables():
    a = analyze(SAMPLES / "listen_no_client.pcap")
    assert a.flows.empty and a.transitions.empty
    assert list(a.flows.columns) == list(FLOW_DTYPES)


def test_time_wait_option_is_passed_through(tmp_path):
    # the client enters TIME_WAIT 28 us before the last packet of the capture
    assert analyze(SAMPLES / "client_closes_first.pcap", time_wait=20e-6).flows.client_state.tolist() == ["CLOSED"]
    assert analyze(SAMPLES / "client_closes_first.pcap", time_wait=40e-6).flows.client_state.tolist() == ["TIME_WAIT"]


@pytest.mark.parametrize("capture", [[SAMPLES / "syn_flood.pcap"],
                                     [SAMPLES / "client_closes_first.pcap", SAMPLES / "refused.pcap"]])
def test_flow_columns_are_the_whole_tables_rows_of_that_flow(capture):
    """One connection's packets are made from its rows only: they must be the packet table's rows."""
    a = analyze(capture if len(capture) > 1 else capture[0])
    for flow in range(a.connection_count):
        alone = a.flow_columns(flow)
        for name in ("flows", "transitions", "packets"):
            whole = a.columnar(name).to_pandas()
            expected = whole[whole["flow"] == flow].reset_index(drop=True)
            pd.testing.assert_frame_equal(alone[name].to_pandas(), expected, check_categorical=True)
    assert len(a.flow_columns(a.connection_count)["packets"]) == 0
    each = list(a.each_flow_columns())  # (the tables cut once, for --timeline)
    assert [flow for flow, _ in each] == list(range(a.connection_count))
    for flow, parts in each:
        for name, table in parts.items():
            pd.testing.assert_frame_equal(table.to_pandas(), a.flow_columns(flow)[name].to_pandas())


@pytest.mark.parametrize("capture", [[SAMPLES / "syn_flood.pcap"],
                                     [SAMPLES / "client_closes_first.pcap", SAMPLES / "refused.pcap"]])
def test_flow_is_each_whole_dataframe_filtered_to_the_flow_row_labels_and_all(capture):
    a = analyze(capture if len(capture) > 1 else capture[0])
    fresh = analyze(capture if len(capture) > 1 else capture[0])  # (its packet table never made whole)
    for flow in (0, a.connection_count - 1):
        for name, frame in fresh.flow(flow).items():
            whole = getattr(a, name)
            pd.testing.assert_frame_equal(frame, whole[whole["flow"] == flow], check_categorical=True)
    assert "packets" not in fresh._columnar
