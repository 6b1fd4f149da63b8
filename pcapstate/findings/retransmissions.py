"""Retransmissions, classed as Wireshark classes them, and the per-packet analysis flags.

A segment that occupies sequence space (payload, SYN or FIN) and starts below
the highest sequence number its sender has sent re-sends sequence space: it is
a retransmission unless it is a keep-alive probe (one old byte or none, at
snd.nxt - 1) or a zero-window probe (one byte at snd.nxt into a closed window).
Its class follows Wireshark's ``tcp_analyze_sequence_number``
(epan/dissectors/packet-tcp.c, the version in tshark 4.0), in this order:

1. **fast**: the peer has sent at least two duplicate ACKs for exactly this
   sequence number, the last of them less than 20 ms earlier;
2. not a retransmission but **out of order**: it comes within the handshake
   RTT (3 ms without a handshake) of the highest segment and does not end
   where that one ended;
3. **spurious**: the peer had already acknowledged all of it;
4. otherwise **timeout** (Wireshark's plain "retransmission").

Two deliberate differences from Wireshark, which only change SYN, SYN-ACK and
FIN segments (data retransmissions match tshark's): "already acknowledged" and
"ends where that one ended" count the SYN or FIN's own sequence number (a FIN
whose preceding data was acknowledged is not spurious), and the acknowledgement
number of a segment without the ACK flag is ignored (Wireshark reads the field
anyway, so the SYN-ACK retransmissions of a SYN flood come out as spurious or not
at random).  A RST repeated with the same sequence number is a RST
retransmission (Wireshark does not look at RSTs).  The kind of segment re-sent is SYN, SYN-ACK, FIN, RST
or data.

The loop keeps per-endpoint state in integer arrays indexed by ``2 * flow +
side`` and writes per-row codes; the chain facts (original frame, attempt
number, interval) are then computed for all rows at once by grouping
transmissions of the same (flow, sender, sequence number), among the packets
of the endpoints that retransmitted only.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

import numpy as np

from pcapstate import replay as rp
from pcapstate.jit import entry, inline, njit

NS = 1_000_000_000
FAST_WINDOW_NS = 20_000_000  # the duplicate ACKs must be this recent
DEFAULT_OOO_NS = 3_000_000  # out-of-order threshold without a handshake RTT


class RetransmissionClass(IntEnum):
    NONE = 0
    TIMEOUT = 1
    FAST = 2
    SPURIOUS = 3


CLASS_NAMES = ("", "timeout", "fast", "spurious")


class SegmentKind(IntEnum):
    SYN = 0
    SYN_ACK = 1
    FIN = 2
    RST = 3
    DATA = 4


KIND_NAMES = ("SYN", "SYN-ACK", "FIN", "RST", "data")


class Analysis(IntFlag):
    """Per-packet flags, Wireshark's ``tcp.analysis.*`` names in comments."""

    RETRANSMISSION = 1  # any class above
    OUT_OF_ORDER = 2  # tcp.analysis.out_of_order
    KEEP_ALIVE = 4  # tcp.analysis.keep_alive
    ZERO_WINDOW_PROBE = 8  # tcp.analysis.zero_window_probe
    ZERO_WINDOW = 16  # tcp.analysis.zero_window
    LOST_SEGMENT = 32  # tcp.analysis.lost_segment: the previous segment was not captured
    ACK_UNSEEN = 64  # tcp.analysis.ack_lost_segment: ACKs a segment not captured
    DUPLICATE_ACK = 128  # tcp.analysis.duplicate_ack


# The same values as plain ints, for the compiled loop.
A_RETX, A_OOO, A_KEEP_ALIVE, A_ZWP, A_ZERO_WINDOW, A_LOST, A_ACK_UNSEEN, A_DUP_ACK = (
    1, 2, 4, 8, 16, 32, 64, 128)
K_SYN, K_SYN_ACK, K_FIN, K_RST, K_DATA = 0, 1, 2, 3, 4
CL_TIMEOUT, CL_FAST, CL_SPURIOUS = 1, 2, 3

