"""Zeek's per-endpoint sequence bookkeeping, as functions over an endpoint matrix.

Part of the Zeek summary (:mod:`pcapstate.zeek`).  One row per endpoint
(``2 * flow + side``), integer columns ``E_*``.  What each function mirrors:

* ``init_endpoint``, ``relative_seq``, ``acknowledge``, ``update_last_seq``:
  the static helpers of Zeek's ``src/packet_analysis/protocol/tcp/
  TCPSessionAdapter.cc`` (``init_endpoint``, ``get_relative_seq``,
  ``init_peer`` + ``update_ack_seq``, ``update_last_seq``) over the fields of
  ``TCP_Endpoint.h`` (start, last and ack numbers with their wrap counts);
* ``endpoint_size``: ``TCP_Endpoint::Size`` (orig_bytes / resp_bytes);
* ``data_sent``, ``trim_to``: ``TCP_Reassembler::DataSent`` and ``AckReceived``
  -> ``DataBlockList::Trim`` -> ``Undelivered``: an acknowledgement beyond the
  data the capture delivered is a content gap.  Blocks waiting above a hole
  are kept as one span (Zeek keeps a list), so several holes under one ACK
  count as at most two gaps.

Relative numbers are Python ints of Zeek's uint64 values; all state is int64.
"""
from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
TOO_LARGE_SEQ_DELTA = 1048576
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)  # zeek_tcp.ZeekState
NONE = -1

# endpoint columns
(E_STATE, E_PREV, E_START, E_LAST, E_ACKSEQ, E_WRAPS, E_ACK_WRAPS, E_CLOSED, E_LAST_SYN, E_LAST_FIN,
 E_LAST_RST, E_FINS, E_FIN_SEQ, E_RSTS, E_BAD_SUMS, E_RXMITS, E_WIN0S, E_GAPS, E_REASSEM, E_TRIM,
 E_BLOCK_LO, E_BLOCK_HI, E_PKTS, E_MISSED, E_SEEN) = range(25)
N_E = 25


def new_endpoints(n: int) -> np.ndarray:
    ends = np.zeros((n, N_E), dtype=np.int64)
    ends[:, E_BLOCK_LO] = ends[:, E_BLOCK_HI] = NONE
    ends[:, E_REASSEM] = ends[:, E_TRIM] = 1  # the reassembler starts at relative sequence number 1
    return ends


