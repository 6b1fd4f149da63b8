"""``pcapstate plot states``: every endpoint's state over time, many flows at once (a Gantt chart).

Two bars per flow, client above server, each a run of segments coloured by the
state the endpoint was in, from the transitions table: a segment runs from one
transition to the next, the last one to the end of the capture (a connection
still open at the end stays coloured to the right edge, so what lingers is what
stands out).  CLOSED, and an unknown state, are left blank: no socket.  At most
:data:`MAX_FLOWS` flows are drawn, in flow order; the title says when more were
left out.
"""
from __future__ import annotations

from pcapstate.report.plots.style import STATE_COLOURS, new_figure, rc, state_handles

MAX_FLOWS = 60
WIDTH_PX = 1200
BAR_PX = 16
FRAME_PX = 220


def draw(analysis, flow_id: int | None = None, size: tuple[int, int] | None = None, max_flows: int = MAX_FLOWS):
    """The Gantt chart of ``flow_id``, or of the first ``max_flows`` flows, as a Figure."""
    flows = analysis.flows
    shown = flows[flows["flow"] == flow_id] if flow_id is not None else flows.head(max_flows)
    start = float(flows["start_epoch"].min()) if len(flows) else 0.0
    end = float(flows["end_epoch"].max()) if len(flows) else 0.0
    transitions = analysis.transitions
    transitions = transitions[transitions["flow"].isin(shown["flow"])]  # (once: then each bar reads a few rows)
    width, height = size or (WIDTH_PX, FRAME_PX + BAR_PX * 2 * max(len(shown), 1))
    with rc():
        fig = new_figure(width, height)
        ax = fig.add_subplot()
        seen: set[str] = set()
        ticks, labels = [], []
        for i, flow in enumerate(shown["flow"].tolist()):
            for j, side in enumerate(("client", "server")):
                y = 2 * i + j
                mine = transitions[(transitions["flow"] == flow) & (transitions["endpoint"] == side)]
                seen |= _bar(ax, y, mine, start, end)
                ticks.append(y)
                labels.append(f"flow {flow} {side}")
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.set_ylim(2 * max(len(shown), 1) - 0.4, -0.6)
        ax.set_xlim(0, max(end - start, 1e-6) * 1.01)
        ax.set_xlabel("seconds since the first packet of the capture")
        ax.set_ylabel("endpoint")
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        title = f"{analysis.table.source}: each endpoint's state over time"
        if flow_id is None and len(shown) < len(flows):
            title += f" (first {len(shown)} of {len(flows)} flows)"
        if not len(shown):
            ax.text(0.5, 0.5, "no TCP connection in this capture", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, loc="left", parse_math=False, fontsize=9)
        if seen:
            fig.legend(handles=state_handles(seen), loc="outside lower center", ncols=6, frameon=False)
    return fig


def _bar(ax, y: float, transitions, start: float, end: float) -> set[str]:
    """One endpoint's bar; the states it shows."""
    times = transitions["ts_epoch"].tolist() + [end]
    states = transitions["to_state"].tolist()
    seen = set()
    for (t0, t1), state in zip(zip(times, times[1:]), states):
        name = None if state != state else str(state)
        if name is None or name == "CLOSED":
            continue
        # a state that lasted no time at all still gets a sliver, so it is seen
        ax.broken_barh([(t0 - start, max(t1 - t0, (end - start) * 0.002))], (y - 0.4, 0.8),
                       facecolors=STATE_COLOURS[name], edgecolor="none")
        seen.add(name)
    return seen
