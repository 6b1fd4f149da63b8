"""The replay's per-connection state and every update to it, compiled with numba.

:mod:`pcapstate.replay` explains what the replay infers and why; this module is
its machinery.  All state lives in one :data:`State` namedtuple of integer
arrays indexed by connection id (``conn``), endpoint (``ends``, row ``2 * k +
side``) or packet-table row (``rows``), so every function here compiles
unchanged with numba (``pcapstate.jit``) or runs as plain Python.

The transition buffer never grows inside compiled code: :func:`run_packets`
stops before a packet that might overflow it, the Python driver grows the
buffer and calls again.  A packet emits at most a handful of transitions of its
own, plus up to three for every pending segment it releases, so the check
before each packet is exact enough.
"""
from __future__ import annotations

from collections import namedtuple

from pcapstate.jit import njit
from pcapstate.machine import NEXT_STATE, STEP_NOTE
from pcapstate.replay import (
    ACK, C_CLIENT_DIR, C_CONV, C_FIRST_ROW, C_GUESSED, C_LAST_ROW, C_OVER_RST, C_PACKETS, C_SEEN,
    C_SERVER_INITIAL, C_SERVER_UNDECIDED, C_START_KIND, CAUSE_ASSUMED, CAUSE_RECEIVED, CAUSE_SENT, CAUSE_TIMER,
    CLOSED, E_FIN_END, E_LAST_TS, E_QHEAD, E_QLEN, E_QTAIL, E_SND_NXT, E_STATE, E_TW_SINCE, ESTABLISHED,
    EV_TIMER_2MSL, FIN, LISTEN, MASK32, NO_VALUE, NOTE_ACK_UNSEEN, NOTE_INVALID_FLAGS, NOTE_NONE, PK_ACK, PK_CONV,
    PK_DIR, PK_FLAGS, PK_LEN, PK_SEQ, PK_TS, R_CLIENT_STATE, R_CONN, R_NOTE_RECEIVER, R_NOTE_SENDER, R_SENDER_BEFORE,
    R_SERVER_STATE, R_SIDE, RST, SEEN_CLIENT_HANDSHAKE, SEEN_SERVER_HANDSHAKE, SEEN_SYN, SEEN_SYN_ACK, START_MIDSTREAM,
    START_SYN, START_SYN_ACK, SYN, SYN_RCVD, SYN_SENT, T_CAUSE, T_CONN, T_EVIDENCE, T_FROM, T_ROW, T_SIDE, T_TO,
    T_TS, TIME_WAIT, UNKNOWN, is_bare_syn, is_invalid_flags, needs_evidence, receive_events, segment_end,
    send_events, seq_ge)

State = namedtuple("State", "pk conn ends queue trans rows cnt current guess")
# cnt: counters and parameters
K_N_CONN, K_N_NODES, K_N_TRANS, K_TWO_MSL, K_CAPTURE_END = range(5)
PER_PACKET = 16  # transitions a packet may emit besides those of the segments it releases


# --- transitions --------------------------------------------------------------------


@njit
def emit(st, k, side, ts, row, old, new, cause, evidence):
    i = st.cnt[K_N_TRANS]
    t = st.trans
    t[i, T_CONN], t[i, T_SIDE], t[i, T_TS], t[i, T_ROW] = k, side, ts, row
    t[i, T_FROM], t[i, T_TO], t[i, T_CAUSE], t[i, T_EVIDENCE] = old, new, cause, evidence
    st.cnt[K_N_TRANS] = i + 1


@njit
def apply(st, k, side, event, ts, row, cause, evidence):
    """Step endpoint ``side`` of connection ``k``; record a transition; return the note."""
    e = 2 * k + side
    old = st.ends[e, E_STATE]
    if old == UNKNOWN:  # a server not yet known to be listening: now it must be
        settle_server(st, k, LISTEN)
        old = st.ends[e, E_STATE]
    if ts < st.ends[e, E_LAST_TS]:  # an endpoint's timeline never runs backwards
        ts = st.ends[e, E_LAST_TS]
    new = NEXT_STATE[old, event]
    note = STEP_NOTE[old, event]
    st.ends[e, E_LAST_TS] = ts
    if new != old:
        st.ends[e, E_STATE] = new
        st.ends[e, E_TW_SINCE] = ts if new == TIME_WAIT else NO_VALUE
        emit(st, k, side, ts, row, old, new, cause, evidence)
        if new == ESTABLISHED and (old == SYN_SENT or old == SYN_RCVD):
            st.conn[k, C_SEEN] |= SEEN_CLIENT_HANDSHAKE if side == 0 else SEEN_SERVER_HANDSHAKE
    return note


