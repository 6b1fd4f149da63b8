"""Zeek's TCP analysis of every packet, for the Zeek summary (:mod:`pcapstate.zeek`).

:class:`ZeekPass` replays the packet table as Zeek's TCP analyzer reads it:
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

State is kept per flow in integer arrays: connection rows ``C_*`` indexed by
flow id, endpoint rows ``2 * flow + side`` (side 0 the pcapstate client; Zeek's
originator side is ``C_ORIG_SIDE`` and changes on a flip).  A flow whose next
packet Zeek gives to a new connection (reuse or removal) is marked done and
keeps the summary of the connection its first packet opened.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from pcapstate.zeek_seq import (
    ACK, CLOSED, E_BAD_SUMS, E_CLOSED, E_FIN_SEQ, E_FINS, E_GAPS, E_LAST, E_LAST_FIN, E_LAST_RST, E_LAST_SYN,
    E_MISSED, E_PKTS, E_PREV, E_RSTS, E_RXMITS, E_SEEN, E_START, E_STATE, E_WIN0S, E_WRAPS, ESTABLISHED, FIN,
    INACTIVE, MASK32, NONE, PARTIAL, RESET, RST, SYN, SYN_ACK_SENT, SYN_SENT, acknowledge, data_sent, init_endpoint,
    new_endpoints, relative_seq, trim_to, update_last_seq)


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

# packet matrix columns (one row per packet-table row)
P_CONN, P_SIDE, P_FLAGS, P_SEQ, P_ACK, P_LEN, P_TS, P_WIN, P_SPORT, P_DPORT, P_TRUNC, P_BAD = range(12)
N_P = 12
# connection columns
(C_ORIG_SIDE, C_SEEN, C_START, C_LAST, C_DONE, C_ACTIVE, C_PARTIAL, C_TIMEOUT, C_ATTEMPT_AT, C_DELETE_AT,
 C_PCLOSE_AT, C_RESET_AT) = range(12)
N_C = 12


def power_of_ten(count: int) -> bool:
    """Logarithmic history letters (ScaledHistoryEntry): the 1st, 10th, 100th... event."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


