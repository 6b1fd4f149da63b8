"""Zeek's TCP analysis of every packet, for the Zeek summary (:mod:`pcapstate.zeek`).

:func:`run` replays the packet table as Zeek's TCP analyzer reads it:
``TCPSessionAdapter::Process`` (``src/packet_analysis/protocol/tcp/
TCPSessionAdapter.cc``) per packet, with its endpoint state machine
(``UpdateInactiveState``, ``UpdateSYN_SentState``, ``UpdateEstablishedState``,
``UpdateClosedState``), ``update_history`` and ``ConnectionClosed``;
``TCPAnalyzer::WantConnection`` and ``ValidateChecksum`` (``TCP.cc``);
``IsReuse`` and the timers that remove a connection (attempt, close, reset,
partial close, expiry of a connection that never got a valid packet, session
inactivity: ``src/session/Session.cc``); history bits, logarithmic letters
and ``^`` (``Session.h``, ``src/Conn.cc``).  Sequence numbers and content gaps
are in :mod:`pcapstate.zeek_seq`.

State is kept per flow in two int64 arrays, so that the pass runs compiled
(:func:`pcapstate.jit.njit`; plain Python with ``PCAPSTATE_NO_JIT=1``):
connection rows ``C_*`` indexed by flow id, endpoint rows ``2 * flow + side``
(side 0 the pcapstate client; Zeek's originator side is ``C_ORIG_SIDE`` and
changes on a flip).  A connection row ends with its history letters, character
codes packed eight to a column from ``C_HISTORY`` (least significant byte
first), ``C_LETTERS`` of them; letters beyond the row's room are counted, not
written, and the caller runs the pass again with more room.  Keeping the
letters in the connection row spares every compiled call a third array (each
array argument costs two atomic reference counts per call).  A flow whose next
packet Zeek gives to a new connection (reuse or removal) is marked done and
keeps the summary of the connection its first packet opened.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from pcapstate.jit import entry, inline, njit
from pcapstate.replay import PK_ACK, PK_DPORT, PK_FLAGS, PK_LEN, PK_SEQ, PK_SPORT, PK_TS, R_CONN, R_SIDE, ROWS
from pcapstate.zeek_seq import (
    ACK, CLOSED, E_BAD_SUMS, E_CLOSED, E_FIN_SEQ, E_FINS, E_GAPS, E_LAST, E_LAST_FIN, E_LAST_RST, E_LAST_SYN,
    E_MISSED, E_PKTS, E_PREV, E_RSTS, E_RXMITS, E_SEEN, E_START, E_STATE, E_WIN0S, E_WRAPS, ESTABLISHED, FIN,
    INACTIVE, MASK32, NONE, PARTIAL, RESET, RST, SYN, SYN_ACK_SENT, SYN_SENT, acknowledge, data_sent, init_endpoint,
    relative_seq, trim_to, update_last_seq)


class ZeekState(IntEnum):
    """Zeek's TCP endpoint states (``TCP_Endpoint.h``)."""

    INACTIVE = INACTIVE
    SYN_SENT = SYN_SENT
    SYN_ACK_SENT = SYN_ACK_SENT
    PARTIAL = PARTIAL
    ESTABLISHED = ESTABLISHED
    CLOSED = CLOSED
    RESET = RESET


SECOND = 1_000_000_000
# Zeek's defaults (init-bare.zeek): tcp_attempt_delay, tcp_close_delay, tcp_reset_delay,
# tcp_partial_close_delay; the session inactivity timeout is udp_inactivity_timeout until
# an endpoint leaves the handshake, then tcp_inactivity_timeout.
ATTEMPT_DELAY, CLOSE_DELAY, RESET_DELAY, PARTIAL_CLOSE_DELAY = 5 * SECOND, 5 * SECOND, 5 * SECOND, 3 * SECOND
HANDSHAKE_TIMEOUT, INACTIVITY_TIMEOUT = 60 * SECOND, 300 * SECOND
BOTH_INACTIVE_EXPIRY = 11 * SECOND  # ExpireTimer: tcp_SYN_timeout 5 s, then tcp_session_timer 6 s
HANDSHAKE_STATES = (INACTIVE, SYN_SENT, SYN_ACK_SENT)
# hist_seen bits (TCP_Endpoint::HistoryMasks); the responder's are shifted by 16
H_SYN, H_FIN, H_RST, H_FIN_RST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40

# history letters as character codes (a responder's letter is the lower case: code + 32)
L_A, L_C, L_D, L_F, L_G, L_H, L_I, L_Q, L_R, L_S, L_T, L_W, L_FLIP = (ord(c) for c in "ACDFGHIQRSTW^")
LOWER = 32