# per-endpoint (sender) columns
(F_NEXTSEQ, F_NEXTSEQ_TS, F_LASTACK, F_LASTACK_TS, F_DUPACKS, F_WINDOW, F_MAXSEQ_TO_ACK,
 F_LAST_RST_SEQ, F_LAST_MARK) = range(9)
N_F = 9
UNSET = -1


@dataclass
class Retransmissions:
    """Per packet-table row: class (RetransmissionClass), kind (SegmentKind) and analysis flags."""

    klass: np.ndarray  # int8
    kind: np.ndarray  # int8, meaningful where klass > 0
    flags: np.ndarray  # int16 Analysis bits
    original_row: np.ndarray  # int64, -1 when not a retransmission or the original was not captured
    attempt: np.ndarray  # int64, 1 for the first re-send, 0 otherwise
    interval_ns: np.ndarray  # int64, since the previous send of the same segment; -1 unknown


@njit
def segment_kind(flags: int, length: int) -> int:
    if flags & rp.RST:
        return K_RST
    if flags & rp.SYN:
        return K_SYN_ACK if flags & rp.ACK else K_SYN
    if flags & rp.FIN:
        return K_FIN
    return K_DATA


@njit
def _lt(a: int, b: int) -> bool:
    return a != b and not rp.seq_ge(a, b)


@entry("i8[:, ::1]", "i8[::1]", rp.ROWS, "i8[::1]", "i8[::1]")
def _first_rtt(pk: np.ndarray, order: np.ndarray, rows: np.ndarray, last_syn: np.ndarray, rtt: np.ndarray) -> None:
    """Per connection, Wireshark's ``ts_first_rtt`` into ``rtt``: the latest SYN to the first ACK after it.

    ``last_syn`` (UNSET) and ``rtt`` (0) hold one entry per connection.
    """
    for row in order:
        k = rows[row, rp.R_CONN]
        flags = pk[row, rp.PK_FLAGS]
        if flags & rp.SYN and not flags & rp.ACK:
            last_syn[k] = pk[row, rp.PK_TS]
        elif flags & rp.ACK and not flags & rp.SYN and rtt[k] == 0 and last_syn[k] >= 0:
            rtt[k] = max(pk[row, rp.PK_TS] - last_syn[k], 1)


def classify(pk: np.ndarray, order, rows: np.ndarray, window: np.ndarray, n_conn: int) -> Retransmissions:
    """Classify every row (see the module docstring); ``window`` is the raw window column.

    ``order``: the replay order, or a list of shares of it (:mod:`pcapstate.jobs`), each
    classified on a thread of its own.
    """
    from pcapstate.jobs import run_all

    orders = order if isinstance(order, list) else [order]
    window = np.ascontiguousarray(window, dtype=np.uint16)
    n = pk.shape[0]
    klass = np.zeros(n, dtype=np.int8)
    kind = np.zeros(n, dtype=np.int8)
    marks = np.zeros(n, dtype=np.int16)
    ends = np.full((2 * n_conn, N_F), UNSET, dtype=np.int64)
    ends[:, F_DUPACKS] = 0
    ends[:, F_LAST_MARK] = 0
    last_syn = np.full(n_conn, UNSET, dtype=np.int64)
    ooo = np.zeros(n_conn, dtype=np.int64)

    def classify_share(share: np.ndarray) -> None:
        _first_rtt(pk, share, rows, last_syn, ooo)
        _classify_rows(pk, share, rows, window, ends, ooo, klass, kind, marks)

    run_all(classify_share, orders)
    original, attempt, interval = chain_positions(pk, rows, klass)
    return Retransmissions(klass, kind, marks, original, attempt, interval)


