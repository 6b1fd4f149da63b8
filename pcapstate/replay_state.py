"""The replay's per-connection state and every update to it, compiled with numba.

:mod:`pcapstate.replay` explains what the replay infers and why; this module is
its machinery.  All state lives in integer arrays indexed by connection id
(``conn``), endpoint (``ends``, row ``2 * k + side``) or packet-table row
(``rows``), so every function here compiles unchanged with numba
(``pcapstate.jit``) or runs as plain Python.  The driver keeps them together
in one :data:`State` namedtuple, but each function here takes the arrays it
uses as plain arguments: numba increments and decrements the reference count
of every array in a tuple at every call that passes it (atomic operations),
and on the replay's several calls per packet that cost a third of its time.

The transition buffer never grows inside compiled code: :func:`run_packets`
stops before a packet that might overflow it, the Python driver grows the
buffer and calls again.  A packet emits at most a handful of transitions of its
own, plus up to three for every pending segment it releases, so the check
before each packet is exact enough.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from pcapstate.jit import entry, inline
from pcapstate.machine import NEXT_STATE, STEP_NOTE
from pcapstate.replay import (
    ACK, C_CLIENT_DIR, C_CONV, C_FIRST_ROW, C_GUESSED, C_LAST_ROW, C_OVER_RST, C_PACKETS, C_SEEN,
    C_SERVER_INITIAL, C_SERVER_UNDECIDED, C_START_KIND, CAUSE_ASSUMED, CAUSE_RECEIVED, CAUSE_SENT, CAUSE_TIMER,
    CLOSED, E_FIN_END, E_LAST_TS, E_QHEAD, E_QLEN, E_QTAIL, E_SND_NXT, E_STATE, E_TW_SINCE, ESTABLISHED,
    EV_TIMER_2MSL, FIN, LISTEN, MASK32, NO_VALUE, NOTE_ACK_UNSEEN, NOTE_INVALID_FLAGS, NOTE_NONE, PK_ACK, PK_CONV,
    PK_DIR, PK_FLAGS, PK_LEN, PK_SEQ, PK_TS, R_CLIENT_STATE, R_CONN, R_NOTE_RECEIVER, R_NOTE_SENDER, R_SENDER_BEFORE,
    R_SERVER_STATE, R_SIDE, ROWS, RST, SEEN_CLIENT_HANDSHAKE, SEEN_SERVER_HANDSHAKE, SEEN_SYN, SEEN_SYN_ACK, START_MIDSTREAM,
    START_SYN, START_SYN_ACK, SYN, SYN_RCVD, SYN_SENT, T_CAUSE, T_CONN, T_EVIDENCE, T_FROM, T_ROW, T_SIDE, T_TO,
    T_TS, TIME_WAIT, UNKNOWN, is_bare_syn, is_invalid_flags, needs_evidence, receive_events, segment_end,
    send_events, seq_ge)

State = namedtuple("State", "pk conn ends queue trans rows cnt current guess")
# cnt: counters and parameters
K_N_CONN, K_N_NODES, K_N_TRANS, K_TWO_MSL, K_CAPTURE_END = range(5)
PER_PACKET = 16  # transitions a packet may emit besides those of the segments it releases


# --- transitions --------------------------------------------------------------------


@inline
def emit(trans, cnt, k, side, ts, row, old, new, cause, evidence):
    i = cnt[K_N_TRANS]
    trans[i, T_CONN], trans[i, T_SIDE], trans[i, T_TS], trans[i, T_ROW] = k, side, ts, row
    trans[i, T_FROM], trans[i, T_TO], trans[i, T_CAUSE], trans[i, T_EVIDENCE] = old, new, cause, evidence
    cnt[K_N_TRANS] = i + 1


@inline
def apply(pk, conn, ends, trans, cnt, k, side, event, ts, row, cause, evidence):
    """Step endpoint ``side`` of connection ``k``; record a transition; return the note."""
    e = 2 * k + side
    old = ends[e, E_STATE]
    if old == UNKNOWN:  # a server not yet known to be listening: now it must be
        settle_server(pk, conn, ends, trans, cnt, k, LISTEN)
        old = ends[e, E_STATE]
    if ts < ends[e, E_LAST_TS]:  # an endpoint's timeline never runs backwards
        ts = ends[e, E_LAST_TS]
    new = NEXT_STATE[old, event]
    note = STEP_NOTE[old, event]
    ends[e, E_LAST_TS] = ts
    if new != old:
        ends[e, E_STATE] = new
        ends[e, E_TW_SINCE] = ts if new == TIME_WAIT else NO_VALUE
        emit(trans, cnt, k, side, ts, row, old, new, cause, evidence)
        if new == ESTABLISHED and (old == SYN_SENT or old == SYN_RCVD):
            conn[k, C_SEEN] |= SEEN_CLIENT_HANDSHAKE if side == 0 else SEEN_SERVER_HANDSHAKE
    return note


@inline
def assume(pk, ends, trans, cnt, k, side, state, row, old):
    e = 2 * k + side
    ts = pk[row, PK_TS]
    ends[e, E_STATE] = state
    ends[e, E_LAST_TS] = ts
    emit(trans, cnt, k, side, ts, row, old, state, CAUSE_ASSUMED, NO_VALUE)


@inline
def settle_server(pk, conn, ends, trans, cnt, k, state):
    """Decide the initial state of a server first seen through a client's SYN."""
    conn[k, C_SERVER_UNDECIDED] = 0
    conn[k, C_SERVER_INITIAL] = state
    if state == LISTEN:
        assume(pk, ends, trans, cnt, k, 1, LISTEN, conn[k, C_FIRST_ROW], CLOSED)
    else:
        ends[2 * k + 1, E_STATE] = state


