"""``pcapstate analyze``'s terminal output: the connection table and the state census.

Reads the result tables as plain columns (:mod:`pcapstate.columns`), a chunk
at a time, so the same code summarises an analysis held whole and one whose
tables merge from parts spilled to disk (:mod:`pcapstate.streaming`): only
the rows it shows and a few counters stay in memory, and pandas is never
imported (it would double the start-up of the command people run most).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from pcapstate.columns import Nullable, Table, counts_by
from pcapstate.report.text import endpoint, seconds, table

DEFAULT_MAX_ROWS = 50
SUMMARY_TABLES = ("flows", "anomalies", "packet_notes")  # what the summary reads

Chunks = Callable[[str], Iterable[Table]]  # a table's name -> its rows, in order, as consecutive tables


def summary_lines(chunks: Chunks, source: str, packets: int, max_rows: int | None = DEFAULT_MAX_ROWS) -> list[str]:
    """The summary of a capture ``source`` of ``packets`` TCP packets, from its tables as ``chunks(name)``
    gives them (:meth:`pcapstate.analysis.Analysis.chunks`, :meth:`pcapstate.streaming.Streamed.chunks`)."""
    flows = _FlowDigest(max_rows)
    for chunk in chunks("flows"):
        flows.add(chunk)
    lines = [f"{source}: {packets} TCP packets, {flows.count} connection"
             f"{'' if flows.count == 1 else 's'}, {seconds(flows.span)}"]
    if not flows.count:
        return lines
    lines.append("")
    lines += table(("flow", "client", "server", "duration", "packets", "client state", "server state",
                    "handshake", "zeek"), flows.rows, right=(0, 3, 4))
    if len(flows.rows) < flows.count:
        lines.append(f"... {flows.count - len(flows.rows)} more connections (--all shows them; "
                     "--format json writes every one)")
    if flows.guessed:
        lines.append("? no SYN in the capture: the connection began before it, roles guessed")
    lines += [""] + _census_table(flows.census)
    anomalies = anomaly_lines(chunks("anomalies"))
    if anomalies:
        lines += [""] + anomalies
    irregular = irregularity_lines(chunks("packet_notes"))
    if irregular:
        lines += [""] + irregular
    return lines


class _FlowDigest:
    """What the summary keeps of the flows table as its chunks go by: the rows it shows, the time span,
    whether any roles were guessed, and the census of final state pairs."""

    def __init__(self, max_rows: int | None) -> None:
        self.max_rows = max_rows
        self.rows: list[tuple] = []
        self.count = 0
        self.first, self.last = np.inf, -np.inf
        self.guessed = False
        self.names: tuple = ()  # the states' names
        self._census_codes: dict[tuple[int, int], int] = {}  # (client state, server state) -> connections

    def add(self, flows: Table) -> None:
        if not len(flows):
            return
        self.count += len(flows)
        self.first = min(self.first, float(flows["start_epoch"].min()))
        self.last = max(self.last, float(flows["end_epoch"].max()))
        self.guessed |= bool(flows["roles_guessed"].any())
        wanted = len(flows) if self.max_rows is None else max(0, self.max_rows - len(self.rows))
        if wanted:
            self.rows += _flow_rows(flows.slice(0, min(wanted, len(flows))))
        for pair, connections in counts_by(flows["client_state"], flows["server_state"]).items():
            self._census_codes[pair] = self._census_codes.get(pair, 0) + connections
        self.names = flows["client_state"].names

    @property
    def span(self) -> float:
        return self.last - self.first if self.count else 0.0

    @property
    def census(self) -> list[tuple[str, str, int]]:
        """The pairs, most frequent first, then in the states' RFC order."""
        ordered = sorted(self._census_codes.items(), key=lambda item: (-item[1], item[0]))
        return [(self.names[c], self.names[s], connections) for (c, s), connections in ordered]


def _flow_rows(flows: Table) -> list[tuple]:
    """The connection table's cells of ``flows``' rows."""
    columns = [flows["flow"].tolist(), flows["client_addr"].objects().tolist(), flows["client_port"].tolist(),
               flows["server_addr"].objects().tolist(), flows["server_port"].tolist(), flows["duration"].tolist(),
               flows["packets"].tolist(), flows["client_state"].labels("?"), flows["server_state"].labels("?"),
               flows["handshake"].labels(), flows["conn_state"].labels(),
               flows["roles_guessed"].tolist()]
    rows = []
    for flow, client, client_port, server, server_port, duration, count, client_state, server_state, \
            handshake, conn_state, guessed in zip(*columns):
        mark = "?" if guessed else ""
        rows.append((flow, endpoint(client, client_port) + mark, endpoint(server, server_port) + mark,
                     seconds(duration), count, client_state, server_state, handshake, conn_state))
    return rows


