"""Anomaly flags: what is wrong (or unusual) with each connection, in one plain sentence.

Every detector reads the replay's columns, the retransmission classes and the
retry chains, selects its findings with whole-array operations (compiled or
numpy; no Python loop over packets, transitions or connections), and yields
them as one batch of columns ``(flow, kind, endpoint, row, ts, detail)``; only
the sentences are written one by one, for the findings reported.  ``flow`` is
-1 for capture-wide findings.  :class:`Kind` lists the kinds worst first, the
order reports use.  Thresholds are fields of :class:`Thresholds`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from enum import IntEnum

import numpy as np

from pcapstate import replay as rp
from pcapstate.findings.backoff import Chains
from pcapstate.findings.retransmissions import Analysis as Marks, SegmentKind
from pcapstate.jit import entry, njit
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
    """The findings as columns, in the order the detectors found them."""

    flow: np.ndarray  # int64; -1 for capture-wide findings
    kind: np.ndarray  # int64 Kind
    endpoint: np.ndarray  # int64: 0 client, 1 server, -1 none
    row: np.ndarray  # int64 packet-table row (-1: none)
    ts: np.ndarray  # int64 nanoseconds
    detail: list[str]


def _batch(kind, flow, endpoint, row, ts, detail: list[str]) -> Found:
    """One detector's findings as a :class:`Found`; a scalar argument holds for every finding."""
    def column(values) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.int64), (len(detail),))

    return Found(column(flow), column(kind), column(endpoint), column(row), column(ts), detail)


def _concatenate(batches: list[Found]) -> Found:
    columns = [np.concatenate([getattr(b, name) for b in batches] or [np.zeros(0, dtype=np.int64)])
               for name in ("flow", "kind", "endpoint", "row", "ts")]
    return Found(*columns, [text for b in batches for text in b.detail])


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
    flow_ids: np.ndarray | None = None  # the numbers the tables show for the flows (None: 0, 1, 2 ...)
    whole_trace: bool = True  # False: a part of the trace (a Dask partition); capture-wide findings are left out
    _first_sent: dict = field(default_factory=dict)

    def flow_numbers(self, flows) -> np.ndarray:
        from pcapstate.tracker import flow_numbers

        return flow_numbers(flows, self.flow_ids)

    def name(self, flow: int, side: int) -> str:
        return f"{SIDE_NAMES[side]} {self.names[flow][side]}"

    def time(self, rows) -> np.ndarray:
        """The timestamps of packet-table ``rows``."""
        return self.pk[rows, rp.PK_TS]

    def flagged(self, mask: int, value: int) -> np.ndarray:
        """The rows (ascending) whose flags, masked with ``mask``, are ``value``."""
        return _flagged(self.pk, mask, value)

    @cached_property
    def entered(self) -> np.ndarray:
        """Per transition, the state it leads to (a contiguous copy: several detectors scan it)."""
        return np.ascontiguousarray(self.trans[:, rp.T_TO])

    @cached_property
    def _first_chain_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted (flow, side, segment kind) keys of the chains, and the first chain of each."""
        keys, first = np.unique(_chain_key(self.chains.flow, self.chains.side, self.chains.kind), return_index=True)
        return keys, first

    def first_chain(self, flows: np.ndarray, sides, kind: SegmentKind) -> np.ndarray:
        """Per flow, the first chain of ``kind`` the endpoint ``sides`` sent (-1: none; a single send)."""
        keys, first = self._first_chain_index
        wanted = _chain_key(flows, sides, int(kind))
        if not len(keys):
            return np.full(len(wanted), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return np.where(keys[at] == wanted, first[at], -1)

    def first_sent(self, side: int, flags: int) -> np.ndarray:
        """Per flow, the first row the endpoint ``side`` sent with exactly ``flags`` among SYN/ACK/FIN/RST (-1)."""
        key = (side, flags)
        if key not in self._first_sent:
            self._first_sent[key] = _first_sent(self.pk, self.rows, side, flags, len(self.conn))
        return self._first_sent[key]

    @cached_property
    def next_of_endpoint(self) -> np.ndarray:
        """Per transition, the index of the same endpoint's next transition (-1: none)."""
        return _next_of_endpoint(self.trans, len(self.ends))


