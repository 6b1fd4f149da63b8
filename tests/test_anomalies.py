"""Anomaly flags on the exchanges that produce them (flow, endpoint, frame, the sentence's numbers; the
builder's clock steps 10 ms per packet unless told otherwise), thresholds, table order, real samples."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from builder import Talk, write_talks
from pcapstate.analysis import analyze
from pcapstate.findings.anomalies import Kind

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def say(talk: Talk, *packets: str) -> Talk:
    """Plain packets in capture order: "client F.", "server P. 10" (10 bytes of data)."""
    for packet in packets:
        sender, flags, *data = packet.split()
        getattr(talk, sender)(flags, int(data[0]) if data else 0)
    return talk


def handshake(talk: Talk) -> Talk:
    return say(talk, "client S", "server S.", "client .")


def run(tmp_path, *talks: Talk, **thresholds):
    return analyze(write_talks(tmp_path / "t.pcap", *talks), **thresholds)


def kinds(analysis) -> set[str]:
    return set(analysis.anomalies.kind.astype(str))


def one(analysis, kind: str) -> pd.Series:
    rows = analysis.anomalies[analysis.anomalies.kind == kind]
    assert len(rows) == 1, analysis.anomalies[["flow", "kind", "frame", "detail"]]
    return rows.iloc[0]


def check(row: pd.Series, flow: int | None, endpoint: str | None, frame: int, *phrases: str) -> None:
    """flow None: capture-wide (<NA>); endpoint None: the whole connection (NaN)."""
    assert pd.isna(row.flow) if flow is None else row.flow == flow
    assert pd.isna(row.endpoint) if endpoint is None else row.endpoint == endpoint
    assert row.frame == frame
    for phrase in phrases:
        assert phrase in row.detail


def half_open(index: int, source: int, start: float) -> Talk:
    """A forged SYN: the server answers and retries its SYN-ACK; the source never replies."""
    talk = say(Talk(client_addr=f"10.0.1.{source}", client_port=20000 + index, start=start), "client S")
    synack = talk.server("S.", lost=True)
    talk.resend(synack, lost=True, after=1.0)
    talk.resend(synack, lost=True, after=2.0)
    return talk


def flood(count: int, sources: int, spacing: float) -> list[Talk]:
    return [half_open(i, 1 + i % sources, 1_700_000_000.0 + i * spacing) for i in range(count)]


def test_clean_connection_has_no_anomalies(tmp_path):
    talk = say(handshake(Talk()), "client P. 10", "server .", "server P. 10", "client .",
               "client F.", "server .", "server F.", "client .")
    assert run(tmp_path, talk).anomalies.empty


def test_refused_connection_has_only_connection_refused(tmp_path):
    talk = say(Talk(), "client S")
    talk.server("R.", seq=0)
    assert kinds(run(tmp_path, talk)) == {"connection_refused"}


# --- the opening
def test_connection_refused(tmp_path):
    talk = say(Talk(), "client S")
    talk.server("R.", seq=0, after=0.25)
    check(one(run(tmp_path, talk), "connection_refused"), 0, "client", 2,
          "10.0.0.1:40000's SYN was answered by RST 250.000 ms later", "nothing listens on 10.0.0.2:80")


def test_syn_unanswered_counts_the_syns_and_their_backoff(tmp_path):
    talk = Talk()
    syn = talk.client("S", lost=True)
    for delay in (1, 1, 1, 2, 4):  # Linux 6.x: linear, then doubling
        talk.resend(syn, lost=True, after=delay)
    check(one(run(tmp_path, talk), "syn_unanswered"), 0, "client", 1,
          "6 SYNs over 9.00 s (intervals 1.00, 1.00, 1.00, 2.00, 4.00 s: linear-then-doubling) to 10.0.0.2:80")


def test_synack_unanswered(tmp_path):
    talk = Talk()
    talk.client("S")
    synack = talk.server("S.", lost=True)
    for delay in (1, 2, 4):
        talk.resend(synack, lost=True, after=delay)
    check(one(run(tmp_path, talk), "synack_unanswered"), 0, "server", 2,
          "4 SYN-ACKs over 7.00 s (intervals 1.00, 2.00, 4.00 s: doubling)", "(SYN_RCVD)")


def test_half_open_flood_is_capture_wide(tmp_path):
    a = run(tmp_path, *flood(20, sources=20, spacing=0.1))
    check(one(a, "half_open_flood"), None, "server", 1,
          "20 half-open connections to 10.0.0.2:80 from 20 sources within 1.90 s (flows 0, 1, 2, 3, 4 and 15 more)")
    assert (a.anomalies.kind == "synack_unanswered").sum() == 20


def unanswered_syn(index: int, source: int, start: float) -> Talk:
    """A client whose SYN and its retry get no answer at all: the server never shows up."""
    talk = Talk(client_addr=f"10.0.1.{source}", client_port=20000 + index, start=start)
    syn = talk.client("S", lost=True)
    talk.resend(syn, lost=True, after=1.0)
    return talk


def test_a_flood_of_unanswered_syns_is_a_half_open_flood(tmp_path):
    """A server overwhelmed into silence answers none of the SYNs: still a flood, said as such."""
    talks = [unanswered_syn(i, 1 + i % 12, 1_700_000_000.0 + i * 0.1) for i in range(24)]
    a = run(tmp_path, *talks)
    check(one(a, "half_open_flood"), None, "server", 1,
          "24 half-open connections to 10.0.0.2:80 from 12 sources within 2.30 s",
          "24 of the SYNs never answered: a SYN flood, or a service that stopped answering")
    assert (a.anomalies.kind == "syn_unanswered").sum() == 24


def test_a_few_unanswered_syns_are_no_flood(tmp_path):
    talks = [unanswered_syn(i, 1 + i % 12, 1_700_000_000.0 + i * 0.1) for i in range(19)]
    assert "half_open_flood" not in kinds(run(tmp_path, *talks))


@pytest.mark.parametrize("count, sources, spacing, options, reported", [
    (20, 20, 0.1, {}, True),
    (19, 19, 0.1, {}, False),  # too few connections
    (20, 9, 0.1, {}, False),  # too few source addresses
    (20, 20, 1.0, {}, False),  # spread over 19 s: at most 11 within the 10 s window
    (5, 5, 0.1, {"flood_connections": 5, "flood_sources": 5}, True),
    (20, 9, 0.1, {"flood_sources": 9}, True),
    (20, 20, 1.0, {"flood_window": 19.0}, True),
])
def test_half_open_flood_thresholds_are_options(tmp_path, count, sources, spacing, options, reported):
    a = run(tmp_path, *flood(count, sources, spacing), **options)
    assert ("half_open_flood" in kinds(a)) == reported


def test_simultaneous_open(tmp_path):
    talk = say(Talk(), "client S", "server S")  # the SYNs cross
    talk.client("S.", seq=talk.client_isn)
    talk.server("S.", seq=talk.server_isn)
    say(talk, "client .", "server .")
    check(one(run(tmp_path, talk), "simultaneous_open"), 0, None, 2, "both endpoints sent a SYN")


def test_no_handshake_in_mid_connection_capture(tmp_path):
    talk = say(Talk(client_isn=1000, server_isn=5000),  # the capture starts at the data
               "server P. 100", "client .", "client F.", "server F.", "client .")
    a = run(tmp_path, talk)
    assert kinds(a) == {"no_handshake"}
    check(one(a, "no_handshake"), 0, None, 1, "the capture began mid-connection")


def test_no_handshake_when_the_capture_starts_at_the_syn_ack(tmp_path):
    talk = Talk(client_isn=999)
    talk.server("S.", ack=1000)  # the client's SYN came before the capture
    talk.client(".", seq=1000)
    check(one(run(tmp_path, talk), "no_handshake"), 0, None, 1, "the capture began mid-handshake")


def test_port_reuse(tmp_path):
    talk = say(handshake(Talk()), "client F.", "server F.", "client .")  # the client is in TIME_WAIT
    talk.wait(5.0)
    talk.client("S", seq=0x22222222)  # frame 7
    talk.server("S.", seq=0x33333333)
    talk.client(".")
    check(one(run(tmp_path, talk), "port_reuse"), 1, "client", 7,
          "reuses the 4-tuple of flow 0 5.01 s after its last packet (client/server were TIME_WAIT/CLOSED)")


# --- the closing
def test_fin_unacked(tmp_path):
    talk = handshake(Talk())
    fin = talk.client("F.", lost=True)
    for delay in (0.2, 0.4, 0.8, 1.6):
        talk.resend(fin, lost=True, after=delay)
    check(one(run(tmp_path, talk), "fin_unacked"), 0, "client", 4,
          "in FIN_WAIT_1 sent 5 FINs over 3.00 s (intervals 0.20, 0.40, 0.80, 1.60 s: doubling)",
          "the peer is ESTABLISHED")


def last_fin_lost() -> Talk:
    talk = say(handshake(Talk()), "client F.", "server .")  # frame 5: the client enters FIN_WAIT_2
    fin = talk.server("F.", lost=True)
    for delay in (0.2, 0.4, 0.8):
        talk.resend(fin, lost=True, after=delay)
    return talk


def test_last_ack_unacked(tmp_path):
    check(one(run(tmp_path, last_fin_lost()), "last_ack_unacked"), 0, "server", 6,
          "in LAST_ACK sent 4 FINs over 1.40 s (intervals 0.20, 0.40, 0.80 s: doubling)", "the peer is FIN_WAIT_2")


def test_stuck_close_wait_at_the_end_is_reported_however_short(tmp_path):
    talk = say(handshake(Talk()), "server F.", "client .")  # frame 4: the client enters CLOSE_WAIT
    talk.client("P.", 5, after=1.0)  # the client keeps sending but never closes
    talk.server(".")
    a = run(tmp_path, talk, stuck_after=100.0)
    check(one(a, "stuck_close_wait"), 0, "client", 4,
          "was still in CLOSE_WAIT at the last packet of the capture, 1.02 s after entering it",
          "the application never called close()")


@pytest.mark.parametrize("linger, options, reported", [
    (6.0, {}, "6.02 s"),  # longer than stuck_after (5 s)
    (2.0, {}, None),
    (2.0, {"stuck_after": 1.0}, "2.02 s"),
])
def test_stuck_close_wait_that_closes_late(tmp_path, linger, options, reported):
    talk = say(handshake(Talk()), "server F.", "client .")
    talk.wait(linger)
    say(talk, "client F.", "server .")
    a = run(tmp_path, talk, **options)
    if reported is None:
        assert a.anomalies.empty
    else:
        check(one(a, "stuck_close_wait"), 0, "client", 4, f"stayed in CLOSE_WAIT {reported} before leaving it")


def test_stuck_fin_wait_2(tmp_path):
    talk = say(handshake(Talk()), "client F.", "server .")  # frame 5: the client enters FIN_WAIT_2
    talk.wait(8.0)
    say(talk, "server F.", "client .")
    check(one(run(tmp_path, talk), "stuck_fin_wait_2"), 0, "client", 5, "stayed in FIN_WAIT_2 8.01 s before leaving it")


def test_stuck_fin_wait_2_blames_the_lost_fin_not_the_peer(tmp_path):
    row = one(run(tmp_path, last_fin_lost()), "stuck_fin_wait_2")
    check(row, 0, "client", 5, "still in FIN_WAIT_2 at the last packet of the capture, 1.41 s",
          "the peer's FIN (in the capture) was lost on the way")


def test_simultaneous_close(tmp_path):
    talk = handshake(Talk())
    fin = talk.client("F.")  # frame 4
    talk.server("F.", ack=fin.seq)  # sent before the client's FIN arrived
    say(talk, "client .", "server .")
    check(one(run(tmp_path, talk), "simultaneous_close"), 0, None, 4, "both endpoints sent a FIN")


def test_rst_midstream(tmp_path):
    talk = say(handshake(Talk()), "client P. 100", "server .")
    talk.server("R.", after=0.51)
    check(one(run(tmp_path, talk), "rst_midstream"), 0, "server", 6,
          "10.0.0.2:80 reset the open connection 550.000 ms after it began")


def test_rst_after_fin(tmp_path):
    talk = say(handshake(Talk()), "client F.", "server .", "server R.")  # aborts instead of closing
    a = run(tmp_path, talk)
    assert "rst_midstream" not in kinds(a)
    check(one(a, "rst_after_fin"), 0, "server", 6, "10.0.0.2:80 sent RST after the connection had begun closing")


def test_open_at_end(tmp_path):
    talk = say(handshake(Talk()), "client P. 10", "server .")  # frame 5, then this connection goes quiet
    later = say(handshake(Talk(client_port=40001, start=talk.start + 2)), "client F.", "server F.", "client .")
    check(one(run(tmp_path, talk, later), "open_at_end"), 0, None, 5,
          "client ESTABLISHED, server ESTABLISHED; last packet 2.01 s before the end")


# --- irregular packets
def test_zero_window(tmp_path):
    talk = say(handshake(Talk()), "client P. 100")
    talk.server(".", window=0)
    talk.server(".", window=0, after=0.3)
    talk.server(".", after=0.3)
    check(one(run(tmp_path, talk), "zero_window"), 0, "server", 5, "advertised a zero window 2 times (frames 5, 6)")


def test_data_after_fin(tmp_path):
    talk = say(handshake(Talk()), "client F.", "server .", "client P. 5", "client P. 5")
    check(one(run(tmp_path, talk), "data_after_fin"), 0, "client", 6, "after its own FIN (2 packets: frames 6, 7)")


def test_data_sent_before_the_fin_and_resent_after_it_is_not_data_after_fin(tmp_path):
    talk = handshake(Talk())
    data = talk.client("P.", 100, lost=True)
    fin = talk.client("F.", lost=True)
    talk.resend(data, after=0.2)  # a retransmission of old data, behind the FIN
    talk.resend(fin)
    say(talk, "server .", "server F.", "client .")
    assert "data_after_fin" not in kinds(run(tmp_path, talk))


def test_invalid_flags(tmp_path):
    talk = say(handshake(Talk()), "client FS", "client none")  # SYN+FIN, no flag at all
    check(one(run(tmp_path, talk), "invalid_flags"), 0, "client", 4, "(2 packets: frames 4, 5)")


def test_ack_unseen_data(tmp_path):
    talk = handshake(Talk())
    unseen = talk.client("P.", 100)
    talk.packets.remove(unseen)  # sent and received, but missing from the capture
    talk.server(".")  # frame 4 acknowledges it
    check(one(run(tmp_path, talk), "ack_unseen_data"), 0, "server", 4,
          "acknowledged data the capture never showed", "(1 packet: frame 4)")


# --- the table
def test_table_is_sorted_worst_first_with_capture_wide_findings_flowless(tmp_path):
    quiet = handshake(Talk(client_addr="10.0.2.1", start=1_699_999_990.0))  # open at the end, first in time
    refused = say(Talk(client_addr="10.0.2.2", start=1_700_000_005.0), "client S")
    refused.server("R.", seq=0)
    table = run(tmp_path, quiet, refused, *flood(20, sources=20, spacing=0.1)).anomalies
    assert table.kind.cat.ordered and list(table.kind.cat.categories) == [k.name for k in sorted(Kind)]
    assert table.kind.cat.codes.is_monotonic_increasing
    assert table.kind.iloc[0] == "half_open_flood" and table.kind.iloc[-1] == "open_at_end"
    assert str(table.flow.dtype) == "Int64"
    assert table[table.flow.isna()].kind.tolist() == ["half_open_flood"]


# --- the real samples: what each was made to show, checked against samples/README.md and its kernel.json
SAMPLE_KINDS = {
    "client_closes_first": set(), "listen_no_client": set(),
    "server_closes_first": set(),  # 2 s in CLOSE_WAIT: under stuck_after
    "half_close": set(),  # data from the CLOSE_WAIT side is normal
    "data_loss": set(),  # drops are after the capture point: retransmissions, but nothing stuck
    "refused": {"connection_refused"},
    "syn_dropped": {"syn_unanswered"},
    "synack_dropped": {"synack_unanswered"},
    "syn_flood": {"half_open_flood", "synack_unanswered"},
    "fin_dropped": {"fin_unacked", "open_at_end"},  # the server stays ESTABLISHED
    "last_fin_dropped": {"last_ack_unacked", "stuck_fin_wait_2", "open_at_end"},  # client: orphaned FIN_WAIT_2
    "close_wait_leak": {"stuck_close_wait", "stuck_fin_wait_2", "open_at_end"},
    "reset_midstream": {"rst_midstream"},
    "simultaneous_close": {"simultaneous_close"},
    "simultaneous_open": {"simultaneous_open"},
}


def test_every_sample_is_listed():
    assert {p.stem for p in SAMPLES.glob("*.pcap")} == set(SAMPLE_KINDS)


@pytest.mark.parametrize("name", sorted(SAMPLE_KINDS))
def test_sample_shows_its_anomaly(name):
    assert kinds(analyze(SAMPLES / f"{name}.pcap")) == SAMPLE_KINDS[name]


@pytest.mark.parametrize("name, kind, label, event, per_flow", [
    ("syn_dropped", "syn_unanswered", "SYNs", "tcp_retransmit_skb", 1),
    ("synack_dropped", "synack_unanswered", "SYN-ACKs", "tcp_retransmit_synack", 1),
    ("syn_flood", "synack_unanswered", "SYN-ACKs", "tcp_retransmit_synack", 30),
    ("fin_dropped", "fin_unacked", "FINs", "tcp_retransmit_skb", 1),
    ("last_fin_dropped", "last_ack_unacked", "FINs", "tcp_retransmit_skb", 1),
])
def test_sample_send_counts_match_the_kernels_retransmissions(name, kind, label, event, per_flow):
    kernel = json.loads((SAMPLES / f"{name}.kernel.json").read_text())
    retransmissions = sum(e["event"] == event for e in kernel["tcp_events"]) // per_flow
    rows = analyze(SAMPLES / f"{name}.pcap").anomalies
    details = rows[rows.kind == kind].detail
    assert len(details) == per_flow
    assert all(f" sent {1 + retransmissions} {label} over " in d for d in details)


def test_syn_flood_sample_counts_its_sources():
    kernel = json.loads((SAMPLES / "syn_flood.kernel.json").read_text())
    sources = {s["remote"].split(":")[0] for s in kernel["untraced_sockets"]}
    row = one(analyze(SAMPLES / "syn_flood.pcap"), "half_open_flood")
    check(row, None, "server", 1, f"{len(sources)} half-open connections to 10.77.0.2:5000 from {len(sources)} sources")
