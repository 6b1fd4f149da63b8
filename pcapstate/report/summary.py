"""``pcapstate analyze``'s terminal output: the connection table and the state census.

Reads only the DataFrames of an :class:`~pcapstate.analysis.Analysis`.
"""
from __future__ import annotations

import pandas as pd

from pcapstate.report.text import endpoint, seconds, table

DEFAULT_MAX_ROWS = 50


def summary_lines(analysis, max_rows: int | None = DEFAULT_MAX_ROWS) -> list[str]:
    flows = analysis.flows
    packets = len(analysis.table)
    span = float(flows["end_epoch"].max() - flows["start_epoch"].min()) if len(flows) else 0.0
    lines = [f"{analysis.table.source}: {packets} TCP packets, {len(flows)} connection"
             f"{'' if len(flows) == 1 else 's'}, {seconds(span)}"]
    if not len(flows):
        return lines
    lines.append("")
    shown = flows if max_rows is None else flows.head(max_rows)
    rows = []
    for flow in shown.itertuples(index=False):
        guessed = "?" if flow.roles_guessed else ""
        rows.append((flow.flow, endpoint(flow.client_addr, flow.client_port) + guessed,
                     endpoint(flow.server_addr, flow.server_port) + guessed, seconds(flow.duration),
                     flow.packets, _state(flow.client_state), _state(flow.server_state), flow.handshake,
                     flow.conn_state))
    lines += table(("flow", "client", "server", "duration", "packets", "client state", "server state",
                    "handshake", "zeek"), rows, right=(0, 3, 4))
    if len(shown) < len(flows):
        lines.append(f"... {len(flows) - len(shown)} more connections (--all shows them; "
                     "--format json writes every one)")
    if flows["roles_guessed"].any():
        lines.append("? no SYN in the capture: the connection began before it, roles guessed")
    lines += [""] + census_lines(flows)
    anomalies = anomaly_lines(analysis.anomalies)
    if anomalies:
        lines += [""] + anomalies
    irregular = irregularity_lines(analysis.packet_notes)
    if irregular:
        lines += [""] + irregular
    return lines


def anomaly_lines(anomalies, examples: int = 3) -> list[str]:
    """Anomalies grouped by kind, worst first: a few sentences each, then the flows of the rest."""
    if anomalies.empty:
        return []
    lines = ["anomalies, worst first"]
    for kind, group in anomalies.groupby("kind", observed=True, sort=True):
        lines.append(f"  {kind} ({len(group)})")
        for row in group.head(examples).itertuples(index=False):
            where = "capture" if row.flow is _NA or row.flow != row.flow else f"flow {row.flow}"
            lines.append(f"    {where}: {row.detail}")
        rest = group.iloc[examples:]
        if len(rest):
            flows = ", ".join(str(f) for f in rest["flow"].dropna().head(10))
            more = f" and {len(rest) - 10} more" if len(rest) > 10 else ""
            lines.append(f"    ... {len(rest)} more like these (flows {flows}{more})")
    return lines


def irregularity_lines(packets) -> list[str]:
    """Packets whose step made no sense or repeated one, counted by kind (frames of the first few)."""
    rows = []
    for role, column in (("sender", "sender_note"), ("receiver", "receiver_note")):
        noted = packets[~packets[column].isin(_MEANINGS)]
        for note, group in noted.groupby(column, sort=True):
            frames = group["frame"].tolist()
            shown = ", ".join(str(f) for f in frames[:5]) + (", ..." if len(frames) > 5 else "")
            rows.append((note, role, len(frames), shown))
    if not rows:
        return []
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    return ["packets that repeat a step or make no sense in the state they met"] + \
        table(("note", "for the", "packets", "frames"), rows, right=(2,))


# notes that name a normal event, or that the anomalies above already report
_MEANINGS = ("", "refused", "reset", "data_after_fin", "invalid_flags", "ack_unseen_data")
_NA = pd.NA


def census_lines(flows) -> list[str]:
    """Connections counted by their final (client, server) state pair, most frequent first."""
    pairs = (flows.groupby(["client_state", "server_state"], observed=True).size()
             .reset_index(name="connections")
             .sort_values(["connections", "client_state", "server_state"], ascending=[False, True, True]))
    rows = [(_state(r.client_state), _state(r.server_state), r.connections) for r in pairs.itertuples()]
    return ["connections by final state"] + table(("client", "server", "connections"), rows, right=(2,))


def _state(value) -> str:
    return "?" if value != value else str(value)  # NaN: unknown