def _chain_key(flows, sides, kinds):
    return (2 * np.asarray(flows, dtype=np.int64) + sides) * len(SegmentKind) + kinds


@entry("i8[:, ::1]", "i8")
def _next_of_endpoint(trans: np.ndarray, n_endpoints: int) -> np.ndarray:
    """One backward pass: each transition's successor is the one seen last from the same endpoint."""
    following = np.full(trans.shape[0], -1, dtype=np.int64)
    seen = np.full(n_endpoints, -1, dtype=np.int64)
    for i in range(trans.shape[0] - 1, -1, -1):
        endpoint = 2 * trans[i, rp.T_CONN] + trans[i, rp.T_SIDE]
        following[i] = seen[endpoint]
        seen[endpoint] = i
    return following


@entry("i8[:, ::1]", "i8", "i8")
def _flagged(pk: np.ndarray, mask: int, value: int) -> np.ndarray:
    """:meth:`Context.flagged`, one pass instead of a temporary array per operation over all packets."""
    out = np.empty(pk.shape[0], dtype=np.int64)
    count = 0
    for row in range(pk.shape[0]):
        if pk[row, rp.PK_FLAGS] & mask == value:
            out[count] = row
            count += 1
    return out[:count]


@entry("i8[:, ::1]", rp.ROWS, "i8", "i8", "i8")
def _first_sent(pk: np.ndarray, rows: np.ndarray, side: int, flags: int, n_flows: int) -> np.ndarray:
    """:meth:`Context.first_sent`: the earliest such row of each flow (the first in the file among equal times)."""
    first = np.full(n_flows, -1, dtype=np.int64)
    for row in range(pk.shape[0]):
        if rows[row, rp.R_SIDE] == side and pk[row, rp.PK_FLAGS] & (rp.SYN | rp.ACK | rp.FIN | rp.RST) == flags:
            flow = rows[row, rp.R_CONN]
            if first[flow] < 0 or pk[row, rp.PK_TS] < pk[first[flow], rp.PK_TS]:
                first[flow] = row
    return first


def _state_names(states) -> list[str]:
    return [_STATE_NAME[state] for state in np.asarray(states).tolist()]


_STATE_NAME = {int(s): s.name for s in State}


def find_anomalies(ctx: Context) -> Found:
    batches = []
    for detector in (_handshake_failures, _flood, _close_problems, _stuck, _resets, _marked_rows,
                     _zero_windows, _simultaneous, _capture_edges, _port_reuse):
        batches.extend(detector(ctx))
    return _concatenate(batches)


# --- the opening ------------------------------------------------------------------


def _handshake_failures(ctx: Context):
    conn, ends, time = ctx.conn, ctx.ends, ctx.time
    seen = conn[:, rp.C_SEEN]
    client, server = ends[0::2, rp.E_STATE], ends[1::2, rp.E_STATE]
    unanswered = np.flatnonzero((seen & rp.SEEN_SYN != 0) & (seen & rp.SEEN_SYN_ACK == 0) & (client == State.SYN_SENT))
    first = conn[unanswered, rp.C_FIRST_ROW]
    yield _batch(Kind.syn_unanswered, unanswered, 0, first, time(first), [
        f"{ctx.name(flow, 0)} sent {sends} to {ctx.names[flow][1]} and nothing came back: the SYN or its answer "
        f"is dropped (firewall, dead host) or nothing is there"
        for flow, sends in zip(unanswered.tolist(), _sends(ctx, unanswered, 0, SegmentKind.SYN))])
    half_open = np.flatnonzero(server == State.SYN_RCVD)
    synack = ctx.first_sent(1, rp.SYN | rp.ACK)[half_open]
    yield _batch(Kind.synack_unanswered, half_open, 1, synack, np.where(synack >= 0, time(synack), 0), [
        f"{ctx.name(flow, 1)} sent {sends} and no ACK completed the handshake: a half-open connection (SYN_RCVD)"
        for flow, sends in zip(half_open.tolist(), _sends(ctx, half_open, 1, SegmentKind.SYN_ACK))])
    refused = np.flatnonzero(ctx.rows[:, rp.R_NOTE_RECEIVER] == Note.REFUSED)
    flows = ctx.rows[refused, rp.R_CONN]
    delay = (time(refused) - time(conn[flows, rp.C_FIRST_ROW])) / 1e9
    yield _batch(Kind.connection_refused, flows, 0, refused, time(refused), [
        f"{ctx.name(flow, 0)}'s SYN was answered by RST {_seconds(seconds)} later: nothing listens "
        f"on {ctx.names[flow][1]} (connection refused)"
        for flow, seconds in zip(flows.tolist(), delay.tolist())])


