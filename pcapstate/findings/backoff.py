"""Retry chains: each segment sent more than once, its intervals and its backoff.

A chain is every transmission of one segment (same flow, sender, kind and
first sequence number): the original (when captured) and its retransmissions.
Its intervals are measured, never assumed, and read as one of:

* ``doubling``: every interval about twice the one before (1, 2, 4, 8 … as in
  the seed documents; RFC 6298's exponential backoff);
* ``linear-then-doubling``: equal intervals, then doubling (Linux 6.x SYN
  retries with ``tcp_syn_linear_timeouts``: 1, 1, 1, 1, 2, 4 …);
* ``constant``: all about equal;
* ``single``: one retransmission, one interval: nothing to compare;
* ``irregular``: anything else.

Copies sent within ``SAME_MOMENT`` of the previous one (a SYN-ACK resent by the
timer and again in reply to a retransmitted SYN) count as one attempt for the
pattern.  "About" is within ``TOLERANCE`` of the ratio.  The estimated initial
RTO is the first interval: the time the sender waited before its first
retransmission.

All chains are built at once: their rows are held flat (:class:`Ragged`),
and the patterns and answers come from compiled loops over them, so the work
in Python does not grow with the number of chains beyond one list entry each.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pcapstate import replay as rp
from pcapstate.jit import entry, inline

SAME_MOMENT_NS = 10_000_000
TOLERANCE = 0.25
PATTERNS = ("doubling", "linear-then-doubling", "constant", "single", "irregular")
DOUBLING, LINEAR_THEN_DOUBLING, CONSTANT, SINGLE, IRREGULAR = range(5)  # indices into PATTERNS


def backoff_pattern(intervals: list[float]) -> str:
    """The pattern of a chain's intervals (seconds, copies at the same moment already merged)."""
    return PATTERNS[_pattern_code(np.asarray(intervals, dtype=np.float64))]


@entry("f8[::1]")
def _pattern_code(intervals: np.ndarray) -> int:
    """:func:`backoff_pattern` as an index into ``PATTERNS``.

    Each ratio of an interval to the one before is a step: "same" (about 1),
    "double" (about 2) or anything else (irregular).  Doubling is all
    doubles, constant all sames, linear-then-doubling sames and then only
    doubles.
    """
    if intervals.shape[0] < 2:
        return SINGLE
    for interval in intervals:
        if interval <= 0:
            return IRREGULAR
    first_double, last_same = -1, -1
    for i in range(intervals.shape[0] - 1):
        ratio = intervals[i + 1] / intervals[i]
        if abs(ratio - 1.0) <= TOLERANCE:
            last_same = i
        elif abs(ratio - 2.0) <= 2.0 * TOLERANCE:
            if first_double < 0:
                first_double = i
        else:
            return IRREGULAR
    if first_double < 0:
        return CONSTANT
    if last_same < 0:
        return DOUBLING
    return LINEAR_THEN_DOUBLING if last_same < first_double else IRREGULAR