class ZeekPass:
    """One pass of Zeek's TCP analysis over every flow; see the module docstring."""

    def __init__(self, pk: np.ndarray, n_conn: int, server_port: np.ndarray, validate: bool) -> None:
        self.pk, self.server_port, self.validate = pk, server_port, validate
        self.ends = new_endpoints(2 * n_conn)
        self.conn = np.full((n_conn, N_C), NONE, dtype=np.int64)
        self.hist = np.zeros((max(16, pk.shape[0]), 2), dtype=np.int64)  # (flow, letter), in order
        self.n_hist = 0

    def run(self, order: np.ndarray) -> None:
        for i in range(order.shape[0]):
            self.packet(int(order[i]))

    # -- history
    def add_history(self, k: int, code: int) -> None:
        if self.n_hist == self.hist.shape[0]:
            bigger = np.zeros((2 * self.hist.shape[0], 2), dtype=np.int64)
            bigger[: self.n_hist] = self.hist[: self.n_hist]
            self.hist = bigger
        self.hist[self.n_hist, 0], self.hist[self.n_hist, 1] = k, code
        self.n_hist += 1

    def is_orig(self, e: int) -> bool:
        return (e & 1) == self.conn[e >> 1, C_ORIG_SIDE]

    def letter(self, e: int, code: int) -> int:
        return code if self.is_orig(e) else code + LOWER

    def check_history(self, e: int, bit: int, code: int) -> bool:
        """Add ``code`` the first time (False); True when this kind was seen before."""
        k = e >> 1
        mask = bit if self.is_orig(e) else bit << 16
        if self.conn[k, C_SEEN] & mask:
            return True
        self.conn[k, C_SEEN] |= mask
        self.add_history(k, self.letter(e, code))
        return False

    def scaled(self, e: int, column: int, code: int) -> None:
        self.ends[e, column] += 1
        if power_of_ten(int(self.ends[e, column])):
            self.add_history(e >> 1, self.letter(e, code))

    def repeated(self, e: int, bit: int, code: int, column: int, seq: int) -> None:
        """S, H, F, R: again whenever the sequence number differs from the last such packet's."""
        if self.check_history(e, bit, code) and seq != self.ends[e, column]:
            self.add_history(e >> 1, self.letter(e, code))
        self.ends[e, column] = seq

    def update_history(self, e: int, flags: int, rel: int, length: int) -> None:
        """update_history: one packet's letters."""
        bits = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
        if bits > 1:
            if flags & FIN and flags & RST:
                self.check_history(e, H_FIN_RST, L_I)
            else:
                self.check_history(e, H_MULTI, L_Q)
        elif flags & SYN:
            self.repeated(e, H_SYN, L_H if flags & ACK else L_S, E_LAST_SYN, rel)
        elif flags & FIN:
            self.repeated(e, H_FIN, L_F, E_LAST_FIN, rel + length)  # a FIN's number follows its data
        elif flags & RST:
            self.repeated(e, H_RST, L_R, E_LAST_RST, rel)
        elif length:
            self.check_history(e, H_DATA, L_D)
        elif flags & ACK:
            self.check_history(e, H_ACK, L_A)

    # -- connections and their lifetime
    def open(self, k: int, row: int) -> None:
        """NewConn + WantConnection: the first packet's sender originates, unless it looks like the server."""
        p = self.pk[row]
        c = self.conn[k]
        c[C_ORIG_SIDE], c[C_SEEN], c[C_START], c[C_LAST], c[C_DONE] = p[P_SIDE], 0, p[P_TS], p[P_TS], 0
        c[C_ACTIVE], c[C_PARTIAL], c[C_TIMEOUT] = 1, 0, HANDSHAKE_TIMEOUT
        flags, sport, dport = int(p[P_FLAGS]), int(p[P_SPORT]), int(p[P_DPORT])
        if (not flags & SYN or flags & ACK) and self.server_port[sport]:
            if not self.server_port[dport] or (not flags & SYN and sport < dport):
                c[C_ORIG_SIDE] = 1 - p[P_SIDE]
                self.add_history(k, L_FLIP)

    def removed_before(self, k: int, t: int) -> bool:
        """Whether one of Zeek's timers removed connection ``k`` before time ``t``."""
        c = self.conn[k]
        o = 2 * k + int(c[C_ORIG_SIDE])
        so, sr = int(self.ends[o, E_STATE]), int(self.ends[o ^ 1, E_STATE])
        active = c[C_ACTIVE] == 1
        if 0 <= c[C_DELETE_AT] <= t or c[C_LAST] + c[C_TIMEOUT] <= t or (active and 0 <= c[C_RESET_AT] <= t):
            return True
        if active and 0 <= c[C_ATTEMPT_AT] <= t and so in (SYN_SENT, SYN_ACK_SENT) and sr == INACTIVE:
            return True
        if active and 0 <= c[C_PCLOSE_AT] <= t and INACTIVE not in (so, sr) and RESET not in (so, sr) \
                and not (self.ends[o, E_CLOSED] and self.ends[o ^ 1, E_CLOSED]):
            return True
        return so == INACTIVE and sr == INACTIVE and t - c[C_START] >= BOTH_INACTIVE_EXPIRY

    def is_reuse(self, k: int, flags: int, seq: int) -> bool:
        """IsReuse: a SYN (or, to a silent originator, a SYN-ACK) that opens a new connection."""
        o = 2 * k + int(self.conn[k, C_ORIG_SIDE])
        if not flags & SYN or (flags & ACK and self.ends[o, E_STATE] != INACTIVE):
            return False
        first = o ^ 1 if flags & ACK else o
        if self.ends[o, E_CLOSED] or self.ends[o ^ 1, E_CLOSED]:
            return True
        if seq == self.ends[first, E_START] & MASK32:
            return False
        reversed_handshake = not flags & ACK and self.ends[first, E_STATE] == SYN_ACK_SENT \
            and self.ends[o ^ 1, E_STATE] == INACTIVE and seq == self.ends[o ^ 1, E_START] & MASK32
        return not reversed_handshake

    def flip(self, k: int) -> None:
        self.conn[k, C_ORIG_SIDE] = 1 - self.conn[k, C_ORIG_SIDE]
        self.conn[k, C_PARTIAL] = 0
        self.add_history(k, L_FLIP)

    # -- one packet
    def packet(self, row: int) -> None:
        p = self.pk[row]
        k, t, flags = int(p[P_CONN]), int(p[P_TS]), int(p[P_FLAGS])
        if k < 0 or self.conn[k, C_DONE] == 1:
            return
        if self.conn[k, C_ORIG_SIDE] < 0:
            self.open(k, row)
        elif self.removed_before(k, t) or self.is_reuse(k, flags, int(p[P_SEQ])):
            self.conn[k, C_DONE] = 1  # the rest of the flow belongs to later Zeek connections
            return
        e = 2 * k + int(p[P_SIDE])
        if self.validate and p[P_BAD] and not p[P_TRUNC]:
            self.scaled(e, E_BAD_SUMS, L_C)  # ValidateChecksum drops the packet
            return
        self.process(k, e, row)

    def process(self, k: int, e: int, row: int) -> None:
        """TCPSessionAdapter::Process: one valid packet sent by endpoint ``e``."""
        p = self.pk[row]
        flags, seq, ack, length, t = int(p[P_FLAGS]), int(p[P_SEQ]), int(p[P_ACK]), int(p[P_LEN]), int(p[P_TS])
        peer, c, ends = e ^ 1, self.conn[k], self.ends
        if not ends[e, E_SEEN]:  # SetPartialStatus
            if self.is_orig(e):
                c[C_PARTIAL] = int(not flags & SYN or bool(flags & ACK))
            elif not c[C_PARTIAL]:
                c[C_PARTIAL] = int(not flags & SYN)
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0) - (length if flags & RST else 0)
        end = (seq + seg_len) & MASK32
        init_endpoint(ends, e, flags, seq, end)
        rel, underflow = relative_seq(ends, e, seq, int(ends[e, E_LAST]), int(ends[e, E_WRAPS]))
        self.update_history(e, flags, rel, length)
        if p[P_WIN] == 0 and not flags & RST and ends[peer, E_STATE] != CLOSED and ends[e, E_STATE] != RESET:
            self.scaled(e, E_WIN0S, L_W)
        if not (ends[e, E_CLOSED] and ends[peer, E_CLOSED]):
            c[C_LAST] = t
        ends[e, E_FINS] += 1 if flags & FIN else 0
        ends[e, E_FIN_SEQ] = rel + seg_len if flags & FIN else ends[e, E_FIN_SEQ]
        ends[e, E_RSTS] += 1 if flags & RST else 0
        rel_ack = acknowledge(ends, peer, flags, ack) if flags & ACK else 0
        delta, retransmitted = update_last_seq(ends, e, end, flags, length)
        if retransmitted:
            self.scaled(e, E_RXMITS, L_T)
        do_close, gen_event = self.state_machine(k, e, flags, seq, length, t)
        if flags & ACK:
            for gap in trim_to(ends, peer, rel_ack, c[C_PARTIAL] == 1):
                self.gap(peer, gap)
        if length > 0 and not p[P_TRUNC] and not flags & RST and not underflow:
            data_sent(ends, e, rel + 1 if flags & SYN else rel, length)
        ends[e, E_PKTS] += 1
        ends[e, E_SEEN] = 1
        if do_close:
            self.connection_closed(k, e, gen_event)

    def gap(self, e: int, length: int) -> None:
        """TCP_Reassembler::Gap: a letter and missed bytes only while both ends are cleanly established."""
        if length <= 0:
            return
        for side in (e, e ^ 1):
            state, prev = int(self.ends[side, E_STATE]), int(self.ends[side, E_PREV])
            if not (state == ESTABLISHED or (state == CLOSED and prev == ESTABLISHED)):
                return
        self.scaled(e, E_GAPS, L_G)
        self.ends[e, E_MISSED] += length

    # -- the endpoint state machine (UpdateStateMachine)
    def set_state(self, e: int, new: int) -> None:
        """TCP_Endpoint::SetState; leaving the handshake switches to the long inactivity timeout."""
        old = int(self.ends[e, E_STATE])
        if new == old:
            return
        if new not in HANDSHAKE_STATES and old in HANDSHAKE_STATES and self.ends[e ^ 1, E_STATE] in HANDSHAKE_STATES:
            self.conn[e >> 1, C_TIMEOUT] = INACTIVITY_TIMEOUT
        self.ends[e, E_PREV], self.ends[e, E_STATE] = old, new

    def state_machine(self, k: int, e: int, flags: int, seq: int, length: int, t: int) -> tuple[bool, bool]:
        """One step of endpoint ``e``; returns (do_close, gen_event)."""
        state, peer = int(self.ends[e, E_STATE]), e ^ 1
        if state == INACTIVE:
            return self.inactive_step(k, e, flags, seq, length, t)
        if state in (SYN_SENT, SYN_ACK_SENT):
            if flags & FIN:
                self.set_state(e, CLOSED)
            if flags & RST:
                self.set_state(e, RESET)
                self.conn[k, C_ACTIVE] = 0  # ConnectionReset
            return bool(flags & (FIN | RST)), bool(flags & FIN)
        if state in (ESTABLISHED, PARTIAL):
            if flags & SYN and state == PARTIAL and self.ends[peer, E_STATE] == INACTIVE and not flags & ACK:
                self.set_state(e, SYN_SENT)
            if flags & FIN and not flags & RST:
                self.set_state(e, CLOSED)
                if self.ends[peer, E_STATE] == RESET and self.ends[peer, E_PREV] == CLOSED:
                    self.set_state(peer, CLOSED)  # the peer's FIN then RST: a normal close after all
            if flags & RST:
                if self.ends[peer, E_STATE] != RESET or self.ends[peer, E_PREV] != ESTABLISHED:
                    self.conn[k, C_ACTIVE] = 0
                self.set_state(e, RESET)
            return bool(flags & (FIN | RST)), bool(flags & FIN and not flags & RST)
        if state == CLOSED and flags & RST and self.ends[peer, E_STATE] != CLOSED:
            self.set_state(e, RESET)
            self.conn[k, C_RESET_AT] = t + RESET_DELAY
            return self.ends[e, E_CLOSED] == 0, False
        return False, False

    def inactive_step(self, k: int, e: int, flags: int, seq: int, length: int, t: int) -> tuple[bool, bool]:
        """UpdateInactiveState: the endpoint's first packet."""
        is_orig, peer = self.is_orig(e), e ^ 1
        do_close = gen_event = False
        if flags & SYN:
            if is_orig:
                self.set_state(e, SYN_ACK_SENT if flags & ACK else SYN_SENT)
                self.conn[k, C_ATTEMPT_AT] = t + ATTEMPT_DELAY
            else:
                if not flags & ACK and self.ends[peer, E_STATE] == SYN_ACK_SENT \
                        and seq == self.ends[e, E_START] & MASK32:
                    self.flip(k)  # the SYN-ACK was captured before its SYN
                    self.set_state(peer, ESTABLISHED)
                if self.ends[peer, E_STATE] == SYN_SENT:
                    self.set_state(peer, ESTABLISHED)
                self.set_state(e, ESTABLISHED)
        if flags & FIN:
            self.set_state(e, CLOSED)
            do_close = gen_event = True
        if flags & RST:
            peer_state = int(self.ends[peer, E_STATE])
            self.set_state(e, RESET)
            reject = peer_state == ESTABLISHED if is_orig else peer_state in (SYN_SENT, SYN_ACK_SENT)
            do_close, gen_event = True, not reject
        if self.ends[e, E_STATE] == INACTIVE:
            orig = 2 * k + int(self.conn[k, C_ORIG_SIDE])
            if not is_orig and length == 0 and self.ends[orig, E_STATE] == SYN_SENT:
                pass  # an ACK ahead of the SYN-ACK does not make a partial connection
            elif flags & ACK and self.ends[peer, E_STATE] == ESTABLISHED:
                self.set_state(e, ESTABLISHED)  # the SYN was missed, its SYN-ACK seen
                self.conn[k, C_PARTIAL] = 0
            else:
                self.set_state(e, PARTIAL)
        return do_close, gen_event

    def connection_closed(self, k: int, e: int, gen_event: bool) -> None:
        """ConnectionClosed: mark the side closed and set the timers that end the connection."""
        if self.ends[e, E_CLOSED]:
            return
        self.ends[e, E_CLOSED] = 1
        peer, c = e ^ 1, self.conn[k]
        if self.ends[e, E_STATE] == RESET or self.ends[peer, E_CLOSED] or self.ends[peer, E_STATE] == INACTIVE:
            if gen_event and (self.ends[e, E_PREV] != INACTIVE or self.ends[peer, E_STATE] != INACTIVE):
                c[C_ACTIVE] = 0  # ConnectionFinished
            c[C_ATTEMPT_AT] = c[C_PCLOSE_AT] = c[C_RESET_AT] = NONE  # CancelTimers
            c[C_DELETE_AT] = c[C_LAST] + CLOSE_DELAY
        elif self.ends[e, E_PREV] == INACTIVE:
            c[C_PCLOSE_AT] = c[C_LAST] + PARTIAL_CLOSE_DELAY
