"""The Zeek summary (:mod:`pcapstate.zeek`) on small exchanges, one per rule.

Each test writes a capture with :mod:`builder` (client 10.0.0.1:40000, server
10.0.0.2:80, a likely server port) and checks ``conn_state`` and ``history``
as Zeek's conn.log would give them, worked out from Zeek's source (see the
module docstrings).  The conformance test checks the same code against Zeek's
own baselines.
"""
from __future__ import annotations

import dpkt
import numpy as np
import pytest

from builder import Talk, write_pcap
from pcapstate.analysis import analyze
from pcapstate.zeek import CONN_STATES, LIKELY_SERVER_PORTS, ZeekState, conn_state, zeek_summary


def handshake(talk: Talk) -> None:
    talk.client("S")
    talk.server("S.")
    talk.client(".")


def summary(tmp_path, talk: Talk, **options) -> dict:
    return zeek_summary(analyze(talk.write(tmp_path)).tracking, **options)


def zeek(tmp_path, talk: Talk, flow: int = 0, **options) -> tuple[str, str | None]:
    result = summary(tmp_path, talk, **options)
    return result["conn_state"][flow], result["history"][flow]


# --- every conn_state -------------------------------------------------------------


def test_s0_attempt_without_reply(tmp_path):
    talk = Talk()
    syn = talk.client("S")
    talk.resend(syn, after=1.0)  # the same sequence number adds no letter
    assert zeek(tmp_path, talk) == ("S0", "S")


def test_s1_established_and_still_open(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 10)
    talk.server(".")
    assert zeek(tmp_path, talk) == ("S1", "ShADa")


def test_sf_normal_open_and_close(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 10)
    talk.server(".")
    talk.server("P.", 20)
    talk.client(".")
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0]) == ("SF", "ShADadFf")
    assert (result["orig_bytes"][0], result["resp_bytes"][0]) == (10, 20)
    assert (result["orig_pkts"][0], result["resp_pkts"][0]) == (6, 4)
    assert bool(result["orig_is_client"][0])
    # packets every 10 ms; the last ACK, after both FINs, adds no time to Zeek's duration
    assert result["duration"][0] == pytest.approx(0.08)


def test_rej_syn_answered_by_rst(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("R.", ack=talk.client_isn + 1)
    assert zeek(tmp_path, talk) == ("REJ", "Sr")


def test_s2_only_the_originator_closed(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server(".")
    assert zeek(tmp_path, talk) == ("S2", "ShAFa")


def test_s3_only_the_responder_closed(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.server("F.")
    talk.client(".")
    assert zeek(tmp_path, talk) == ("S3", "ShAf")


def test_rsto_originator_aborts(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 5)
    talk.client("R.")
    assert zeek(tmp_path, talk) == ("RSTO", "ShADR")


def test_rstr_responder_aborts(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 5)
    talk.server("R.")
    assert zeek(tmp_path, talk) == ("RSTR", "ShADr")


def test_rstos0_syn_then_rst_without_reply(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.client("R")
    assert zeek(tmp_path, talk) == ("RSTOS0", "SR")


def test_rstrh_syn_ack_then_rst_no_syn_seen(tmp_path):
    talk = Talk()
    talk.server("S.")  # from port 80: Zeek makes the client the originator (^)
    talk.server("R")
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0]) == ("RSTRH", "^hr")
    assert bool(result["orig_is_client"][0])


def test_sh_syn_then_fin_without_reply(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.client("F")
    assert zeek(tmp_path, talk) == ("SH", "SF")


def test_shr_syn_ack_then_fin_no_syn_seen(tmp_path):
    talk = Talk()
    talk.server("S.")
    talk.server("F.")
    assert zeek(tmp_path, talk) == ("SHR", "^hf")


def test_oth_midstream_traffic_never_closed(tmp_path):
    talk = Talk()
    talk.client("P.", 10)
    talk.server(".")
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0]) == ("OTH", "Da")
    assert bool(result["orig_is_client"][0])


def test_every_code_has_a_test():
    names = {name.split("_")[1] for name in globals() if name.startswith("test_") and name.count("_") > 1}
    assert {code.lower() for code in CONN_STATES} <= names


# --- conn_state's order of decisions ----------------------------------------------


def test_conn_state_rules():
    z = ZeekState
    assert conn_state(z.RESET, z.RESET, 0, 0, "ShRr") == "REJ"  # both reset, no payload
    assert conn_state(z.RESET, z.RESET, 5, 0, "ShDRr") == "RSTR"
    assert conn_state(z.RESET, z.INACTIVE, 0, 0, "^SR") == "RSTOS0"
    assert conn_state(z.RESET, z.INACTIVE, 0, 0, "SAR") == "OTH"  # an originator ACK: not RSTOS0
    assert conn_state(z.SYN_ACK_SENT, z.INACTIVE, 0, 0, "H") == "OTH"
    assert conn_state(z.CLOSED, z.PARTIAL, 0, 0, "DdF") == "SH"


# --- history letters ----------------------------------------------------------------


def test_direction_from_the_server_port_when_the_syn_is_missing(tmp_path):
    talk = Talk()
    talk.server("P.", 10)  # the first packet comes from port 80
    talk.client(".")
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0]) == ("OTH", "^dA")
    assert bool(result["orig_is_client"][0])
    plain = summary(tmp_path, talk, likely_server_ports=())
    assert (plain["history"][0], bool(plain["orig_is_client"][0])) == ("Da", False)


