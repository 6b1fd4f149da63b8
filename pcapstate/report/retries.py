"""``pcapstate retries``: every segment sent more than once, as a table read at a glance."""
from __future__ import annotations

from pcapstate.report.text import seconds, table


def retries_lines(analysis, flow_id: int | None = None) -> list[str]:
    retries = analysis.retries
    if flow_id is not None:
        retries = retries[retries["flow"] == flow_id]
    count = len(retries)
    lines = [f"{analysis.table.source}: {count} segment{'' if count == 1 else 's'} sent more than once, "
             f"{len(analysis.retransmissions)} retransmissions in all"]
    if not count:
        return lines
    rows = []
    for chain in retries.itertuples(index=False):
        answer = f"frame {chain.answer_frame}" if chain.answered else "never"
        rows.append((chain.flow, chain.sender, chain.kind, chain.first_frame, chain.sends, seconds(chain.span),
                     " ".join(f"{i:.3f}" for i in chain.intervals), chain.pattern,
                     seconds(chain.initial_rto), answer))
    lines += [""] + table(("flow", "sender", "kind", "first frame", "sends", "over", "intervals (s)", "backoff",
                           "initial RTO", "acknowledged"), rows, right=(0, 3, 4, 5))
    by_class = analysis.retransmissions.groupby(["kind", "class"], observed=True).size()
    if len(by_class):
        parts = [f"{n} {cls} {kind}" for (kind, cls), n in by_class.items()]
        lines += ["", "retransmissions by kind and class: " + ", ".join(parts)]
    return lines