_SEGMENT_LABEL = {SegmentKind.SYN: "SYN", SegmentKind.SYN_ACK: "SYN-ACK", SegmentKind.FIN: "FIN"}


def _sends(ctx: Context, flows: np.ndarray, sides, kind: SegmentKind) -> list[str]:
    """Per flow, '6 SYNs over 17.1 s (intervals 1.0, 1.0, 1.0, 2.0, 4.1 s: linear-then-doubling)' or '1 SYN'.

    The first chain of ``kind`` from the endpoint ``sides`` (one side, or one per flow) tells.
    """
    label = _SEGMENT_LABEL[kind]
    chains = ctx.chains
    index = ctx.first_chain(flows, sides, kind)
    known = index[index >= 0]
    members = chains.rows
    sends = members.lengths[known].tolist()
    span = ((ctx.time(members.lasts[known]) - ctx.time(members.firsts[known])) / 1e9).tolist()
    described = {i: f"{count} {label}s over {seconds:.2f} s (intervals {_gaps(chains.intervals[i])} s: "
                    f"{chains.pattern[i]})"
                 for i, count, seconds in zip(known.tolist(), sends, span)}
    return [described.get(i, f"1 {label}") for i in index.tolist()]


def _gaps(seconds: list[float]) -> str:
    return ", ".join(map("{:.2f}".format, seconds))


@dataclass
class HalfOpen:
    """The half-open connections the flood detector reads, in flow order.

    Half-open: the server answered the SYN and waits in SYN_RCVD for an ACK
    that never comes, or the SYN was never answered at all (the client is
    still in SYN_SENT, no SYN-ACK seen).  A trace analyzed in parts (Dask
    partitions) gathers each part's and looks across them.
    """

    flow: np.ndarray  # int64: the number the tables show
    opened: np.ndarray  # int64 ns: the connection's first packet
    row: np.ndarray  # int64: that packet's row (gathered parts: whatever locates it)
    unanswered: np.ndarray  # bool: no SYN-ACK at all
    service: list[str]  # the server's "addr:port"
    source: list[str]  # the client's address


def half_open(ctx: Context) -> HalfOpen:
    seen = ctx.conn[:, rp.C_SEEN]
    unanswered = (ctx.ends[0::2, rp.E_STATE] == State.SYN_SENT) & ((seen & rp.SEEN_SYN) != 0) & \
        ((seen & rp.SEEN_SYN_ACK) == 0)
    flows = np.flatnonzero((ctx.ends[1::2, rp.E_STATE] == State.SYN_RCVD) | unanswered)
    first = ctx.conn[flows, rp.C_FIRST_ROW]
    names = [ctx.names[f] for f in flows.tolist()]
    return HalfOpen(ctx.flow_numbers(flows), ctx.time(first), first, unanswered[flows],
                    [server for _, server in names], [client.rsplit(":", 1)[0] for client, _ in names])


def _flood(ctx: Context):
    if ctx.whole_trace:
        yield from flood(half_open(ctx), ctx.thresholds)


