"""The TCP state machine of one endpoint, as a pure function of (state, event).

RFC 9293 section 3.3.2 and its Figure 5 ("TCP Connection State Diagram"), plus
the paths that figure compresses or leaves to section 3.10 ("Event
Processing"): simultaneous open (SYN_SENT -> SYN_RCVD), simultaneous close
(FIN_WAIT_1 -> CLOSING -> TIME_WAIT), FIN_WAIT_1 -> TIME_WAIT when the peer's FIN
acknowledges ours, half-close (data keeps flowing from the CLOSE_WAIT side), RST
in any synchronized state (section 3.10.7.4: -> CLOSED), the 2*MSL timer.

The table below is read like the diagram: one line per arrow, ``(state, event)
-> (new state, note)``.  Every pair not listed keeps its state with
``Note.UNEXPECTED``: a packet that makes no sense in the current state is
recorded, never allowed to crash or silently reset the machine.

Two deliberate readings of the RFC, for a per-connection view:

* RST received in SYN_RCVD returns a passive opener "to LISTEN" in the RFC;
  the *listening socket* does, but this connection is gone, so the endpoint of
  this connection goes to CLOSED.
* A retransmitted SYN, SYN-ACK or FIN, or a duplicate of one received, keeps
  the state with ``Note.REPEAT`` (retransmissions are reported elsewhere).

:func:`step` is the function; ``NEXT_STATE`` and ``STEP_NOTE`` are the same
table as two small integer arrays for the replay loop.
"""
from __future__ import annotations

import numpy as np

from pcapstate.states import N_EVENTS, TCP_STATES, Event, Note, State

S, E, N = State, Event, Note

_SYNCHRONIZED = (
    S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.CLOSE_WAIT, S.LAST_ACK
)
_AFTER_OWN_FIN = (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.LAST_ACK)
_AFTER_PEER_FIN = (S.CLOSE_WAIT, S.CLOSING, S.TIME_WAIT, S.LAST_ACK)