@njit
def assume(st, k, side, state, row, old):
    e = 2 * k + side
    ts = st.pk[row, PK_TS]
    st.ends[e, E_STATE] = state
    st.ends[e, E_LAST_TS] = ts
    emit(st, k, side, ts, row, old, state, CAUSE_ASSUMED, NO_VALUE)


@njit
def settle_server(st, k, state):
    """Decide the initial state of a server first seen through a client's SYN."""
    st.conn[k, C_SERVER_UNDECIDED] = 0
    st.conn[k, C_SERVER_INITIAL] = state
    if state == LISTEN:
        assume(st, k, 1, LISTEN, st.conn[k, C_FIRST_ROW], CLOSED)
    else:
        st.ends[2 * k + 1, E_STATE] = state


@njit
def fire_timers(st, k, now):
    """TIME_WAIT endpoints whose 2*MSL ended before ``now`` go to CLOSED."""
    for side in range(2):
        e = 2 * k + side
        since = st.ends[e, E_TW_SINCE]
        if st.ends[e, E_STATE] == TIME_WAIT and since >= 0 and since + st.cnt[K_TWO_MSL] <= now:
            apply(st, k, side, EV_TIMER_2MSL, since + st.cnt[K_TWO_MSL], NO_VALUE, CAUSE_TIMER, NO_VALUE)


# --- connections ----------------------------------------------------------------------


@njit
def is_over(st, k):
    if st.conn[k, C_OVER_RST] == 1:
        return True
    for side in range(2):
        state = st.ends[2 * k + side, E_STATE]
        if state != CLOSED and state != TIME_WAIT:
            return False
    return True


@njit
def open_connection(st, row):
    k = st.cnt[K_N_CONN]
    st.cnt[K_N_CONN] = k + 1
    c = st.conn[k]
    c[C_CONV], c[C_FIRST_ROW], c[C_LAST_ROW], c[C_PACKETS] = st.pk[row, PK_CONV], row, row, 0
    c[C_OVER_RST], c[C_SEEN], c[C_SERVER_UNDECIDED] = 0, 0, 0
    for side in range(2):
        st.ends[2 * k + side, E_STATE] = UNKNOWN
        st.ends[2 * k + side, E_LAST_TS] = st.pk[row, PK_TS]
    flags = st.pk[row, PK_FLAGS]
    if is_bare_syn(flags):  # the sender is the client; the server is decided by its reply
        c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = st.pk[row, PK_DIR], 0, START_SYN
        st.ends[2 * k, E_STATE] = CLOSED
        c[C_SERVER_UNDECIDED] = 1
    elif flags & (SYN | ACK | RST | FIN) == SYN | ACK:  # caught mid-handshake
        c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = 1 - st.pk[row, PK_DIR], 1, START_SYN_ACK
        assume(st, k, 0, SYN_SENT, row, UNKNOWN)
        assume(st, k, 1, SYN_RCVD, row, UNKNOWN)
    else:  # started before the capture
        c[C_CLIENT_DIR], c[C_GUESSED], c[C_START_KIND] = st.guess[st.pk[row, PK_CONV]], 1, START_MIDSTREAM
        assume(st, k, 0, ESTABLISHED, row, UNKNOWN)
        assume(st, k, 1, ESTABLISHED, row, UNKNOWN)
    st.current[st.pk[row, PK_CONV]] = k
    return k


@njit
def close_connection(st, k, now, row):
    """End connection ``k``: unproven SYN/FINs dropped, held segments applied, timers fired."""
    for side in range(2):
        drain(st, k, side, -1, True)
    if st.conn[k, C_SERVER_UNDECIDED] == 1:
        settle_server(st, k, LISTEN)
    fire_timers(st, k, now)
    if row >= 0:  # a new SYN reuses the 4-tuple: the old TIME_WAIT socket gives way
        sender = side_of(st, k, row)
        for side in range(2):
            if st.ends[2 * k + side, E_STATE] == TIME_WAIT:
                cause = CAUSE_SENT if side == sender else CAUSE_RECEIVED
                apply(st, k, side, EV_TIMER_2MSL, now, row, cause, NO_VALUE)


@njit
def side_of(st, k, row):
    return 0 if st.pk[row, PK_DIR] == st.conn[k, C_CLIENT_DIR] else 1


# --- pending queues -----------------------------------------------------------------