def flood(half: HalfOpen, t: Thresholds):
    """Many half-open connections to one service from many sources within a window (a SYN flood, or a
    backlog without SYN cookies that is full, looks like that)."""
    by_service: dict[str, list[int]] = {}  # positions in half, services in order of first appearance
    for position, service in enumerate(half.service):
        by_service.setdefault(service, []).append(position)
    window = int(t.flood_window * 1e9)
    for service, positions in by_service.items():
        starts, members = half.opened[positions], np.asarray(positions, dtype=np.int64)
        order = np.argsort(starts, kind="stable")
        starts, members = starts[order], members[order]
        ends = np.searchsorted(starts, starts + window, side="right")
        best = int(np.argmax(ends - np.arange(len(starts))))
        members = members[best:ends[best]]
        sources = {half.source[m] for m in members.tolist()}
        if len(members) >= t.flood_connections and len(sources) >= t.flood_sources:
            span = (starts[ends[best] - 1] - starts[best]) / 1e9
            silent = int(half.unanswered[members].sum())
            yield _batch(Kind.half_open_flood, -1, 1, int(half.row[members[0]]), starts[best], [
                f"{len(members)} half-open connections to {service} from {len(sources)} sources within "
                f"{_seconds(span)} (flows {_list(half.flow[members].tolist())}): " + (
                    "a SYN flood, if the sources never answer the SYN-ACK" if not silent else
                    f"{silent} of the SYNs never answered: a SYN flood, or a service that stopped answering")])


# --- the closing ------------------------------------------------------------------


def _close_problems(ctx: Context):
    chains = ctx.chains
    lost = np.flatnonzero((chains.kind == SegmentKind.FIN) & (chains.answer_row < 0))
    flows, sides, first = chains.flow[lost], chains.side[lost], chains.rows.firsts[lost]
    states = _states_after_sending(ctx, flows, sides, first)
    peers = _state_names(ctx.ends[2 * flows + 1 - sides, rp.E_STATE])
    yield _batch(np.where(states == State.LAST_ACK, Kind.last_ack_unacked, Kind.fin_unacked),
                 flows, sides, first, ctx.time(first), [
        f"{ctx.name(flow, side)} in {state} sent {sends}, never acknowledged: its FIN is lost on the way "
        f"(the peer is {peer} as far as the capture shows)"
        for flow, side, state, sends, peer in zip(flows.tolist(), sides.tolist(), _state_names(states),
                                                  _sends(ctx, flows, sides, SegmentKind.FIN), peers)])


def _states_after_sending(ctx: Context, flows: np.ndarray, sides: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per (flow, side, row), the state the endpoint's own packet at ``row`` took it to (the last such
    transition), or the endpoint's final state when it made none there."""
    t = ctx.trans
    final = ctx.ends[2 * flows + sides, rp.E_STATE]
    if not len(rows):
        return final
    sent = np.flatnonzero((t[:, rp.T_CAUSE] == rp.CAUSE_SENT) & np.isin(t[:, rp.T_ROW], rows))
    to = dict(zip(zip(t[sent, rp.T_CONN].tolist(), t[sent, rp.T_SIDE].tolist(), t[sent, rp.T_ROW].tolist()),
                  t[sent, rp.T_TO].tolist()))  # a later transition of the same packet replaces an earlier one
    return np.array([to.get(key, state) for key, state in
                     zip(zip(flows.tolist(), sides.tolist(), rows.tolist()), final.tolist())], dtype=np.int64)


def _stuck(ctx: Context):
    """Endpoints still in CLOSE_WAIT or FIN_WAIT_2 when the capture ended, or that stayed ``stuck_after`` seconds.

    A capture file does not say when capturing stopped, only when its last
    packet came, so an endpoint still in the state at the end is reported
    however short the time: nothing in the capture shows it leaving.
    """
    t = ctx.trans
    limit = int(ctx.thresholds.stuck_after * 1e9)
    for state, kind, why in ((State.CLOSE_WAIT, Kind.stuck_close_wait, "the application never called close()"),
                             (State.FIN_WAIT_2, Kind.stuck_fin_wait_2, "the peer never sent its FIN")):
        entered = np.flatnonzero(ctx.entered == state)
        following = ctx.next_of_endpoint[entered]
        left = np.where(following >= 0, t[following, rp.T_TS], -1)
        until = np.where(left >= 0, left, ctx.capture_end)
        stayed = until - t[entered, rp.T_TS]
        reported = (left < 0) | (stayed >= limit)  # still there at the end, or left only after the limit
        entered, left, stayed = entered[reported], left[reported], stayed[reported]
        flows, sides = t[entered, rp.T_CONN], t[entered, rp.T_SIDE]
        if state == State.FIN_WAIT_2:
            peer_fin = ctx.ends[2 * flows + 1 - sides, rp.E_FIN_END] >= 0
        else:
            peer_fin = np.zeros(len(entered), dtype=bool)
        texts = []
        for flow, side, gone, stay, fin_lost in zip(flows.tolist(), sides.tolist(), left.tolist(),
                                                    (stayed / 1e9).tolist(), peer_fin.tolist()):
            if gone >= 0:
                texts.append(f"{ctx.name(flow, side)} stayed in {state.name} {_seconds(stay)} before leaving it")
            else:
                reason = "the peer's FIN (in the capture) was lost on the way" if fin_lost else why
                texts.append(f"{ctx.name(flow, side)} was still in {state.name} at the last packet of the capture, "
                             f"{_seconds(stay)} after entering it: if it stays there, {reason}")
        yield _batch(kind, flows, sides, t[entered, rp.T_ROW], t[entered, rp.T_TS], texts)