RULES: dict[tuple[State, Event], tuple[State, Note]] = {
    # --- CLOSED: a closed port answers a SYN with RST (refused) and ignores RSTs.
    (S.CLOSED, E.SND_SYN): (S.SYN_SENT, N.NONE),  # active OPEN / snd SYN
    (S.CLOSED, E.RCV_SYN): (S.CLOSED, N.NONE),  # no listener: the RST reply follows
    (S.CLOSED, E.SND_RST): (S.CLOSED, N.NONE),  # that RST reply
    (S.CLOSED, E.RCV_RST): (S.CLOSED, N.NONE),  # 3.10.7.1: an incoming RST is discarded
    # --- LISTEN
    (S.LISTEN, E.RCV_SYN): (S.SYN_RCVD, N.NONE),  # rcv SYN / snd SYN,ACK
    (S.LISTEN, E.SND_SYN): (S.SYN_SENT, N.NONE),  # SEND / snd SYN
    (S.LISTEN, E.RCV_RST): (S.LISTEN, N.NONE),  # 3.10.7.2: ignored
    (S.LISTEN, E.SND_RST): (S.LISTEN, N.NONE),  # a listener resets a stray ACK
    # --- SYN_SENT
    (S.SYN_SENT, E.RCV_SYN_ACK): (S.ESTABLISHED, N.NONE),  # rcv SYN,ACK / snd ACK
    (S.SYN_SENT, E.RCV_SYN): (S.SYN_RCVD, N.NONE),  # simultaneous open: rcv SYN / snd SYN,ACK
    (S.SYN_SENT, E.SND_SYN): (S.SYN_SENT, N.REPEAT),  # SYN retransmission
    (S.SYN_SENT, E.RCV_RST): (S.CLOSED, N.REFUSED),  # 3.10.7.3: "connection reset" = refused
    (S.SYN_SENT, E.SND_RST): (S.CLOSED, N.NONE),  # abort
    (S.SYN_SENT, E.SND_DATA): (S.SYN_SENT, N.DATA_BEFORE_HANDSHAKE),
    (S.SYN_SENT, E.RCV_DATA): (S.SYN_SENT, N.DATA_BEFORE_HANDSHAKE),
    # --- SYN_RCVD
    (S.SYN_RCVD, E.RCV_ACK): (S.ESTABLISHED, N.NONE),  # rcv ACK of SYN
    (S.SYN_RCVD, E.RCV_SYN_ACK): (S.ESTABLISHED, N.NONE),  # simultaneous open: the peer's SYN,ACK
    (S.SYN_RCVD, E.SND_SYN_ACK): (S.SYN_RCVD, N.NONE),  # the reply (and its retransmissions)
    (S.SYN_RCVD, E.RCV_SYN): (S.SYN_RCVD, N.REPEAT),  # the peer retransmitted its SYN
    (S.SYN_RCVD, E.SND_FIN): (S.FIN_WAIT_1, N.NONE),  # CLOSE / snd FIN
    (S.SYN_RCVD, E.RCV_RST): (S.CLOSED, N.RESET),  # see the module docstring
    (S.SYN_RCVD, E.SND_RST): (S.CLOSED, N.NONE),
    (S.SYN_RCVD, E.SND_DATA): (S.SYN_RCVD, N.DATA_BEFORE_HANDSHAKE),
    (S.SYN_RCVD, E.RCV_DATA): (S.SYN_RCVD, N.DATA_BEFORE_HANDSHAKE),
    # --- ESTABLISHED
    (S.ESTABLISHED, E.SND_FIN): (S.FIN_WAIT_1, N.NONE),  # CLOSE / snd FIN
    (S.ESTABLISHED, E.RCV_FIN): (S.CLOSE_WAIT, N.NONE),  # rcv FIN / snd ACK
    (S.ESTABLISHED, E.SND_SYN_ACK): (S.ESTABLISHED, N.REPEAT),  # our SYN,ACK again (final ACK lost?)
    (S.ESTABLISHED, E.RCV_SYN_ACK): (S.ESTABLISHED, N.REPEAT),  # the peer's SYN,ACK again
    # --- FIN_WAIT_1: our FIN is out
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): (S.FIN_WAIT_2, N.NONE),  # rcv ACK of FIN
    (S.FIN_WAIT_1, E.RCV_FIN): (S.CLOSING, N.NONE),  # simultaneous close: rcv FIN / snd ACK
    (S.FIN_WAIT_1, E.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, N.NONE),  # rcv FIN,ACK of our FIN
    (S.FIN_WAIT_1, E.SND_FIN): (S.FIN_WAIT_1, N.REPEAT),
    # --- FIN_WAIT_2: our FIN is acknowledged, waiting for the peer's
    (S.FIN_WAIT_2, E.RCV_FIN): (S.TIME_WAIT, N.NONE),  # rcv FIN / snd ACK
    (S.FIN_WAIT_2, E.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, N.NONE),
    (S.FIN_WAIT_2, E.SND_FIN): (S.FIN_WAIT_2, N.REPEAT),  # a spurious FIN retransmission
    # --- CLOSING: both FINs out, ours not yet acknowledged
    (S.CLOSING, E.RCV_ACK_OF_FIN): (S.TIME_WAIT, N.NONE),  # rcv ACK of FIN
    (S.CLOSING, E.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, N.NONE),  # the peer's FIN again, now acking ours
    (S.CLOSING, E.SND_FIN): (S.CLOSING, N.REPEAT),
    (S.CLOSING, E.RCV_FIN): (S.CLOSING, N.REPEAT),
    # --- TIME_WAIT
    (S.TIME_WAIT, E.TIMER_2MSL): (S.CLOSED, N.NONE),  # timeout = 2 MSL
    (S.TIME_WAIT, E.RCV_FIN): (S.TIME_WAIT, N.REPEAT),  # the peer's FIN again: re-ACK, restart timer
    (S.TIME_WAIT, E.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, N.REPEAT),
    (S.TIME_WAIT, E.SND_FIN): (S.TIME_WAIT, N.REPEAT),
    (S.TIME_WAIT, E.RCV_RST): (S.CLOSED, N.NONE),  # TIME_WAIT assassination (RFC 1337; Linux default)
    # --- CLOSE_WAIT: the peer closed; this side may still send (half-close)
    (S.CLOSE_WAIT, E.SND_FIN): (S.LAST_ACK, N.NONE),  # CLOSE / snd FIN
    (S.CLOSE_WAIT, E.RCV_FIN): (S.CLOSE_WAIT, N.REPEAT),
    # --- LAST_ACK
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): (S.CLOSED, N.NONE),  # rcv ACK of FIN
    (S.LAST_ACK, E.SND_FIN): (S.LAST_ACK, N.REPEAT),
    (S.LAST_ACK, E.RCV_FIN): (S.LAST_ACK, N.REPEAT),
}

