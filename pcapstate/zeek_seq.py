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

Every function but ``new_endpoints`` runs compiled (:func:`pcapstate.jit.njit`),
or as plain Python with ``PCAPSTATE_NO_JIT=1``: integer arguments and int64
state, read and written as ``ends[e, column]``.  Compiled, every array a
function is given (or a row view ``ends[e]`` it takes) costs two atomic
reference counts per call, so arithmetic such as :func:`relative_seq` takes
numbers.  Zeek's uint64 relative numbers are int64 here (no capture comes
near 2**63); a size Zeek computes modulo 2**64 keeps the same bits as int64.
"""
from __future__ import annotations

import numpy as np

from pcapstate.jit import inline, njit

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


@njit
def seq_delta(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit difference (Zeek's ``seq_delta``)."""
    d = (a - b) & MASK32
    return d - (1 << 32) if d >= 1 << 31 else d


@inline
def init_endpoint(ends: np.ndarray, e: int, flags: int, seq: int, end: int) -> None:
    """Where the endpoint's relative numbers start: its SYN, or one before its first packet."""
    state = int(ends[e, E_STATE])
    if state == INACTIVE:
        if flags & SYN:
            ends[e, E_START], ends[e, E_ACKSEQ], ends[e, E_LAST] = seq, seq, end
        else:  # as though a SYN had been seen, without marking this packet a duplicate
            ends[e, E_START], ends[e, E_ACKSEQ], ends[e, E_LAST] = (seq - 1) & MASK32, (seq - 1) & MASK32, seq
        return
    if state in (SYN_SENT, SYN_ACK_SENT):
        restart = bool(flags & SYN) and seq != ends[e, E_START] & MASK32
    elif state in (ESTABLISHED, PARTIAL):
        restart = bool(flags & SYN)
    else:
        restart = state == RESET and bool(flags & SYN) and ends[e, E_PREV] == INACTIVE
    if restart:
        ends[e, E_START], ends[e, E_ACKSEQ], ends[e, E_LAST] = seq, seq, end


@njit
def relative_seq(cur: int, last: int, wraps: int, start: int) -> tuple[int, bool]:
    """``cur`` relative to ``start`` (wraps counted from ``last``); True if before the start."""
    delta = seq_delta(cur, last)
    if delta < 0 and wraps and cur > last:
        wraps -= 1
    elif delta > 0 and cur < last:
        wraps += 1
    if wraps == 0:
        d = seq_delta(cur, start & MASK32)
        return d, d < 0
    return (wraps << 32) + cur - start, False


@inline
def acknowledge(ends: np.ndarray, peer: int, flags: int, ack: int) -> int:
    """An ACK for ``peer``'s data: start its numbers if it never sent, else advance its ack; the relative ack."""
    if ends[peer, E_STATE] == INACTIVE:
        ends[peer, E_START] = ends[peer, E_ACKSEQ] = ends[peer, E_LAST] = (ack - 1) & MASK32
        return 1
    rel, underflow = relative_seq(ack, int(ends[peer, E_ACKSEQ]), int(ends[peer, E_ACK_WRAPS]),
                                  int(ends[peer, E_START]))
    if underflow:
        return 0
    delta = seq_delta(ack, int(ends[peer, E_ACKSEQ]))
    if not flags & RST and not (ack == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
        ends[peer, E_ACK_WRAPS] += 1 if ack < ends[peer, E_ACKSEQ] else 0
        ends[peer, E_ACKSEQ] = ack
    return rel


@inline
def update_last_seq(ends: np.ndarray, e: int, end: int, flags: int, length: int) -> tuple[int, bool]:
    """Advance the endpoint's highest sequence number; (delta, whether the payload was a retransmission)."""
    delta = seq_delta(end, int(ends[e, E_LAST]))
    if flags & (SYN | RST) and abs(delta) > TOO_LARGE_SEQ_DELTA:
        return delta, False
    first_fin = bool(flags & FIN) and ends[e, E_LAST] == (ends[e, E_START] + 1) & MASK32
    if first_fin or (ends[e, E_STATE] != RESET and delta > 0):
        ends[e, E_WRAPS] += 1 if end < ends[e, E_LAST] else 0
        ends[e, E_LAST] = end
        return delta, False
    return delta, ends[e, E_STATE] != RESET and length > 0


@inline
def endpoint_size(ends: np.ndarray, e: int) -> int:
    """Payload bytes from the sequence numbers (SYN and FIN not counted)."""
    start = int(ends[e, E_START])
    acked = (int(ends[e, E_ACK_WRAPS]) << 32) + int(ends[e, E_ACKSEQ])
    aborted = ends[e, E_PREV] == SYN_SENT and ends[e, E_STATE] == RESET and ends[e ^ 1, E_STATE] == INACTIVE
    if aborted and acked not in (start, start + 1):
        return 0  # a half-open connection discovered and aborted
    # Zeek's uint64 difference: below the start it wraps; here it is the same bits, negative
    size = max((int(ends[e, E_WRAPS]) << 32) + int(ends[e, E_LAST]), acked) - start
    size -= 1 if size else 0
    size -= 1 if ends[e, E_FINS] > 0 and size else 0
    return size


@inline
def data_sent(ends: np.ndarray, e: int, seq: int, length: int) -> None:
    """Payload [seq, seq + length) (relative) reaches the endpoint's reassembler."""
    acked = (int(ends[e, E_ACK_WRAPS]) << 32) + int(ends[e, E_ACKSEQ]) - int(ends[e, E_START])
    upper = seq + length
    seq = max(seq, acked, int(ends[e, E_TRIM]))
    if upper <= seq:
        return  # delivered and acknowledged already
    if seq <= ends[e, E_REASSEM] < upper:
        ends[e, E_REASSEM] = upper
    elif seq > ends[e, E_REASSEM]:  # above a hole: keep the span of what waits
        ends[e, E_BLOCK_LO] = seq if ends[e, E_BLOCK_LO] < 0 else min(int(ends[e, E_BLOCK_LO]), seq)
        ends[e, E_BLOCK_HI] = max(int(ends[e, E_BLOCK_HI]), upper)
    if 0 <= ends[e, E_BLOCK_LO] <= ends[e, E_REASSEM]:
        ends[e, E_REASSEM] = max(int(ends[e, E_REASSEM]), int(ends[e, E_BLOCK_HI]))
        ends[e, E_BLOCK_LO] = ends[e, E_BLOCK_HI] = NONE


@inline
def trim_to(ends: np.ndarray, e: int, seq: int, partial: bool) -> tuple[int, int]:
    """The peer acknowledged the endpoint's stream up to ``seq``: lengths of up to two gaps (0 = none)."""
    if ends[e, E_FINS] > 0 and seq >= ends[e, E_FIN_SEQ]:
        seq = int(ends[e, E_FIN_SEQ]) - 1
    if seq <= ends[e, E_TRIM]:
        return 0, 0
    ends[e, E_TRIM] = seq
    if seq <= ends[e, E_REASSEM] or (seq <= 2 and partial):
        return 0, 0  # all delivered, or the faked first byte of a partial connection
    first = 0
    if 0 <= ends[e, E_BLOCK_LO] < seq:
        first = int(ends[e, E_BLOCK_LO]) - int(ends[e, E_REASSEM])
        ends[e, E_REASSEM] = ends[e, E_BLOCK_HI]
        ends[e, E_BLOCK_LO] = ends[e, E_BLOCK_HI] = NONE
    second = max(seq - int(ends[e, E_REASSEM]), 0)
    ends[e, E_REASSEM] = max(int(ends[e, E_REASSEM]), seq)
    return first, second
