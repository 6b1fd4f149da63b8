"""Retransmissions: each class and kind, probes that are not retransmissions, chains and backoff."""
from __future__ import annotations

import math

import pytest

from builder import Talk
from pcapstate.analysis import analyze
from pcapstate.findings.backoff import backoff_pattern


def established() -> Talk:
    talk = Talk()
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    return talk


def retx(tmp_path, talk: Talk):
    return analyze(talk.write(tmp_path)).retransmissions


def test_timeout_retransmission_of_lost_data(tmp_path):
    talk = established()
    lost = talk.client("P.", 100, lost=True)
    talk.resend(lost, after=0.3)
    talk.server(".")
    r = retx(tmp_path, talk)
    assert len(r) == 1
    row = r.iloc[0]
    assert (row.kind, row["class"], row.frame, row.original_frame, row.attempt) == ("data", "timeout", 5, 4, 1)
    assert row.interval == pytest.approx(0.3)
    assert row.sender == "client"


def test_fast_retransmission_after_duplicate_acks(tmp_path):
    talk = established()
    first = talk.client("P.", 100, lost=True)
    for _ in range(3):
        talk.client("P.", 100)
        talk.server(".", ack=first.seq, after=0.001)  # each acknowledges only up to the hole: duplicates
    talk.resend(first, after=0.002)
    r = retx(tmp_path, talk)
    assert r["class"].tolist() == ["fast"]
    assert r.original_frame.tolist() == [4]


def test_spurious_retransmission_of_acknowledged_data(tmp_path):
    talk = established()
    data = talk.client("P.", 100)
    talk.server(".")  # acknowledged ...
    talk.resend(data, after=0.5)  # ... and sent again anyway
    r = retx(tmp_path, talk)
    assert (r.iloc[0]["class"], r.iloc[0].kind) == ("spurious", "data")


def test_keep_alive_probe_is_not_a_retransmission(tmp_path):
    talk = established()
    talk.client("P.", 10)
    talk.server(".")
    talk.wait(75)
    talk.client(".", seq=(talk.client_isn + 1 + 10 - 1))  # seq = snd.nxt - 1, no payload
    talk.server(".")
    talk.client(".", 1, seq=(talk.client_isn + 1 + 10 - 1))  # the one-old-byte variant
    a = analyze(talk.write(tmp_path))
    assert a.retransmissions.empty


def test_zero_window_probe_is_not_a_retransmission(tmp_path):
    talk = established()
    talk.client("P.", 100)
    talk.server(".", window=0)  # the receiver's buffer is full
    probe = talk.client("P.", 1)
    talk.server(".", ack=talk.client_isn + 101, window=0)
    talk.resend(probe, after=0.4)
    a = analyze(talk.write(tmp_path))
    assert a.retransmissions.empty
    assert "zero_window" in set(a.anomalies.kind)


def test_out_of_order_segment_is_not_a_retransmission(tmp_path):
    talk = established()
    first = talk.client("P.", 100, lost=True)
    talk.client("P.", 100, after=0.0005)
    talk.resend(first, after=0.0005)  # within 3 ms of the highest segment: reordered, not resent
    a = analyze(talk.write(tmp_path))
    assert a.retransmissions.empty


def test_syn_retries_form_a_chain_with_attempts_and_intervals(tmp_path):
    talk = Talk()
    syn = talk.client("S", lost=True)
    for delay in (1, 1, 1, 2, 4):
        talk.resend(syn, lost=True, after=delay)
    a = analyze(talk.write(tmp_path))
    r = a.retransmissions
    assert r.kind.tolist() == ["SYN"] * 5
    assert r.attempt.tolist() == [1, 2, 3, 4, 5]
    assert r.original_frame.tolist() == [1] * 5
    assert r.interval.round(6).tolist() == [1, 1, 1, 2, 4]
    chain = a.retries.iloc[0]
    assert (chain.kind, chain.sends, chain.pattern, chain.answered) == ("SYN", 6, "linear-then-doubling", False)
    assert chain.initial_rto == pytest.approx(1.0)
    assert chain.span == pytest.approx(9.0)


@pytest.mark.parametrize("who, flags, kind", [
    ("server", "S.", "SYN-ACK"),
    ("client", "F.", "FIN"),
])
def test_control_segment_kinds(tmp_path, who, flags, kind):
    talk = Talk()
    talk.client("S")
    if who == "server":
        first = talk.server(flags, lost=True)
    else:
        talk.server("S.")
        talk.client(".")
        first = talk.client(flags, lost=True)
    talk.resend(first, lost=True, after=1)
    talk.resend(first, lost=True, after=2)
    a = analyze(talk.write(tmp_path))
    assert a.retransmissions.kind.tolist() == [kind, kind]
    assert a.retries.iloc[0].pattern == "doubling"


def test_repeated_rst_is_a_rst_retransmission(tmp_path):
    talk = established()
    rst = talk.client("R.")
    talk.resend(rst, after=0.01)
    r = retx(tmp_path, talk)
    assert (r.iloc[0].kind, r.iloc[0].original_frame) == ("RST", 4)


def test_chain_answered_by_the_peer(tmp_path):
    talk = established()
    fin = talk.client("F.", lost=True)
    talk.resend(fin, after=0.2)
    answer = talk.server(".")
    a = analyze(talk.write(tmp_path))
    chain = a.retries.iloc[0]
    assert (chain.answered, chain.answer_frame) == (True, 6)
    assert answer.ack == (talk.client_isn + 2) & 0xFFFFFFFF


@pytest.mark.parametrize("intervals, pattern", [
    ([1, 2, 4, 8, 16, 32], "doubling"),  # the seeds' SYN retries
    ([1, 2, 4, 8, 16], "doubling"),  # the seeds' SYN-ACK retries
    ([1.01, 1.02, 1.02, 2.02, 4.09], "linear-then-doubling"),  # Linux 6.x, measured
    ([1, 1, 1, 1, 2, 4, 8], "linear-then-doubling"),
    ([0.5, 0.5, 0.5], "constant"),
    ([0.3], "single"),
    ([0.2, 0.9, 0.3, 2.5], "irregular"),  # the seeds' FIN retries
    ([1, 2, 4, 4, 8], "irregular"),
    ([1, 0, 2], "irregular"),
])
def test_backoff_patterns(intervals, pattern):
    assert backoff_pattern(intervals) == pattern


def test_copies_at_the_same_moment_count_once_for_the_pattern(tmp_path):
    talk = Talk()
    talk.client("S")
    synack = talk.server("S.", lost=True)
    for delay in (1, 2, 4):
        talk.resend(synack, lost=True, after=delay)
        talk.resend(synack, lost=True, after=0.00002)  # a second copy in reply to a retried SYN
    a = analyze(talk.write(tmp_path))
    chain = a.retries.iloc[0]
    assert chain.sends == 7
    assert chain.pattern == "doubling"
    assert len(chain.intervals) == 6
    assert not math.isnan(chain.initial_rto)