# The pass reads the replay's own inputs and outputs, no copy of its own: ``pk``, the replay's packet
# matrix (pcapstate.replay.PK_* columns), ``rows``, its per-row output (R_CONN: the flow, R_SIDE: the
# sender), and three packet-table columns, ``win`` (window), ``trunc`` (truncated) and ``bad`` (bad_checksum).
# connection columns, then the history letters
(C_ORIG_SIDE, C_SEEN, C_START, C_LAST, C_DONE, C_ACTIVE, C_PARTIAL, C_TIMEOUT, C_ATTEMPT_AT, C_DELETE_AT,
 C_PCLOSE_AT, C_RESET_AT, C_LETTERS) = range(13)
C_HISTORY = 13
LETTERS_PER_COLUMN = 8  # codes are below 128: the top byte's code never reaches the sign bit


def new_connections(n_conn: int, letters: int) -> np.ndarray:
    """Connection rows before their first packet (no originator side yet), with room for ``letters``."""
    columns = (letters + LETTERS_PER_COLUMN - 1) // LETTERS_PER_COLUMN
    conn = np.full((n_conn, C_HISTORY + columns), NONE, dtype=np.int64)
    conn[:, C_LETTERS:] = 0
    return conn


def history_codes(conn: np.ndarray) -> np.ndarray:
    """The letters of every connection as a (flows, room) uint8 array, zero after the last."""
    return np.ascontiguousarray(conn[:, C_HISTORY:], dtype="<i8").view(np.uint8)


@entry("i8[:, ::1]", ROWS, "u2[::1]", "b1[::1]", "b1[::1]", "i8[::1]", "i8[:, ::1]", "i8[:, ::1]",
       "b1[::1]", "b1")
def run(pk: np.ndarray, rows: np.ndarray, win: np.ndarray, trunc: np.ndarray, bad: np.ndarray, order: np.ndarray,
        ends: np.ndarray, conn: np.ndarray, server_port: np.ndarray, validate: bool) -> None:
    """Every packet-table row in replay order: Zeek's connection for it, its checksum, then Process."""
    for i in range(order.shape[0]):
        # int(): free when compiled; as plain Python, indexing and arithmetic with ints are faster
        row = int(order[i])
        k, flags = int(rows[row, R_CONN]), int(pk[row, PK_FLAGS])
        if k < 0 or conn[k, C_DONE] == 1:
            continue
        if conn[k, C_ORIG_SIDE] < 0:
            open_connection(pk, rows, row, conn, server_port)
        elif removed_before(ends, conn, k, int(pk[row, PK_TS])) or is_reuse(ends, conn, k, flags,
                                                                              int(pk[row, PK_SEQ])):
            conn[k, C_DONE] = 1  # the rest of the flow belongs to later Zeek connections
            continue
        e = 2 * k + int(rows[row, R_SIDE])
        if validate and bad[row] and not trunc[row]:
            scaled(ends, conn, e, E_BAD_SUMS, L_C)  # ValidateChecksum drops the packet
            continue
        process(pk, win, trunc, row, ends, conn, k, e)


# -- history
@njit
def power_of_ten(count: int) -> bool:
    """Logarithmic history letters (ScaledHistoryEntry): the 1st, 10th, 100th... event."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


@inline
def add_history(conn: np.ndarray, k: int, code: int) -> None:
    n = conn[k, C_LETTERS]
    if n < LETTERS_PER_COLUMN * (conn.shape[1] - C_HISTORY):  # else only counted: the caller runs again
        conn[k, C_HISTORY + n // LETTERS_PER_COLUMN] |= code << (8 * (n % LETTERS_PER_COLUMN))
    conn[k, C_LETTERS] = n + 1


@inline
def is_orig(conn: np.ndarray, e: int) -> bool:
    return (e & 1) == conn[e >> 1, C_ORIG_SIDE]


@njit
def letter(code: int, orig: bool) -> int:
    return code if orig else code + LOWER


@inline
def check_history(conn: np.ndarray, e: int, bit: int, code: int) -> bool:
    """Add ``code`` the first time (False); True when this kind was seen before."""
    k = e >> 1
    orig = (e & 1) == conn[k, C_ORIG_SIDE]
    mask = bit if orig else bit << 16
    if conn[k, C_SEEN] & mask:
        return True
    conn[k, C_SEEN] |= mask
    add_history(conn, k, letter(code, orig))
    return False


@inline
def scaled(ends: np.ndarray, conn: np.ndarray, e: int, column: int, code: int) -> None:
    ends[e, column] += 1
    if power_of_ten(int(ends[e, column])):
        add_history(conn, e >> 1, letter(code, is_orig(conn, e)))


@inline
def repeated(ends: np.ndarray, conn: np.ndarray, e: int, bit: int, code: int, column: int, seq: int) -> None:
    """S, H, F, R: again whenever the sequence number differs from the last such packet's."""
    if check_history(conn, e, bit, code) and seq != ends[e, column]:
        add_history(conn, e >> 1, letter(code, is_orig(conn, e)))
    ends[e, column] = seq


