"""``pcapstate retries``: every segment sent more than once, as a table read at a glance.

Reads the retries and retransmissions tables as plain columns, a chunk at a
time (whole, or as they merge from parts: :mod:`pcapstate.streaming`): no
pandas, and of the retransmissions only their counts.
"""
from __future__ import annotations

from typing import Iterable

from pcapstate.columns import Table, counts_by
from pcapstate.report.summary import Chunks
from pcapstate.report.text import seconds, table

RETRY_TABLES = ("retries", "retransmissions")  # what the command reads


def retries_lines(chunks: Chunks, source: str, flow_id: int | None = None) -> list[str]:
    """The retry chains of capture ``source`` (of one flow, with ``flow_id``), from its tables as
    ``chunks(name)`` gives them (:meth:`pcapstate.analysis.Analysis.chunks`,
    :meth:`pcapstate.streaming.Streamed.chunks`)."""
    rows = []
    for retries in chunks("retries"):
        if flow_id is not None:
            retries = retries.take(retries.flow_rows(flow_id))
        rows += _chain_rows(retries)
    resent, by_class, names = _retransmission_counts(chunks("retransmissions"))
    count = len(rows)
    lines = [f"{source}: {count} segment{'' if count == 1 else 's'} sent more than once, "
             f"{resent} retransmissions in all"]
    if not count:
        return lines
    lines += [""] + table(("flow", "sender", "kind", "first frame", "sends", "over", "intervals (s)", "backoff",
                           "initial RTO", "acknowledged"), rows, right=(0, 3, 4, 5))
    if by_class:
        kinds, classes = names
        parts = [f"{n} {classes[c]} {kinds[k]}" for (k, c), n in sorted(by_class.items())]
        lines += ["", "retransmissions by kind and class: " + ", ".join(parts)]
    return lines


def _chain_rows(retries: Table) -> list[tuple]:
    """The table's cells of each retry chain of ``retries``."""
    answers = [f"frame {frame}" if answered else "never"
               for frame, answered in zip(retries["answer_frame"].values.tolist(), retries["answered"].tolist())]
    return list(zip(retries["flow"].tolist(), retries["sender"].labels(), retries["kind"].labels(),
                    retries["first_frame"].tolist(), retries["sends"].tolist(),
                    map(seconds, retries["span"].tolist()),
                    (" ".join(f"{i:.3f}" for i in intervals) for intervals in retries["intervals"].values),
                    retries["pattern"].labels(), map(seconds, retries["initial_rto"].tolist()), answers))


def _retransmission_counts(chunks: Iterable[Table]) -> tuple[int, dict, tuple]:
    """How many retransmissions, how many of each (kind, class) by codes, and the kinds' and classes' names."""
    resent, by_class, names = 0, {}, ((), ())
    for chunk in chunks:
        resent += len(chunk)
        if len(chunk):
            names = (chunk["kind"].names, chunk["class"].names)
            for key, n in counts_by(chunk["kind"], chunk["class"]).items():
                by_class[key] = by_class.get(key, 0) + n
    return resent, by_class, names
