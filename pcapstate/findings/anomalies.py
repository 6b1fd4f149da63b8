"""Anomaly flags: what is wrong (or unusual) with each connection, in one plain sentence.

Every detector reads the replay's columns, the retransmission classes and the
retry chains, and appends rows ``(flow, kind, endpoint, row, ts, detail)``;
``flow`` is -1 for capture-wide findings.  :class:`Kind` lists the kinds worst
first, the order reports use.  Thresholds are fields of :class:`Thresholds`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from enum import IntEnum

import numpy as np

from pcapstate import replay as rp
from pcapstate.findings.backoff import Chains
from pcapstate.findings.retransmissions import Analysis as Marks, SegmentKind
from pcapstate.states import SIDE_NAMES, Note, State


class Kind(IntEnum):
    """Anomaly kinds, worst first."""

    half_open_flood = 0
    syn_unanswered = 1
    synack_unanswered = 2
    fin_unacked = 3
    last_ack_unacked = 4
    stuck_close_wait = 5
    rst_midstream = 6
    connection_refused = 7
    ack_unseen_data = 8
    zero_window = 9
    stuck_fin_wait_2 = 10
    data_after_fin = 11
    invalid_flags = 12
    rst_after_fin = 13
    port_reuse = 14
    simultaneous_close = 15
    simultaneous_open = 16
    no_handshake = 17
    open_at_end = 18


KIND_NAMES = tuple(k.name for k in Kind)


@dataclass(frozen=True)
class Thresholds:
    """When a finding is worth reporting; the command line's ``--stuck-after`` etc."""

    stuck_after: float = 5.0  # seconds in CLOSE_WAIT or FIN_WAIT_2 before leaving it that count as stuck
    flood_connections: int = 20  # half-open connections to one service ...
    flood_sources: int = 10  # ... from at least this many source addresses ...
    flood_window: float = 10.0  # ... starting within this many seconds


@dataclass
class Found:
    flow: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    endpoint: list[int] = field(default_factory=list)  # 0 client, 1 server, -1 none
    row: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def add(self, flow: int, kind: Kind, endpoint: int, row: int, ts: int, detail: str) -> None:
        self.flow.append(int(flow)), self.kind.append(int(kind)), self.endpoint.append(int(endpoint))
        self.row.append(int(row)), self.ts.append(int(ts)), self.detail.append(detail)


@dataclass
class Context:
    """Everything the detectors read."""

    pk: np.ndarray
    rows: np.ndarray
    conn: np.ndarray
    ends: np.ndarray
    trans: np.ndarray
    marks: np.ndarray
    chains: Chains
    names: list[tuple[str, str]]  # per flow: (client "a:p", server "a:p")
    frames: np.ndarray  # frame number of each packet-table row
    capture_end: int
    thresholds: Thresholds
    _first_sent: dict = field(default_factory=dict)

    def name(self, flow: int, side: int) -> str:
        return f"{SIDE_NAMES[side]} {self.names[flow][side]}"

    @cached_property
    def chain_of(self) -> dict[tuple[int, int, int], int]:
        """(flow, side, segment kind) -> the first chain of that kind."""
        index: dict[tuple[int, int, int], int] = {}
        for i, key in enumerate(zip(self.chains.flow.tolist(), self.chains.side.tolist(), self.chains.kind.tolist())):
            index.setdefault(key, i)
        return index

    def first_sent(self, side: int, flags: int) -> np.ndarray:
        """Per flow, the first row the endpoint ``side`` sent with exactly ``flags`` among SYN/ACK/FIN/RST (-1)."""
        key = (side, flags)
        if key not in self._first_sent:
            mine = np.flatnonzero((self.rows[:, rp.R_SIDE] == side)
                                  & ((self.pk[:, rp.PK_FLAGS] & (rp.SYN | rp.ACK | rp.FIN | rp.RST)) == flags))
            mine = mine[np.lexsort((self.pk[mine, rp.PK_TS], self.rows[mine, rp.R_CONN]))]
            first = np.full(len(self.conn), -1, dtype=np.int64)
            flows = self.rows[mine, rp.R_CONN]
            starts = np.ones(len(mine), dtype=bool)
            starts[1:] = flows[1:] != flows[:-1]
            first[flows[starts]] = mine[starts]
            self._first_sent[key] = first
        return self._first_sent[key]

    @cached_property
    def next_of_endpoint(self) -> np.ndarray:
        """Per transition, the index of the same endpoint's next transition (-1: none)."""
        t = self.trans
        order = np.lexsort((np.arange(len(t)), t[:, rp.T_SIDE], t[:, rp.T_CONN]))
        nxt = np.full(len(t), -1, dtype=np.int64)
        same = (t[order[1:], rp.T_CONN] == t[order[:-1], rp.T_CONN]) & \
            (t[order[1:], rp.T_SIDE] == t[order[:-1], rp.T_SIDE])
        nxt[order[:-1][same]] = order[1:][same]
        return nxt

    @cached_property
    def sent_transitions(self) -> dict[tuple[int, int, int], int]:
        """(flow, side, row) -> the state the endpoint's own packet at ``row`` took it to (the last of them)."""
        t = self.trans
        sent = np.flatnonzero(t[:, rp.T_CAUSE] == rp.CAUSE_SENT)
        return {(int(t[i, rp.T_CONN]), int(t[i, rp.T_SIDE]), int(t[i, rp.T_ROW])): int(t[i, rp.T_TO]) for i in sent}


