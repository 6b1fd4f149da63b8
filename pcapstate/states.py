"""The vocabulary of the tracker: TCP states, endpoint events, causes and notes.

All are small ``IntEnum``s so the replay loop works on plain integers (and can be
compiled) while everything a user sees prints the RFC 9293 names.

* :class:`State`: the eleven connection states of RFC 9293 section 3.3.2, in
  the RFC's order (the order of the figure's boxes, used for sorting and for
  pandas categoricals).  ``UNKNOWN`` (-1) is not a TCP state: it is the "from"
  of an assumed state for an endpoint first seen mid-connection.
* :class:`Event`: what happens to *one* endpoint, seen from its own side: it
  sends a SYN, it receives a FIN, its FIN is acknowledged, a timer fires.  A
  packet is one or more send events for its sender and one or more receive
  events for its receiver.
* :class:`Cause`: how a transition is known: ``sent`` (observed: the endpoint's
  own packet is in the capture), ``received`` (inferred: the packet reached the
  endpoint, proved by what it sent later), ``timer`` (no packet: 2*MSL ended
  TIME_WAIT), ``assumed`` (the capture does not show it: LISTEN before the
  first SYN, ESTABLISHED for a connection seen mid-stream).
* :class:`Note`: what a (state, event) step means beyond the new state: normal,
  a repetition, or an irregularity that the anomaly reporting picks up.
"""
from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    UNKNOWN = -1
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RCVD = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSING = 7
    TIME_WAIT = 8
    CLOSE_WAIT = 9
    LAST_ACK = 10


# The eleven real states, RFC order (UNKNOWN excluded).
TCP_STATES: tuple[State, ...] = tuple(s for s in State if s is not State.UNKNOWN)
STATE_NAMES: tuple[str, ...] = tuple(s.name for s in TCP_STATES)


class Event(IntEnum):
    SND_SYN = 0  # sent a SYN (no ACK): active open, or its retransmission
    SND_SYN_ACK = 1  # sent a SYN with ACK (reply to a SYN)
    SND_ACK = 2  # sent a segment with ACK and neither payload, SYN, FIN nor RST
    SND_DATA = 3  # sent payload
    SND_FIN = 4  # sent a FIN
    SND_RST = 5  # sent a RST
    RCV_SYN = 6
    RCV_SYN_ACK = 7
    RCV_ACK = 8  # received an ACK that does not cover this endpoint's FIN
    RCV_ACK_OF_FIN = 9  # received an ACK covering this endpoint's FIN
    RCV_DATA = 10
    RCV_FIN = 11  # received a FIN that does not acknowledge this endpoint's FIN
    RCV_FIN_ACK_OF_FIN = 12  # received a FIN that also acknowledges this endpoint's FIN
    RCV_RST = 13
    TIMER_2MSL = 14  # TIME_WAIT has lasted 2*MSL


N_EVENTS = len(Event)


class Cause(IntEnum):
    SENT = 0
    RECEIVED = 1
    TIMER = 2
    ASSUMED = 3


CAUSE_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in Cause)


class Note(IntEnum):
    """The meaning of one (state, event) step; 0 means nothing to report."""

    NONE = 0
    REPEAT = 1  # a retransmission or duplicate of what this state already reflects
    UNEXPECTED = 2  # makes no sense in this state (the state is kept)
    DATA_BEFORE_HANDSHAKE = 3  # payload sent or received before ESTABLISHED
    DATA_AFTER_FIN = 4  # payload sent after this endpoint's own FIN
    REFUSED = 5  # RST in answer to this endpoint's SYN: connection refused
    RESET = 6  # RST ended a synchronized connection
    INVALID_FLAGS = 7  # flag combination no stack sends (SYN+FIN, SYN+RST, none, all)
    SEGMENT_AFTER_CLOSE = 8  # a segment to or from an endpoint already CLOSED
    ACK_UNSEEN_DATA = 9  # acknowledges sequence space the peer was never seen sending


NOTE_NAMES: tuple[str, ...] = tuple(n.name.lower() for n in Note)


class Side(IntEnum):
    CLIENT = 0
    SERVER = 1


SIDE_NAMES = ("client", "server")