def _resets(ctx: Context):
    resets = ctx.flagged(rp.RST | rp.SYN, rp.RST)
    resets = resets[np.argsort(ctx.time(resets), kind="stable")]
    refused = ctx.rows[resets, rp.R_NOTE_RECEIVER] == Note.REFUSED
    unsynced = np.isin(ctx.rows[resets, rp.R_SENDER_BEFORE], _UNSYNCED)
    resets = resets[~(refused | unsynced)]
    flows, sides, ts = ctx.rows[resets, rp.R_CONN], ctx.rows[resets, rp.R_SIDE], ctx.time(resets)
    age = (ts - ctx.time(ctx.conn[flows, rp.C_FIRST_ROW])) / 1e9
    fin_ts = _first_fin_ts(ctx)[flows]
    after_fin = (0 <= fin_ts) & (fin_ts < ts)
    yield _batch(np.where(after_fin, Kind.rst_after_fin, Kind.rst_midstream), flows, sides, resets, ts, [
        f"{ctx.name(flow, side)} sent RST after the connection had begun closing with FIN" if closing else
        f"{ctx.name(flow, side)} reset the open connection {_seconds(seconds)} after it began, "
        f"without a FIN: an abort (unread data at close, a crash, or a middlebox)"
        for flow, side, seconds, closing in zip(flows.tolist(), sides.tolist(), age.tolist(), after_fin.tolist())])


_UNSYNCED = (int(State.CLOSED), int(State.LISTEN), int(State.SYN_SENT))


def _first_fin_ts(ctx: Context) -> np.ndarray:
    never = np.iinfo(np.int64).max
    first = np.full(len(ctx.conn), never, dtype=np.int64)
    fins = ctx.flagged(rp.FIN | rp.SYN | rp.RST, rp.FIN)
    np.minimum.at(first, ctx.rows[fins, rp.R_CONN], ctx.time(fins))
    first[first == never] = -1
    return first


# --- per-packet irregularities ---------------------------------------------------


_MARKED = (
    (Note.DATA_AFTER_FIN, Kind.data_after_fin, "sent data after its own FIN"),
    (Note.INVALID_FLAGS, Kind.invalid_flags, "sent flag combinations no TCP stack sends (SYN+FIN, SYN+RST, none or all)"),
    (Note.ACK_UNSEEN_DATA, Kind.ack_unseen_data, "acknowledged data the capture never showed: the capture lost packets"),
)


def _marked_rows(ctx: Context):
    """One finding per (flow, sender) for each kind of irregular packet."""
    notes = np.ascontiguousarray(ctx.rows[:, rp.R_NOTE_SENDER])
    for note, kind, what in _MARKED:
        yield _grouped(ctx, np.flatnonzero(notes == note), kind, lambda flow, side, count, frames: (
            f"{ctx.name(flow, side)} {what} ({_count(count, 'packet')}: {'frames' if count > 1 else 'frame'} {frames})"))