class Ragged(Sequence):
    """Variable-length rows of integers stored flat: item ``i`` is ``values[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def __iter__(self):
        for start, end in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()):
            yield self.values[start:end]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def firsts(self) -> np.ndarray:
        """The first value of every item (all items are non-empty)."""
        return self.values[self.offsets[:-1]]

    @property
    def lasts(self) -> np.ndarray:
        return self.values[self.offsets[1:] - 1]

    def take(self, items: np.ndarray) -> Ragged:
        """The items ``items``, in that order."""
        lengths = self.lengths[items]
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        shift = np.repeat(self.offsets[:-1][items] - offsets[:-1], lengths)
        return Ragged(self.values[np.arange(offsets[-1]) + shift], offsets)


@dataclass
class Chains:
    """One entry per chain, in order of first send; arrays of equal length (and per-chain sequences)."""

    flow: np.ndarray
    side: np.ndarray
    kind: np.ndarray  # SegmentKind
    rows: Ragged  # the chain's packet rows in time order
    original_known: np.ndarray  # bool: the first row is the original, not a retransmission
    answer_row: np.ndarray  # the peer's first packet acknowledging the segment, from its first send on; -1 none
    intervals: list[list[float]]  # seconds between consecutive sends (all copies)
    pattern: list[str]
    initial_rto: np.ndarray  # seconds; NaN when there is no interval


def build_chains(pk: np.ndarray, order: np.ndarray, rows: np.ndarray, retx) -> Chains:
    """Group the rows of :class:`~pcapstate.findings.retransmissions.Retransmissions` into chains.

    ``order`` is the replay order (rows by time, file order among equal times).
    """
    members = _chain_members(pk, rows, retx)
    members = members.take(np.argsort(pk[members.firsts, rp.PK_TS], kind="stable"))
    firsts, lasts = members.firsts, members.lasts
    flows, sides = rows[firsts, rp.R_CONN].astype(np.int64), rows[firsts, rp.R_SIDE].astype(np.int64)
    has_chain = np.zeros(int(flows.max()) + 1 if len(flows) else 0, dtype=np.bool_)
    has_chain[flows] = True
    answers = _answers(pk, rows, firsts, flows, sides, *_flow_index(rows, order, has_chain))
    times = pk[members.values, rp.PK_TS]
    codes, rto = _backoff(times, members.offsets)
    return Chains(flows, sides, retx.kind[lasts].astype(np.int64), members,
                  retx.klass[firsts] == 0, answers, _intervals(times, members.offsets),
                  [PATTERNS[code] for code in codes.tolist()], rto)


def _chain_members(pk: np.ndarray, rows: np.ndarray, retx) -> Ragged:
    """The rows of each chain in time order: its original (when captured), then its retransmissions."""
    resent = np.flatnonzero(retx.klass > 0)
    keys = (pk[resent, rp.PK_TS], pk[resent, rp.PK_SEQ], retx.kind[resent],
            rows[resent, rp.R_SIDE], rows[resent, rp.R_CONN])
    ordered = resent[np.lexsort(keys)]
    same = np.ones(max(len(ordered) - 1, 0), dtype=bool)  # the same segment as the row before
    for column in (rows[:, rp.R_CONN], rows[:, rp.R_SIDE], retx.kind, pk[:, rp.PK_SEQ]):
        same &= column[ordered[1:]] == column[ordered[:-1]]
    starts = np.flatnonzero(np.concatenate([[len(ordered) > 0], ~same]))
    original = retx.original_row[ordered[starts]]
    known = original >= 0
    values = np.insert(ordered, starts[known], original[known])  # each captured original before its chain
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(np.diff(np.append(starts, len(ordered))) + known, out=offsets[1:])
    return Ragged(values.astype(np.int64), offsets)


def _intervals(times: np.ndarray, offsets: np.ndarray) -> list[list[float]]:
    """Per chain, the seconds between consecutive sends, as lists of floats."""
    gaps = (np.diff(times) / 1e9).tolist()  # also one across each boundary between chains, never used
    return [gaps[start:end - 1] for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


@entry("i8[::1]", "i8[::1]")
def _backoff(times: np.ndarray, offsets: np.ndarray):
    """Per chain, the pattern (index into ``PATTERNS``) and initial RTO (seconds; NaN: no interval).

    Both read the intervals with copies sent within ``SAME_MOMENT_NS`` of the
    send before them dropped.
    """
    n = offsets.shape[0] - 1
    codes = np.empty(n, dtype=np.int64)
    rto = np.full(n, np.nan)
    merged = np.empty(times.shape[0], dtype=np.float64)  # scratch, one chain at a time
    for chain in range(n):
        count = 0
        kept = times[offsets[chain]]
        for j in range(offsets[chain] + 1, offsets[chain + 1]):
            if times[j] - times[j - 1] >= SAME_MOMENT_NS:
                merged[count] = (times[j] - kept) / 1e9
                kept = times[j]
                count += 1
        codes[chain] = _pattern_code(merged[:count])
        if count:
            rto[chain] = merged[0]
    return codes, rto


@entry(rp.ROWS, "i8[::1]", "b1[::1]")
def _flow_index(rows: np.ndarray, order: np.ndarray, wanted: np.ndarray):
    """The rows of the flows marked in ``wanted``, by flow and in ``order`` within a flow, and where each
    flow's begin.

    A counting sort: two passes over the rows instead of sorting them all.
    """
    n_flows = wanted.shape[0]
    start = np.zeros(n_flows + 1, dtype=np.int64)
    for row in range(rows.shape[0]):
        flow = rows[row, rp.R_CONN]
        if 0 <= flow < n_flows and wanted[flow]:
            start[flow + 1] += 1
    for flow in range(n_flows):
        start[flow + 1] += start[flow]
    filled = start[:-1].copy()
    by_flow = np.empty(start[n_flows], dtype=np.int64)
    for row in order:
        flow = rows[row, rp.R_CONN]
        if 0 <= flow < n_flows and wanted[flow]:
            by_flow[filled[flow]] = row
            filled[flow] += 1
    return by_flow, start


@entry("i8[:, ::1]", rp.ROWS, "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]")
def _answers(pk, rows, firsts, flows, sides, by_flow, start):
    """Per chain, the peer's first packet acknowledging the segment after its first send (-1: none)."""
    out = np.full(firsts.shape[0], -1, dtype=np.int64)
    for i in range(firsts.shape[0]):
        first, flow = firsts[i], flows[i]
        end = rp.segment_end(pk[first, rp.PK_FLAGS], pk[first, rp.PK_SEQ], pk[first, rp.PK_LEN])
        for j in range(_first_at_or_after(pk, by_flow, start[flow], start[flow + 1], pk[first, rp.PK_TS]),
                       start[flow + 1]):
            row = by_flow[j]
            if rows[row, rp.R_SIDE] != sides[i] and pk[row, rp.PK_FLAGS] & rp.ACK \
                    and rp.seq_ge(pk[row, rp.PK_ACK], end):
                out[i] = row
                break
    return out


@inline
def _first_at_or_after(pk, by_flow, lo, hi, ts) -> int:
    """The first position in ``by_flow[lo:hi]`` (time order) whose packet is not earlier than ``ts``."""
    while lo < hi:
        middle = (lo + hi) // 2
        if pk[by_flow[middle], rp.PK_TS] < ts:
            lo = middle + 1
        else:
            hi = middle
    return lo
