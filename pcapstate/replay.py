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
and reads the packet columns by row, with no per-packet Python objects: it runs
compiled with numba (:mod:`pcapstate.jit`); its machinery is in
:mod:`pcapstate.replay_state`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate.jit import njit
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
E_STATE, E_FIN_END, E_SND_NXT, E_LAST_TS, E_TW_SINCE, E_QHEAD, E_QTAIL, E_QLEN = range(8)
N_E = 8
NO_VALUE = -1

# --- per-row output columns ----------------------------------------------------
R_CONN, R_SIDE, R_CLIENT_STATE, R_SERVER_STATE, R_NOTE_SENDER, R_NOTE_RECEIVER, R_SENDER_BEFORE = range(7)
N_R = 7
ROWS_DTYPE = np.int32  # connection ids, sides, states and notes: half the memory of int64 for the largest output
ROWS = "i4[:, ::1]"  # as a compiled entry point's argument (pcapstate.aot)

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
    rows: np.ndarray  # (n, N_R) int32, indexed by packet-table row
    connections: np.ndarray  # (n_connections, N_C) int64
    endpoints: np.ndarray  # (2 * n_connections, N_E) int64, final values
    transitions: np.ndarray  # (n_transitions, N_T) int64, in order of occurrence


# --- small pure helpers --------------------------------------------------------