def find_anomalies(ctx: Context) -> Found:
    found = Found()
    for detector in (_handshake_failures, _flood, _close_problems, _stuck, _resets, _marked_rows,
                     _zero_windows, _simultaneous, _capture_edges, _port_reuse):
        detector(ctx, found)
    return found


# --- the opening ------------------------------------------------------------------


def _handshake_failures(ctx: Context, found: Found) -> None:
    conn, ends = ctx.conn, ctx.ends
    seen = conn[:, rp.C_SEEN]
    client, server = ends[0::2, rp.E_STATE], ends[1::2, rp.E_STATE]
    unanswered = (seen & rp.SEEN_SYN != 0) & (seen & rp.SEEN_SYN_ACK == 0) & (client == State.SYN_SENT)
    for flow in np.flatnonzero(unanswered).tolist():
        first = int(conn[flow, rp.C_FIRST_ROW])
        found.add(flow, Kind.syn_unanswered, 0, first, ctx.pk[first, rp.PK_TS],
                  f"{ctx.name(flow, 0)} sent {_sends(ctx, flow, 0, SegmentKind.SYN)} to "
                  f"{ctx.names[flow][1]} and nothing came back: the SYN or its answer is dropped "
                  f"(firewall, dead host) or nothing is there")
    synack = ctx.first_sent(1, rp.SYN | rp.ACK)
    for flow in np.flatnonzero(server == State.SYN_RCVD).tolist():
        row = int(synack[flow])
        found.add(flow, Kind.synack_unanswered, 1, row, ctx.pk[row, rp.PK_TS] if row >= 0 else 0,
                  f"{ctx.name(flow, 1)} sent {_sends(ctx, flow, 1, SegmentKind.SYN_ACK)} and no ACK "
                  f"completed the handshake: a half-open connection (SYN_RCVD)")
    refused = np.flatnonzero(ctx.rows[:, rp.R_NOTE_RECEIVER] == Note.REFUSED)
    for row in refused:
        flow = int(ctx.rows[row, rp.R_CONN])
        first = int(conn[flow, rp.C_FIRST_ROW])
        delay = (ctx.pk[row, rp.PK_TS] - ctx.pk[first, rp.PK_TS]) / 1e9
        found.add(flow, Kind.connection_refused, 0, row, ctx.pk[row, rp.PK_TS],
                  f"{ctx.name(flow, 0)}'s SYN was answered by RST {_seconds(delay)} later: nothing listens "
                  f"on {ctx.names[flow][1]} (connection refused)")


def _sends(ctx: Context, flow: int, side: int, kind: SegmentKind) -> str:
    """'6 SYNs over 17.1 s (intervals 1.0, 1.0, 1.0, 2.0, 4.1 s: linear-then-doubling)' or '1 SYN'."""
    label = {SegmentKind.SYN: "SYN", SegmentKind.SYN_ACK: "SYN-ACK", SegmentKind.FIN: "FIN"}[kind]
    chains = ctx.chains
    i = ctx.chain_of.get((flow, side, int(kind)))
    if i is not None:
        members = chains.rows[i]
        span = (ctx.pk[members[-1], rp.PK_TS] - ctx.pk[members[0], rp.PK_TS]) / 1e9
        gaps = ", ".join(f"{g:.2f}" for g in chains.intervals[i])
        return f"{len(members)} {label}s over {span:.2f} s (intervals {gaps} s: {chains.pattern[i]})"
    return f"1 {label}"


