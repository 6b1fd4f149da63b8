"""``--jobs N``: the compiled passes over a capture's connections, N at a time on threads.

Every compiled pass that walks the packets in replay order keeping state per
connection (the replay, the Zeek pass, the retransmission classifier) can walk
a *share* of the connections on its own: the packets are split by
conversation (the unordered 4-tuple, so both directions of a connection and
every later connection reusing the 4-tuple fall in one share), each share is
walked in the same replay order by its own thread, and the threads write only
their own rows and connections of shared arrays.  The compiled code releases
the GIL (:mod:`pcapstate.aot_build`), so the threads really run side by side;
the JSON printer renders its chunks the same way (:mod:`pcapstate.report.json_rows`).

A capture analyzed in parts (:mod:`pcapstate.streaming`) shares out its parts
over processes instead, since most of a part's analysis is Python.

The results are the same as in one thread, table for table: connections are
numbered afterwards by their first packet, as one walk numbers them
(:func:`pcapstate.replay.replay`), and tests compare every table.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

AUTO = 0
MIN_PACKETS_PER_JOB = 200_000  # below this a second thread costs more than it saves


def resolve(jobs: int, packets: int) -> int:
    """How many threads to use: ``jobs``, or with AUTO (0) the cores, one per 200,000 packets at most."""
    if jobs != AUTO:
        return max(1, jobs)
    return max(1, min(os.cpu_count() or 1, packets // MIN_PACKETS_PER_JOB))


def shares(order: np.ndarray, conv: np.ndarray, jobs: int) -> list[np.ndarray]:
    """``order`` (rows in replay order) split into ``jobs`` shares by conversation, each still in replay order."""
    if jobs <= 1:
        return [order]
    share_of_row = (conv % jobs).astype(np.int8)
    in_order = share_of_row[order]
    return [order[in_order == s] for s in range(jobs)]


def run_all(function, items: list) -> list:
    """``function(item)`` for every item, each on a thread of its own (just called, for one item)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))
