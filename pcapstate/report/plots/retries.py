"""``pcapstate plot retries``: how long each retry waited, so a kernel's backoff can be read off.

Every retry chain (a segment sent more than once, ``Analysis.retries``) is a
line of points: attempt number (1 = the first re-send) against the interval
since the previous send, on a log-2 interval axis where doubling is a straight
line.  A dashed reference line doubles from the median initial RTO; a linear
start (Linux's ``tcp_syn_linear_timeouts``) shows as a flat run before it.
One colour per segment kind (SYN, SYN-ACK, FIN, RST, data).
"""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pcapstate.findings.backoff import SAME_MOMENT_NS
from pcapstate.report.plots.style import new_figure, rc

WIDTH_PX, HEIGHT_PX = 1000, 650
KIND_COLOURS = {"SYN": "#1f77b4", "SYN-ACK": "#ff7f0e", "FIN": "#2ca02c", "RST": "#9467bd", "data": "#8c564b"}


def draw(analysis, flow_id: int | None = None, size: tuple[int, int] | None = None):
    """The retry intervals of every chain (of ``flow_id`` only, when given) as a Figure."""
    retries = analysis.retries
    if flow_id is not None:
        retries = retries[retries["flow"] == flow_id]
    width, height = size or (WIDTH_PX, HEIGHT_PX)
    with rc():
        fig = new_figure(width, height)
        ax = fig.add_subplot()
        counts: dict[str, int] = {}
        longest = 1
        for chain in retries.itertuples(index=False):
            intervals = merged_intervals(chain.intervals)
            if not intervals:
                continue
            kind = str(chain.kind)
            counts[kind] = counts.get(kind, 0) + 1
            attempts = np.arange(1, len(intervals) + 1)
            ax.plot(attempts, intervals, marker="o", markersize=4, linewidth=1, alpha=0.6,
                    color=KIND_COLOURS.get(kind, "#333333"))
            longest = max(longest, len(intervals))
        handles = [Line2D([], [], color=KIND_COLOURS.get(k, "#333333"), marker="o",
                          label=f"{k} ({n} chain{'' if n == 1 else 's'})") for k, n in counts.items()]
        if counts:
            handles.append(_reference(ax, retries, longest))
            ax.set_yscale("log", base=2)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _seconds(v)))
            ax.legend(handles=handles, loc="upper left", frameon=False)
        else:
            ax.text(0.5, 0.5, "no segment was sent more than once", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("attempt (1 = first re-send)")
        ax.set_ylabel("interval since the previous send (log 2; copies sent together count once)")
        ax.grid(color="#dddddd", linewidth=0.6)
        chains = sum(counts.values())
        ax.set_title(f"{analysis.table.source}: retry intervals of {chains} chain{'' if chains == 1 else 's'}",
                     loc="left", parse_math=False, fontsize=9)
    return fig


def merged_intervals(intervals) -> list[float]:
    """Intervals between sends, copies at the same moment counted once (as the backoff pattern reads them)."""
    merged, pending = [], 0.0
    for interval in intervals:
        pending += interval
        if interval * 1e9 >= SAME_MOMENT_NS:
            merged.append(pending)
            pending = 0.0
    return merged


def _seconds(value: float) -> str:
    """Tick labels a person reads: 250 ms, 1 s, 16 s."""
    if value <= 0:
        return ""
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _reference(ax, retries, longest: int) -> Line2D:
    """The doubling line from the median initial RTO; its legend entry."""
    rto = float(np.nanmedian(retries["initial_rto"].to_numpy(dtype=float)))
    x = np.arange(1, longest + 1)
    (line,) = ax.plot(x, rto * 2.0 ** (x - 1), linestyle="--", color="#000000", linewidth=1,
                      label=f"doubling from {rto:.3g} s")
    return line