@inline
def fire_timers(pk, conn, ends, trans, cnt, k, now):
    """TIME_WAIT endpoints whose 2*MSL ended before ``now`` go to CLOSED."""
    for side in range(2):
        e = 2 * k + side
        since = ends[e, E_TW_SINCE]
        if ends[e, E_STATE] == TIME_WAIT and since >= 0 and since + cnt[K_TWO_MSL] <= now:
            apply(pk, conn, ends, trans, cnt, k, side, EV_TIMER_2MSL, since + cnt[K_TWO_MSL], NO_VALUE, CAUSE_TIMER,
                  NO_VALUE)


# --- connections ----------------------------------------------------------------------


@inline
def is_over(conn, ends, k):
    if conn[k, C_OVER_RST] == 1:
        return True
    for side in range(2):
        state = ends[2 * k + side, E_STATE]
        if state != CLOSED and state != TIME_WAIT:
            return False
    return True


@inline
def open_connection(pk, conn, ends, trans, cnt, current, guess, row):
    k = cnt[K_N_CONN]
    cnt[K_N_CONN] = k + 1
    # conn[k, ...] throughout, never a row view: a view is one more reference to count, on every packet
    conn[k, C_CONV], conn[k, C_FIRST_ROW], conn[k, C_LAST_ROW], conn[k, C_PACKETS] = pk[row, PK_CONV], row, row, 0
    conn[k, C_OVER_RST], conn[k, C_SEEN], conn[k, C_SERVER_UNDECIDED] = 0, 0, 0
    for side in range(2):
        ends[2 * k + side, E_STATE] = UNKNOWN
        ends[2 * k + side, E_LAST_TS] = pk[row, PK_TS]
    flags = pk[row, PK_FLAGS]
    if is_bare_syn(flags):  # the sender is the client; the server is decided by its reply
        conn[k, C_CLIENT_DIR], conn[k, C_GUESSED], conn[k, C_START_KIND] = pk[row, PK_DIR], 0, START_SYN
        ends[2 * k, E_STATE] = CLOSED
        conn[k, C_SERVER_UNDECIDED] = 1
    elif flags & (SYN | ACK | RST | FIN) == SYN | ACK:  # caught mid-handshake
        conn[k, C_CLIENT_DIR], conn[k, C_GUESSED], conn[k, C_START_KIND] = 1 - pk[row, PK_DIR], 1, START_SYN_ACK
        assume(pk, ends, trans, cnt, k, 0, SYN_SENT, row, UNKNOWN)
        assume(pk, ends, trans, cnt, k, 1, SYN_RCVD, row, UNKNOWN)
    else:  # started before the capture
        conn[k, C_CLIENT_DIR], conn[k, C_GUESSED], conn[k, C_START_KIND] = guess[pk[row, PK_CONV]], 1, \
            START_MIDSTREAM
        assume(pk, ends, trans, cnt, k, 0, ESTABLISHED, row, UNKNOWN)
        assume(pk, ends, trans, cnt, k, 1, ESTABLISHED, row, UNKNOWN)
    current[pk[row, PK_CONV]] = k
    return k


