"""``pcapstate plot census``: how many connections were in each state, over time.

The picture behind the seeds' "many CLOSE_WAIT" and "many SYN_RCVD" diagnoses:
for each side (what ``netstat -an`` would count on the clients and on the
server) a step line per state, the number of endpoints in that state after
every transition.  CLOSED (no socket) and LISTEN (one listening socket serves
every connection, not one per connection) are not counted.  :func:`census`
gives the numbers as a DataFrame; at any time they agree with
:meth:`~pcapstate.analysis.Analysis.states_at`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pcapstate.report.plots.style import STATE_COLOURS, new_figure, rc

WIDTH_PX, HEIGHT_PX = 1000, 700
COUNTED = tuple(s for s in STATE_COLOURS if s not in ("CLOSED", "LISTEN"))


def census(analysis) -> pd.DataFrame:
    """Endpoints per state after each moment something changed.

    One row per (time, endpoint side) at which a transition happened, with the
    columns ``ts_epoch``, ``endpoint`` (client / server) and one count column
    per state of :data:`COUNTED`: the counts once every transition at that time
    is applied.
    """
    t = analysis.transitions
    rows = []
    for side in ("client", "server"):
        mine = t[t["endpoint"] == side]
        counts = np.zeros((len(mine), len(COUNTED)), dtype=np.int64)
        for k, state in enumerate(COUNTED):
            delta = (mine["to_state"] == state).to_numpy(dtype=np.int64) - (mine["from_state"] == state).to_numpy(
                dtype=np.int64)
            counts[:, k] = delta
        order = np.argsort(mine["ts_epoch"].to_numpy(), kind="stable")
        frame = pd.DataFrame(np.cumsum(counts[order], axis=0), columns=list(COUNTED))
        frame.insert(0, "endpoint", side)
        frame.insert(0, "ts_epoch", mine["ts_epoch"].to_numpy()[order])
        rows.append(frame.groupby("ts_epoch", sort=True).tail(1))
    result = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["ts_epoch", "endpoint", *COUNTED])
    return result.sort_values(["ts_epoch", "endpoint"], kind="stable").reset_index(drop=True)


def draw(analysis, flow_id: int | None = None, size: tuple[int, int] | None = None):
    """The census of every connection as a Figure (``flow_id`` is not used: a census counts them all)."""
    table = census(analysis)
    flows = analysis.flows
    start = float(flows["start_epoch"].min()) if len(flows) else 0.0
    end = float(flows["end_epoch"].max()) if len(flows) else 0.0
    width, height = size or (WIDTH_PX, HEIGHT_PX)
    with rc():
        fig = new_figure(width, height)
        axes = fig.subplots(2, 1, sharex=True)
        for ax, side in zip(axes, ("client", "server")):
            mine = table[table["endpoint"] == side]
            drawn = 0
            for state in COUNTED:
                if not len(mine) or not mine[state].any():
                    continue
                x = np.concatenate([[0.0], mine["ts_epoch"].to_numpy() - start, [end - start]])
                y = np.concatenate([[0], mine[state].to_numpy(), [mine[state].iloc[-1]]])
                ax.step(x, y, where="post", color=STATE_COLOURS[state], linewidth=2, label=state)
                drawn += 1
            ax.set_ylabel(f"{side} endpoints")
            ax.set_ylim(bottom=0)
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.grid(color="#dddddd", linewidth=0.6)
            if drawn:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
            else:
                ax.text(0.5, 0.5, f"no {side} endpoint in a counted state", ha="center", va="center",
                        transform=ax.transAxes)
        axes[-1].set_xlabel("seconds since the first packet of the capture")
        axes[-1].set_xlim(0, max(end - start, 1e-6) * 1.01)
        axes[0].set_title(f"{analysis.table.source}: connections in each state (CLOSED and LISTEN not counted)",
                          loc="left", parse_math=False, fontsize=9)
    return fig
