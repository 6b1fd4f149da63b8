"""The DataFrame API's netstat: Analysis.states_at(t), and the API's documented examples."""
from __future__ import annotations

import datetime as dt
import doctest
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcapstate
from pcapstate.analysis import STATE_DTYPE, analyze

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
COLUMNS = ["flow", "client_addr", "client_port", "server_addr", "server_port", "client_state", "server_state",
           "client_since", "server_since"]


@pytest.fixture(scope="module")
def leak():
    return analyze(SAMPLES / "close_wait_leak.pcap")


@pytest.fixture(scope="module")
def flood():
    return analyze(SAMPLES / "syn_flood.pcap")


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(c), str(s)) for c, s in zip(frame["client_state"], frame["server_state"])]


def test_inside_close_wait_leak_the_client_is_close_wait(leak):
    flows = leak.flows.iloc[0]
    fin = leak.transitions[leak.transitions["to_state"] == "CLOSE_WAIT"].iloc[0]
    middle = (fin["ts_epoch"] + flows["end_epoch"]) / 2
    now = leak.states_at(middle)
    assert now.columns.tolist() == COLUMNS
    assert pairs(now) == [("CLOSE_WAIT", "FIN_WAIT_1")]  # the server's FIN not yet acknowledged
    assert pairs(leak.states_at(flows["end"])) == [("CLOSE_WAIT", "FIN_WAIT_2")]
    assert now["client_since"].iloc[0] == fin["ts"]


def test_every_kind_of_time_gives_the_same_answer(leak):
    start = leak.flows["start"].iloc[0] + pd.Timedelta(microseconds=100)
    epoch = start.value / 1e9
    answers = [leak.states_at(t) for t in (start, start.to_pydatetime(), start.tz_localize(None).to_pydatetime(),
                                           np.datetime64(start.tz_localize(None)), start.isoformat(), epoch)]
    for answer in answers:
        assert pairs(answer) == pairs(answers[0])
    assert pairs(answers[0]) == [("ESTABLISHED", "ESTABLISHED")]
    other_zone = start.tz_convert(dt.timezone(dt.timedelta(hours=-5))).to_pydatetime()
    assert pairs(leak.states_at(other_zone)) == pairs(answers[0])


def test_a_transition_counts_from_its_own_instant(leak):
    """At the timestamp of a transition, as a Timestamp or as the table's own epoch float, it has happened."""
    for row in leak.transitions.itertuples(index=False):
        for t in (row.ts, row.ts_epoch):
            now = leak.states_at(t)
            assert str(now[f"{row.endpoint}_state"].iloc[0]) in {str(s) for s in leak.transitions[
                (leak.transitions["ts"] == row.ts) & (leak.transitions["endpoint"] == row.endpoint)]["to_state"]}


def test_before_the_first_packet_there_is_nothing(leak):
    early = leak.states_at(leak.flows["start_epoch"].iloc[0] - 0.001)
    assert early.empty and early.columns.tolist() == COLUMNS
    assert early["client_state"].dtype == STATE_DTYPE


def test_dtypes(flood):
    now = flood.states_at(flood.flows["end"].max())
    assert now["client_state"].dtype == STATE_DTYPE and now["server_state"].dtype == STATE_DTYPE
    assert str(now["client_since"].dtype) == "datetime64[ns, UTC]"
    assert now["client_port"].dtype == np.uint16 and now["flow"].dtype == np.int64


def test_the_flood_builds_up(flood):
    first = flood.flows["start"].min()
    assert len(flood.states_at(first)) == 1
    assert pairs(flood.states_at(first)) == [("SYN_SENT", "SYN_RCVD")]
    later = flood.states_at(flood.flows["start"].max())
    assert len(later) == 30 and (later["server_state"] == "SYN_RCVD").all()
    halfway = flood.flows["start"].iloc[14]
    assert len(flood.states_at(halfway)) == 15


def test_an_endpoint_without_transitions_keeps_its_final_state():
    refused = analyze(SAMPLES / "refused.pcap")
    assert refused.transitions["endpoint"].eq("client").all()  # the server had no listener: no state changes
    during = refused.states_at(refused.flows["start"].iloc[0])
    assert pairs(during) == [("SYN_SENT", "CLOSED")]
    assert pd.isna(during["server_since"].iloc[0])
    after = refused.states_at(refused.flows["end_epoch"].iloc[0] + 10)
    assert pairs(after) == [("CLOSED", "CLOSED")]
    assert refused.states_at(refused.flows["end_epoch"].iloc[0] + 10, closed=False).empty