@inline
def close_connection(pk, conn, ends, queue, trans, rows, cnt, k, now, row):
    """End connection ``k``: unproven SYN/FINs dropped, held segments applied, timers fired."""
    for side in range(2):
        drain(pk, conn, ends, queue, trans, rows, cnt, k, side, -1, True)
    if conn[k, C_SERVER_UNDECIDED] == 1:
        settle_server(pk, conn, ends, trans, cnt, k, LISTEN)
    fire_timers(pk, conn, ends, trans, cnt, k, now)
    if row >= 0:  # a new SYN reuses the 4-tuple: the old TIME_WAIT socket gives way
        sender = side_of(pk, conn, k, row)
        for side in range(2):
            if ends[2 * k + side, E_STATE] == TIME_WAIT:
                cause = CAUSE_SENT if side == sender else CAUSE_RECEIVED
                apply(pk, conn, ends, trans, cnt, k, side, EV_TIMER_2MSL, now, row, cause, NO_VALUE)


@inline
def side_of(pk, conn, k, row):
    return 0 if pk[row, PK_DIR] == conn[k, C_CLIENT_DIR] else 1


# --- pending queues -----------------------------------------------------------------


@inline
def enqueue(pk, ends, queue, cnt, k, side, row):
    """Add ``row`` to the pending queue of endpoint ``side``; a resent SYN/FIN replaces its copy."""
    e = 2 * k + side
    flags = pk[row, PK_FLAGS]
    if needs_evidence(flags):
        end = segment_end(flags, pk[row, PK_SEQ], pk[row, PK_LEN])
        node = ends[e, E_QHEAD]
        while node >= 0:
            other = queue[node, 0]
            other_flags = pk[other, PK_FLAGS]
            if other_flags & (SYN | ACK | FIN | RST) == flags & (SYN | ACK | FIN | RST) and \
                    segment_end(other_flags, pk[other, PK_SEQ], pk[other, PK_LEN]) == end:
                queue[node, 0] = row  # the later copy is the one that got through
                return
            node = queue[node, 1]
    node = cnt[K_N_NODES]
    cnt[K_N_NODES] = node + 1
    queue[node, 0], queue[node, 1] = row, NO_VALUE
    if ends[e, E_QTAIL] >= 0:
        queue[ends[e, E_QTAIL], 1] = node
    else:
        ends[e, E_QHEAD] = node
    ends[e, E_QTAIL] = node
    ends[e, E_QLEN] += 1


@inline
def drain(pk, conn, ends, queue, trans, rows, cnt, k, side, evidence_row, final):
    """Apply what endpoint ``side`` has now proved (or, when ``final``, may assume) it received.

    ``evidence_row`` is the endpoint's own packet about to be sent (-1 at the
    end): SYN/FIN entries its ACK covers are applied, the others stay
    pending (dropped when ``final``).  Entries behind a pending SYN/FIN wait.
    """
    e = 2 * k + side
    covers = np.int64(-1)  # np.int64: a plain -1 is typed as a literal, which inlining cannot widen
    if evidence_row >= 0 and pk[evidence_row, PK_FLAGS] & ACK:
        covers = pk[evidence_row, PK_ACK]
    node, prev, blocked = ends[e, E_QHEAD], np.int64(-1), False
    while node >= 0:
        row, nxt = queue[node, 0], queue[node, 1]
        flags = pk[row, PK_FLAGS]
        take = False
        if needs_evidence(flags):
            end = segment_end(flags, pk[row, PK_SEQ], pk[row, PK_LEN])
            if covers >= 0 and seq_ge(covers, end):
                take = True
            elif final:  # never acknowledged: never received
                prev = unlink(ends, queue, e, node, prev)
                node = nxt
                continue
            else:
                blocked = True
        else:
            take = final or not blocked
        if take:
            prev = unlink(ends, queue, e, node, prev)
            deliver(pk, conn, ends, trans, rows, cnt, k, side, row, evidence_row)
        else:
            prev = node
        node = nxt


