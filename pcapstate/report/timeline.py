"""``pcapstate analyze --timeline``: a two-column ladder per connection.

Like the figures of the seed documents: the client on the left, the server on
the right, every packet an arrow between them, and each endpoint's state
changes beside it on the line of the packet that caused them.  A change the
endpoint's own packet proves is written plainly; one inferred from a packet it
received is marked ``*``; an assumed state or a timer gets a line of its own.
"""
from __future__ import annotations

from pcapstate.report.text import endpoint

ARROW_WIDTH = 24
_STATE_WIDTH = 30


def timeline_lines(analysis, flow_id: int) -> list[str]:
    parts = analysis.flow(flow_id)
    flow = parts["flows"].iloc[0]
    packets, transitions = parts["packets"], parts["transitions"]
    start = float(flow["start_epoch"])
    title = (f"flow {flow_id}: client {endpoint(flow['client_addr'], flow['client_port'])}, "
             f"server {endpoint(flow['server_addr'], flow['server_port'])}, {flow['handshake']} handshake"
             f"{', roles guessed' if flow['roles_guessed'] else ''}")
    lines = [title, "", _row("time", "frame", "client", "", "server"),
             _row("-" * 10, "-----", "-" * _STATE_WIDTH, "-" * ARROW_WIDTH, "-" * 10)]
    by_frame: dict[int, dict[str, list[str]]] = {}
    loose = []  # (ts, endpoint, text) for assumptions and timers
    for t in transitions.itertuples(index=False):
        text = _change(t)
        if t.cause in ("assumed", "timer"):
            loose.append((t.ts_epoch, t.endpoint, text + f" ({t.cause})"))
        else:
            by_frame.setdefault(int(t.frame), {"client": [], "server": []})[t.endpoint].append(text)
    events = [(ts, 0, i, None) for i, (ts, _, _) in enumerate(loose)]
    events += [(p.ts_epoch, 1, i, p) for i, p in enumerate(packets.itertuples(index=False))]
    for ts, kind, i, packet in sorted(events, key=lambda e: (e[0], e[1], e[2])):
        when = f"{ts - start:.6f}"
        if packet is None:
            _, side, text = loose[i]
            lines.append(_row(when, "-", text if side == "client" else "", "", text if side == "server" else ""))
            continue
        changes = by_frame.get(int(packet.frame), {"client": [], "server": []})
        lines.append(_row(when, str(packet.frame), _joined(changes["client"]), _arrow(packet),
                          _joined(changes["server"])))
    lines += ["", "* inferred: the endpoint received that packet (proved by its later ACK, or taken "
              "on arrival for ACKs and RSTs); unmarked: its own packet shows it"]
    return lines


def _change(t) -> str:
    old = "?" if t.from_state != t.from_state else str(t.from_state)
    mark = "*" if t.cause == "received" else ""
    return f"{old} > {t.to_state}{mark}"


def _joined(changes: list[str]) -> str:
    """Several changes from one packet collapse into one chain: ``A > B > C``."""
    if not changes:
        return ""
    chain = changes[0]
    for change in changes[1:]:
        chain += " > " + change.split(" > ", 1)[1]
    return chain


def _arrow(packet) -> str:
    label = f"[{packet.flags}]" + (f" {packet.len}" if packet.len else "")
    body = ARROW_WIDTH - 1 - len(label)
    if packet.sender == "client":
        return "-" * 2 + label + "-" * max(body - 2, 1) + ">"
    return "<" + "-" * max(body - 2, 1) + label + "-" * 2


def _row(time: str, frame: str, client: str, arrow: str, server: str) -> str:
    return f"{time:>10}  {frame:>5}  {client:<{_STATE_WIDTH}}  {arrow:<{ARROW_WIDTH}}  {server}".rstrip()
