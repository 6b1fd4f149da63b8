"""Findings: what the replay's results mean.

Retransmissions (:mod:`.retransmissions`), their retry chains and backoff
(:mod:`.backoff`), and anomaly flags (:mod:`.anomalies`).  Each reads the
packet table and the tracking results and returns columns; none reaches back
into decoding, and none imports pandas.
"""
from __future__ import annotations

from dataclasses import dataclass

from pcapstate.findings.anomalies import Context, Found, HalfOpen, Thresholds, find_anomalies, half_open
from pcapstate.findings.backoff import Chains, build_chains
from pcapstate.findings.retransmissions import Retransmissions, classify


@dataclass
class Findings:
    retransmissions: Retransmissions
    chains: Chains
    anomalies: Found
    half_open: HalfOpen | None = None  # a part of a trace: what its gatherer looks across the parts for


def compute(tracking, names: list[tuple[str, str]], thresholds: Thresholds = Thresholds(),
            whole_trace: bool = True) -> Findings:
    """All findings of a :class:`~pcapstate.tracker.Tracking`.

    ``names`` holds the client and server endpoint text of each flow, for the sentences.
    ``whole_trace=False``: the tracking is a part of a trace (some of its
    conversations); the findings that look across connections of different
    4-tuples (``half_open_flood``) are left to whoever gathers the parts.
    """
    result, table, packets = tracking.result, tracking.table, tracking.packets
    retx = classify(packets, tracking.orders, result.rows, table["window"], len(result.connections))
    chains = build_chains(packets, tracking.conversations.order, result.rows, retx)
    context = Context(packets, result.rows, result.connections, result.endpoints, result.transitions,
                      retx.flags, chains, names, table["frame"], tracking.capture_end_ns, thresholds,
                      tracking.flow_ids, whole_trace)
    return Findings(retx, chains, find_anomalies(context), None if whole_trace else half_open(context))