@inline
def update_history(ends: np.ndarray, conn: np.ndarray, e: int, flags: int, rel: int, length: int) -> None:
    """update_history: one packet's letters."""
    bits = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
    if bits > 1:
        if flags & FIN and flags & RST:
            check_history(conn, e, H_FIN_RST, L_I)
        else:
            check_history(conn, e, H_MULTI, L_Q)
    elif flags & SYN:
        repeated(ends, conn, e, H_SYN, L_H if flags & ACK else L_S, E_LAST_SYN, rel)
    elif flags & FIN:
        repeated(ends, conn, e, H_FIN, L_F, E_LAST_FIN, rel + length)  # a FIN's number follows its data
    elif flags & RST:
        repeated(ends, conn, e, H_RST, L_R, E_LAST_RST, rel)
    elif length:
        check_history(conn, e, H_DATA, L_D)
    elif flags & ACK:
        check_history(conn, e, H_ACK, L_A)


# -- connections and their lifetime
@inline
def open_connection(pk: np.ndarray, rows: np.ndarray, row: int, conn: np.ndarray, server_port: np.ndarray) -> None:
    """NewConn + WantConnection: the first packet's sender originates, unless it looks like the server."""
    k, side, t = rows[row, R_CONN], rows[row, R_SIDE], pk[row, PK_TS]
    conn[k, C_ORIG_SIDE], conn[k, C_SEEN], conn[k, C_START], conn[k, C_LAST], conn[k, C_DONE] = side, 0, t, t, 0
    conn[k, C_ACTIVE], conn[k, C_PARTIAL], conn[k, C_TIMEOUT] = 1, 0, HANDSHAKE_TIMEOUT
    flags, sport, dport = int(pk[row, PK_FLAGS]), int(pk[row, PK_SPORT]), int(pk[row, PK_DPORT])
    if (not flags & SYN or flags & ACK) and server_port[sport]:
        if not server_port[dport] or (not flags & SYN and sport < dport):
            conn[k, C_ORIG_SIDE] = 1 - side
            add_history(conn, k, L_FLIP)


@inline
def removed_before(ends: np.ndarray, conn: np.ndarray, k: int, t: int) -> bool:
    """Whether one of Zeek's timers removed connection ``k`` before time ``t``."""
    o = 2 * k + int(conn[k, C_ORIG_SIDE])
    so, sr = int(ends[o, E_STATE]), int(ends[o ^ 1, E_STATE])
    active = conn[k, C_ACTIVE] == 1
    if 0 <= conn[k, C_DELETE_AT] <= t or conn[k, C_LAST] + conn[k, C_TIMEOUT] <= t:
        return True
    if active and 0 <= conn[k, C_RESET_AT] <= t:
        return True
    if active and 0 <= conn[k, C_ATTEMPT_AT] <= t and so in (SYN_SENT, SYN_ACK_SENT) and sr == INACTIVE:
        return True
    if active and 0 <= conn[k, C_PCLOSE_AT] <= t and INACTIVE not in (so, sr) and RESET not in (so, sr) \
            and not (ends[o, E_CLOSED] and ends[o ^ 1, E_CLOSED]):
        return True
    return so == INACTIVE and sr == INACTIVE and t - conn[k, C_START] >= BOTH_INACTIVE_EXPIRY


@inline
def is_reuse(ends: np.ndarray, conn: np.ndarray, k: int, flags: int, seq: int) -> bool:
    """IsReuse: a SYN (or, to a silent originator, a SYN-ACK) that opens a new connection."""
    o = 2 * k + int(conn[k, C_ORIG_SIDE])
    if not flags & SYN or (flags & ACK and ends[o, E_STATE] != INACTIVE):
        return False
    first = o ^ 1 if flags & ACK else o
    if ends[o, E_CLOSED] or ends[o ^ 1, E_CLOSED]:
        return True
    if seq == ends[first, E_START] & MASK32:
        return False
    reversed_handshake = not flags & ACK and ends[first, E_STATE] == SYN_ACK_SENT \
        and ends[o ^ 1, E_STATE] == INACTIVE and seq == ends[o ^ 1, E_START] & MASK32
    return not reversed_handshake