def test_an_endpoint_before_its_first_transition_is_in_that_transitions_from_state(tmp_path):
    """A connection seen mid-stream: its state before the assumed ESTABLISHED is unknown (NaN)."""
    from builder import Talk

    talk = Talk()
    talk.client("P.", 10)
    talk.server(".")
    a = analyze(talk.write(tmp_path))
    assert a.transitions["from_state"].isna().all()
    now = a.states_at(a.flows["start"].iloc[0])
    assert pairs(now) == [("ESTABLISHED", "ESTABLISHED")]


def test_time_wait_ends_only_where_the_timer_row_is(tmp_path):
    from builder import Talk, write_talks

    closing = Talk()
    for sender, flags in (("client", "S"), ("server", "S."), ("client", "."), ("client", "F."), ("server", "F."),
                          ("client", ".")):
        getattr(closing, sender)(flags)
    later = Talk(client_port=40001, start=closing.start + 5)  # keeps the capture going 5 s longer
    later.client("S")
    path = write_talks(tmp_path / "two.pcap", closing, later)
    a = analyze(path, time_wait=2.0)
    timer = a.transitions[a.transitions["cause"] == "timer"]
    assert timer[["flow", "endpoint", "from_state", "to_state"]].astype(str).values.tolist() == [
        ["0", "client", "TIME_WAIT", "CLOSED"]]
    t = timer["ts_epoch"].iloc[0]
    assert pairs(a.states_at(t - 0.01))[0] == ("TIME_WAIT", "CLOSED")
    assert pairs(a.states_at(t))[0] == ("CLOSED", "CLOSED")
    assert a.states_at(t)["flow"].tolist() == [0]  # the second connection has not started yet
    both = a.flows["start_epoch"].iloc[1]
    assert pairs(a.states_at(both)) == [("CLOSED", "CLOSED"), ("SYN_SENT", "LISTEN")]
    assert a.states_at(both, closed=False)["flow"].tolist() == [1]  # as netstat: the closed one is gone
    kept = analyze(SAMPLES / "client_closes_first.pcap")  # 60 s: longer than the capture
    assert pairs(kept.states_at(kept.flows["end_epoch"].iloc[0] + 3600)) == [("TIME_WAIT", "CLOSED")]


def test_states_at_agrees_with_the_packet_table_after_every_packet():
    """After each packet (when no inference is pending) both views agree: a cross-check on samples."""
    for name in ("client_closes_first", "server_closes_first", "half_close", "reset_midstream"):
        a = analyze(SAMPLES / f"{name}.pcap")
        last = a.packets.iloc[-1]
        now = a.states_at(last["ts"])
        assert pairs(now) == [(str(last["client_state"]), str(last["server_state"]))], name


def test_bad_times_are_refused(leak):
    with pytest.raises(TypeError):
        leak.states_at(True)
    with pytest.raises(ValueError):
        leak.states_at("not a time")


def test_the_documented_examples_run():
    """Every example in the API docstrings (module, class, tables, flow, states_at) is run."""
    import pcapstate.analysis

    here = os.getcwd()
    os.chdir(ROOT)  # the examples use paths relative to the repository
    try:
        result = doctest.testmod(pcapstate.analysis, optionflags=doctest.NORMALIZE_WHITESPACE)
    finally:
        os.chdir(here)
    assert result.failed == 0 and result.attempted >= 12


def test_every_table_property_has_an_example():
    from pcapstate.analysis import Analysis

    for name in ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies", "flow",
                 "states_at"):
        doc = getattr(Analysis, name).__doc__
        assert doc and ">>> " in doc, name


def test_flow_slices_every_table(flood):
    parts = flood.flow(3)
    assert set(parts) == {"flows", "transitions", "packets", "retransmissions", "retries", "anomalies"}
    for name, frame in parts.items():
        assert len(frame) and (frame["flow"] == 3).all(), name
    assert len(parts["packets"]) == 5


def test_timestamps_are_aware_with_epoch_beside_them(flood):
    for name, column in (("flows", "start"), ("transitions", "ts"), ("packets", "ts"), ("retransmissions", "ts"),
                         ("anomalies", "ts")):
        frame = getattr(flood, name)
        assert str(frame[column].dtype) == "datetime64[ns, UTC]", name
        epoch = "start_epoch" if column == "start" else "ts_epoch"
        assert np.allclose(frame[column].astype("int64") / 1e9, frame[epoch], atol=1e-6), name


def test_the_api_is_reachable_from_the_package():
    assert pcapstate.analyze is analyze
