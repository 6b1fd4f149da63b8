"""Replay every packet through both endpoints' state machines.

Input: the packet table as integer columns, its conversations and the replay
order (:mod:`pcapstate.conversations`).  Output: per-row connection id, sender
side, both endpoints' states after the row and the notes of each step; per
connection its roles and facts; and the transition rows.

What a capture proves (DOMAIN.md, "What a capture can and cannot tell"):

* A packet proves its **sender's** transition at about its timestamp
  (``Cause.SENT``).
* The **receiver's** transition is inferred (``Cause.RECEIVED``) and only on
  evidence.  A SYN or FIN occupies sequence space, so the receiver's later ACK
  covering it proves it arrived: until then the segment waits in the
  receiver's *pending queue*, and a SYN or FIN never acknowledged is taken as
  never received (the firewall beyond the capture point).  Segments that
  occupy no sequence space (pure ACKs, data, RSTs) are applied on arrival,
  except that they queue behind a pending SYN/FIN of the same sender, since
  the network delivers them in order.  Applying the queue when evidence comes
  keeps both endpoints' timelines in the order things really happened, which
  is what makes simultaneous close come out as CLOSING on both sides even
  though each FIN is captured before the other side saw it.
* An inferred transition's time is the packet's timestamp, or the receiver's
  previous transition if that is later: the earliest moment consistent with the
  capture (the real moment is at most one one-way delay later).

Roles: the client is the endpoint that sent the connection's first SYN.  With
no SYN the connection started before the capture and roles are guessed: the
first sender of a SYN-ACK is the server, else the endpoint with the lower port.
A new SYN on a 4-tuple whose connection is over (reset, or both ends CLOSED or
in TIME_WAIT) starts a new connection (port reuse).

The loop keeps every piece of state in integer arrays indexed by connection id
and reads the packet columns by row: no per-packet Python objects, so the
module compiles with numba unchanged (pcapstate.fast applies the decorator).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate.machine import NEXT_STATE, STEP_NOTE
from pcapstate.states import Cause, Event, Note, State

# --- packet columns (input matrix, one row per packet in table order) ---------
PK_CONV, PK_DIR, PK_FLAGS, PK_SEQ, PK_ACK, PK_LEN, PK_TS, PK_SPORT, PK_DPORT = range(9)
N_PK = 9

# --- per-connection columns ----------------------------------------------------
(C_CONV, C_CLIENT_DIR, C_GUESSED, C_FIRST_ROW, C_LAST_ROW, C_PACKETS, C_OVER_RST,
 C_SEEN, C_SERVER_UNDECIDED, C_START_KIND, C_SERVER_INITIAL) = range(11)
N_C = 11
# C_SEEN bits
SEEN_SYN, SEEN_SYN_ACK, SEEN_CLIENT_HANDSHAKE, SEEN_SERVER_HANDSHAKE = 1, 2, 4, 8
# C_START_KIND: how the connection began in the capture
START_SYN, START_SYN_ACK, START_MIDSTREAM = 0, 1, 2

# --- per-endpoint columns (row = 2 * connection + side; side 0 client, 1 server)
E_STATE, E_FIN_END, E_SND_NXT, E_LAST_TS, E_TW_SINCE, E_QHEAD, E_QTAIL = range(7)
N_E = 7
NO_VALUE = -1

# --- per-row output columns ----------------------------------------------------
R_CONN, R_SIDE, R_CLIENT_STATE, R_SERVER_STATE, R_NOTE_SENDER, R_NOTE_RECEIVER, R_SENDER_BEFORE = range(7)
N_R = 7

# --- transition columns --------------------------------------------------------
T_CONN, T_SIDE, T_TS, T_ROW, T_FROM, T_TO, T_CAUSE, T_EVIDENCE = range(8)
N_T = 8

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
MASK32 = 0xFFFFFFFF
HALF32 = 0x80000000

# Enum members as plain ints for the loop.
CLOSED, LISTEN, SYN_SENT, SYN_RCVD, ESTABLISHED = (
    int(State.CLOSED), int(State.LISTEN), int(State.SYN_SENT), int(State.SYN_RCVD), int(State.ESTABLISHED))
TIME_WAIT, UNKNOWN = int(State.TIME_WAIT), int(State.UNKNOWN)
EV_SND_SYN, EV_SND_SYN_ACK, EV_SND_ACK, EV_SND_DATA, EV_SND_FIN, EV_SND_RST = (
    int(Event.SND_SYN), int(Event.SND_SYN_ACK), int(Event.SND_ACK), int(Event.SND_DATA),
    int(Event.SND_FIN), int(Event.SND_RST))
EV_RCV_SYN, EV_RCV_SYN_ACK, EV_RCV_ACK, EV_RCV_ACK_OF_FIN, EV_RCV_DATA = (
    int(Event.RCV_SYN), int(Event.RCV_SYN_ACK), int(Event.RCV_ACK), int(Event.RCV_ACK_OF_FIN),
    int(Event.RCV_DATA))
EV_RCV_FIN, EV_RCV_FIN_ACK_OF_FIN, EV_RCV_RST, EV_TIMER_2MSL = (
    int(Event.RCV_FIN), int(Event.RCV_FIN_ACK_OF_FIN), int(Event.RCV_RST), int(Event.TIMER_2MSL))
CAUSE_SENT, CAUSE_RECEIVED, CAUSE_TIMER, CAUSE_ASSUMED = (
    int(Cause.SENT), int(Cause.RECEIVED), int(Cause.TIMER), int(Cause.ASSUMED))
NOTE_NONE, NOTE_INVALID_FLAGS, NOTE_ACK_UNSEEN = (
    int(Note.NONE), int(Note.INVALID_FLAGS), int(Note.ACK_UNSEEN_DATA))


@dataclass
class ReplayResult:
    rows: np.ndarray  # (n, N_R) int64, indexed by packet-table row
    connections: np.ndarray  # (n_connections, N_C) int64
    endpoints: np.ndarray  # (2 * n_connections, N_E) int64, final values
    transitions: np.ndarray  # (n_transitions, N_T) int64, in order of occurrence


# --- small pure helpers --------------------------------------------------------


def seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in 32-bit sequence space (RFC 9293 section 3.4)."""
    return ((a - b) & MASK32) < HALF32