@inline
def unlink(ends, queue, e, node, prev):
    """Remove ``node`` (whose predecessor is ``prev``); return the predecessor of the next node."""
    nxt = queue[node, 1]
    if prev >= 0:
        queue[prev, 1] = nxt
    else:
        ends[e, E_QHEAD] = nxt
    if ends[e, E_QTAIL] == node:
        ends[e, E_QTAIL] = prev
    ends[e, E_QLEN] -= 1
    return prev


# --- one packet ------------------------------------------------------------------------


@inline
def deliver(pk, conn, ends, trans, rows, cnt, k, side, row, evidence_row):
    """Endpoint ``side`` of connection ``k`` receives the packet at ``row``."""
    flags = pk[row, PK_FLAGS]
    fin_end = ends[2 * k + side, E_FIN_END]
    events = receive_events(flags, new_payload(pk, ends, k, 1 - side, row), pk[row, PK_ACK], fin_end)
    note = np.int64(NOTE_NONE)
    for event in events:
        if event >= 0:
            step_note = apply(pk, conn, ends, trans, cnt, k, side, event, pk[row, PK_TS], row, CAUSE_RECEIVED,
                              evidence_row)
            note = step_note if note == NOTE_NONE else note
    if note != NOTE_NONE:
        rows[row, R_NOTE_RECEIVER] = note
    if flags & RST and not is_invalid_flags(flags):
        conn[k, C_OVER_RST] = 1


@inline
def new_payload(pk, ends, k, sender, row):
    """Payload length, or 0 for data lying wholly before the sender's own FIN (a re-send of old data)."""
    length = pk[row, PK_LEN]
    fin_end = ends[2 * k + sender, E_FIN_END]
    if length and fin_end >= 0 and not pk[row, PK_FLAGS] & FIN:
        end = (pk[row, PK_SEQ] + length) & MASK32
        if seq_ge((fin_end - 1) & MASK32, end):
            return 0
    return length


@inline
def send(pk, conn, ends, trans, rows, cnt, k, side, row):
    flags, ts = pk[row, PK_FLAGS], pk[row, PK_TS]
    e = 2 * k + side
    note = np.int64(NOTE_NONE)
    for event in send_events(flags, new_payload(pk, ends, k, side, row)):
        if event >= 0:
            step_note = apply(pk, conn, ends, trans, cnt, k, side, event, ts, row, CAUSE_SENT, NO_VALUE)
            note = step_note if note == NOTE_NONE else note
    peer = 2 * k + 1 - side
    if flags & ACK and not is_invalid_flags(flags) and ends[peer, E_SND_NXT] >= 0 \
            and not seq_ge(ends[peer, E_SND_NXT], pk[row, PK_ACK]):
        note = NOTE_ACK_UNSEEN if note == NOTE_NONE else note
    if note != NOTE_NONE:
        rows[row, R_NOTE_SENDER] = note
    if is_invalid_flags(flags):
        return
    end = segment_end(flags, pk[row, PK_SEQ], pk[row, PK_LEN])
    if ends[e, E_SND_NXT] < 0 or seq_ge(end, ends[e, E_SND_NXT]):
        ends[e, E_SND_NXT] = end
    if flags & FIN and not flags & RST:
        ends[e, E_FIN_END] = end
    if flags & RST:
        conn[k, C_OVER_RST] = 1


