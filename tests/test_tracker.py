"""The tracking stage on awkward input: disorder, duplicates, garbage flags, many flows."""
from __future__ import annotations

import numpy as np

from builder import Talk, states, write_pcap, write_talks
from pcapstate.analysis import analyze
from pcapstate.conversations import group
from pcapstate.table import TableBuilder
from pcapstate.tracker import track


def closed_talk(**kwargs) -> Talk:
    talk = Talk(**kwargs)
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    talk.client("F.")
    talk.server("F.")
    talk.client(".")
    return talk


def test_conversations_pair_both_directions_and_number_by_first_packet(tmp_path):
    a, b = closed_talk(client_port=40001, start=10.0), closed_talk(client_port=40000, start=10.005)
    path = write_talks(tmp_path / "two.pcap", a, b)
    from pcapstate.decode import read_capture

    table = read_capture(path)
    convs = group(table)
    assert convs.count == 2
    assert convs.conv.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert convs.direction.tolist()[:4] == [0, 0, 1, 1]


def test_packets_out_of_timestamp_order_are_replayed_in_time_order(tmp_path):
    talk = closed_talk()
    frames = talk.frames()
    shuffled = [frames[i] for i in (0, 2, 1, 3, 5, 4)]  # ACK before SYN-ACK, FIN before FIN
    a = analyze(write_pcap(tmp_path / "disorder.pcap", shuffled))
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT"]
    assert any("earlier than the packet before them" in w for w in a.warnings)
    assert a.packets.frame.tolist() == [1, 2, 3, 4, 5, 6]  # frames keep file numbering


def test_duplicated_packets_do_not_corrupt_the_state(tmp_path):
    talk = closed_talk()
    frames = talk.frames()
    doubled = [copy for frame in frames for copy in (frame, (frame[0] + 1e-6, frame[1]))]
    a = analyze(write_pcap(tmp_path / "dup.pcap", doubled))
    assert states(a, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT"]
    assert states(a, "server")[-2:] == ["LAST_ACK", "CLOSED"]
    assert len(a.flows) == 1 and a.flows.packets[0] == 12
    assert "repeat" in set(a.packets.sender_note)  # the copies are visible


def test_garbage_flags_are_recorded_and_change_nothing(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    for garbage in ("FS", "SR.", "none", "FSRPU."):
        talk.client(garbage)
    talk.client("F.")
    talk.server(".")
    a = analyze(talk.write(tmp_path))
    assert states(a, "client")[-3:] == ["ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2"]
    assert a.packets.sender_note.tolist()[3:7] == ["invalid_flags"] * 4


def test_ack_of_data_never_seen_is_recorded(tmp_path):
    talk = Talk()
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    talk.client(".", ack=talk.server_isn + 5000)  # acknowledges bytes the server never sent
    a = analyze(talk.write(tmp_path))
    assert a.packets.sender_note.tolist()[-1] == "ack_unseen_data"


def test_other_flows_are_untouched_by_a_broken_one(tmp_path):
    good = closed_talk(client_port=40001)
    bad = Talk(client_port=40002)
    bad.client("FS")
    bad.server("R")
    bad.client("P.", 100)
    a = analyze(write_talks(tmp_path / "mixed.pcap", good, bad))
    flows = a.flows.set_index("client_port")
    assert (flows.loc[40001].client_state, flows.loc[40001].server_state) == ("TIME_WAIT", "CLOSED")


def test_a_hundred_thousand_concurrent_flows():
    n = 100_000
    builder = TableBuilder("synthetic")
    server = bytes([10, 0, 0, 2])
    clients = [bytes([11, i >> 16 & 255, i >> 8 & 255, i & 255]) for i in range(n)]
    frame = 0
    for phase, flags in enumerate((0x02, 0x12, 0x10)):  # all SYNs, then all SYN-ACKs, then all ACKs
        for i, client in enumerate(clients):
            frame += 1
            if phase == 1:
                builder.append(frame=frame, ts_ns=frame * 1000, src=server, dst=client, sport=80,
                               dport=1024 + i % 60000, flags=flags, seq=5000, ack=1001)
            else:
                builder.append(frame=frame, ts_ns=frame * 1000, src=client, dst=server, sport=1024 + i % 60000,
                               dport=80, flags=flags, seq=1000 + phase // 2, ack=5001 if phase else 0)
    tracking = track(builder.finish())
    result = tracking.result
    assert len(result.connections) == n
    ends = result.endpoints[:, 0]
    assert np.all(ends == 4)  # ESTABLISHED, both sides of every connection
