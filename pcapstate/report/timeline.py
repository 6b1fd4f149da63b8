"""``pcapstate analyze --timeline``: a two-column ladder per connection.

Like the figures of the seed documents: the client on the left, the server on
the right, every packet an arrow between them, and each endpoint's state
changes beside it on the line of the packet that caused them.  A change the
endpoint's own packet proves is written plainly; one inferred from a packet it
received is marked ``*``; an assumed state or a timer gets a line of its own.

Reads the connection's tables as plain columns
(:meth:`pcapstate.analysis.Analysis.flow_columns`): no pandas, and of the
packets only the connection's own.
"""
from __future__ import annotations

from pcapstate.report.text import endpoint

ARROW_WIDTH = 24
_STATE_WIDTH = 30


def timeline_lines(analysis, flow_id: int) -> list[str]:
    """The ladder of connection ``flow_id``."""
    return ladder_lines(flow_id, analysis.flow_columns(flow_id))


def ladder_lines(flow_id: int, parts: dict) -> list[str]:
    """The ladder of connection ``flow_id`` from its ``flows``, ``transitions`` and ``packets`` rows
    (:meth:`pcapstate.analysis.Analysis.flow_columns`)."""
    flow, packets, transitions = parts["flows"], parts["packets"], parts["transitions"]
    start = float(flow["start_epoch"][0])
    client = endpoint(flow["client_addr"].objects()[0], int(flow["client_port"][0]))
    server = endpoint(flow["server_addr"].objects()[0], int(flow["server_port"][0]))
    title = (f"flow {flow_id}: client {client}, server {server}, {flow['handshake'].labels('nan')[0]} handshake"
             f"{', roles guessed' if flow['roles_guessed'][0] else ''}")
    lines = [title, "", _row("time", "frame", "client", "", "server"),
             _row("-" * 10, "-----", "-" * _STATE_WIDTH, "-" * ARROW_WIDTH, "-" * 10)]
    by_frame: dict[int, dict[str, list[str]]] = {}
    loose = []  # (ts, endpoint, text) for assumptions and timers
    causes = transitions["cause"].labels()
    for side, cause, ts, frame, text in zip(transitions["endpoint"].labels(), causes, transitions["ts_epoch"].tolist(),
                                            transitions["frame"].values.tolist(), _changes(transitions, causes)):
        if cause in ("assumed", "timer"):
            loose.append((ts, side, text + f" ({cause})"))
        else:
            by_frame.setdefault(frame, {"client": [], "server": []})[side].append(text)
    arrows = [_arrow(*packet) for packet in zip(packets["flags"].objects().tolist(), packets["len"].tolist(),
                                                packets["sender"].labels())]
    packet_frames, packet_times = packets["frame"].tolist(), packets["ts_epoch"].tolist()
    events = [(ts, 0, i) for i, (ts, _, _) in enumerate(loose)]
    events += [(ts, 1, i) for i, ts in enumerate(packet_times)]
    for ts, kind, i in sorted(events):
        when = f"{ts - start:.6f}"
        if kind == 0:
            _, side, text = loose[i]
            lines.append(_row(when, "-", text if side == "client" else "", "", text if side == "server" else ""))
            continue
        changes = by_frame.get(packet_frames[i], {"client": [], "server": []})
        lines.append(_row(when, str(packet_frames[i]), _joined(changes["client"]), arrows[i],
                          _joined(changes["server"])))
    lines += ["", "* inferred: the endpoint received that packet (proved by its later ACK, or taken "
              "on arrival for ACKs and RSTs); unmarked: its own packet shows it"]
    return lines


def _changes(transitions, causes: list[str]) -> list[str]:
    """``OLD > NEW``, with ``*`` when the endpoint received the packet that made it (``?``: unknown)."""
    return [f"{old} > {new}{'*' if cause == 'received' else ''}" for old, new, cause in
            zip(transitions["from_state"].labels("?"), transitions["to_state"].labels("nan"), causes)]


def _joined(changes: list[str]) -> str:
    """Several changes from one packet collapse into one chain: ``A > B > C``."""
    if not changes:
        return ""
    chain = changes[0]
    for change in changes[1:]:
        chain += " > " + change.split(" > ", 1)[1]
    return chain


def _arrow(flags: str, length: int, sender: str) -> str:
    label = f"[{flags}]" + (f" {length}" if length else "")
    body = ARROW_WIDTH - 1 - len(label)
    if sender == "client":
        return "-" * 2 + label + "-" * max(body - 2, 1) + ">"
    return "<" + "-" * max(body - 2, 1) + label + "-" * 2


def _row(time: str, frame: str, client: str, arrow: str, server: str) -> str:
    return f"{time:>10}  {frame:>5}  {client:<{_STATE_WIDTH}}  {arrow:<{ARROW_WIDTH}}  {server}".rstrip()