def test_syn_answering_a_syn_ack_seen_first_flips_the_roles(tmp_path):
    talk = Talk(server_port=5555)  # not a likely server port: no flip on creation
    synack = talk.server("S.", seq=talk.server_isn, ack=talk.client_isn + 1)
    talk.client("S", seq=talk.client_isn, at=synack.ts + 0.001)
    talk.client(".", seq=talk.client_isn + 1, ack=talk.server_isn + 1)
    result = summary(tmp_path, talk)
    # the SYN's letter is written before the flip it causes: still the responder's s
    assert (result["conn_state"][0], result["history"][0]) == ("S1", "Hs^A")
    assert bool(result["orig_is_client"][0])


def test_syn_ack_resent_adds_no_letter(tmp_path):
    talk = Talk()
    talk.client("S")
    synack = talk.server("S.")
    talk.resend(synack)
    # a SYN-ACK with a new number restarts the responder's numbering: still no letter
    talk.server("S.", seq=talk.server_isn + 1000)
    talk.client(".", ack=talk.server_isn + 1001)
    assert zeek(tmp_path, talk) == ("S1", "ShA")


def test_fin_repeats_only_with_a_new_sequence_number(tmp_path):
    talk = Talk()
    handshake(talk)
    fin = talk.client("F.")
    talk.resend(fin)
    talk.resend(fin)
    assert zeek(tmp_path, talk) == ("S2", "ShAF")
    talk.client("F.", seq=fin.seq + 5)
    assert zeek(tmp_path, talk) == ("S2", "ShAFF")