def _flood(ctx: Context, found: Found) -> None:
    """Many half-open connections to one service from many sources within a window."""
    t = ctx.thresholds
    half_open = np.flatnonzero(ctx.ends[1::2, rp.E_STATE] == State.SYN_RCVD)
    by_service: dict[str, list[int]] = {}
    for flow in half_open:
        by_service.setdefault(ctx.names[flow][1], []).append(int(flow))
    window = int(t.flood_window * 1e9)
    for service, flows in by_service.items():
        starts = np.array([ctx.pk[ctx.conn[f, rp.C_FIRST_ROW], rp.PK_TS] for f in flows])
        order = np.argsort(starts, kind="stable")
        starts, flows = starts[order], [flows[i] for i in order]
        ends = np.searchsorted(starts, starts + window, side="right")
        best = int(np.argmax(ends - np.arange(len(starts))))
        members = flows[best:ends[best]]
        sources = {ctx.names[f][0].rsplit(":", 1)[0] for f in members}
        if len(members) >= t.flood_connections and len(sources) >= t.flood_sources:
            span = (starts[ends[best] - 1] - starts[best]) / 1e9
            first_row = int(ctx.conn[members[0], rp.C_FIRST_ROW])
            found.add(-1, Kind.half_open_flood, 1, first_row, starts[best],
                      f"{len(members)} half-open connections to {service} from {len(sources)} sources within "
                      f"{_seconds(span)} (flows {_list(members)}): a SYN flood, if the sources never answer the SYN-ACK")


# --- the closing ------------------------------------------------------------------


def _close_problems(ctx: Context, found: Found) -> None:
    chains = ctx.chains
    for i in np.flatnonzero((chains.kind == SegmentKind.FIN) & (chains.answer_row < 0)):
        flow, side, first = int(chains.flow[i]), int(chains.side[i]), int(chains.rows[i][0])
        state = _state_after_sending(ctx, flow, side, first)
        kind = Kind.last_ack_unacked if state == State.LAST_ACK else Kind.fin_unacked
        peer = State(int(ctx.ends[2 * flow + 1 - side, rp.E_STATE])).name
        found.add(flow, kind, side, first, ctx.pk[first, rp.PK_TS],
                  f"{ctx.name(flow, side)} in {State(state).name} sent {_sends(ctx, flow, side, SegmentKind.FIN)}, "
                  f"never acknowledged: its FIN is lost on the way (the peer is {peer} as far as the capture shows)")


def _state_after_sending(ctx: Context, flow: int, side: int, row: int) -> int:
    return ctx.sent_transitions.get((flow, side, row), int(ctx.ends[2 * flow + side, rp.E_STATE]))


def _stuck(ctx: Context, found: Found) -> None:
    """Endpoints still in CLOSE_WAIT or FIN_WAIT_2 when the capture ended, or that stayed ``stuck_after`` seconds.

    A capture file does not say when capturing stopped, only when its last
    packet came, so an endpoint still in the state at the end is reported
    however short the time: nothing in the capture shows it leaving.
    """
    t = ctx.trans
    limit = int(ctx.thresholds.stuck_after * 1e9)
    for state, kind, why in ((State.CLOSE_WAIT, Kind.stuck_close_wait, "the application never called close()"),
                             (State.FIN_WAIT_2, Kind.stuck_fin_wait_2, "the peer never sent its FIN")):
        nxt = ctx.next_of_endpoint
        for i in np.flatnonzero(t[:, rp.T_TO] == state).tolist():
            flow, side = int(t[i, rp.T_CONN]), int(t[i, rp.T_SIDE])
            left = int(t[nxt[i], rp.T_TS]) if nxt[i] >= 0 else -1
            until = left if left >= 0 else ctx.capture_end
            if left >= 0 and until - t[i, rp.T_TS] < limit:
                continue
            stay = _seconds((until - t[i, rp.T_TS]) / 1e9)
            peer_fin = state == State.FIN_WAIT_2 and ctx.ends[2 * flow + 1 - side, rp.E_FIN_END] >= 0
            reason = "the peer's FIN (in the capture) was lost on the way" if peer_fin else why
            text = (f"{ctx.name(flow, side)} stayed in {state.name} {stay} before leaving it" if left >= 0 else
                    f"{ctx.name(flow, side)} was still in {state.name} at the last packet of the capture, {stay} "
                    f"after entering it: if it stays there, {reason}")
            found.add(flow, kind, side, t[i, rp.T_ROW], t[i, rp.T_TS], text)