@inline
def flip(conn: np.ndarray, k: int) -> None:
    conn[k, C_ORIG_SIDE] = 1 - conn[k, C_ORIG_SIDE]
    conn[k, C_PARTIAL] = 0
    add_history(conn, k, L_FLIP)


# -- one packet
@inline
def process(pk: np.ndarray, win: np.ndarray, trunc: np.ndarray, row: int, ends: np.ndarray, conn: np.ndarray,
            k: int, e: int) -> None:
    """TCPSessionAdapter::Process: one valid packet sent by endpoint ``e``."""
    flags, seq, ack, length = int(pk[row, PK_FLAGS]), int(pk[row, PK_SEQ]), int(pk[row, PK_ACK]), int(pk[row, PK_LEN])
    t, peer = int(pk[row, PK_TS]), e ^ 1
    if not ends[e, E_SEEN]:  # SetPartialStatus
        if is_orig(conn, e):
            conn[k, C_PARTIAL] = int(not flags & SYN or bool(flags & ACK))
        elif not conn[k, C_PARTIAL]:
            conn[k, C_PARTIAL] = int(not flags & SYN)
    seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0) - (length if flags & RST else 0)
    end = (seq + seg_len) & MASK32
    init_endpoint(ends, e, flags, seq, end)
    rel, underflow = relative_seq(seq, int(ends[e, E_LAST]), int(ends[e, E_WRAPS]), int(ends[e, E_START]))
    update_history(ends, conn, e, flags, rel, length)
    if win[row] == 0 and not flags & RST and ends[peer, E_STATE] != CLOSED and ends[e, E_STATE] != RESET:
        scaled(ends, conn, e, E_WIN0S, L_W)
    if not (ends[e, E_CLOSED] and ends[peer, E_CLOSED]):
        conn[k, C_LAST] = t
    ends[e, E_FINS] += 1 if flags & FIN else 0
    ends[e, E_FIN_SEQ] = rel + seg_len if flags & FIN else ends[e, E_FIN_SEQ]
    ends[e, E_RSTS] += 1 if flags & RST else 0
    rel_ack = acknowledge(ends, peer, flags, ack) if flags & ACK else 0
    delta, retransmitted = update_last_seq(ends, e, end, flags, length)
    if retransmitted:
        scaled(ends, conn, e, E_RXMITS, L_T)
    do_close, gen_event = state_machine(ends, conn, k, e, flags, seq, length, t)
    if flags & ACK:
        first_gap, second_gap = trim_to(ends, peer, rel_ack, conn[k, C_PARTIAL] == 1)
        if first_gap > 0 or second_gap > 0:  # rare: spares the common packet two calls
            gap(ends, conn, peer, first_gap)
            gap(ends, conn, peer, second_gap)
    if length > 0 and not trunc[row] and not flags & RST and not underflow:
        data_sent(ends, e, rel + 1 if flags & SYN else rel, length)
    ends[e, E_PKTS] += 1
    ends[e, E_SEEN] = 1
    if do_close:
        connection_closed(ends, conn, k, e, gen_event)


@inline
def gap(ends: np.ndarray, conn: np.ndarray, e: int, length: int) -> None:
    """TCP_Reassembler::Gap: a letter and missed bytes only while both ends are cleanly established."""
    if length <= 0:
        return
    for side in (e, e ^ 1):
        state, prev = int(ends[side, E_STATE]), int(ends[side, E_PREV])
        if not (state == ESTABLISHED or (state == CLOSED and prev == ESTABLISHED)):
            return
    scaled(ends, conn, e, E_GAPS, L_G)
    ends[e, E_MISSED] += length


# -- the endpoint state machine (UpdateStateMachine)
@inline
def set_state(ends: np.ndarray, conn: np.ndarray, e: int, new: int) -> None:
    """TCP_Endpoint::SetState; leaving the handshake switches to the long inactivity timeout."""
    old = int(ends[e, E_STATE])
    if new == old:
        return
    if new not in HANDSHAKE_STATES and old in HANDSHAKE_STATES and ends[e ^ 1, E_STATE] in HANDSHAKE_STATES:
        conn[e >> 1, C_TIMEOUT] = INACTIVITY_TIMEOUT
    ends[e, E_PREV], ends[e, E_STATE] = old, new