def test_rst_repeats_with_a_new_sequence_number(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.server("R.")
    talk.server("R.", seq=talk.server_isn + 500)
    talk.server("R.", seq=talk.server_isn + 500)
    assert zeek(tmp_path, talk) == ("RSTR", "ShArr")


def test_ack_and_data_letters_once_per_direction(tmp_path):
    talk = Talk()
    handshake(talk)
    for _ in range(3):
        talk.client("P.", 10)
        talk.server(".")
        talk.server("P.", 10)
        talk.client(".")
    assert zeek(tmp_path, talk) == ("S1", "ShADad")


@pytest.mark.parametrize("resends, letters", [(1, "T"), (9, "T"), (10, "TT")])
def test_retransmissions_are_logarithmic(tmp_path, resends, letters):
    talk = Talk()
    handshake(talk)
    data = talk.client("P.", 100)
    for _ in range(resends):
        talk.resend(data)
    assert zeek(tmp_path, talk) == ("S1", "ShAD" + letters)


def test_zero_window(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 10)
    talk.server(".", window=0)
    talk.server(".", window=0)
    assert zeek(tmp_path, talk) == ("S1", "ShADaw")


def test_multi_flag_and_inconsistent_packets(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("SF", seq=talk.client_isn)  # SYN with FIN: Q (a SYN with a new number would start a new connection)
    talk.server("FR.")  # FIN with RST: I
    assert zeek(tmp_path, talk) == ("RSTR", "ShAQi")


def test_content_gap(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 100)
    missing = talk.client("P.", 100)
    talk.client("P.", 100)
    talk.server(".")  # acknowledges all 300 bytes
    talk.packets.remove(missing)  # the capture never saw the middle segment
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0]) == ("S1", "ShADaG")
    assert result["missed_bytes"][0] == 100


# --- checksums ------------------------------------------------------------------------


def corrupt_tcp_checksum(frame: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    eth.data.data.sum ^= 0x5555
    return bytes(eth)


def test_bad_checksum_is_c_and_the_packet_is_dropped(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("P.", 10)
    talk.server(".")
    frames = talk.frames()
    frames[2] = (frames[2][0], corrupt_tcp_checksum(frames[2][1]))  # the client's handshake ACK
    frames[4] = (frames[4][0], corrupt_tcp_checksum(frames[4][1]))  # the server's ACK
    tracking = analyze(write_pcap(tmp_path / "bad.pcap", frames)).tracking
    assert bool(tracking.table["bad_checksum"][2]) and not tracking.table["bad_checksum"][3]
    result = zeek_summary(tracking)
    assert (result["conn_state"][0], result["history"][0]) == ("S1", "ShCDc")
    assert (result["orig_pkts"][0], result["resp_pkts"][0]) == (2, 1)
    ignored = zeek_summary(tracking, validate_checksums=False)  # zeek -C
    assert (ignored["history"][0], ignored["orig_pkts"][0]) == ("ShADa", 3)


# --- where Zeek ends a connection ---------------------------------------------------------


def test_syn_retried_after_the_attempt_timeout_belongs_to_a_new_zeek_connection(tmp_path):
    talk = Talk()
    syn = talk.client("S")
    talk.resend(syn, after=6.0)  # Zeek gave up on the attempt after 5 s
    talk.server("S.")
    talk.client(".")
    result = summary(tmp_path, talk)
    assert len(result["conn_state"]) == 1  # one pcapstate flow
    assert (result["conn_state"][0], result["history"][0], result["orig_pkts"][0]) == ("S0", "S", 1)
    assert bool(result["split"][0])


def test_a_packet_after_the_close_delay_belongs_to_a_new_zeek_connection(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    talk.client("R.", after=6.0)  # Zeek removed the connection 5 s after the close
    result = summary(tmp_path, talk)
    assert (result["conn_state"][0], result["history"][0], result["orig_pkts"][0]) == ("SF", "ShAFf", 4)
    assert bool(result["split"][0])


def test_port_reuse_after_a_close_is_a_new_flow(tmp_path):
    talk = Talk()
    handshake(talk)
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    talk.client("S", seq=12345, after=1.0)
    talk.server("R.", ack=12346)
    result = summary(tmp_path, talk)
    assert list(result["conn_state"]) == ["SF", "REJ"]
    assert list(result["history"]) == ["ShAFf", "Sr"]
    assert not result["split"].any()


def test_no_tcp_packets(tmp_path):
    result = zeek_summary(analyze(write_pcap(tmp_path / "empty.pcap", [])).tracking)
    assert all(len(column) == 0 for column in result.values())
    assert 80 in LIKELY_SERVER_PORTS and isinstance(result["orig_is_client"], np.ndarray)
