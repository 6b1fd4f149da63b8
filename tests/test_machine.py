"""The transition table, arrow by arrow against RFC 9293 Figure 5 and section 3.10."""
from __future__ import annotations

import pytest

from pcapstate.machine import NEXT_STATE, RULES, STEP_NOTE, step
from pcapstate.states import TCP_STATES, Event as E, Note as N, State as S

# Figure 5's arrows and the rare paths of section 3.10, each as (from, event, to).
ARROWS = [
    (S.CLOSED, E.SND_SYN, S.SYN_SENT),  # active OPEN / snd SYN
    (S.LISTEN, E.RCV_SYN, S.SYN_RCVD),  # rcv SYN / snd SYN,ACK
    (S.LISTEN, E.SND_SYN, S.SYN_SENT),  # SEND / snd SYN
    (S.SYN_SENT, E.RCV_SYN, S.SYN_RCVD),  # simultaneous open
    (S.SYN_SENT, E.RCV_SYN_ACK, S.ESTABLISHED),  # rcv SYN,ACK / snd ACK
    (S.SYN_RCVD, E.RCV_ACK, S.ESTABLISHED),  # rcv ACK of SYN
    (S.SYN_RCVD, E.SND_FIN, S.FIN_WAIT_1),  # CLOSE / snd FIN
    (S.ESTABLISHED, E.SND_FIN, S.FIN_WAIT_1),  # CLOSE / snd FIN
    (S.ESTABLISHED, E.RCV_FIN, S.CLOSE_WAIT),  # rcv FIN / snd ACK
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN, S.FIN_WAIT_2),  # rcv ACK of FIN
    (S.FIN_WAIT_1, E.RCV_FIN, S.CLOSING),  # rcv FIN / snd ACK
    (S.FIN_WAIT_1, E.RCV_FIN_ACK_OF_FIN, S.TIME_WAIT),  # FIN and ACK of ours in one segment
    (S.FIN_WAIT_2, E.RCV_FIN, S.TIME_WAIT),  # rcv FIN / snd ACK
    (S.CLOSING, E.RCV_ACK_OF_FIN, S.TIME_WAIT),  # rcv ACK of FIN
    (S.TIME_WAIT, E.TIMER_2MSL, S.CLOSED),  # timeout = 2MSL
    (S.CLOSE_WAIT, E.SND_FIN, S.LAST_ACK),  # CLOSE / snd FIN
    (S.LAST_ACK, E.RCV_ACK_OF_FIN, S.CLOSED),  # rcv ACK of FIN
]


@pytest.mark.parametrize("old, event, new", ARROWS, ids=lambda v: getattr(v, "name", v))
def test_every_arrow_of_the_diagram(old, event, new):
    assert step(old, event) == (new, N.NONE)


@pytest.mark.parametrize("state", [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.CLOSE_WAIT,
                                   S.LAST_ACK, S.SYN_RCVD])
def test_rst_closes_every_synchronized_state(state):
    assert step(state, E.RCV_RST)[0] is S.CLOSED
    assert step(state, E.SND_RST)[0] is S.CLOSED


def test_rst_answering_a_syn_is_refused():
    assert step(S.SYN_SENT, E.RCV_RST) == (S.CLOSED, N.REFUSED)


def test_rst_is_ignored_where_the_rfc_says_so():
    assert step(S.LISTEN, E.RCV_RST) == (S.LISTEN, N.NONE)
    assert step(S.CLOSED, E.RCV_RST) == (S.CLOSED, N.NONE)


@pytest.mark.parametrize("state, event", [
    (S.SYN_SENT, E.SND_SYN), (S.SYN_RCVD, E.RCV_SYN), (S.FIN_WAIT_1, E.SND_FIN),
    (S.LAST_ACK, E.SND_FIN), (S.CLOSE_WAIT, E.RCV_FIN), (S.TIME_WAIT, E.RCV_FIN),
])
def test_retransmissions_keep_the_state(state, event):
    assert step(state, event) == (state, N.REPEAT)


def test_half_close_data_is_normal_only_from_the_side_that_did_not_close():
    assert step(S.CLOSE_WAIT, E.SND_DATA) == (S.CLOSE_WAIT, N.NONE)
    assert step(S.FIN_WAIT_2, E.RCV_DATA) == (S.FIN_WAIT_2, N.NONE)
    assert step(S.FIN_WAIT_2, E.SND_DATA) == (S.FIN_WAIT_2, N.DATA_AFTER_FIN)
    assert step(S.CLOSE_WAIT, E.RCV_DATA) == (S.CLOSE_WAIT, N.DATA_AFTER_FIN)


def test_data_before_the_handshake_is_irregular_and_keeps_the_state():
    assert step(S.SYN_SENT, E.RCV_DATA) == (S.SYN_SENT, N.DATA_BEFORE_HANDSHAKE)
    assert step(S.SYN_RCVD, E.SND_DATA) == (S.SYN_RCVD, N.DATA_BEFORE_HANDSHAKE)


def test_nonsense_keeps_the_state_and_says_so():
    assert step(S.LISTEN, E.RCV_FIN) == (S.LISTEN, N.UNEXPECTED)
    assert step(S.ESTABLISHED, E.RCV_SYN) == (S.ESTABLISHED, N.UNEXPECTED)
    assert step(S.TIME_WAIT, E.SND_DATA) == (S.TIME_WAIT, N.DATA_AFTER_FIN)
    assert step(S.CLOSED, E.RCV_DATA) == (S.CLOSED, N.SEGMENT_AFTER_CLOSE)


def test_table_is_total_and_unchangeable():
    assert NEXT_STATE.shape == STEP_NOTE.shape == (len(TCP_STATES), len(E))
    assert set(NEXT_STATE.ravel()) <= {int(s) for s in TCP_STATES}
    with pytest.raises(ValueError):
        NEXT_STATE[0, 0] = 1


def test_only_listed_rules_change_state():
    for state in TCP_STATES:
        for event in E:
            new, _ = step(state, event)
            if new is not state:
                assert RULES[(state, event)][0] is new