@inline
def state_machine(ends: np.ndarray, conn: np.ndarray, k: int, e: int, flags: int, seq: int, length: int,
                  t: int) -> tuple[bool, bool]:
    """One step of endpoint ``e``; returns (do_close, gen_event)."""
    state, peer = int(ends[e, E_STATE]), e ^ 1
    if state == INACTIVE:
        return inactive_step(ends, conn, k, e, flags, seq, length, t)
    if state in (SYN_SENT, SYN_ACK_SENT):
        if flags & FIN:
            set_state(ends, conn, e, CLOSED)
        if flags & RST:
            set_state(ends, conn, e, RESET)
            conn[k, C_ACTIVE] = 0  # ConnectionReset
        return bool(flags & (FIN | RST)), bool(flags & FIN)
    if state in (ESTABLISHED, PARTIAL):
        if flags & SYN and state == PARTIAL and ends[peer, E_STATE] == INACTIVE and not flags & ACK:
            set_state(ends, conn, e, SYN_SENT)
        if flags & FIN and not flags & RST:
            set_state(ends, conn, e, CLOSED)
            if ends[peer, E_STATE] == RESET and ends[peer, E_PREV] == CLOSED:
                set_state(ends, conn, peer, CLOSED)  # the peer's FIN then RST: a normal close after all
        if flags & RST:
            if ends[peer, E_STATE] != RESET or ends[peer, E_PREV] != ESTABLISHED:
                conn[k, C_ACTIVE] = 0
            set_state(ends, conn, e, RESET)
        return bool(flags & (FIN | RST)), bool(flags & FIN and not flags & RST)
    if state == CLOSED and flags & RST and ends[peer, E_STATE] != CLOSED:
        set_state(ends, conn, e, RESET)
        conn[k, C_RESET_AT] = t + RESET_DELAY
        return bool(ends[e, E_CLOSED] == 0), False
    return False, False


@inline
def inactive_step(ends: np.ndarray, conn: np.ndarray, k: int, e: int, flags: int, seq: int, length: int,
                  t: int) -> tuple[bool, bool]:
    """UpdateInactiveState: the endpoint's first packet."""
    orig, peer = is_orig(conn, e), e ^ 1
    do_close = gen_event = False
    if flags & SYN:
        if orig:
            set_state(ends, conn, e, SYN_ACK_SENT if flags & ACK else SYN_SENT)
            conn[k, C_ATTEMPT_AT] = t + ATTEMPT_DELAY
        else:
            if not flags & ACK and ends[peer, E_STATE] == SYN_ACK_SENT and seq == ends[e, E_START] & MASK32:
                flip(conn, k)  # the SYN-ACK was captured before its SYN
                set_state(ends, conn, peer, ESTABLISHED)
            if ends[peer, E_STATE] == SYN_SENT:
                set_state(ends, conn, peer, ESTABLISHED)
            set_state(ends, conn, e, ESTABLISHED)
    if flags & FIN:
        set_state(ends, conn, e, CLOSED)
        do_close = gen_event = True
    if flags & RST:
        peer_state = int(ends[peer, E_STATE])
        set_state(ends, conn, e, RESET)
        reject = peer_state == ESTABLISHED if orig else peer_state in (SYN_SENT, SYN_ACK_SENT)
        do_close, gen_event = True, not reject
    if ends[e, E_STATE] == INACTIVE:
        o = 2 * k + int(conn[k, C_ORIG_SIDE])
        if not orig and length == 0 and ends[o, E_STATE] == SYN_SENT:
            pass  # an ACK ahead of the SYN-ACK does not make a partial connection
        elif flags & ACK and ends[peer, E_STATE] == ESTABLISHED:
            set_state(ends, conn, e, ESTABLISHED)  # the SYN was missed, its SYN-ACK seen
            conn[k, C_PARTIAL] = 0
        else:
            set_state(ends, conn, e, PARTIAL)
    return do_close, gen_event


@inline
def connection_closed(ends: np.ndarray, conn: np.ndarray, k: int, e: int, gen_event: bool) -> None:
    """ConnectionClosed: mark the side closed and set the timers that end the connection."""
    if ends[e, E_CLOSED]:
        return
    ends[e, E_CLOSED] = 1
    peer = e ^ 1
    if ends[e, E_STATE] == RESET or ends[peer, E_CLOSED] or ends[peer, E_STATE] == INACTIVE:
        if gen_event and (ends[e, E_PREV] != INACTIVE or ends[peer, E_STATE] != INACTIVE):
            conn[k, C_ACTIVE] = 0  # ConnectionFinished
        conn[k, C_ATTEMPT_AT] = conn[k, C_PCLOSE_AT] = conn[k, C_RESET_AT] = NONE  # CancelTimers
        conn[k, C_DELETE_AT] = conn[k, C_LAST] + CLOSE_DELAY
    elif ends[e, E_PREV] == INACTIVE:
        conn[k, C_PCLOSE_AT] = conn[k, C_LAST] + PARTIAL_CLOSE_DELAY
