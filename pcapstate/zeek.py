"""Zeek's connection summary: ``conn_state`` and ``history`` of conn.log, per flow.

A second, independent reading of the packets, following Zeek (9.x) rather than
RFC 9293, so that operators can compare pcapstate's flows with conn.log.  The
rules come from Zeek's source: ``src/packet_analysis/protocol/tcp/TCP.cc``
(direction heuristic, checksum check), ``TCPSessionAdapter.cc`` (``Process``,
the endpoint state machine ``Update*State``, ``update_history``,
``update_last_seq``, ``IsReuse``, ``ConnectionClosed`` and its timers),
``src/analyzer/protocol/tcp/TCP_Endpoint.*`` and ``TCP_Reassembler.cc``
(sizes, retransmissions, zero windows, content gaps), ``src/Conn.cc`` and
``src/session/Session.*`` (history bits, logarithmic letters, ``^`` flips,
inactivity) and ``scripts/base/protocols/conn/main.zeek`` (``conn_state``):

* endpoints are INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED
  or RESET (:class:`ZeekState`); the originator is the first packet's sender,
  flipped (``^``) when that packet is not a SYN and comes from a likely server
  port, or when a SYN answers a SYN-ACK seen first;
* history letters: upper case from the originator; A, D, I, Q once per
  direction; S, H, F, R again only when the sequence number differs from the
  last packet with that flag; C, G, T, W on the 1st, 10th, 100th... event;
* a packet with a bad checksum is dropped and only counted as C/c (unless
  ``validate_checksums=False``, Zeek's ``-C``);
* Zeek ends a connection (and starts a new one for the next packet of the
  4-tuple) on a SYN with a new sequence number or after a close, and on its
  timers (attempt 5 s, close and reset 5 s, partial close 3 s, inactivity
  1 min during the handshake and 5 min after).  pcapstate's flows are not
  re-split: each flow reports the Zeek connection its first packet opened,
  and packets Zeek gives to a later connection are left out of it.

The loop keeps integer state in numpy arrays indexed by flow id (endpoint rows
``2 * flow + side``, side 0 the pcapstate client) and reads packets by row in
replay order, as :mod:`pcapstate.replay` does.
"""
from __future__ import annotations

import re
from enum import IntEnum

import numpy as np

from pcapstate import replay as rp


class ZeekState(IntEnum):
    """Zeek's TCP endpoint states (``TCP_Endpoint.h``)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6


INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (int(s) for s in ZeekState)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
MASK32 = 0xFFFFFFFF
TOO_LARGE_SEQ_DELTA = 1048576
SECOND = 1_000_000_000
# Zeek's defaults (init-bare.zeek): tcp_attempt_delay, tcp_close_delay, tcp_reset_delay,
# tcp_partial_close_delay, udp_inactivity_timeout (set first), tcp_inactivity_timeout.
ATTEMPT_DELAY, CLOSE_DELAY, RESET_DELAY, PARTIAL_CLOSE_DELAY = 5 * SECOND, 5 * SECOND, 5 * SECOND, 3 * SECOND
HANDSHAKE_TIMEOUT, INACTIVITY_TIMEOUT = 60 * SECOND, 300 * SECOND
BOTH_INACTIVE_EXPIRY = 11 * SECOND  # ExpireTimer: tcp_SYN_timeout 5 s + tcp_session_timer 6 s
# likely_server_ports of a plain ``zeek -r`` (TCP ports the base protocol scripts add;
# a bare ``zeek -b`` run only has those of the scripts it loads).
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631, 636,
    989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432,
    6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000})
# hist_seen bits (TCP_Endpoint::HistoryMasks); the responder's are shifted by 16
H_SYN, H_FIN, H_RST, H_FIN_RST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40

# packet matrix columns
(P_CONN, P_SIDE, P_FLAGS, P_SEQ, P_ACK, P_LEN, P_TS, P_WIN, P_SPORT, P_DPORT, P_TRUNC, P_BAD) = range(12)
N_P = 12
# endpoint columns (row 2 * flow + side)
(E_STATE, E_PREV, E_START, E_LAST, E_ACKSEQ, E_WRAPS, E_ACK_WRAPS, E_CLOSED, E_LAST_SYN, E_LAST_FIN,
 E_LAST_RST, E_FINS, E_FIN_SEQ, E_RSTS, E_BAD_SUMS, E_RXMITS, E_WIN0S, E_GAPS, E_REASSEM, E_TRIM,
 E_BLOCK_LO, E_BLOCK_HI, E_PKTS, E_MISSED, E_SEEN) = range(25)
N_E = 25
# connection columns
(C_ORIG_SIDE, C_SEEN, C_START, C_LAST, C_DONE, C_ACTIVE, C_PARTIAL, C_TIMEOUT, C_ATTEMPT_AT, C_DELETE_AT,
 C_PCLOSE_AT, C_RESET_AT) = range(12)
N_C = 12
NONE = -1


def seq_delta(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit difference (Zeek's ``seq_delta``)."""
    d = (a - b) & MASK32
    return d - (1 << 32) if d >= 1 << 31 else d