@entry("i8[:, ::1]", "i8[::1]", rp.ROWS, "u2[::1]", "i8[:, ::1]", "i8[::1]", "i1[::1]", "i1[::1]", "i2[::1]")
def _classify_rows(pk, order, rows, window, ends, ooo, klass, kind, marks):
    for row in order:
        k, side = rows[row, rp.R_CONN], rows[row, rp.R_SIDE]
        fwd, rev = ends[2 * k + side], ends[2 * k + 1 - side]
        flags, seq, ack = pk[row, rp.PK_FLAGS], pk[row, rp.PK_SEQ], pk[row, rp.PK_ACK]
        length, ts, win = pk[row, rp.PK_LEN], pk[row, rp.PK_TS], window[row]
        threshold = ooo[k] if ooo[k] > 0 else DEFAULT_OOO_NS
        mark = _analyse_flags(fwd, rev, flags, seq, ack, length, win)
        if mark & A_ZWP == 0 and (length > 0 or flags & (rp.SYN | rp.FIN)) \
                and fwd[F_NEXTSEQ] >= 0 and _lt(seq, fwd[F_NEXTSEQ]) and not mark & A_KEEP_ALIVE:
            verdict = _retransmission_class(fwd, rev, seq, rp.segment_end(flags, seq, length), ts, threshold)
            if verdict < 0:
                mark |= A_OOO
            else:
                klass[row] = verdict
        elif flags & rp.RST and not flags & rp.SYN:
            if fwd[F_LAST_RST_SEQ] == seq:
                klass[row] = CL_TIMEOUT
            fwd[F_LAST_RST_SEQ] = seq
        if klass[row]:
            mark |= A_RETX
            kind[row] = segment_kind(flags, length)
        marks[row] = mark
        _advance(fwd, flags, seq, ack, length, ts, win, mark)


@inline
def _analyse_flags(fwd, rev, flags: int, seq: int, ack: int, length: int, win: int) -> int:
    """Wireshark's checks before the retransmission test; updates the duplicate-ACK count."""
    control = flags & (rp.SYN | rp.FIN | rp.RST)
    if length == 1 and seq == fwd[F_NEXTSEQ] and rev[F_WINDOW] == 0:
        return _ack_bookkeeping(fwd, rev, flags, ack, A_ZWP)
    mark = 0
    if win == 0 and not control:
        mark |= A_ZERO_WINDOW
    if fwd[F_NEXTSEQ] >= 0 and seq != fwd[F_NEXTSEQ] and rp.seq_ge(seq, fwd[F_NEXTSEQ]) and not flags & rp.RST:
        mark |= A_LOST
    if length <= 1 and fwd[F_NEXTSEQ] >= 0 and seq == (fwd[F_NEXTSEQ] - 1) & rp.MASK32 and not control:
        mark |= A_KEEP_ALIVE
    same_ack = length == 0 and win != 0 and win == fwd[F_WINDOW] and seq == fwd[F_NEXTSEQ] \
        and ack == fwd[F_LASTACK] and not control
    if same_ack and not rev[F_LAST_MARK] & A_KEEP_ALIVE:  # a keep-alive's ACK is no duplicate
        fwd[F_DUPACKS] += 1
        mark |= A_DUP_ACK
    return _ack_bookkeeping(fwd, rev, flags, ack, mark)


@inline
def _ack_bookkeeping(fwd, rev, flags: int, ack: int, mark: int) -> int:
    if ack != fwd[F_LASTACK]:
        fwd[F_DUPACKS] = 0
    if flags & rp.ACK and rev[F_MAXSEQ_TO_ACK] >= 0 and ack != rev[F_MAXSEQ_TO_ACK] \
            and rp.seq_ge(ack, rev[F_MAXSEQ_TO_ACK]):
        mark |= A_ACK_UNSEEN
        rev[F_MAXSEQ_TO_ACK] = rev[F_NEXTSEQ]
    return mark


@inline
def _retransmission_class(fwd, rev, seq: int, end: int, ts: int, threshold: int) -> int:
    """The class of a segment below snd.nxt, or -1 for out-of-order; ``end`` counts SYN and FIN."""
    if rev[F_DUPACKS] >= 2 and rev[F_LASTACK] == seq and ts - rev[F_LASTACK_TS] < FAST_WINDOW_NS:
        return CL_FAST
    if ts - fwd[F_NEXTSEQ_TS] < threshold and fwd[F_NEXTSEQ] != end:
        return -1
    if rev[F_LASTACK] >= 0 and rp.seq_ge(rev[F_LASTACK], end):
        return CL_SPURIOUS
    return CL_TIMEOUT


