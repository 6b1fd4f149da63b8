"""What every picture shares: one colour per state, figure sizes, and a byte-stable save.

A figure is sized in pixels at :data:`DPI` dots per inch, so the PNG is exactly
the size the command states; an SVG of the same figure is that size in CSS
pixels (its ``width``/``height`` attributes are in points, 72 per inch).
Saving strips what would differ between runs (matplotlib's version stamp, the
date, random SVG ids), so the same capture gives the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch

DPI = 100
FONT_SIZE = 8

# One colour per state; red and orange are kept for retransmissions and anomalies.
STATE_COLOURS = {
    "CLOSED": "#b0b0b0",
    "LISTEN": "#c7e9c0",
    "SYN_SENT": "#fdd49e",
    "SYN_RCVD": "#fdae6b",
    "ESTABLISHED": "#41ab5d",
    "FIN_WAIT_1": "#9ecae1",
    "FIN_WAIT_2": "#3182bd",
    "CLOSING": "#bcbddc",
    "TIME_WAIT": "#6a51a3",
    "CLOSE_WAIT": "#e377c2",
    "LAST_ACK": "#8c6d31",
}
PACKET_COLOUR = "#303030"
RETRANSMISSION_COLOUR = "#d62728"
ANOMALY_COLOUR = "#ff7f0e"

_RC = {"font.size": FONT_SIZE, "svg.hashsalt": "pcapstate", "svg.fonttype": "path"}


def new_figure(width_px: int, height_px: int) -> Figure:
    """A figure of exactly this many pixels, with constrained layout (no overlapping parts)."""
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")


def rc():
    """The rc settings every drawing function runs under (font size, stable SVG ids)."""
    return matplotlib.rc_context(_RC)


def state_handles(states) -> list[Patch]:
    """Legend entries for ``states`` (names), in RFC order."""
    return [Patch(facecolor=STATE_COLOURS[s], edgecolor="none", label=s) for s in STATE_COLOURS if s in set(states)]


def size_px(fig: Figure) -> tuple[int, int]:
    width, height = fig.get_size_inches()
    return round(width * DPI), round(height * DPI)


def save(fig: Figure, path) -> tuple[int, int]:
    """Write ``fig`` to ``path`` (.png or .svg) without run-dependent metadata; its size in pixels."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(f"{path}: a picture is .png or .svg")
    with open(path, "wb") as handle:
        return save_to(fig, handle, suffix[1:])


def save_to(fig: Figure, handle, fmt: str) -> tuple[int, int]:
    """Write ``fig`` as ``fmt`` ("png" or "svg") to a binary file object; its size in pixels."""
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    with rc():
        fig.savefig(handle, dpi=DPI, format=fmt, metadata=metadata)
    return size_px(fig)