@njit
def enqueue(st, k, side, row):
    """Add ``row`` to the pending queue of endpoint ``side``; a resent SYN/FIN replaces its copy."""
    e = 2 * k + side
    flags = st.pk[row, PK_FLAGS]
    if needs_evidence(flags):
        end = segment_end(flags, st.pk[row, PK_SEQ], st.pk[row, PK_LEN])
        node = st.ends[e, E_QHEAD]
        while node >= 0:
            other = st.queue[node, 0]
            other_flags = st.pk[other, PK_FLAGS]
            if other_flags & (SYN | ACK | FIN | RST) == flags & (SYN | ACK | FIN | RST) and \
                    segment_end(other_flags, st.pk[other, PK_SEQ], st.pk[other, PK_LEN]) == end:
                st.queue[node, 0] = row  # the later copy is the one that got through
                return
            node = st.queue[node, 1]
    node = st.cnt[K_N_NODES]
    st.cnt[K_N_NODES] = node + 1
    st.queue[node, 0], st.queue[node, 1] = row, NO_VALUE
    if st.ends[e, E_QTAIL] >= 0:
        st.queue[st.ends[e, E_QTAIL], 1] = node
    else:
        st.ends[e, E_QHEAD] = node
    st.ends[e, E_QTAIL] = node
    st.ends[e, E_QLEN] += 1


@njit
def drain(st, k, side, evidence_row, final):
    """Apply what endpoint ``side`` has now proved (or, when ``final``, may assume) it received.

    ``evidence_row`` is the endpoint's own packet about to be sent (-1 at the
    end): SYN/FIN entries its ACK covers are applied, the others stay
    pending (dropped when ``final``).  Entries behind a pending SYN/FIN wait.
    """
    e = 2 * k + side
    covers = -1
    if evidence_row >= 0 and st.pk[evidence_row, PK_FLAGS] & ACK:
        covers = st.pk[evidence_row, PK_ACK]
    node, prev, blocked = st.ends[e, E_QHEAD], -1, False
    while node >= 0:
        row, nxt = st.queue[node, 0], st.queue[node, 1]
        flags = st.pk[row, PK_FLAGS]
        take = False
        if needs_evidence(flags):
            end = segment_end(flags, st.pk[row, PK_SEQ], st.pk[row, PK_LEN])
            if covers >= 0 and seq_ge(covers, end):
                take = True
            elif final:  # never acknowledged: never received
                prev = unlink(st, e, node, prev)
                node = nxt
                continue
            else:
                blocked = True
        else:
            take = final or not blocked
        if take:
            prev = unlink(st, e, node, prev)
            deliver(st, k, side, row, evidence_row)
        else:
            prev = node
        node = nxt


@njit
def unlink(st, e, node, prev):
    """Remove ``node`` (whose predecessor is ``prev``); return the predecessor of the next node."""
    nxt = st.queue[node, 1]
    if prev >= 0:
        st.queue[prev, 1] = nxt
    else:
        st.ends[e, E_QHEAD] = nxt
    if st.ends[e, E_QTAIL] == node:
        st.ends[e, E_QTAIL] = prev
    st.ends[e, E_QLEN] -= 1
    return prev


# --- one packet ------------------------------------------------------------------------


@njit
def deliver(st, k, side, row, evidence_row):
    """Endpoint ``side`` of connection ``k`` receives the packet at ``row``."""
    flags = st.pk[row, PK_FLAGS]
    fin_end = st.ends[2 * k + side, E_FIN_END]
    events = receive_events(flags, new_payload(st, k, 1 - side, row), st.pk[row, PK_ACK], fin_end)
    note = NOTE_NONE
    for event in events:
        if event >= 0:
            step_note = apply(st, k, side, event, st.pk[row, PK_TS], row, CAUSE_RECEIVED, evidence_row)
            note = step_note if note == NOTE_NONE else note
    if note != NOTE_NONE:
        st.rows[row, R_NOTE_RECEIVER] = note
    if flags & RST and not is_invalid_flags(flags):
        st.conn[k, C_OVER_RST] = 1


@njit
def new_payload(st, k, sender, row):
    """Payload length, or 0 for data lying wholly before the sender's own FIN (a re-send of old data)."""
    length = st.pk[row, PK_LEN]
    fin_end = st.ends[2 * k + sender, E_FIN_END]
    if length and fin_end >= 0 and not st.pk[row, PK_FLAGS] & FIN:
        end = (st.pk[row, PK_SEQ] + length) & MASK32
        if seq_ge((fin_end - 1) & MASK32, end):
            return 0
    return length