def is_invalid_flags(flags: int) -> bool:
    """Flag combinations no TCP stack sends: none, SYN+FIN, SYN+RST, or all of FSRPAU."""
    if flags & 0x3F == 0:
        return True
    if flags & SYN and flags & (FIN | RST):
        return True
    return flags & 0x3F == 0x3F


def is_bare_syn(flags: int) -> bool:
    return flags & (SYN | ACK | RST | FIN) == SYN


def needs_evidence(flags: int) -> bool:
    """SYN and FIN occupy sequence space: their arrival is proved by an ACK."""
    return flags & (SYN | FIN) != 0 and not is_invalid_flags(flags)


def segment_end(flags: int, seq: int, length: int) -> int:
    """Sequence number just past the segment (SYN and FIN count one each)."""
    return (seq + length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK32


def send_events(flags: int, length: int) -> tuple[int, int]:
    """Up to two events for the sender of a segment (-1 = none), in order."""
    if is_invalid_flags(flags):
        return -1, -1
    if flags & RST:
        return EV_SND_RST, -1
    if flags & SYN:
        return (EV_SND_SYN_ACK if flags & ACK else EV_SND_SYN), -1
    first = EV_SND_DATA if length > 0 else -1
    if flags & FIN:
        return (first, EV_SND_FIN) if first >= 0 else (EV_SND_FIN, -1)
    return (first if first >= 0 else EV_SND_ACK), -1


def receive_events(flags: int, length: int, ack: int, receiver_fin_end: int) -> tuple[int, int, int]:
    """Up to three events for the receiver of a segment (-1 = none), in order.

    The acknowledgement is processed before the payload and the FIN (RFC 9293
    section 3.10.7.4, steps five to eight); a FIN that also acknowledges the
    receiver's own FIN is the single event of the FIN_WAIT_1 -> TIME_WAIT arrow.
    """
    if is_invalid_flags(flags):
        return -1, -1, -1
    if flags & RST:
        return EV_RCV_RST, -1, -1
    if flags & SYN:
        return (EV_RCV_SYN_ACK if flags & ACK else EV_RCV_SYN), -1, -1
    acks_fin = flags & ACK != 0 and receiver_fin_end >= 0 and seq_ge(ack, receiver_fin_end)
    data = EV_RCV_DATA if length > 0 else -1
    if flags & FIN and acks_fin:
        return (data, EV_RCV_FIN_ACK_OF_FIN, -1) if data >= 0 else (EV_RCV_FIN_ACK_OF_FIN, -1, -1)
    first = EV_RCV_ACK_OF_FIN if acks_fin else (EV_RCV_ACK if flags & ACK else -1)
    last = EV_RCV_FIN if flags & FIN else -1
    if first < 0:  # no ACK flag: shift the rest forward
        first, data, last = data, last, -1
    if data < 0:
        data, last = last, -1
    return first, data, last


# --- the transition buffer -----------------------------------------------------


def _emit(trans: np.ndarray, count: int, conn: int, side: int, ts: int, row: int,
          old: int, new: int, cause: int, evidence: int) -> tuple[np.ndarray, int]:
    """Append one transition row, growing the buffer when full."""
    if count == trans.shape[0]:
        bigger = np.empty((trans.shape[0] * 2 + 16, N_T), dtype=np.int64)
        bigger[:count] = trans[:count]
        trans = bigger
    t = trans[count]
    t[T_CONN], t[T_SIDE], t[T_TS], t[T_ROW] = conn, side, ts, row
    t[T_FROM], t[T_TO], t[T_CAUSE], t[T_EVIDENCE] = old, new, cause, evidence
    return trans, count + 1


# --- the loop -------------------------------------------------------------------


class _Replay:
    """State of one replay; every field an integer array (see the module docstring)."""

    def __init__(self, packets: np.ndarray, n_conv: int, guessed_client_dir: np.ndarray,
                 two_msl_ns: int, capture_end_ns: int) -> None:
        n = packets.shape[0]
        capacity = n_conv + int(np.count_nonzero((packets[:, PK_FLAGS] & (SYN | ACK | RST | FIN)) == SYN)) + 1
        self.pk = packets
        self.guessed_client_dir = guessed_client_dir
        self.two_msl = two_msl_ns
        self.capture_end = capture_end_ns
        self.conn = np.full((capacity, N_C), NO_VALUE, dtype=np.int64)
        self.ends = np.full((2 * capacity, N_E), NO_VALUE, dtype=np.int64)
        self.n_conn = 0
        self.current = np.full(n_conv, NO_VALUE, dtype=np.int64)
        self.rows = np.full((n, N_R), NO_VALUE, dtype=np.int64)
        self.rows[:, R_NOTE_SENDER] = NOTE_NONE
        self.rows[:, R_NOTE_RECEIVER] = NOTE_NONE
        self.queue = np.full((n + 1, 2), NO_VALUE, dtype=np.int64)  # (row, next node)
        self.n_nodes = 0
        self.trans = np.empty((max(16, n), N_T), dtype=np.int64)
        self.n_trans = 0

    # -- transitions
    def apply(self, k: int, side: int, event: int, ts: int, row: int, cause: int, evidence: int) -> int:
        """Step endpoint ``side`` of connection ``k``; record a transition; return the note."""
        e = 2 * k + side
        old = int(self.ends[e, E_STATE])
        if old == UNKNOWN:  # a server not yet known to be listening: now it must be
            self.settle_server(k, LISTEN)
            old = int(self.ends[e, E_STATE])
        ts = max(ts, int(self.ends[e, E_LAST_TS]))
        new = int(NEXT_STATE[old, event])
        note = int(STEP_NOTE[old, event])
        self.ends[e, E_LAST_TS] = ts
        if new != old:
            self.ends[e, E_STATE] = new
            self.ends[e, E_TW_SINCE] = ts if new == TIME_WAIT else NO_VALUE
            self.trans, self.n_trans = _emit(self.trans, self.n_trans, k, side, ts, row, old, new, cause, evidence)
            if new == ESTABLISHED and old in (SYN_SENT, SYN_RCVD):
                self.conn[k, C_SEEN] |= SEEN_CLIENT_HANDSHAKE if side == 0 else SEEN_SERVER_HANDSHAKE
        return note

    def assume(self, k: int, side: int, state: int, row: int, old: int = UNKNOWN) -> None:
        e = 2 * k + side
        ts = int(self.pk[row, PK_TS])
        self.ends[e, E_STATE] = state
        self.ends[e, E_LAST_TS] = ts
        self.trans, self.n_trans = _emit(self.trans, self.n_trans, k, side, ts, row, old, state, CAUSE_ASSUMED, NO_VALUE)

    def settle_server(self, k: int, state: int) -> None:
        """Decide the initial state of a server first seen through a client's SYN."""
        self.conn[k, C_SERVER_UNDECIDED] = 0
        self.conn[k, C_SERVER_INITIAL] = state
        if state == LISTEN:
            self.assume(k, 1, LISTEN, int(self.conn[k, C_FIRST_ROW]), CLOSED)
        else:
            self.ends[2 * k + 1, E_STATE] = state

    def fire_timers(self, k: int, now: int) -> None:
        """TIME_WAIT endpoints whose 2*MSL ended before ``now`` go to CLOSED."""
        for side in (0, 1):
            e = 2 * k + side
            since = int(self.ends[e, E_TW_SINCE])
            if self.ends[e, E_STATE] == TIME_WAIT and since >= 0 and since + self.two_msl <= now:
                self.apply(k, side, EV_TIMER_2MSL, since + self.two_msl, NO_VALUE, CAUSE_TIMER, NO_VALUE)

    # -- connections
    def is_over(self, k: int) -> bool:
        if self.conn[k, C_OVER_RST] == 1:
            return True
        for side in (0, 1):
            if self.ends[2 * k + side, E_STATE] not in (CLOSED, TIME_WAIT):
                return False
        return True

    def open_connection(self, row: int) -> int:
        k = self.n_conn
        self.n_conn += 1
        p = self.pk[row]
        c = self.conn[k]
        c[C_CONV], c[C_FIRST_ROW], c[C_LAST_ROW], c[C_PACKETS] = p[PK_CONV], row, row, 0
        c[C_OVER_RST], c[C_SEEN], c[C_SERVER_UNDECIDED] = 0, 0, 0
        for side in (0, 1):
            self.ends[2 * k + side, E_STATE] = UNKNOWN
            self.ends[2 * k + side, E_LAST_TS] = p[PK_TS]
        flags = int(p[PK_FLAGS])
        if is_bare_syn(flags):  # the sender is the client; the server is decided by its reply
            c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = p[PK_DIR], 0, START_SYN
            self.ends[2 * k, E_STATE] = CLOSED
            c[C_SERVER_UNDECIDED] = 1
        elif flags & (SYN | ACK | RST | FIN) == SYN | ACK:  # caught mid-handshake
            c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = 1 - p[PK_DIR], 1, START_SYN_ACK
            self.assume(k, 0, SYN_SENT, row)
            self.assume(k, 1, SYN_RCVD, row)
        else:  # started before the capture
            c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = self.guessed_client_dir[p[PK_CONV]], 1, START_MIDSTREAM
            self.assume(k, 0, ESTABLISHED, row)
            self.assume(k, 1, ESTABLISHED, row)
        self.current[p[PK_CONV]] = k
        return k

    def close_connection(self, k: int, now: int, row: int) -> None:
        """End connection ``k``: unproven SYN/FINs dropped, held segments applied, timers fired."""
        for side in (0, 1):
            self.drain(k, side, -1, now, True)
        if self.conn[k, C_SERVER_UNDECIDED] == 1:
            self.settle_server(k, LISTEN)
        self.fire_timers(k, now)
        if row >= 0:  # a new SYN reuses the 4-tuple: the old TIME_WAIT socket gives way
            sender = self.side_of(k, row)
            for side in (0, 1):
                if self.ends[2 * k + side, E_STATE] == TIME_WAIT:
                    cause = CAUSE_SENT if side == sender else CAUSE_RECEIVED
                    self.apply(k, side, EV_TIMER_2MSL, now, row, cause, NO_VALUE)

    def side_of(self, k: int, row: int) -> int:
        return 0 if self.pk[row, PK_DIR] == self.conn[k, C_CLIENT_DIR] else 1

    # -- pending queues
    def enqueue(self, k: int, side: int, row: int) -> None:
        """Add ``row`` to the pending queue of endpoint ``side``; a resent SYN/FIN replaces its copy."""
        e = 2 * k + side
        flags = int(self.pk[row, PK_FLAGS])
        if needs_evidence(flags):
            end = segment_end(flags, int(self.pk[row, PK_SEQ]), int(self.pk[row, PK_LEN]))
            node = int(self.ends[e, E_QHEAD])
            while node >= 0:
                other = int(self.queue[node, 0])
                other_flags = int(self.pk[other, PK_FLAGS])
                if other_flags & (SYN | ACK | FIN | RST) == flags & (SYN | ACK | FIN | RST) and \
                        segment_end(other_flags, int(self.pk[other, PK_SEQ]), int(self.pk[other, PK_LEN])) == end:
                    self.queue[node, 0] = row  # the later copy is the one that got through
                    return
                node = int(self.queue[node, 1])
        node = self.n_nodes
        self.n_nodes += 1
        self.queue[node, 0], self.queue[node, 1] = row, NO_VALUE
        if self.ends[e, E_QTAIL] >= 0:
            self.queue[self.ends[e, E_QTAIL], 1] = node
        else:
            self.ends[e, E_QHEAD] = node
        self.ends[e, E_QTAIL] = node

    def drain(self, k: int, side: int, evidence_row: int, now: int, final: bool) -> None:
        """Apply what endpoint ``side`` has now proved (or, when ``final``, may assume) it received.

        ``evidence_row`` is the endpoint's own packet about to be sent (-1 at the
        end): SYN/FIN entries its ACK covers are applied, the others stay
        pending (dropped when ``final``).  Entries behind a pending SYN/FIN wait.
        """
        e = 2 * k + side
        covers = -1
        if evidence_row >= 0 and self.pk[evidence_row, PK_FLAGS] & ACK:
            covers = int(self.pk[evidence_row, PK_ACK])
        node, prev, blocked = int(self.ends[e, E_QHEAD]), -1, False
        while node >= 0:
            row, nxt = int(self.queue[node, 0]), int(self.queue[node, 1])
            flags = int(self.pk[row, PK_FLAGS])
            take = False
            if needs_evidence(flags):
                end = segment_end(flags, int(self.pk[row, PK_SEQ]), int(self.pk[row, PK_LEN]))
                if covers >= 0 and seq_ge(covers, end):
                    take = True
                elif final:
                    take = False
                    prev = self._unlink(e, node, prev)  # never acknowledged: never received
                    node = nxt
                    continue
                else:
                    blocked = True
            else:
                take = final or not blocked
            if take:
                prev = self._unlink(e, node, prev)
                self.deliver(k, side, row, evidence_row)
            else:
                prev = node
            node = nxt

    def _unlink(self, e: int, node: int, prev: int) -> int:
        """Remove ``node`` (whose predecessor is ``prev``); return the predecessor of the next node."""
        nxt = int(self.queue[node, 1])
        if prev >= 0:
            self.queue[prev, 1] = nxt
        else:
            self.ends[e, E_QHEAD] = nxt
        if self.ends[e, E_QTAIL] == node:
            self.ends[e, E_QTAIL] = prev
        return prev

    def deliver(self, k: int, side: int, row: int, evidence_row: int) -> None:
        """Endpoint ``side`` of connection ``k`` receives the packet at ``row``."""
        p = self.pk[row]
        flags = int(p[PK_FLAGS])
        fin_end = int(self.ends[2 * k + side, E_FIN_END])
        events = receive_events(flags, self.new_payload(k, 1 - side, row), int(p[PK_ACK]), fin_end)
        note = NOTE_NONE
        for event in events:
            if event >= 0:
                step_note = self.apply(k, side, event, int(p[PK_TS]), row, CAUSE_RECEIVED, evidence_row)
                note = step_note if note == NOTE_NONE else note
        if note != NOTE_NONE:
            self.rows[row, R_NOTE_RECEIVER] = note
        if flags & RST and not is_invalid_flags(flags):
            self.conn[k, C_OVER_RST] = 1

    # -- one packet
    def packet(self, row: int) -> None:
        p = self.pk[row]
        conv, flags, ts = int(p[PK_CONV]), int(p[PK_FLAGS]), int(p[PK_TS])
        k = int(self.current[conv])
        if k < 0:
            k = self.open_connection(row)
        elif is_bare_syn(flags) and self.is_over(k):
            self.close_connection(k, ts, row)
            k = self.open_connection(row)
        self.fire_timers(k, ts)
        sender = self.side_of(k, row)
        receiver = 1 - sender
        c = self.conn[k]
        c[C_LAST_ROW] = row
        c[C_PACKETS] += 1
        if c[C_SERVER_UNDECIDED] == 1 and sender == 1:
            # A server that answers the SYN with RST (or with its own SYN) was not listening.
            self.settle_server(k, CLOSED if flags & RST or is_bare_syn(flags) else LISTEN)
        if is_bare_syn(flags) and sender == 0:
            c[C_SEEN] |= SEEN_SYN
        if flags & (SYN | ACK | RST | FIN) == SYN | ACK and sender == 1:
            c[C_SEEN] |= SEEN_SYN_ACK
        # 1. what this packet's ACK proves its sender had received
        self.drain(k, sender, row, ts, False)
        self.rows[row, R_SENDER_BEFORE] = self.ends[2 * k + sender, E_STATE]
        # 2. the sender's own transition (observed)
        self.send(k, sender, row)
        # 3. the receiver's (inferred, on evidence)
        if is_invalid_flags(flags):
            self.rows[row, R_NOTE_SENDER] = NOTE_INVALID_FLAGS
        elif needs_evidence(flags) or self.ends[2 * k + receiver, E_QHEAD] >= 0:
            self.enqueue(k, receiver, row)
        else:
            self.deliver(k, receiver, row, NO_VALUE)
        self.rows[row, R_CONN] = k
        self.rows[row, R_SIDE] = sender
        self.rows[row, R_CLIENT_STATE] = self.ends[2 * k, E_STATE]
        self.rows[row, R_SERVER_STATE] = self.ends[2 * k + 1, E_STATE]

    def backfill_server_states(self) -> None:
        """Rows captured before the server showed whether it was listening get what it turned out to be."""
        rows = self.rows
        for r in range(rows.shape[0]):
            if rows[r, R_CONN] >= 0 and rows[r, R_SERVER_STATE] == UNKNOWN:
                initial = self.conn[rows[r, R_CONN], C_SERVER_INITIAL]
                if initial >= 0:
                    rows[r, R_SERVER_STATE] = initial

    def new_payload(self, k: int, sender: int, row: int) -> int:
        """Payload length, or 0 for data lying wholly before the sender's own FIN (a re-send of old data)."""
        length = int(self.pk[row, PK_LEN])
        fin_end = int(self.ends[2 * k + sender, E_FIN_END])
        if length and fin_end >= 0 and not self.pk[row, PK_FLAGS] & FIN:
            end = (int(self.pk[row, PK_SEQ]) + length) & MASK32
            if seq_ge((fin_end - 1) & MASK32, end):
                return 0
        return length

    def send(self, k: int, side: int, row: int) -> None:
        p = self.pk[row]
        flags, ts = int(p[PK_FLAGS]), int(p[PK_TS])
        length = int(p[PK_LEN])
        e = 2 * k + side
        note = NOTE_NONE
        for event in send_events(flags, self.new_payload(k, side, row)):
            if event >= 0:
                step_note = self.apply(k, side, event, ts, row, CAUSE_SENT, NO_VALUE)
                note = step_note if note == NOTE_NONE else note
        peer = 2 * k + 1 - side
        if flags & ACK and not is_invalid_flags(flags) and self.ends[peer, E_SND_NXT] >= 0 \
                and not seq_ge(int(self.ends[peer, E_SND_NXT]), int(p[PK_ACK])):
            note = NOTE_ACK_UNSEEN if note == NOTE_NONE else note
        if note != NOTE_NONE:
            self.rows[row, R_NOTE_SENDER] = note
        if is_invalid_flags(flags):
            return
        end = segment_end(flags, int(p[PK_SEQ]), length)
        if self.ends[e, E_SND_NXT] < 0 or seq_ge(end, int(self.ends[e, E_SND_NXT])):
            self.ends[e, E_SND_NXT] = end
        if flags & FIN and not flags & RST:
            self.ends[e, E_FIN_END] = end
        if flags & RST:
            self.conn[k, C_OVER_RST] = 1

    def run(self, order: np.ndarray) -> ReplayResult:
        for i in range(order.shape[0]):
            self.packet(int(order[i]))
        for k in range(self.n_conn):
            self.close_connection(k, self.capture_end, NO_VALUE)
        self.backfill_server_states()
        return ReplayResult(self.rows, self.conn[: self.n_conn].copy(),
                            self.ends[: 2 * self.n_conn].copy(), self.trans[: self.n_trans].copy())


def replay(packets: np.ndarray, order: np.ndarray, n_conv: int, guessed_client_dir: np.ndarray,
           two_msl_ns: int, capture_end_ns: int) -> ReplayResult:
    """Replay ``packets`` (an (n, N_PK) int64 matrix) in ``order``; see the module docstring."""
    return _Replay(packets, n_conv, guessed_client_dir, two_msl_ns, capture_end_ns).run(order)