def _resets(ctx: Context, found: Found) -> None:
    flags = ctx.pk[:, rp.PK_FLAGS]
    resets = np.flatnonzero((flags & rp.RST != 0) & (flags & rp.SYN == 0))
    fin_ts = _first_fin_ts(ctx)
    for row in resets[np.argsort(ctx.pk[resets, rp.PK_TS], kind="stable")]:
        flow, side = int(ctx.rows[row, rp.R_CONN]), int(ctx.rows[row, rp.R_SIDE])
        if ctx.rows[row, rp.R_NOTE_RECEIVER] == Note.REFUSED or ctx.rows[row, rp.R_SENDER_BEFORE] in _UNSYNCED:
            continue
        ts = int(ctx.pk[row, rp.PK_TS])
        age = (ts - ctx.pk[ctx.conn[flow, rp.C_FIRST_ROW], rp.PK_TS]) / 1e9
        if 0 <= fin_ts[flow] < ts:
            found.add(flow, Kind.rst_after_fin, side, row, ts,
                      f"{ctx.name(flow, side)} sent RST after the connection had begun closing with FIN")
        else:
            found.add(flow, Kind.rst_midstream, side, row, ts,
                      f"{ctx.name(flow, side)} reset the open connection {_seconds(age)} after it began, "
                      f"without a FIN: an abort (unread data at close, a crash, or a middlebox)")


_UNSYNCED = (int(State.CLOSED), int(State.LISTEN), int(State.SYN_SENT))


def _first_fin_ts(ctx: Context) -> np.ndarray:
    never = np.iinfo(np.int64).max
    first = np.full(len(ctx.conn), never, dtype=np.int64)
    fins = np.flatnonzero((ctx.pk[:, rp.PK_FLAGS] & rp.FIN != 0) & (ctx.pk[:, rp.PK_FLAGS] & (rp.SYN | rp.RST) == 0))
    np.minimum.at(first, ctx.rows[fins, rp.R_CONN], ctx.pk[fins, rp.PK_TS])
    first[first == never] = -1
    return first


# --- per-packet irregularities ---------------------------------------------------


_MARKED = (
    (Note.DATA_AFTER_FIN, Kind.data_after_fin, "sent data after its own FIN"),
    (Note.INVALID_FLAGS, Kind.invalid_flags, "sent flag combinations no TCP stack sends (SYN+FIN, SYN+RST, none or all)"),
    (Note.ACK_UNSEEN_DATA, Kind.ack_unseen_data, "acknowledged data the capture never showed: the capture lost packets"),
)


def _marked_rows(ctx: Context, found: Found) -> None:
    """One finding per (flow, sender) for each kind of irregular packet."""
    for note, kind, what in _MARKED:
        rows = np.flatnonzero(ctx.rows[:, rp.R_NOTE_SENDER] == note)
        _grouped(ctx, found, rows, kind, lambda flow, side, count, frames: (
            f"{ctx.name(flow, side)} {what} ({_count(count, 'packet')}: {'frames' if count > 1 else 'frame'} {frames})"))


def _zero_windows(ctx: Context, found: Found) -> None:
    rows = np.flatnonzero(ctx.marks & Marks.ZERO_WINDOW != 0)
    _grouped(ctx, found, rows, Kind.zero_window, lambda flow, side, count, frames: (
        f"{ctx.name(flow, side)} advertised a zero window {_count(count, 'time')} "
        f"({'frames' if count > 1 else 'frame'} {frames}): its application is not reading fast enough"))


def _grouped(ctx: Context, found: Found, rows: np.ndarray, kind: Kind, describe) -> None:
    groups: dict[tuple[int, int], list[int]] = {}
    for row in rows[np.argsort(ctx.pk[rows, rp.PK_TS], kind="stable")]:
        groups.setdefault((int(ctx.rows[row, rp.R_CONN]), int(ctx.rows[row, rp.R_SIDE])), []).append(int(row))
    for (flow, side), members in groups.items():
        found.add(flow, kind, side, members[0], ctx.pk[members[0], rp.PK_TS],
                  describe(flow, side, len(members), _list([int(ctx.frames[m]) for m in members])))