def census_lines(flows: Table) -> list[str]:
    """Connections counted by their final (client, server) state pair, most frequent first."""
    digest = _FlowDigest(0)
    digest.add(flows)
    return _census_table(digest.census)


def _census_table(census: list[tuple[str, str, int]]) -> list[str]:
    return ["connections by final state"] + table(("client", "server", "connections"), census, right=(2,))


def anomaly_lines(chunks: Iterable[Table], examples: int = 3) -> list[str]:
    """Anomalies grouped by kind, worst first: a few sentences each, then the flows of the rest.

    ``chunks``: the anomalies table's rows in its order (by kind, the worst first), as consecutive tables."""
    kinds: dict[int, _KindDigest] = {}
    names = ()
    for chunk in chunks:
        if not len(chunk):
            continue
        names = chunk["kind"].names
        flows, kind_codes, details = _flows(chunk["flow"]), np.asarray(chunk["kind"].codes), chunk["detail"].values
        for code in np.unique(kind_codes[kind_codes >= 0]).tolist():
            rows = np.flatnonzero(kind_codes == code)
            kinds.setdefault(code, _KindDigest(examples)).add(flows[rows], details[rows])
    if not kinds:
        return []
    lines = ["anomalies, worst first"]
    for code in sorted(kinds):
        lines += kinds[code].lines(names[code])
    return lines


class _KindDigest:
    """One kind of anomaly as its rows go by: how many, the first few, and the flows of the next ten."""

    SHOWN_FLOWS = 10

    def __init__(self, examples: int) -> None:
        self.examples = examples
        self.count = 0
        self.shown: list[tuple] = []  # (flow or None, detail)
        self.more_flows: list[int] = []

    def add(self, flows: np.ndarray, details: np.ndarray) -> None:
        self.count += len(flows)
        room = max(0, self.examples - len(self.shown))
        self.shown += zip(flows[:room].tolist(), details[:room].tolist())
        wanted = self.SHOWN_FLOWS - len(self.more_flows)
        if wanted > 0:  # (the rows of the whole capture, without a flow, are not listed)
            self.more_flows += [flow for flow in flows[room:].tolist() if flow is not None][:wanted]

    def lines(self, kind: str) -> list[str]:
        lines = [f"  {kind} ({self.count})"]
        for flow, detail in self.shown:
            lines.append(f"    {'capture' if flow is None else f'flow {flow}'}: {detail}")
        rest = self.count - len(self.shown)
        if rest:
            more = f" and {rest - self.SHOWN_FLOWS} more" if rest > self.SHOWN_FLOWS else ""
            lines.append(f"    ... {rest} more like these (flows {', '.join(map(str, self.more_flows))}{more})")
        return lines


def _flows(column: Nullable) -> np.ndarray:
    """A nullable flow column as Python values: the flow numbers, None where a row is the whole capture's."""
    flows = np.array(column.values.tolist(), dtype=object)
    flows[np.asarray(column.missing, dtype=bool)] = None
    return flows


# notes that name a normal event, or that the anomalies above already report
_MEANINGS = ("", "refused", "reset", "data_after_fin", "invalid_flags", "ack_unseen_data")
_SHOWN_FRAMES = 5


def irregularity_lines(chunks: Iterable[Table]) -> list[str]:
    """Packets whose step made no sense or repeated one, counted by kind (frames of the first few).

    ``chunks``: the packet notes' rows in frame order, as consecutive tables."""
    noted: dict[tuple[str, str], list] = {}  # (note, "sender" or "receiver") -> [packets, first frames]
    for chunk in chunks:
        frames = np.asarray(chunk["frame"])
        for role, column in (("sender", "sender_note"), ("receiver", "receiver_note")):
            notes = chunk[column]
            for code, note in enumerate(notes.values):
                if note in _MEANINGS:
                    continue
                rows = np.flatnonzero(np.asarray(notes.codes) == code)
                if not len(rows):
                    continue
                seen = noted.setdefault((note, role), [0, []])
                seen[0] += len(rows)
                seen[1] += frames[rows[:_SHOWN_FRAMES - len(seen[1])]].tolist()  # (none once it has them all)
    if not noted:
        return []
    rows = []
    for (note, role), (count, first) in noted.items():
        shown = ", ".join(str(f) for f in first) + (", ..." if count > _SHOWN_FRAMES else "")
        rows.append((note, role, count, shown))
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    return ["packets that repeat a step or make no sense in the state they met"] + \
        table(("note", "for the", "packets", "frames"), rows, right=(2,))
