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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate import replay as rp
from pcapstate.jit import njit

SAME_MOMENT_NS = 10_000_000
TOLERANCE = 0.25
PATTERNS = ("doubling", "linear-then-doubling", "constant", "single", "irregular")


def backoff_pattern(intervals: list[float]) -> str:
    """The pattern of a chain's intervals (seconds, copies at the same moment already merged)."""
    if len(intervals) < 2:
        return "single"
    if min(intervals) <= 0:
        return "irregular"
    ratios = [b / a for a, b in zip(intervals, intervals[1:])]
    steps = [_step(r) for r in ratios]
    if "other" in steps:
        return "irregular"
    if all(s == "same" for s in steps):
        return "constant"
    if all(s == "double" for s in steps):
        return "doubling"
    first_double = steps.index("double")
    if all(s == "double" for s in steps[first_double:]):
        return "linear-then-doubling"
    return "irregular"


def _step(ratio: float) -> str:
    if abs(ratio - 1.0) <= TOLERANCE:
        return "same"
    if abs(ratio - 2.0) <= 2.0 * TOLERANCE:
        return "double"
    return "other"


@dataclass
class Chains:
    """One entry per chain; arrays of equal length (lists for the variable parts)."""

    flow: np.ndarray
    side: np.ndarray
    kind: np.ndarray  # SegmentKind
    rows: list[np.ndarray]  # the chain's packet rows in time order
    original_known: np.ndarray  # bool: the first row is the original, not a retransmission
    answer_row: np.ndarray  # the peer's first packet acknowledging the segment after the last send, -1 none
    intervals: list[list[float]]  # seconds between consecutive sends (all copies)
    pattern: list[str]
    initial_rto: np.ndarray  # seconds; NaN when there is no interval


def build_chains(pk: np.ndarray, rows: np.ndarray, retx) -> Chains:
    """Group the rows of :class:`~pcapstate.findings.retransmissions.Retransmissions` into chains."""
    groups = _groups(pk, rows, retx)
    starts = np.array([g[0] for g in groups], dtype=np.int64)
    by_time = np.argsort(pk[starts, rp.PK_TS], kind="stable") if len(groups) else np.zeros(0, dtype=np.int64)
    groups = [groups[i] for i in by_time]
    firsts = np.array([g[0] for g in groups], dtype=np.int64)
    flows, sides = rows[firsts, rp.R_CONN], rows[firsts, rp.R_SIDE]
    last_rows = np.array([g[-1] for g in groups], dtype=np.int64)
    answers = _answers(pk, rows, firsts, flows, sides, *_flow_index(pk, rows))
    intervals, patterns, rto = [], [], []
    for members in groups:
        times = pk[members, rp.PK_TS]
        merged = [float(g) for g in np.diff(_merge_same_moment(times)) / 1e9]
        intervals.append([float(g) for g in np.diff(times) / 1e9])
        patterns.append(backoff_pattern(merged))
        rto.append(merged[0] if merged else np.nan)
    kinds = retx.kind[last_rows].astype(np.int64) if len(groups) else np.zeros(0, dtype=np.int64)
    return Chains(flows.astype(np.int64), sides.astype(np.int64), kinds, groups, retx.klass[firsts] == 0,
                  answers, intervals, patterns, np.array(rto, dtype=np.float64))


def _groups(pk: np.ndarray, rows: np.ndarray, retx) -> list[np.ndarray]:
    """The rows of each chain in time order: its original (when captured), then its retransmissions."""
    retx_rows = np.flatnonzero(retx.klass > 0)
    if not len(retx_rows):
        return []
    keys = (pk[retx_rows, rp.PK_TS], pk[retx_rows, rp.PK_SEQ], retx.kind[retx_rows],
            rows[retx_rows, rp.R_SIDE], rows[retx_rows, rp.R_CONN])
    ordered = retx_rows[np.lexsort(keys)]
    same = np.ones(len(ordered) - 1, dtype=bool)
    for column in (rows[:, rp.R_CONN], rows[:, rp.R_SIDE], retx.kind, pk[:, rp.PK_SEQ]):
        same &= column[ordered[1:]] == column[ordered[:-1]]
    cuts = np.flatnonzero(~same) + 1
    groups = []
    for members in np.split(ordered, cuts):
        original = retx.original_row[members[0]]
        groups.append(np.concatenate([[original], members]) if original >= 0 else members)
    return groups


def _merge_same_moment(times: np.ndarray) -> np.ndarray:
    keep = np.ones(len(times), dtype=bool)
    keep[1:] = np.diff(times) >= SAME_MOMENT_NS
    return times[keep]


def _flow_index(pk: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by (flow, time), and where each flow's rows begin in that order."""
    order = np.lexsort((pk[:, rp.PK_TS], rows[:, rp.R_CONN]))
    flows = rows[order, rp.R_CONN]
    n_flows = int(flows.max()) + 1 if len(flows) else 0
    start = np.searchsorted(flows, np.arange(n_flows + 1), side="left").astype(np.int64)
    return order.astype(np.int64), start


@njit
def _answers(pk, rows, firsts, flows, sides, order, start):
    """Per chain, the peer's first packet acknowledging the segment after its first send (-1: none)."""
    out = np.full(firsts.shape[0], -1, dtype=np.int64)
    for i in range(firsts.shape[0]):
        first, flow = firsts[i], flows[i]
        end = rp.segment_end(pk[first, rp.PK_FLAGS], pk[first, rp.PK_SEQ], pk[first, rp.PK_LEN])
        for j in range(start[flow], start[flow + 1]):
            row = order[j]
            if rows[row, rp.R_SIDE] != sides[i] and pk[row, rp.PK_TS] >= pk[first, rp.PK_TS] \
                    and pk[row, rp.PK_FLAGS] & rp.ACK and rp.seq_ge(pk[row, rp.PK_ACK], end):
                out[i] = row
                break
    return out