def seq_delta(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit difference (Zeek's ``seq_delta``)."""
    d = (a - b) & MASK32
    return d - (1 << 32) if d >= 1 << 31 else d


def init_endpoint(ends: np.ndarray, e: int, flags: int, seq: int, end: int) -> None:
    """Where the endpoint's relative numbers start: its SYN, or one before its first packet."""
    x = ends[e]
    state = int(x[E_STATE])
    if state == INACTIVE:
        if flags & SYN:
            x[E_START], x[E_ACKSEQ], x[E_LAST] = seq, seq, end
        else:  # as though a SYN had been seen, without marking this packet a duplicate
            x[E_START], x[E_ACKSEQ], x[E_LAST] = (seq - 1) & MASK32, (seq - 1) & MASK32, seq
        return
    if state in (SYN_SENT, SYN_ACK_SENT):
        restart = bool(flags & SYN) and seq != x[E_START] & MASK32
    elif state in (ESTABLISHED, PARTIAL):
        restart = bool(flags & SYN)
    else:
        restart = state == RESET and bool(flags & SYN) and x[E_PREV] == INACTIVE
    if restart:
        x[E_START], x[E_ACKSEQ], x[E_LAST] = seq, seq, end


def relative_seq(ends: np.ndarray, e: int, cur: int, last: int, wraps: int) -> tuple[int, bool]:
    """``cur`` relative to the endpoint's start (wraps counted from ``last``); True if before the start."""
    delta = seq_delta(cur, last)
    if delta < 0 and wraps and cur > last:
        wraps -= 1
    elif delta > 0 and cur < last:
        wraps += 1
    start = int(ends[e, E_START])
    if wraps == 0:
        d = seq_delta(cur, start & MASK32)
        return d, d < 0
    return (wraps << 32) + cur - start, False


def acknowledge(ends: np.ndarray, peer: int, flags: int, ack: int) -> int:
    """An ACK for ``peer``'s data: start its numbers if it never sent, else advance its ack; the relative ack."""
    x = ends[peer]
    if x[E_STATE] == INACTIVE:
        x[E_START] = x[E_ACKSEQ] = x[E_LAST] = (ack - 1) & MASK32
        return 1
    rel, underflow = relative_seq(ends, peer, ack, int(x[E_ACKSEQ]), int(x[E_ACK_WRAPS]))
    if underflow:
        return 0
    delta = seq_delta(ack, int(x[E_ACKSEQ]))
    if not flags & RST and not (ack == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
        x[E_ACK_WRAPS] += 1 if ack < x[E_ACKSEQ] else 0
        x[E_ACKSEQ] = ack
    return rel


def update_last_seq(ends: np.ndarray, e: int, end: int, flags: int, length: int) -> tuple[int, bool]:
    """Advance the endpoint's highest sequence number; (delta, whether the payload was a retransmission)."""
    x = ends[e]
    delta = seq_delta(end, int(x[E_LAST]))
    if flags & (SYN | RST) and abs(delta) > TOO_LARGE_SEQ_DELTA:
        return delta, False
    if (flags & FIN and x[E_LAST] == (x[E_START] + 1) & MASK32) or (x[E_STATE] != RESET and delta > 0):
        x[E_WRAPS] += 1 if end < x[E_LAST] else 0
        x[E_LAST] = end
        return delta, False
    return delta, x[E_STATE] != RESET and length > 0


def endpoint_size(ends: np.ndarray, e: int) -> int:
    """Payload bytes from the sequence numbers (SYN and FIN not counted)."""
    x, peer = ends[e], ends[e ^ 1]
    start = int(x[E_START])
    acked = (int(x[E_ACK_WRAPS]) << 32) + int(x[E_ACKSEQ])
    if x[E_PREV] == SYN_SENT and x[E_STATE] == RESET and peer[E_STATE] == INACTIVE and acked not in (start, start + 1):
        return 0  # a half-open connection discovered and aborted
    size = (max((int(x[E_WRAPS]) << 32) + int(x[E_LAST]), acked) - start) & ((1 << 64) - 1)
    size -= 1 if size else 0
    size -= 1 if x[E_FINS] > 0 and size else 0
    return size


def data_sent(ends: np.ndarray, e: int, seq: int, length: int) -> None:
    """Payload [seq, seq + length) (relative) reaches the endpoint's reassembler."""
    x = ends[e]
    acked = (int(x[E_ACK_WRAPS]) << 32) + int(x[E_ACKSEQ]) - int(x[E_START])
    upper = seq + length
    seq = max(seq, acked, int(x[E_TRIM]))
    if upper <= seq:
        return  # delivered and acknowledged already
    if seq <= x[E_REASSEM] < upper:
        x[E_REASSEM] = upper
    elif seq > x[E_REASSEM]:  # above a hole: keep the span of what waits
        x[E_BLOCK_LO] = seq if x[E_BLOCK_LO] < 0 else min(int(x[E_BLOCK_LO]), seq)
        x[E_BLOCK_HI] = max(int(x[E_BLOCK_HI]), upper)
    if 0 <= x[E_BLOCK_LO] <= x[E_REASSEM]:
        x[E_REASSEM] = max(int(x[E_REASSEM]), int(x[E_BLOCK_HI]))
        x[E_BLOCK_LO] = x[E_BLOCK_HI] = NONE


def trim_to(ends: np.ndarray, e: int, seq: int, partial: bool) -> tuple[int, int]:
    """The peer acknowledged the endpoint's stream up to ``seq``: lengths of up to two gaps (0 = none)."""
    x = ends[e]
    if x[E_FINS] > 0 and seq >= x[E_FIN_SEQ]:
        seq = int(x[E_FIN_SEQ]) - 1
    if seq <= x[E_TRIM]:
        return 0, 0
    x[E_TRIM] = seq
    if seq <= x[E_REASSEM] or (seq <= 2 and partial):
        return 0, 0  # all delivered, or the faked first byte of a partial connection
    first = 0
    if 0 <= x[E_BLOCK_LO] < seq:
        first = int(x[E_BLOCK_LO]) - int(x[E_REASSEM])
        x[E_REASSEM] = x[E_BLOCK_HI]
        x[E_BLOCK_LO] = x[E_BLOCK_HI] = NONE
    second = max(seq - int(x[E_REASSEM]), 0)
    x[E_REASSEM] = max(int(x[E_REASSEM]), seq)
    return first, second