@njit
def seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in 32-bit sequence space (RFC 9293 section 3.4)."""
    return ((a - b) & MASK32) < HALF32


@njit
def is_invalid_flags(flags: int) -> bool:
    """Flag combinations no TCP stack sends: none, SYN+FIN, SYN+RST, or all of FSRPAU."""
    if flags & 0x3F == 0:
        return True
    if flags & SYN and flags & (FIN | RST):
        return True
    return flags & 0x3F == 0x3F


@njit
def is_bare_syn(flags: int) -> bool:
    return flags & (SYN | ACK | RST | FIN) == SYN


@njit
def needs_evidence(flags: int) -> bool:
    """SYN and FIN occupy sequence space: their arrival is proved by an ACK."""
    return flags & (SYN | FIN) != 0 and not is_invalid_flags(flags)


@njit
def segment_end(flags: int, seq: int, length: int) -> int:
    """Sequence number just past the segment (SYN and FIN count one each)."""
    return (seq + length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK32


@njit
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


@njit
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


# --- the driver -------------------------------------------------------------------


def replay(packets: np.ndarray, order: np.ndarray, n_conv: int, guessed_client_dir: np.ndarray,
           two_msl_ns: int, capture_end_ns: int, shares: list[np.ndarray] | None = None) -> ReplayResult:
    """Replay ``packets`` (an (n, N_PK) int64 matrix) in ``order``; see the module docstring.

    ``shares``: ``order`` split by conversation (:func:`pcapstate.jobs.shares`),
    each replayed on a thread of its own; connections are then numbered as
    one walk over ``order`` numbers them, by their first packet.
    """
    from pcapstate import replay_state as rs
    from pcapstate.jobs import run_all

    packets = np.ascontiguousarray(packets, dtype=np.int64)
    rows = np.empty((packets.shape[0], N_R), dtype=ROWS_DTYPE)  # every row is written when its packet is replayed
    current = np.full(max(n_conv, 1), NO_VALUE, dtype=np.int64)
    guessed = np.ascontiguousarray(guessed_client_dir, dtype=np.int64)
    parts = run_all(lambda part: _replay_share(packets, np.ascontiguousarray(part, dtype=np.int64), rows, current,
                                               guessed, two_msl_ns, capture_end_ns),
                    [order] if shares is None else shares)
    conn, ends, trans = parts[0] if len(parts) == 1 else _numbered(parts, order, rows, shares)
    rs.backfill_server_states(conn, rows)
    return ReplayResult(rows, conn, ends, trans)


def _replay_share(pk: np.ndarray, order: np.ndarray, rows: np.ndarray, current: np.ndarray, guessed: np.ndarray,
                  two_msl_ns: int, capture_end_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The replay of the packets ``order`` lists: its connections, their endpoints, its transitions.

    Connections are numbered 0.. within the share; ``rows`` gets the rows of
    ``order``, ``current`` (per conversation) the entries of their conversations.
    """
    from pcapstate import replay_state as rs

    m = len(order)
    bare_syns = int(np.count_nonzero((pk[order, PK_FLAGS] & (SYN | ACK | RST | FIN)) == SYN))
    conversations = np.zeros(len(current), dtype=np.bool_)
    conversations[pk[order, PK_CONV]] = True
    capacity = int(np.count_nonzero(conversations)) + bare_syns + 1
    ends = np.full((2 * capacity, N_E), NO_VALUE, dtype=np.int64)
    ends[:, E_QLEN] = 0
    counters = np.zeros(5, dtype=np.int64)
    counters[rs.K_TWO_MSL], counters[rs.K_CAPTURE_END] = two_msl_ns, capture_end_ns
    st = rs.State(pk, np.full((capacity, N_C), NO_VALUE, dtype=np.int64), ends,
                  np.empty((m + 1, 2), dtype=np.int64),  # queue nodes: written when taken
                  np.empty((max(1024, m // 2 + 8 * capacity), N_T), dtype=np.int64), rows, counters, current, guessed)
    done = 0
    while done < m:
        done = rs.run_packets(*st, order, done)
        if done < m:
            st = _grown(st)
    closed = 0
    while closed < st.cnt[rs.K_N_CONN]:
        closed = rs.close_all(st.pk, st.conn, st.ends, st.queue, st.trans, st.rows, st.cnt, closed)
        if closed < st.cnt[rs.K_N_CONN]:
            st = _grown(st)
    n_conn, n_trans = int(st.cnt[rs.K_N_CONN]), int(st.cnt[rs.K_N_TRANS])
    # the transitions as a view, not a copy: the buffer's rows past the used ones were never touched
    return st.conn[:n_conn].copy(), st.ends[: 2 * n_conn].copy(), st.trans[:n_trans]


def _numbered(parts: list, order: np.ndarray, rows: np.ndarray, shares: list[np.ndarray]):
    """The shares' connections as one numbering: by the replay position of their first packet.

    A connection's transitions stay in the order it made them; those of
    different connections are grouped by share, which nothing downstream
    reads (every table sorts them by connection and time).
    """
    from pcapstate import replay_state as rs
    from pcapstate.jobs import run_all

    conn_all = np.concatenate([conn for conn, _, _ in parts])
    first_rows = conn_all[:, C_FIRST_ROW]
    if not rs.is_identity(order):  # replayed in timestamp order, not file order: positions differ from rows
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order), dtype=np.int64)
        first_rows = position[first_rows]
    new_id = np.empty(len(conn_all), dtype=np.int64)
    new_id[np.argsort(first_rows, kind="stable")] = np.arange(len(conn_all))
    conn = np.empty_like(conn_all)
    conn[new_id] = conn_all
    ends = np.empty((2 * len(conn_all), N_E), dtype=np.int64)
    trans = np.empty((sum(len(t) for _, _, t in parts), N_T), dtype=np.int64)
    jobs, base, at = [], 0, 0
    for (share_conn, share_ends, share_trans), share in zip(parts, shares):
        renumber = np.ascontiguousarray(new_id[base:base + len(share_conn)])
        ends[2 * renumber], ends[2 * renumber + 1] = share_ends[0::2], share_ends[1::2]
        jobs.append((share, renumber, share_trans, trans[at:at + len(share_trans)]))
        base, at = base + len(share_conn), at + len(share_trans)
    run_all(lambda job: rs.renumber(rows, *job), jobs)
    return conn, ends, trans


def _grown(st):
    """The same state with a transition buffer twice as large."""
    bigger = np.empty((st.trans.shape[0] * 2, N_T), dtype=np.int64)
    bigger[: st.trans.shape[0]] = st.trans
    return st._replace(trans=bigger)