def _zero_windows(ctx: Context):
    rows = np.flatnonzero(ctx.marks & Marks.ZERO_WINDOW != 0)
    yield _grouped(ctx, rows, Kind.zero_window, lambda flow, side, count, frames: (
        f"{ctx.name(flow, side)} advertised a zero window {_count(count, 'time')} "
        f"({'frames' if count > 1 else 'frame'} {frames}): its application is not reading fast enough"))


def _grouped(ctx: Context, rows: np.ndarray, kind: Kind, describe) -> Found:
    """One finding per (flow, sender) of ``rows``, in order of their first row in time; ``describe(flow,
    side, count, frames)`` writes the sentence."""
    rows = rows[np.argsort(ctx.time(rows), kind="stable")]
    endpoint = 2 * ctx.rows[rows, rp.R_CONN] + ctx.rows[rows, rp.R_SIDE]
    by_endpoint = np.argsort(endpoint, kind="stable")  # each endpoint's rows together, still in time order
    starts = np.flatnonzero(np.diff(endpoint[by_endpoint], prepend=-1) != 0)
    counts = np.diff(np.append(starts, len(rows)))
    in_time = np.argsort(by_endpoint[starts])  # the endpoints in order of their first row
    starts, counts = starts[in_time], counts[in_time]
    first = rows[by_endpoint[starts]]
    flows, sides = ctx.rows[first, rp.R_CONN], ctx.rows[first, rp.R_SIDE]
    def listed_frames(start: int, count: int) -> str:  # only the frames the sentence shows are looked up
        return _list(ctx.frames[rows[by_endpoint[start:start + min(count, _LISTED)]]].tolist(), total=count)

    return _batch(kind, flows, sides, first, ctx.time(first), [
        describe(flow, side, count, listed_frames(start, count))
        for flow, side, start, count in zip(flows.tolist(), sides.tolist(), starts.tolist(), counts.tolist())])


# --- whole connections ------------------------------------------------------------


def _simultaneous(ctx: Context):
    t = ctx.trans
    syn_sent = np.flatnonzero(ctx.entered == State.SYN_SENT)
    opened = np.unique(t[syn_sent[t[syn_sent, rp.T_SIDE] == 1], rp.T_CONN])
    row = ctx.first_sent(1, rp.SYN)[opened]
    yield _batch(Kind.simultaneous_open, opened, -1, row, ctx.time(row), [
        "both endpoints sent a SYN before seeing the other's (simultaneous open: SYN_SENT -> SYN_RCVD on both)"
    ] * len(opened))
    closing = t[ctx.entered == State.CLOSING]
    # per flow, its first CLOSING: earliest transition, then earliest packet, then first listed
    closing = closing[np.lexsort((ctx.time(closing[:, rp.T_ROW]), closing[:, rp.T_TS], closing[:, rp.T_CONN]))]
    starts = np.flatnonzero(np.diff(closing[:, rp.T_CONN], prepend=-1) != 0)
    both = starts[np.diff(np.append(starts, len(closing))) >= 2]
    first = closing[both]
    yield _batch(Kind.simultaneous_close, first[:, rp.T_CONN], -1, first[:, rp.T_ROW], first[:, rp.T_TS], [
        "both endpoints sent a FIN before receiving the other's (simultaneous close: CLOSING on both)"] * len(first))


def _capture_edges(ctx: Context):
    conn, ends = ctx.conn, ctx.ends
    # synchronized and not finished; half-open connections have findings of their own
    open_states = np.array([State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING,
                            State.CLOSE_WAIT, State.LAST_ACK])
    late = np.flatnonzero(conn[:, rp.C_START_KIND] != rp.START_SYN)
    first = conn[late, rp.C_FIRST_ROW]
    yield _batch(Kind.no_handshake, late, -1, first, ctx.time(first), [
        f"the capture began {'mid-handshake' if start == rp.START_SYN_ACK else 'mid-connection'}: "
        f"no SYN from the client, roles guessed" for start in conn[late, rp.C_START_KIND].tolist()])
    client, server = ends[0::2, rp.E_STATE], ends[1::2, rp.E_STATE]
    still_open = np.flatnonzero(np.isin(client, open_states) | np.isin(server, open_states))
    last = conn[still_open, rp.C_LAST_ROW]
    idle = (ctx.capture_end - ctx.time(last)) / 1e9
    yield _batch(Kind.open_at_end, still_open, -1, last, ctx.time(last), [
        f"still open when the capture ended (client {client_state}, server {server_state}; "
        f"last packet {_seconds(seconds)} before the end)"
        for client_state, server_state, seconds in zip(_state_names(client[still_open]),
                                                       _state_names(server[still_open]), idle.tolist())])


