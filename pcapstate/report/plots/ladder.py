"""``pcapstate plot ladder``: one flow as the sequence diagram of the seed documents.

The client and the server are two vertical lines; every packet is an arrow
between them labelled with its tcpdump flags, relative seq/ack and length.
Each line is coloured by its endpoint's state as it changes, and each change is
written beside the line on the row of the packet that caused it (``*``: the
endpoint received that packet, an inference; unmarked: its own packet shows
it).  Retransmissions are red, packets named by an anomaly orange.

The y axis is the order of events, one evenly spaced row per packet (and per
assumption or timer), labelled with the real time since the first packet and
the frame number: labels never overlap, however close the packets are in time.
A flow of more than ``max_packets`` packets keeps its first and last halves and
says, on the elided row and in the title, how many packets are not shown.
Arrows are :class:`~matplotlib.patches.FancyArrowPatch` objects with
``gid="packet <frame>"``, one per packet drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from pcapstate.report.plots.style import (ANOMALY_COLOUR, PACKET_COLOUR, RETRANSMISSION_COLOUR, STATE_COLOURS,
                                          new_figure, rc, state_handles)
from pcapstate.report.text import endpoint

MAX_PACKETS = 60
WIDTH_PX = 1200
ROW_PX = 28
FRAME_PX = 260  # title, endpoint names, legend
_X = {"client": 0.0, "server": 1.0}
_HALF_SLOPE = 0.3  # an arrow descends from row - 0.3 to row + 0.3
_LABEL_CHARS = 52


@dataclass
class _Row:
    ts: float
    packet: object = None  # a packets row (namedtuple), None for an assumption, timer or the gap
    client: str = ""
    server: str = ""
    note: str = ""  # tick text of a row without a packet
    gap: str = ""  # the elision sentence
    after: dict = None  # side -> the state this row leaves it in, for sides it changes


def draw(analysis, flow_id: int | None = None, size: tuple[int, int] | None = None,
         max_packets: int = MAX_PACKETS):
    """The ladder of ``flow_id`` (default: the first flow) as a Figure."""
    flow_id = 0 if flow_id is None else flow_id
    parts = analysis.flow(flow_id)
    flow = parts["flows"].iloc[0]
    rows, hidden = _rows(parts, max_packets)
    width, height = size or (WIDTH_PX, FRAME_PX + ROW_PX * len(rows))
    with rc():
        fig = new_figure(width, height)
        ax = fig.add_subplot()
        _lifelines(ax, rows, parts["transitions"])
        _arrows(ax, rows, parts)
        _state_labels(ax, rows)
        _axes(ax, rows, flow, float(flow["start_epoch"]))
        total = len(parts["packets"])
        title = (f"{analysis.table.source}: flow {flow_id}, {flow['handshake']} handshake, "
                 f"{total} packet{'' if total == 1 else 's'}")
        if hidden:
            title += f" ({hidden} in the middle not shown)"
        ax.set_title(title, loc="left", parse_math=False, fontsize=9)
        fig.legend(handles=_legend(parts), loc="outside lower center", ncols=7, frameon=False)
    return fig


def _rows(parts, max_packets: int) -> tuple[list[_Row], int]:
    """Events in time order (as the text ladder orders them), the middle elided; and how many packets hid."""
    changes: dict[int, dict[str, list]] = {}
    rows = []
    for t in parts["transitions"].itertuples(index=False):
        if t.cause in ("assumed", "timer"):
            rows.append((t.ts_epoch, 0, len(rows), _Row(t.ts_epoch, **{t.endpoint: _change(t)}, note=str(t.cause),
                                                        after={t.endpoint: str(t.to_state)})))
        else:
            changes.setdefault(int(t.frame), {"client": [], "server": []})[t.endpoint].append(t)
    for p in parts["packets"].itertuples(index=False):
        mine = changes.get(int(p.frame), {"client": [], "server": []})
        after = {side: str(found[-1].to_state) for side, found in mine.items() if found}
        rows.append((p.ts_epoch, 1, len(rows), _Row(p.ts_epoch, p, _joined(mine["client"]), _joined(mine["server"]),
                                                    after=after)))
    ordered = [r for *_, r in sorted(rows, key=lambda r: r[:3])]
    packet_rows = [i for i, r in enumerate(ordered) if r.packet is not None]
    if len(packet_rows) <= max_packets:
        return ordered, 0
    head, tail = packet_rows[max_packets // 2 - 1], packet_rows[-(max_packets - max_packets // 2)]
    hidden = [r.packet.frame for r in ordered[head + 1:tail] if r.packet is not None]
    after = {}
    for row in ordered[head + 1:tail]:
        after.update(row.after)
    gap = _Row(ordered[head].ts, after=after,
               gap=f"... {len(hidden)} packets not shown (frames {hidden[0]} to {hidden[-1]}) ...")
    return ordered[:head + 1] + [gap] + ordered[tail:], len(hidden)


def _change(t) -> str:
    old = "?" if t.from_state != t.from_state else str(t.from_state)
    return f"{old} > {t.to_state}{'*' if t.cause == 'received' else ''}"


def _joined(changes: list) -> str:
    """Several changes caused by one packet read as one chain: ``A > B > C``."""
    chain = _change(changes[0]) if changes else ""
    for change in changes[1:]:
        chain += " > " + _change(change).split(" > ", 1)[1]
    return chain


def _lifelines(ax, rows: list[_Row], transitions) -> None:
    """Each endpoint's vertical line, coloured by its state between the rows where it changes."""
    for side, x in _X.items():
        mine = transitions[transitions["endpoint"] == side]
        first = mine["from_state"].iloc[0] if len(mine) else None
        state = None if first is None or first != first else str(first)  # NaN: unknown, drawn uncoloured
        start = -0.8
        spans = []
        for y, row in enumerate(rows):
            new = _state_after(row, side, state)
            if new != state:
                spans.append((start, y, state))
                start, state = y, new
        spans.append((start, len(rows) - 0.2, state))
        for y0, y1, name in spans:
            if name in STATE_COLOURS and y1 > y0:
                ax.plot([x, x], [y0, y1], color=STATE_COLOURS[name], linewidth=9, solid_capstyle="butt", zorder=1)
        ax.plot([x, x], [-0.8, len(rows) - 0.2], color=PACKET_COLOUR, linewidth=0.8, zorder=2)