@inline
def packet(pk, conn, ends, queue, trans, rows, cnt, current, guess, row):
    conv, flags, ts = pk[row, PK_CONV], pk[row, PK_FLAGS], pk[row, PK_TS]
    rows[row, R_NOTE_SENDER] = NOTE_NONE  # the row's output starts here (the driver leaves it unset)
    rows[row, R_NOTE_RECEIVER] = NOTE_NONE
    k = current[conv]
    if k < 0:
        k = open_connection(pk, conn, ends, trans, cnt, current, guess, row)
    elif is_bare_syn(flags) and is_over(conn, ends, k):
        close_connection(pk, conn, ends, queue, trans, rows, cnt, k, ts, row)
        k = open_connection(pk, conn, ends, trans, cnt, current, guess, row)
    fire_timers(pk, conn, ends, trans, cnt, k, ts)
    sender = side_of(pk, conn, k, row)
    receiver = 1 - sender
    conn[k, C_LAST_ROW] = row
    conn[k, C_PACKETS] += 1
    if conn[k, C_SERVER_UNDECIDED] == 1 and sender == 1:
        # A server that answers the SYN with RST (or with its own SYN) was not listening.
        settle_server(pk, conn, ends, trans, cnt, k, CLOSED if flags & RST or is_bare_syn(flags) else LISTEN)
    if is_bare_syn(flags) and sender == 0:
        conn[k, C_SEEN] |= SEEN_SYN
    if flags & (SYN | ACK | RST | FIN) == SYN | ACK and sender == 1:
        conn[k, C_SEEN] |= SEEN_SYN_ACK
    # 1. what this packet's ACK proves its sender had received
    drain(pk, conn, ends, queue, trans, rows, cnt, k, sender, row, False)
    rows[row, R_SENDER_BEFORE] = ends[2 * k + sender, E_STATE]
    send(pk, conn, ends, trans, rows, cnt, k, sender, row)  # 2. the sender's own transition (observed)
    if is_invalid_flags(flags):  # 3. the receiver's (inferred, on evidence)
        rows[row, R_NOTE_SENDER] = NOTE_INVALID_FLAGS
    elif needs_evidence(flags) or ends[2 * k + receiver, E_QHEAD] >= 0:
        enqueue(pk, ends, queue, cnt, k, receiver, row)
    else:
        deliver(pk, conn, ends, trans, rows, cnt, k, receiver, row, NO_VALUE)
    rows[row, R_CONN] = k
    rows[row, R_SIDE] = sender
    rows[row, R_CLIENT_STATE] = ends[2 * k, E_STATE]
    rows[row, R_SERVER_STATE] = ends[2 * k + 1, E_STATE]


# --- the loops the driver calls -----------------------------------------------------


@inline
def _room(ends, k):
    """Transitions the next step on connection ``k`` may emit, at most."""
    if k < 0:
        return PER_PACKET
    return PER_PACKET + 3 * (ends[2 * k, E_QLEN] + ends[2 * k + 1, E_QLEN])


@entry("i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", ROWS, "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]",
       "i8")
def run_packets(pk, conn, ends, queue, trans, rows, cnt, current, guess, order, start):
    """Replay ``order[start:]``; return where it stopped (len(order) when done, earlier when out of room)."""
    for i in range(start, order.shape[0]):
        row = order[i]
        if cnt[K_N_TRANS] + _room(ends, current[pk[row, PK_CONV]]) > trans.shape[0]:
            return i
        packet(pk, conn, ends, queue, trans, rows, cnt, current, guess, row)
    return order.shape[0]


@entry("i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", "i8[:, ::1]", ROWS, "i8[::1]", "i8")
def close_all(pk, conn, ends, queue, trans, rows, cnt, start):
    """End every connection from ``start`` on at the capture's end; return where it stopped."""
    for k in range(start, cnt[K_N_CONN]):
        if cnt[K_N_TRANS] + _room(ends, k) > trans.shape[0]:
            return k
        close_connection(pk, conn, ends, queue, trans, rows, cnt, k, cnt[K_CAPTURE_END], NO_VALUE)
    return cnt[K_N_CONN]


@entry("i8[::1]")
def is_identity(order):
    """Whether ``order`` is 0, 1, 2, ...: a capture already in timestamp order."""
    for i in range(order.shape[0]):
        if order[i] != i:
            return False
    return True


@entry(ROWS, "i8[::1]", "i8[::1]", "i8[:, ::1]", "i8[:, ::1]")
def renumber(rows, share, new_id, trans, out):
    """A share's connection numbers in ``rows`` (its rows) and its transitions (``trans`` into ``out``) by ``new_id``."""
    for i in range(share.shape[0]):
        r = share[i]
        rows[r, R_CONN] = new_id[rows[r, R_CONN]]
    for i in range(trans.shape[0]):
        for c in range(trans.shape[1]):
            out[i, c] = trans[i, c]
        out[i, T_CONN] = new_id[trans[i, T_CONN]]


@entry("i8[:, ::1]", ROWS)
def backfill_server_states(conn, rows):
    """Rows captured before the server showed whether it was listening get what it turned out to be."""
    for r in range(rows.shape[0]):
        if rows[r, R_CONN] >= 0 and rows[r, R_SERVER_STATE] == UNKNOWN:
            initial = conn[rows[r, R_CONN], C_SERVER_INITIAL]
            if initial >= 0:
                rows[r, R_SERVER_STATE] = initial