def _port_reuse(ctx: Context):
    """Connections that reuse the 4-tuple of an earlier one (the conversation's previous connection)."""
    conv = ctx.conn[:, rp.C_CONV]
    by_conv = np.argsort(conv, kind="stable")  # each conversation's connections together, in order
    again = conv[by_conv[1:]] == conv[by_conv[:-1]]
    flows, previous = by_conv[1:][again], by_conv[:-1][again]
    in_order = np.argsort(flows)
    flows, previous = flows[in_order], previous[in_order]
    first = ctx.conn[flows, rp.C_FIRST_ROW]
    gap = (ctx.time(first) - ctx.time(ctx.conn[previous, rp.C_LAST_ROW])) / 1e9
    client, server = (_state_names(_states_before(ctx, previous, side, first)) for side in (0, 1))
    yield _batch(Kind.port_reuse, flows, 0, first, ctx.time(first), [
        f"{_REUSES}{earlier} {_seconds(seconds)} after its last packet "
        f"(client/server were {client_state}/{server_state})"
        for earlier, seconds, client_state, server_state in zip(ctx.flow_numbers(previous).tolist(), gap.tolist(),
                                                                client, server)])


_REUSES = "a new SYN reuses the 4-tuple of flow "  # then the earlier flow's number


def renumbered_details(kind, detail, number):
    """``detail`` (a Texts or Objects column beside ``kind``, a Categories one) with the earlier flow that
    each ``port_reuse`` sentence names renumbered by ``number`` (an array of flow ids -> their numbers):
    for tables made with stand-in flow ids (:mod:`pcapstate.streaming`)."""
    from pcapstate.columns import Objects, Texts, texts

    rows = np.flatnonzero(np.asarray(kind.codes) == list(kind.names).index(Kind.port_reuse.name))
    if not len(rows):
        return detail
    pattern = re.compile(re.escape(_REUSES) + r"(\d+)")
    sentences = detail.objects() if isinstance(detail, Texts) else detail.values.copy()
    for row in rows.tolist():
        sentences[row] = pattern.sub(lambda m: _REUSES + str(int(number(np.array([int(m.group(1))]))[0])),
                                     sentences[row], count=1)
    return texts(sentences.tolist(), detail.keep_object) if isinstance(detail, Texts) else Objects(sentences)


def _states_before(ctx: Context, flows: np.ndarray, side: int, reuse_rows: np.ndarray) -> np.ndarray:
    """Per flow, the endpoint's state when its ``reuse_rows`` came (a TIME_WAIT that the new SYN ended
    counts as TIME_WAIT): where the first transition at that row began, else its final state."""
    t = ctx.trans
    final = ctx.ends[2 * flows + side, rp.E_STATE]
    if not len(flows):
        return final
    there = np.flatnonzero((t[:, rp.T_SIDE] == side) & np.isin(t[:, rp.T_ROW], reuse_rows))
    began: dict[tuple[int, int], int] = {}
    for key, state in zip(zip(t[there, rp.T_CONN].tolist(), t[there, rp.T_ROW].tolist()), t[there, rp.T_FROM].tolist()):
        began.setdefault(key, state)
    return np.array([began.get(key, state) for key, state in zip(zip(flows.tolist(), reuse_rows.tolist()),
                                                                  final.tolist())], dtype=np.int64)


# --- text helpers -------------------------------------------------------------------


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.3f} ms" if value < 1 else f"{value:.2f} s"


_LISTED = 5


def _list(items: list[int], limit: int = _LISTED, total: int | None = None) -> str:
    """The first ``limit`` items and how many more (of ``total``, when ``items`` holds only the first few)."""
    total = len(items) if total is None else total
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {total - limit} more" if total > limit else "")