def power_of_ten(count: int) -> bool:
    """Logarithmic history letters (Session::ScaledHistoryEntry): the 1st, 10th, 100th... event."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


class _Zeek:
    """One pass of Zeek's TCP analysis over every flow; all state in integer arrays."""

    def __init__(self, pk: np.ndarray, n_conn: int, server_port: np.ndarray, validate: bool) -> None:
        self.pk, self.server_port, self.validate = pk, server_port, validate
        self.ends = np.zeros((2 * n_conn, N_E), dtype=np.int64)
        self.ends[:, E_BLOCK_LO] = NONE
        self.conn = np.full((n_conn, N_C), NONE, dtype=np.int64)
        self.hist = np.zeros((max(16, pk.shape[0]), 2), dtype=np.int64)  # (flow, letter) in order
        self.n_hist = 0

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

    def letter(self, e: int, code: str) -> int:
        return ord(code) if self.is_orig(e) else ord(code.lower())

    def check_history(self, e: int, bit: int, code: str) -> bool:
        """Add ``code`` the first time (False); True when this kind was seen before."""
        k = e >> 1
        mask = bit if self.is_orig(e) else bit << 16
        if self.conn[k, C_SEEN] & mask:
            return True
        self.conn[k, C_SEEN] |= mask
        self.add_history(k, self.letter(e, code))
        return False

    def scaled(self, e: int, column: int, code: str) -> None:
        self.ends[e, column] += 1
        if power_of_ten(int(self.ends[e, column])):
            self.add_history(e >> 1, self.letter(e, code))

    def update_history(self, e: int, flags: int, rel: int, length: int) -> None:
        """TCPSessionAdapter's update_history: one packet's letters."""
        bits = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
        if bits > 1:
            if flags & FIN and flags & RST:
                self.check_history(e, H_FIN_RST, "I")
            else:
                self.check_history(e, H_MULTI, "Q")
        elif bits == 1:
            if flags & SYN:
                code = "H" if flags & ACK else "S"
                if self.check_history(e, H_SYN, code) and rel != self.ends[e, E_LAST_SYN]:
                    self.add_history(e >> 1, self.letter(e, code))
                self.ends[e, E_LAST_SYN] = rel
            if flags & FIN:
                if self.check_history(e, H_FIN, "F") and rel + length != self.ends[e, E_LAST_FIN]:
                    self.add_history(e >> 1, self.letter(e, "F"))
                self.ends[e, E_LAST_FIN] = rel + length
            if flags & RST:
                if self.check_history(e, H_RST, "R") and rel != self.ends[e, E_LAST_RST]:
                    self.add_history(e >> 1, self.letter(e, "R"))
                self.ends[e, E_LAST_RST] = rel
        elif length:
            self.check_history(e, H_DATA, "D")
        elif flags & ACK:
            self.check_history(e, H_ACK, "A")

    # -- connections and their lifetime
    def open(self, k: int, row: int) -> None:
        """NewConn + WantConnection: the first packet's sender is the originator, unless flipped."""
        p = self.pk[row]
        c = self.conn[k]
        c[C_ORIG_SIDE], c[C_SEEN], c[C_START], c[C_LAST], c[C_DONE] = p[P_SIDE], 0, p[P_TS], p[P_TS], 0
        c[C_ACTIVE], c[C_PARTIAL], c[C_TIMEOUT] = 1, 0, HANDSHAKE_TIMEOUT
        flags, sport, dport = int(p[P_FLAGS]), int(p[P_SPORT]), int(p[P_DPORT])
        if (not flags & SYN or flags & ACK) and self.server_port[sport]:
            flip = (not flags & SYN and sport < dport) if self.server_port[dport] else True
            if flip:
                c[C_ORIG_SIDE] = 1 - p[P_SIDE]
                self.add_history(k, ord("^"))

    def removed_before(self, k: int, t: int) -> bool:
        """Whether one of Zeek's timers removed connection ``k`` before time ``t``."""
        c = self.conn[k]
        o, r = 2 * k + int(c[C_ORIG_SIDE]), 2 * k + 1 - int(c[C_ORIG_SIDE])
        so, sr = int(self.ends[o, E_STATE]), int(self.ends[r, E_STATE])
        if 0 <= c[C_DELETE_AT] <= t or c[C_LAST] + c[C_TIMEOUT] <= t:
            return True
        if c[C_ACTIVE] == 1 and 0 <= c[C_RESET_AT] <= t:
            return True
        if c[C_ACTIVE] == 1 and 0 <= c[C_ATTEMPT_AT] <= t and so in (SYN_SENT, SYN_ACK_SENT) and sr == INACTIVE:
            return True
        if c[C_ACTIVE] == 1 and 0 <= c[C_PCLOSE_AT] <= t and so != INACTIVE and sr != INACTIVE \
                and not (self.ends[o, E_CLOSED] and self.ends[r, E_CLOSED]) and RESET not in (so, sr):
            return True
        return so == INACTIVE and sr == INACTIVE and t - c[C_START] >= BOTH_INACTIVE_EXPIRY

    def is_reuse(self, k: int, flags: int, seq: int) -> bool:
        """TCPSessionAdapter::IsReuse: a SYN that opens a new connection on the same 4-tuple."""
        o = 2 * k + int(self.conn[k, C_ORIG_SIDE])
        conn_orig = o
        if not flags & SYN:
            return False
        if flags & ACK:
            if self.ends[o, E_STATE] != INACTIVE:
                return False
            conn_orig = o ^ 1
        if self.ends[o, E_CLOSED] or self.ends[o ^ 1, E_CLOSED]:
            return True
        if seq == self.ends[conn_orig, E_START] & MASK32:
            return False
        return not (not flags & ACK and self.ends[conn_orig, E_STATE] == SYN_ACK_SENT
                    and self.ends[o ^ 1, E_STATE] == INACTIVE and seq == self.ends[o ^ 1, E_START] & MASK32)

    def flip(self, k: int) -> None:
        self.conn[k, C_ORIG_SIDE] = 1 - self.conn[k, C_ORIG_SIDE]
        self.conn[k, C_PARTIAL] = 0
        self.add_history(k, ord("^"))

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
            self.scaled(e, E_BAD_SUMS, "C")  # TCPAnalyzer::ValidateChecksum drops the packet
            return
        self.process(k, e, row)

    def process(self, k: int, e: int, row: int) -> None:
        """TCPSessionAdapter::Process for one packet of endpoint ``e``."""
        p = self.pk[row]
        flags, seq, ack, length, t = int(p[P_FLAGS]), int(p[P_SEQ]), int(p[P_ACK]), int(p[P_LEN]), int(p[P_TS])
        peer, c, is_orig = e ^ 1, self.conn[k], self.is_orig(e)
        if not self.ends[e, E_SEEN]:  # SetPartialStatus
            if is_orig:
                c[C_PARTIAL] = int(not flags & SYN or bool(flags & ACK))
            elif not c[C_PARTIAL]:
                c[C_PARTIAL] = int(not flags & SYN)
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0) - (length if flags & RST else 0)
        end = (seq + seg_len) & MASK32
        self.init_endpoint(e, flags, seq, end)
        rel, underflow = self.relative_seq(e, seq, int(self.ends[e, E_LAST]), int(self.ends[e, E_WRAPS]))
        self.update_history(e, flags, rel, length)
        if p[P_WIN] == 0 and not flags & RST and self.ends[peer, E_STATE] != CLOSED \
                and self.ends[e, E_STATE] != RESET:
            self.scaled(e, E_WIN0S, "W")
        if not (self.ends[e, E_CLOSED] and self.ends[peer, E_CLOSED]):
            c[C_LAST] = t
        if flags & FIN:
            self.ends[e, E_FINS] += 1
            self.ends[e, E_FIN_SEQ] = rel + seg_len
        if flags & RST:
            self.ends[e, E_RSTS] += 1
        rel_ack = self.acknowledge(peer, flags, ack) if flags & ACK else 0
        delta = self.update_last_seq(e, end, flags, length)
        do_close, gen_event = self.state_machine(k, e, flags, seq, length, delta, t)
        if flags & ACK:
            self.ack_received(peer, rel_ack)
        if length > 0 and not p[P_TRUNC] and not flags & RST and not underflow:
            self.data_sent(e, rel + 1 if flags & SYN else rel, length)
        self.ends[e, E_PKTS] += 1
        self.ends[e, E_SEEN] = 1
        if do_close:
            self.connection_closed(k, e, gen_event)

    # -- sequence numbers (TCP_Endpoint's start/last/ack with their wrap counts)
    def init_endpoint(self, e: int, flags: int, seq: int, end: int) -> None:
        """init_endpoint: where the endpoint's relative sequence numbers start."""
        x = self.ends[e]
        state = int(x[E_STATE])
        restart = False
        if state == INACTIVE:
            if flags & SYN:
                x[E_START], x[E_ACKSEQ], x[E_LAST] = seq, seq, end
            else:  # as though a SYN had been seen
                x[E_START], x[E_ACKSEQ], x[E_LAST] = (seq - 1) & MASK32, (seq - 1) & MASK32, seq
        elif state in (SYN_SENT, SYN_ACK_SENT):
            restart = bool(flags & SYN) and seq != x[E_START] & MASK32
        elif state in (ESTABLISHED, PARTIAL):
            restart = bool(flags & SYN)
        elif state == RESET:
            restart = bool(flags & SYN) and x[E_PREV] == INACTIVE
        if restart:
            x[E_START], x[E_ACKSEQ], x[E_LAST] = seq, seq, end

    def relative_seq(self, e: int, cur: int, last: int, wraps: int) -> tuple[int, bool]:
        """get_relative_seq: ``cur`` relative to the endpoint's start, and whether it lies before it."""
        delta = seq_delta(cur, last)
        if delta < 0 and wraps and cur > last:
            wraps -= 1
        elif delta > 0 and cur < last:
            wraps += 1
        start = int(self.ends[e, E_START])
        if wraps == 0:
            d = seq_delta(cur, start & MASK32)
            return d, d < 0
        return (wraps << 32) + cur - start, False

    def acknowledge(self, peer: int, flags: int, ack: int) -> int:
        """The ACK's effect on the peer's numbers (init_peer, update_ack_seq); the relative ack."""
        x = self.ends[peer]
        if x[E_STATE] == INACTIVE:
            x[E_START] = x[E_ACKSEQ] = x[E_LAST] = (ack - 1) & MASK32
            return 1
        rel, underflow = self.relative_seq(peer, ack, int(x[E_ACKSEQ]), int(x[E_ACK_WRAPS]))
        if underflow:
            return 0
        delta = seq_delta(ack, int(x[E_ACKSEQ]))
        if not flags & RST and not (ack == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
            x[E_ACK_WRAPS] += 1 if ack < x[E_ACKSEQ] else 0
            x[E_ACKSEQ] = ack
        return rel

    def update_last_seq(self, e: int, end: int, flags: int, length: int) -> int:
        """update_last_seq: advance the endpoint's highest sequence number, or count a retransmission."""
        x = self.ends[e]
        delta = seq_delta(end, int(x[E_LAST]))
        if flags & (SYN | RST) and abs(delta) > TOO_LARGE_SEQ_DELTA:
            return delta
        if (flags & FIN and x[E_LAST] == (x[E_START] + 1) & MASK32) or (x[E_STATE] != RESET and delta > 0):
            x[E_WRAPS] += 1 if end < x[E_LAST] else 0
            x[E_LAST] = end
        elif x[E_STATE] != RESET and length > 0:
            self.scaled(e, E_RXMITS, "T")
        return delta

    # -- the endpoint state machine (TCPSessionAdapter::UpdateStateMachine)
    def set_state(self, e: int, new: int) -> None:
        """TCP_Endpoint::SetState; leaving the handshake switches to the long inactivity timeout."""
        old = int(self.ends[e, E_STATE])
        if new == old:
            return
        handshake = (INACTIVE, SYN_SENT, SYN_ACK_SENT)
        if new not in handshake and old in handshake and self.ends[e ^ 1, E_STATE] in handshake:
            self.conn[e >> 1, C_TIMEOUT] = INACTIVITY_TIMEOUT
        self.ends[e, E_PREV], self.ends[e, E_STATE] = old, new

    def state_machine(self, k: int, e: int, flags: int, seq: int, length: int, delta: int,
                      t: int) -> tuple[bool, bool]:
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
                peer_was_established = self.ends[peer, E_PREV] == ESTABLISHED
                self.set_state(e, RESET)
                if self.ends[peer, E_STATE] != RESET or not peer_was_established:
                    self.conn[k, C_ACTIVE] = 0
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
                    self.flip(k)  # the SYN-ACK was seen before its SYN
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
                pass  # an ACK before the SYN-ACK is not a partial connection
            elif flags & ACK and self.ends[peer, E_STATE] == ESTABLISHED:
                self.set_state(e, ESTABLISHED)  # the SYN was missed, the SYN-ACK seen
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

    # -- content gaps (TCP_Reassembler: DataSent, AckReceived -> TrimToSeq -> Undelivered)
    def data_sent(self, e: int, seq: int, length: int) -> None:
        """Payload [seq, seq + length) reaches endpoint ``e``'s reassembler (relative numbers)."""
        x = self.ends[e]
        acked = (x[E_ACK_WRAPS] << 32) + x[E_ACKSEQ] - x[E_START]
        upper = seq + length
        if x[E_REASSEM] == 0:
            x[E_REASSEM] = x[E_TRIM] = 1
        seq = max(seq, int(acked), int(x[E_TRIM]))
        if upper <= seq:
            return
        if seq <= x[E_REASSEM] < upper:
            x[E_REASSEM] = upper
        elif seq > x[E_REASSEM]:  # above a hole: keep the span of what waits
            x[E_BLOCK_LO] = seq if x[E_BLOCK_LO] < 0 else min(int(x[E_BLOCK_LO]), seq)
            x[E_BLOCK_HI] = max(int(x[E_BLOCK_HI]), upper)
        if 0 <= x[E_BLOCK_LO] <= x[E_REASSEM]:
            x[E_REASSEM] = max(int(x[E_REASSEM]), int(x[E_BLOCK_HI]))
            x[E_BLOCK_LO] = x[E_BLOCK_HI] = NONE

    def ack_received(self, e: int, seq: int) -> None:
        """The peer acknowledged endpoint ``e``'s stream up to ``seq``: data never seen is a gap."""
        x = self.ends[e]
        if x[E_REASSEM] == 0:
            x[E_REASSEM] = x[E_TRIM] = 1
        if x[E_FINS] > 0 and seq >= x[E_FIN_SEQ]:
            seq = int(x[E_FIN_SEQ]) - 1
        if seq <= x[E_TRIM]:
            return
        x[E_TRIM] = seq
        if seq <= x[E_REASSEM] or (seq <= 2 and self.conn[e >> 1, C_PARTIAL] == 1):
            return
        if 0 <= x[E_BLOCK_LO] < seq:
            self.gap(e, int(x[E_BLOCK_LO]) - int(x[E_REASSEM]))
            x[E_REASSEM] = x[E_BLOCK_HI]
            x[E_BLOCK_LO] = x[E_BLOCK_HI] = NONE
        if seq > x[E_REASSEM]:
            self.gap(e, seq - int(x[E_REASSEM]))
            x[E_REASSEM] = seq

    def gap(self, e: int, length: int) -> None:
        clean = True
        for side in (e, e ^ 1):
            state, prev = int(self.ends[side, E_STATE]), int(self.ends[side, E_PREV])
            clean = clean and (state == ESTABLISHED or (state == CLOSED and prev == ESTABLISHED))
        if clean:
            self.scaled(e, E_GAPS, "G")
            self.ends[e, E_MISSED] += length

    def run(self, order: np.ndarray) -> None:
        for i in range(order.shape[0]):
            self.packet(int(order[i]))


# --- the summary -------------------------------------------------------------------

CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")


def conn_state(orig: int, resp: int, orig_size: int, resp_size: int, history: str) -> str:
    """Conn::conn_state of scripts/base/protocols/conn/main.zeek, for TCP."""
    o_inactive, r_inactive = orig in (INACTIVE, PARTIAL), resp in (INACTIVE, PARTIAL)
    if resp == RESET:
        if orig in (SYN_SENT, SYN_ACK_SENT) or (orig == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if orig == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0_HISTORY.fullmatch(history) else "OTH"
        return "RSTO"
    if orig == CLOSED and resp == CLOSED:
        return "SF"
    if orig == CLOSED:
        return "SH" if r_inactive else "S2"
    if resp == CLOSED:
        return "SHR" if o_inactive else "S3"
    if orig == SYN_SENT and resp == INACTIVE:
        return "S0"
    if orig == ESTABLISHED and resp == ESTABLISHED:
        return "S1"
    return "OTH"


def endpoint_size(ends: np.ndarray, e: int) -> int:
    """TCP_Endpoint::Size: payload bytes from the sequence numbers (SYN and FIN not counted)."""
    x, peer = ends[e], ends[e ^ 1]
    start = int(x[E_START])
    acked = (int(x[E_ACK_WRAPS]) << 32) + int(x[E_ACKSEQ])
    if x[E_PREV] == SYN_SENT and x[E_STATE] == RESET and peer[E_STATE] == INACTIVE and acked not in (start, start + 1):
        return 0
    size = (max((int(x[E_WRAPS]) << 32) + int(x[E_LAST]), acked) - start) & ((1 << 64) - 1)
    size -= 1 if size else 0
    size -= 1 if x[E_FINS] > 0 and size else 0
    return size


def packet_matrix(tracking) -> np.ndarray:
    """The (n, N_P) int64 input of the pass: one row per packet-table row."""
    table, rows = tracking.table, tracking.result.rows
    n = len(table)
    pk = np.zeros((n, N_P), dtype=np.int64)
    pk[:, P_CONN], pk[:, P_SIDE] = rows[:, rp.R_CONN], rows[:, rp.R_SIDE]
    for column, name in ((P_FLAGS, "flags"), (P_SEQ, "seq"), (P_ACK, "ack"), (P_LEN, "payload_len"),
                         (P_TS, "ts_ns"), (P_WIN, "window"), (P_SPORT, "sport"), (P_DPORT, "dport"),
                         (P_TRUNC, "truncated")):
        pk[:, column] = table[name]
    if "bad_checksum" in table.columns:
        pk[:, P_BAD] = table["bad_checksum"]
    return pk


def zeek_summary(tracking, *, validate_checksums: bool = True,
                 likely_server_ports=LIKELY_SERVER_PORTS) -> dict[str, np.ndarray]:
    """Zeek's conn.log fields for every flow (index = pcapstate flow id).

    ``conn_state`` and ``history`` (None where Zeek logs ``-``) as object arrays of
    str; ``orig_is_client`` (Zeek's originator is pcapstate's client); ``orig_pkts``,
    ``resp_pkts``, ``missed_bytes`` (int64); ``duration`` (seconds, NaN where
    Zeek logs ``-``), ``orig_bytes``, ``resp_bytes`` (int64, -1 where Zeek logs ``-``).
    ``validate_checksums=False`` is Zeek's ``-C``; ``likely_server_ports`` decides
    which side of a connection first seen without its SYN is the originator.
    """
    n_conn = len(tracking.result.connections)
    server_port = np.zeros(65536, dtype=np.bool_)
    server_port[list(likely_server_ports)] = True
    zeek = _Zeek(packet_matrix(tracking), n_conn, server_port, validate_checksums)
    zeek.run(tracking.conversations.order)
    return _summarise(zeek, n_conn)


def _histories(hist: np.ndarray, n_conn: int) -> list[str | None]:
    letters: list[list[str]] = [[] for _ in range(n_conn)]
    for k, code in hist.tolist():
        letters[k].append(chr(code))
    return ["".join(chars) or None for chars in letters]


def _summarise(zeek: _Zeek, n_conn: int) -> dict[str, np.ndarray]:
    ends, conn = zeek.ends, zeek.conn
    history = np.array(_histories(zeek.hist[: zeek.n_hist], n_conn) + [None], dtype=object)[:n_conn]
    states = np.empty(n_conn, dtype=object)
    sizes = np.zeros((n_conn, 2), dtype=np.int64)
    orig = 2 * np.arange(n_conn) + np.maximum(conn[:, C_ORIG_SIDE], 0)
    for k in range(n_conn):
        o, r = int(orig[k]), int(orig[k]) ^ 1
        sizes[k] = endpoint_size(ends, o), endpoint_size(ends, r)
        states[k] = conn_state(int(ends[o, E_STATE]), int(ends[r, E_STATE]), int(sizes[k, 0]), int(sizes[k, 1]),
                               history[k] or "")
    duration_ns = conn[:, C_LAST] - conn[:, C_START]
    logged = duration_ns > 0
    return {
        "conn_state": states,
        "history": history,
        "orig_is_client": conn[:, C_ORIG_SIDE] == 0,
        "orig_pkts": ends[orig, E_PKTS].copy(),
        "resp_pkts": ends[orig ^ 1, E_PKTS].copy(),
        "orig_bytes": np.where(logged, sizes[:, 0], -1),
        "resp_bytes": np.where(logged, sizes[:, 1], -1),
        "missed_bytes": ends[orig, E_MISSED] + ends[orig ^ 1, E_MISSED],
        "duration": np.where(logged, duration_ns / 1e9, np.nan),
    }