@inline
def _advance(fwd, flags: int, seq: int, ack: int, length: int, ts: int, win: int, mark: int) -> None:
    """Wireshark's updates after the checks: highest sequence sent, last ACK, window."""
    nextseq = (seq + length + (1 if flags & (rp.SYN | rp.FIN) else 0)) & rp.MASK32
    if not mark & A_ZWP:
        if fwd[F_NEXTSEQ] < 0 or (nextseq != fwd[F_NEXTSEQ] and rp.seq_ge(nextseq, fwd[F_NEXTSEQ])):
            fwd[F_NEXTSEQ], fwd[F_NEXTSEQ_TS] = nextseq, ts
        if fwd[F_MAXSEQ_TO_ACK] < 0 or seq == fwd[F_MAXSEQ_TO_ACK]:
            fwd[F_MAXSEQ_TO_ACK] = fwd[F_NEXTSEQ]
    fwd[F_WINDOW] = win
    if flags & rp.ACK:
        fwd[F_LASTACK], fwd[F_LASTACK_TS] = ack, ts
    fwd[F_LAST_MARK] = mark


def chain_positions(pk: np.ndarray, rows: np.ndarray, klass: np.ndarray):
    """Original row, attempt number and interval of every retransmission.

    Transmissions of the same segment share (flow, sender, kind group, first
    sequence number); within such a group, in time order (file order among
    equal times), the first one is the original and each later one an attempt.
    Only groups holding a retransmission have anything to report, so only the
    sends of endpoints that retransmitted are sorted, not every packet.
    """
    n = pk.shape[0]
    original = np.full(n, -1, dtype=np.int64)
    attempt = np.zeros(n, dtype=np.int64)
    interval = np.zeros(n, dtype=np.int64)
    resent = np.flatnonzero(klass > 0)
    if not len(resent):
        return original, attempt, interval
    endpoint_of = 2 * rows[resent, rp.R_CONN] + rows[resent, rp.R_SIDE]
    retransmitted = np.zeros(int(endpoint_of.max()) + 1, dtype=np.bool_)
    retransmitted[endpoint_of] = True
    sends = _sends_of(pk, rows, retransmitted)
    flags = pk[sends, rp.PK_FLAGS]
    kinds = np.where(flags & rp.RST, 1, np.where(flags & rp.SYN, 2, 0))  # RSTs, SYNs and the rest apart
    group = (2 * rows[sends, rp.R_CONN] + rows[sends, rp.R_SIDE]) * 3 + kinds
    seq, ts = pk[sends, rp.PK_SEQ], pk[sends, rp.PK_TS]
    by_segment = np.lexsort((ts, seq, group))  # stable: file order among equal times
    ordered = sends[by_segment]
    same = np.zeros(len(ordered), dtype=bool)  # same segment as the one before
    same[1:] = (group[by_segment[1:]] == group[by_segment[:-1]]) & (seq[by_segment[1:]] == seq[by_segment[:-1]])
    start = np.maximum.accumulate(np.where(~same, np.arange(len(ordered)), 0))
    position = np.arange(len(ordered)) - start
    is_retx = klass[ordered] > 0
    first = ordered[start]
    original[ordered] = np.where(is_retx & (klass[first] == 0), first, -1)
    attempt[ordered] = np.where(is_retx, np.maximum(position, 1), 0)
    sorted_ts = ts[by_segment]
    gap = sorted_ts - np.concatenate([sorted_ts[:1], sorted_ts[:-1]])
    interval[ordered] = np.where(is_retx, np.where(same, gap, -1), 0)
    return original, attempt, interval


@entry("i8[:, ::1]", rp.ROWS, "b1[::1]")
def _sends_of(pk: np.ndarray, rows: np.ndarray, retransmitted: np.ndarray) -> np.ndarray:
    """Rows (ascending) that occupy sequence space or reset, sent by an endpoint marked in ``retransmitted``."""
    out = np.empty(pk.shape[0], dtype=np.int64)
    count = 0
    for row in range(pk.shape[0]):
        endpoint = 2 * rows[row, rp.R_CONN] + rows[row, rp.R_SIDE]
        if 0 <= endpoint < retransmitted.shape[0] and retransmitted[endpoint] \
                and (pk[row, rp.PK_LEN] > 0 or pk[row, rp.PK_FLAGS] & (rp.SYN | rp.FIN | rp.RST)):
            out[count] = row
            count += 1
    return out[:count]
