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
    retx_rows = np.flatnonzero(retx.klass > 0)
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for row in retx_rows:
        first = int(retx.original_row[row]) if retx.original_row[row] >= 0 else int(row)
        key = (int(rows[row, rp.R_CONN]), int(rows[row, rp.R_SIDE]), int(retx.kind[row]), int(pk[row, rp.PK_SEQ]))
        members = groups.setdefault(key, [first] if first != row else [])
        members.append(int(row))
    answers = _answer_rows(pk, rows)
    flows, sides, kinds, chain_rows, known, answer, intervals, patterns, rto = [], [], [], [], [], [], [], [], []
    for (flow, side, kind, _), members in sorted(groups.items(), key=lambda item: pk[item[1][0], rp.PK_TS]):
        members_arr = np.array(members, dtype=np.int64)
        times = pk[members_arr, rp.PK_TS]
        gaps = np.diff(times) / 1e9
        merged = [g for g in np.diff(_merge_same_moment(times)) / 1e9]
        flows.append(flow), sides.append(side), kinds.append(kind), chain_rows.append(members_arr)
        known.append(retx.klass[members_arr[0]] == 0)
        answer.append(answers(flow, side, members_arr))
        intervals.append([float(g) for g in gaps])
        patterns.append(backoff_pattern(merged))
        rto.append(merged[0] if merged else np.nan)
    return Chains(np.array(flows, dtype=np.int64), np.array(sides, dtype=np.int64), np.array(kinds, dtype=np.int64),
                  chain_rows, np.array(known, dtype=bool), np.array(answer, dtype=np.int64), intervals, patterns,
                  np.array(rto, dtype=np.float64))


def _merge_same_moment(times: np.ndarray) -> np.ndarray:
    keep = np.ones(len(times), dtype=bool)
    keep[1:] = np.diff(times) >= SAME_MOMENT_NS
    return times[keep]


def _answer_rows(pk: np.ndarray, rows: np.ndarray):
    """A function giving, for a chain, the peer's first ACK covering it after the first send (-1: none)."""
    order = np.lexsort((pk[:, rp.PK_TS], rows[:, rp.R_CONN]))
    flow_of = rows[order, rp.R_CONN]

    def answer(flow: int, side: int, members: np.ndarray) -> int:
        first = members[0]
        end = rp.segment_end(int(pk[first, rp.PK_FLAGS]), int(pk[first, rp.PK_SEQ]), int(pk[first, rp.PK_LEN]))
        lo, hi = np.searchsorted(flow_of, flow, "left"), np.searchsorted(flow_of, flow, "right")
        for row in order[lo:hi]:
            if rows[row, rp.R_SIDE] != side and pk[row, rp.PK_TS] >= pk[first, rp.PK_TS] \
                    and pk[row, rp.PK_FLAGS] & rp.ACK and rp.seq_ge(int(pk[row, rp.PK_ACK]), end):
                return int(row)
        return -1

    return answer