def _state_after(row: _Row, side: str, state: str | None) -> str | None:
    return (row.after or {}).get(side, state)


def _arrows(ax, rows: list[_Row], parts) -> None:
    """One arrow per packet drawn, labelled, in the colour of what it is."""
    retx = {int(r.frame): int(r.attempt) for r in parts["retransmissions"].itertuples(index=False)}
    named = {}
    for a in parts["anomalies"].dropna(subset=["frame"]).itertuples(index=False):
        named.setdefault(int(a.frame), []).append(str(a.kind))
    bases = _bases(parts["packets"])
    for y, row in enumerate(rows):
        if row.gap:
            ax.text(0.5, y, row.gap, ha="center", va="center", color=PACKET_COLOUR, style="italic")
        if row.packet is None:
            continue
        p = row.packet
        frame = int(p.frame)
        colour = ANOMALY_COLOUR if frame in named else RETRANSMISSION_COLOUR if frame in retx else PACKET_COLOUR
        start, end = (_X["client"], _X["server"]) if p.sender == "client" else (_X["server"], _X["client"])
        ax.add_patch(FancyArrowPatch((start, y - _HALF_SLOPE), (end, y + _HALF_SLOPE), arrowstyle="-|>",
                                     mutation_scale=10, color=colour, linewidth=1.2, zorder=3,
                                     shrinkA=0, shrinkB=0, gid=f"packet {frame}"))
        label = _label(p, bases)
        if frame in retx:
            label += f"  retransmission {retx[frame]}"
        if frame in named:
            label += "  ! " + ", ".join(named[frame])
        label = label if len(label) <= _LABEL_CHARS else label[:_LABEL_CHARS - 3] + "..."
        ax.text(0.5, y, label, ha="center", va="center", color=colour, zorder=4, parse_math=False,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.8})


def _bases(packets) -> dict[str, int]:
    """Each sender's first sequence number: seq/ack are printed relative to it, as tcpdump does."""
    bases = {}
    for p in packets.itertuples(index=False):
        bases.setdefault(str(p.sender), int(p.seq))
    return bases


def _label(p, bases: dict[str, int]) -> str:
    flags = str(p.flags)
    text = f"[{flags}]"
    seq = (int(p.seq) - bases[str(p.sender)]) % 2**32
    if p.len:
        text += f" seq {seq}:{seq + int(p.len)}"
    elif "S" in flags or "F" in flags or "R" in flags:
        text += f" seq {seq}"
    other = "server" if p.sender == "client" else "client"
    if "." in flags and other in bases:
        text += f" ack {(int(p.ack) - bases[other]) % 2**32}"
    return text


def _state_labels(ax, rows: list[_Row]) -> None:
    for y, row in enumerate(rows):
        if row.client:
            ax.text(_X["client"] - 0.04, y, row.client, ha="right", va="center", fontsize=8)
        if row.server:
            ax.text(_X["server"] + 0.04, y, row.server, ha="left", va="center", fontsize=8)


def _axes(ax, rows: list[_Row], flow, start: float) -> None:
    ax.set_xlim(-1.0, 2.0)
    ax.set_ylim(len(rows) - 0.2, -0.8)
    ax.xaxis.tick_top()
    ax.set_xticks([_X["client"], _X["server"]],
                  [f"client {endpoint(flow['client_addr'], flow['client_port'])}",
                   f"server {endpoint(flow['server_addr'], flow['server_port'])}"], fontsize=9)
    ticks = [f"{r.ts - start:.6f} s  {('#' + str(r.packet.frame)) if r.packet is not None else r.note}"
             for r in rows]
    ticks = ["..." if r.gap else t for r, t in zip(rows, ticks)]
    ax.set_yticks(range(len(rows)), ticks, fontsize=7.5, family="monospace")
    ax.set_ylabel("time since the first packet, and frame (one row per packet)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _legend(parts) -> list:
    transitions = parts["transitions"]
    states = set(transitions["to_state"].dropna().astype(str)) | set(transitions["from_state"].dropna().astype(str))
    return [Line2D([], [], color=PACKET_COLOUR, marker=">", label="packet"),
            Line2D([], [], color=RETRANSMISSION_COLOUR, marker=">", label="retransmission"),
            Line2D([], [], color=ANOMALY_COLOUR, marker=">", label="named by an anomaly"),
            *state_handles(states)]