# --- whole connections ------------------------------------------------------------


def _simultaneous(ctx: Context, found: Found) -> None:
    t = ctx.trans
    for flow in np.unique(t[(t[:, rp.T_SIDE] == 1) & (t[:, rp.T_TO] == State.SYN_SENT), rp.T_CONN]):
        row = int(ctx.first_sent(1, rp.SYN)[flow])
        found.add(flow, Kind.simultaneous_open, -1, row, ctx.pk[row, rp.PK_TS],
                  "both endpoints sent a SYN before seeing the other's (simultaneous open: SYN_SENT -> SYN_RCVD on both)")
    closing = t[t[:, rp.T_TO] == State.CLOSING]
    flows, counts = np.unique(closing[:, rp.T_CONN], return_counts=True)
    for flow in flows[counts >= 2]:
        mine = closing[closing[:, rp.T_CONN] == flow]
        first = mine[np.lexsort((ctx.pk[mine[:, rp.T_ROW], rp.PK_TS], mine[:, rp.T_TS]))[0]]
        found.add(flow, Kind.simultaneous_close, -1, first[rp.T_ROW], first[rp.T_TS],
                  "both endpoints sent a FIN before receiving the other's (simultaneous close: CLOSING on both)")


def _capture_edges(ctx: Context, found: Found) -> None:
    conn, ends = ctx.conn, ctx.ends
    # synchronized and not finished; half-open connections have findings of their own
    open_states = np.array([State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING,
                            State.CLOSE_WAIT, State.LAST_ACK])
    for flow in np.flatnonzero(conn[:, rp.C_START_KIND] != rp.START_SYN).tolist():
        first = int(conn[flow, rp.C_FIRST_ROW])
        what = "mid-handshake" if conn[flow, rp.C_START_KIND] == rp.START_SYN_ACK else "mid-connection"
        found.add(flow, Kind.no_handshake, -1, first, ctx.pk[first, rp.PK_TS],
                  f"the capture began {what}: no SYN from the client, roles guessed")
    client, server = ends[0::2, rp.E_STATE], ends[1::2, rp.E_STATE]
    still_open = np.isin(client, open_states) | np.isin(server, open_states)
    for flow in np.flatnonzero(still_open).tolist():
        last = int(conn[flow, rp.C_LAST_ROW])
        idle = (ctx.capture_end - ctx.pk[last, rp.PK_TS]) / 1e9
        found.add(flow, Kind.open_at_end, -1, last, ctx.pk[last, rp.PK_TS],
                  f"still open when the capture ended (client {State(int(client[flow])).name}, "
                  f"server {State(int(server[flow])).name}; last packet {_seconds(idle)} before the end)")


def _port_reuse(ctx: Context, found: Found) -> None:
    conv = ctx.conn[:, rp.C_CONV]
    last_of: dict[int, int] = {}
    for flow in range(len(conv)):
        previous = last_of.get(int(conv[flow]))
        last_of[int(conv[flow])] = flow
        if previous is None:
            continue
        first = int(ctx.conn[flow, rp.C_FIRST_ROW])
        gap = (ctx.pk[first, rp.PK_TS] - ctx.pk[ctx.conn[previous, rp.C_LAST_ROW], rp.PK_TS]) / 1e9
        states = "/".join(_state_before(ctx, previous, side, first) for side in (0, 1))
        found.add(flow, Kind.port_reuse, 0, first, ctx.pk[first, rp.PK_TS],
                  f"a new SYN reuses the 4-tuple of flow {previous} {_seconds(gap)} after its last packet "
                  f"(client/server were {states})")


def _state_before(ctx: Context, flow: int, side: int, reuse_row: int) -> str:
    """The endpoint's state when ``reuse_row`` came (a TIME_WAIT that the new SYN ended counts as TIME_WAIT)."""
    t = ctx.trans
    ended = np.flatnonzero((t[:, rp.T_CONN] == flow) & (t[:, rp.T_SIDE] == side) & (t[:, rp.T_ROW] == reuse_row))
    state = t[ended[0], rp.T_FROM] if len(ended) else ctx.ends[2 * flow + side, rp.E_STATE]
    return State(int(state)).name


# --- text helpers -------------------------------------------------------------------


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.3f} ms" if value < 1 else f"{value:.2f} s"


def _list(items: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
