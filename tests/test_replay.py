"""Every path of the state diagram, as the packet exchange that takes it.

Each test writes a capture with :mod:`builder`, analyzes it and asserts the
exact walk of both endpoints (first known state, then every state changed to),
and nothing more.
"""
from __future__ import annotations

import pytest

from builder import Talk, causes, states, write_talks
from pcapstate.analysis import analyze


def handshake(talk: Talk) -> None:
    talk.client("S")
    talk.server("S.")
    talk.client(".")


def run(tmp_path, talk: Talk, **options):
    return analyze(talk.write(tmp_path), **options)


def test_open_data_and_client_closes_first(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 10)
    talk.server(".")
    talk.server("P.", 10)
    talk.client(".")
    talk.client("F.")
    talk.server(".")
    talk.server("F.")
    talk.client(".")
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
    assert states(a, "server") == ["CLOSED", "LISTEN", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK",
                                   "CLOSED"]
    assert causes(a, "client") == ["sent", "received", "sent", "received", "received"]
    assert causes(a, "server") == ["assumed", "received", "received", "received", "sent", "received"]
    flow = a.flows.iloc[0]
    assert (flow.handshake, flow.roles_guessed, flow.packets) == ("complete", False, 11)
    assert (flow.client_state, flow.server_state) == ("TIME_WAIT", "CLOSED")