@njit
def send(st, k, side, row):
    flags, ts = st.pk[row, PK_FLAGS], st.pk[row, PK_TS]
    e = 2 * k + side
    note = NOTE_NONE
    for event in send_events(flags, new_payload(st, k, side, row)):
        if event >= 0:
            step_note = apply(st, k, side, event, ts, row, CAUSE_SENT, NO_VALUE)
            note = step_note if note == NOTE_NONE else note
    peer = 2 * k + 1 - side
    if flags & ACK and not is_invalid_flags(flags) and st.ends[peer, E_SND_NXT] >= 0 \
            and not seq_ge(st.ends[peer, E_SND_NXT], st.pk[row, PK_ACK]):
        note = NOTE_ACK_UNSEEN if note == NOTE_NONE else note
    if note != NOTE_NONE:
        st.rows[row, R_NOTE_SENDER] = note
    if is_invalid_flags(flags):
        return
    end = segment_end(flags, st.pk[row, PK_SEQ], st.pk[row, PK_LEN])
    if st.ends[e, E_SND_NXT] < 0 or seq_ge(end, st.ends[e, E_SND_NXT]):
        st.ends[e, E_SND_NXT] = end
    if flags & FIN and not flags & RST:
        st.ends[e, E_FIN_END] = end
    if flags & RST:
        st.conn[k, C_OVER_RST] = 1


@njit
def packet(st, row):
    conv, flags, ts = st.pk[row, PK_CONV], st.pk[row, PK_FLAGS], st.pk[row, PK_TS]
    k = st.current[conv]
    if k < 0:
        k = open_connection(st, row)
    elif is_bare_syn(flags) and is_over(st, k):
        close_connection(st, k, ts, row)
        k = open_connection(st, row)
    fire_timers(st, k, ts)
    sender = side_of(st, k, row)
    receiver = 1 - sender
    c = st.conn[k]
    c[C_LAST_ROW] = row
    c[C_PACKETS] += 1
    if c[C_SERVER_UNDECIDED] == 1 and sender == 1:
        # A server that answers the SYN with RST (or with its own SYN) was not listening.
        settle_server(st, k, CLOSED if flags & RST or is_bare_syn(flags) else LISTEN)
    if is_bare_syn(flags) and sender == 0:
        c[C_SEEN] |= SEEN_SYN
    if flags & (SYN | ACK | RST | FIN) == SYN | ACK and sender == 1:
        c[C_SEEN] |= SEEN_SYN_ACK
    drain(st, k, sender, row, False)  # 1. what this packet's ACK proves its sender had received
    st.rows[row, R_SENDER_BEFORE] = st.ends[2 * k + sender, E_STATE]
    send(st, k, sender, row)  # 2. the sender's own transition (observed)
    if is_invalid_flags(flags):  # 3. the receiver's (inferred, on evidence)
        st.rows[row, R_NOTE_SENDER] = NOTE_INVALID_FLAGS
    elif needs_evidence(flags) or st.ends[2 * k + receiver, E_QHEAD] >= 0:
        enqueue(st, k, receiver, row)
    else:
        deliver(st, k, receiver, row, NO_VALUE)
    st.rows[row, R_CONN] = k
    st.rows[row, R_SIDE] = sender
    st.rows[row, R_CLIENT_STATE] = st.ends[2 * k, E_STATE]
    st.rows[row, R_SERVER_STATE] = st.ends[2 * k + 1, E_STATE]


# --- the loops the driver calls -----------------------------------------------------


@njit
def _room(st, k):
    """Transitions the next step on connection ``k`` may emit, at most."""
    need = PER_PACKET
    if k >= 0:
        need += 3 * (st.ends[2 * k, E_QLEN] + st.ends[2 * k + 1, E_QLEN])
    return need


@njit
def run_packets(st, order, start):
    """Replay ``order[start:]``; return where it stopped (len(order) when done, earlier when out of room)."""
    for i in range(start, order.shape[0]):
        row = order[i]
        if st.cnt[K_N_TRANS] + _room(st, st.current[st.pk[row, PK_CONV]]) > st.trans.shape[0]:
            return i
        packet(st, row)
    return order.shape[0]


@njit
def close_all(st, start):
    """End every connection from ``start`` on at the capture's end; return where it stopped."""
    for k in range(start, st.cnt[K_N_CONN]):
        if st.cnt[K_N_TRANS] + _room(st, k) > st.trans.shape[0]:
            return k
        close_connection(st, k, st.cnt[K_CAPTURE_END], NO_VALUE)
    return st.cnt[K_N_CONN]


@njit
def backfill_server_states(st):
    """Rows captured before the server showed whether it was listening get what it turned out to be."""
    for r in range(st.rows.shape[0]):
        if st.rows[r, R_CONN] >= 0 and st.rows[r, R_SERVER_STATE] == UNKNOWN:
            initial = st.conn[st.rows[r, R_CONN], C_SERVER_INITIAL]
            if initial >= 0:
                st.rows[r, R_SERVER_STATE] = initial