# Plain ACKs and data are the normal traffic of every synchronized state, with two
# exceptions: payload sent after this endpoint's own FIN, and payload received after
# the peer's FIN, are irregular.  Every segment after our FIN was acknowledged
# acknowledges it again: normal traffic.
for _state in _SYNCHRONIZED:
    for _event in (E.SND_ACK, E.RCV_ACK, E.SND_DATA, E.RCV_DATA):
        RULES.setdefault((_state, _event), (_state, N.NONE))
    RULES.setdefault((_state, E.RCV_ACK_OF_FIN), (_state, N.NONE))
    # section 3.10.7.4: a (valid) RST in any synchronized state -> CLOSED
    RULES.setdefault((_state, E.RCV_RST), (S.CLOSED, N.RESET))
    RULES.setdefault((_state, E.SND_RST), (S.CLOSED, N.RESET))
for _state in _AFTER_OWN_FIN:
    RULES[(_state, E.SND_DATA)] = (_state, N.DATA_AFTER_FIN)
for _state in _AFTER_PEER_FIN:
    RULES[(_state, E.RCV_DATA)] = (_state, N.DATA_AFTER_FIN)
# The ACK that completes a handshake often rides on the first data segment.
RULES[(S.SYN_RCVD, E.SND_ACK)] = (S.SYN_RCVD, N.NONE)  # acking a simultaneous-open SYN,ACK
RULES[(S.SYN_SENT, E.SND_ACK)] = (S.SYN_SENT, N.UNEXPECTED)
# A segment sent or received by an endpoint that is already CLOSED.
for _event in (E.SND_ACK, E.SND_DATA, E.SND_FIN, E.RCV_ACK, E.RCV_DATA, E.RCV_FIN, E.RCV_FIN_ACK_OF_FIN):
    RULES.setdefault((S.CLOSED, _event), (S.CLOSED, N.SEGMENT_AFTER_CLOSE))


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    shape = (len(TCP_STATES), N_EVENTS)
    next_state = np.empty(shape, dtype=np.int8)
    note = np.full(shape, int(N.UNEXPECTED), dtype=np.int8)
    for state in TCP_STATES:
        next_state[int(state), :] = int(state)
    for (state, event), (new_state, meaning) in RULES.items():
        next_state[int(state), int(event)] = int(new_state)
        note[int(state), int(event)] = int(meaning)
    next_state.setflags(write=False)
    note.setflags(write=False)
    return next_state, note


NEXT_STATE, STEP_NOTE = _build_tables()


def step(state: State, event: Event) -> tuple[State, Note]:
    """The endpoint's new state after ``event`` in ``state``, and what it means.

    >>> step(State.ESTABLISHED, Event.RCV_FIN)
    (<State.CLOSE_WAIT: 9>, <Note.NONE: 0>)
    >>> step(State.SYN_SENT, Event.RCV_RST)
    (<State.CLOSED: 0>, <Note.REFUSED: 5>)
    """
    return State(int(NEXT_STATE[state, event])), Note(int(STEP_NOTE[state, event]))