def test_inferred_transitions_name_the_packet_that_proved_them(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server(".")
    a = run(tmp_path, talk)
    t = a.transitions
    close_wait = t[(t.endpoint == "server") & (t.to_state == "CLOSE_WAIT")].iloc[0]
    assert (close_wait.frame, close_wait.evidence_frame, close_wait["flags"]) == (4, 5, "F.")
    syn_rcvd = t[t.to_state == "SYN_RCVD"].iloc[0]
    assert (syn_rcvd.frame, syn_rcvd.evidence_frame) == (1, 2)


def test_server_closes_first(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.server("F.")
    talk.client(".")
    talk.wait(2.0)  # the client lingers in CLOSE_WAIT
    talk.client("F.")
    talk.server(".")
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert states(a, "server") == ["CLOSED", "LISTEN", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                                   "TIME_WAIT"]


def test_refused_syn_answered_by_rst(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("R.", seq=0)
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert states(a, "server") == []  # no listener: it stays CLOSED, nothing assumed
    flow = a.flows.iloc[0]
    assert (flow.client_state, flow.server_state, flow.handshake) == ("CLOSED", "CLOSED", "partial")
    assert a.packets.receiver_note.tolist() == ["", "refused"]


def test_syn_never_answered(tmp_path):
    talk = Talk()
    syn = talk.client("S", lost=True)
    for delay in (1, 2, 4):
        talk.resend(syn, lost=True, after=delay)
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT"]
    assert states(a, "server") == ["CLOSED", "LISTEN"]  # as far as anyone can tell
    assert causes(a, "server") == ["assumed"]
    flow = a.flows.iloc[0]
    assert (flow.client_state, flow.server_state, flow.packets) == ("SYN_SENT", "LISTEN", 4)


def test_syn_ack_never_answered(tmp_path):
    talk = Talk()
    talk.client("S")
    synack = talk.server("S.", lost=True)
    talk.resend(synack, lost=True, after=1)
    talk.resend(synack, lost=True, after=2)
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT"]
    assert states(a, "server") == ["CLOSED", "LISTEN", "SYN_RCVD"]
    assert a.flows.iloc[0].handshake == "partial"


def test_simultaneous_open(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("S", lost=False)  # the SYNs cross
    talk.client("S.", seq=talk.client_isn)
    talk.server("S.", seq=talk.server_isn)
    talk.client(".")
    talk.server(".")
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "SYN_RCVD", "ESTABLISHED"]
    assert states(a, "server") == ["CLOSED", "SYN_SENT", "SYN_RCVD", "ESTABLISHED"]
    assert a.flows.iloc[0].handshake == "complete"


def test_simultaneous_close_goes_through_closing(tmp_path):
    talk = Talk()
    handshake(talk)
    client_fin = talk.client("F.")
    talk.server("F.", ack=client_fin.seq)  # sent before the client's FIN arrived
    talk.client(".")
    talk.server(".")
    a = run(tmp_path, talk)
    walk = ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT"]
    assert states(a, "client")[-4:] == walk
    assert states(a, "server")[-4:] == walk


def test_fin_wait_1_to_time_wait_when_the_fin_acks_ours(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")  # acknowledges the client's FIN and closes at once
    talk.client(".")
    a = run(tmp_path, talk)
    assert states(a, "client")[-3:] == ["ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT"]
    assert states(a, "server")[-4:] == ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def test_half_close_with_data_after_fin(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")  # shutdown(SHUT_WR)
    talk.server(".")
    for _ in range(3):
        talk.server("P.", 100)  # the CLOSE_WAIT side keeps sending
        talk.client(".")
    talk.server("F.")
    talk.client(".")
    a = run(tmp_path, talk)
    assert states(a, "client")[-4:] == ["ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
    assert states(a, "server")[-4:] == ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert set(a.packets.sender_note) == {""}  # normal: data from the side that did not close
    assert set(a.packets.receiver_note) == {""}


def test_data_after_own_fin_is_irregular(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server(".")
    talk.client("P.", 5)
    a = run(tmp_path, talk)
    assert a.packets.sender_note.tolist()[-1] == "data_after_fin"


@pytest.mark.parametrize("reach, before", [
    ([], "ESTABLISHED"),
    ([("client", "F."), ("server", ".")], "FIN_WAIT_2"),
])
def test_rst_from_the_server(tmp_path, reach, before):
    talk = Talk()
    handshake(talk)
    for sender, flags in reach:
        getattr(talk, sender)(flags)
    talk.server("R.")
    a = run(tmp_path, talk)
    assert states(a, "client")[-2:] == [before, "CLOSED"]
    assert states(a, "server")[-1] == "CLOSED"
    assert causes(a, "client")[-1] == "received"
    assert causes(a, "server")[-1] == "sent"


def test_rst_in_close_wait(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server(".")
    talk.server("R.")  # the server aborts instead of closing
    a = run(tmp_path, talk)
    assert states(a, "server")[-3:] == ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]
    assert states(a, "client")[-3:] == ["FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]


def test_port_reuse_after_rst_starts_a_new_connection(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("R.")
    talk.wait(1.0)
    talk.client("S", seq=0x12345678)
    talk.server("S.", seq=0x0BADBEEF)
    talk.client(".")
    a = run(tmp_path, talk)
    assert len(a.flows) == 2
    assert a.flows.packets.tolist() == [4, 3]
    assert states(a, "client", flow=1) == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert states(a, "server", flow=1) == ["CLOSED", "LISTEN", "SYN_RCVD", "ESTABLISHED"]
    assert a.flows.client_state.tolist() == ["CLOSED", "ESTABLISHED"]


def test_port_reuse_during_time_wait(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    talk.wait(5.0)  # well within 2*MSL
    talk.client("S", seq=0x22222222)
    talk.server("S.", seq=0x33333333)
    talk.client(".")
    a = run(tmp_path, talk)
    assert len(a.flows) == 2
    assert states(a, "client", flow=0)[-2:] == ["TIME_WAIT", "CLOSED"]  # the new SYN ends it
    assert a.flows.iloc[1].handshake == "complete"


def test_time_wait_ends_after_2msl_when_the_capture_lasts(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    other = Talk(client_port=40001, start=talk.start + 100)  # keeps the capture going
    other.client("S", lost=True)
    a = analyze(write_talks(tmp_path / "t.pcap", talk, other), time_wait=60.0)
    assert states(a, "client")[-2:] == ["TIME_WAIT", "CLOSED"]
    timer = a.transitions[a.transitions.cause == "timer"].iloc[0]
    entered = a.transitions[a.transitions.to_state == "TIME_WAIT"].iloc[0]
    assert timer.ts_epoch - entered.ts_epoch == pytest.approx(60.0)
    assert timer["flags"] == "" and timer.frame is pd_na()


def test_time_wait_stays_when_the_capture_ends_first(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    a = run(tmp_path, talk, time_wait=60.0)
    assert a.flows.iloc[0].client_state == "TIME_WAIT"
    assert "timer" not in set(a.transitions.cause)


def test_capture_starting_mid_connection(tmp_path):
    talk = Talk(client_port=40000, server_port=80)
    talk.server("P.", 100)  # no handshake in the capture
    talk.client(".")
    talk.client("F.")
    talk.server(".")
    a = run(tmp_path, talk)
    flow = a.flows.iloc[0]
    assert (flow.handshake, flow.roles_guessed) == ("none", True)
    assert (flow.client_port, flow.server_port) == (40000, 80)  # the lower port is the server
    assert states(a, "client") == ["?", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2"]
    assert causes(a, "client")[0] == "assumed"
    assert states(a, "server") == ["?", "ESTABLISHED", "CLOSE_WAIT"]


def test_mid_handshake_start_takes_roles_from_the_syn_ack(tmp_path):
    talk = Talk(client_port=80, server_port=40000)  # ports would guess the other way
    talk.server("S.")
    talk.client(".")
    a = run(tmp_path, talk)
    flow = a.flows.iloc[0]
    assert (flow.server_port, flow.roles_guessed, flow.handshake) == (40000, True, "partial")
    assert states(a, "client") == ["?", "SYN_SENT", "ESTABLISHED"]
    assert states(a, "server") == ["?", "SYN_RCVD", "ESTABLISHED"]


def test_capture_ending_mid_handshake(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("S.")
    a = run(tmp_path, talk)
    assert states(a, "client") == ["CLOSED", "SYN_SENT"]  # the SYN-ACK is not acknowledged in the capture
    assert states(a, "server") == ["CLOSED", "LISTEN", "SYN_RCVD"]
    assert a.flows.iloc[0].handshake == "partial"


def test_fin_never_acknowledged_leaves_the_peer_established(tmp_path):
    talk = Talk()
    handshake(talk)
    fin = talk.client("F.", lost=True)
    for delay in (0.2, 0.4, 0.8):
        talk.resend(fin, lost=True, after=delay)
    a = run(tmp_path, talk)
    assert a.flows.iloc[0].client_state == "FIN_WAIT_1"
    assert a.flows.iloc[0].server_state == "ESTABLISHED"


def test_fin_delivered_on_a_retransmission_is_dated_by_that_copy(tmp_path):
    talk = Talk()
    handshake(talk)
    fin = talk.client("F.", lost=True)
    copy = talk.resend(fin, after=0.2)
    talk.server(".")
    a = run(tmp_path, talk)
    row = a.transitions[a.transitions.to_state == "CLOSE_WAIT"].iloc[0]
    assert row.ts_epoch == pytest.approx(copy.ts)
    assert row.frame == 5


def test_ipv6_connection(tmp_path):
    talk = Talk(client_addr="2001:db8::1", server_addr="2001:db8::2")
    handshake(talk)
    talk.client("R.")
    a = run(tmp_path, talk)
    flow = a.flows.iloc[0]
    assert (flow.client_addr, flow.server_addr) == ("2001:db8::1", "2001:db8::2")
    assert (flow.client_state, flow.server_state) == ("CLOSED", "CLOSED")


def pd_na():
    import pandas as pd

    return pd.NA
