"""``pcapstate retries``: every segment sent more than once, as a table read at a glance.

Reads the retries and retransmissions tables as plain columns: no pandas."""
from __future__ import annotations

from pcapstate.columns import counts_by
from pcapstate.report.text import seconds, table


def retries_lines(analysis, flow_id: int | None = None) -> list[str]:
    retries = analysis.columnar("retries")
    if flow_id is not None:
        retries = retries.take(retries.flow_rows(flow_id))
    retransmissions = analysis.columnar("retransmissions")
    count = len(retries)
    lines = [f"{analysis.table.source}: {count} segment{'' if count == 1 else 's'} sent more than once, "
             f"{len(retransmissions)} retransmissions in all"]
    if not count:
        return lines
    answers = [f"frame {frame}" if answered else "never"
               for frame, answered in zip(retries["answer_frame"].values.tolist(), retries["answered"].tolist())]
    rows = zip(retries["flow"].tolist(), retries["sender"].labels(), retries["kind"].labels(),
               retries["first_frame"].tolist(), retries["sends"].tolist(), map(seconds, retries["span"].tolist()),
               (" ".join(f"{i:.3f}" for i in intervals) for intervals in retries["intervals"].values),
               retries["pattern"].labels(), map(seconds, retries["initial_rto"].tolist()), answers)
    lines += [""] + table(("flow", "sender", "kind", "first frame", "sends", "over", "intervals (s)", "backoff",
                           "initial RTO", "acknowledged"), list(rows), right=(0, 3, 4, 5))
    kinds, classes = retransmissions["kind"], retransmissions["class"]
    by_class = counts_by(kinds, classes)  # (in the kinds' order, then the classes')
    if by_class:
        parts = [f"{n} {classes.names[c]} {kinds.names[k]}" for (k, c), n in sorted(by_class.items())]
        lines += ["", "retransmissions by kind and class: " + ", ".join(parts)]
    return lines
