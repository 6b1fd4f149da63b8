"""Packet table -> conversations -> replay: the tracking stage, still columnar.

:func:`track` runs :mod:`pcapstate.conversations` and :mod:`pcapstate.replay`
over a decoded :class:`~pcapstate.table.PacketTable` and returns a
:class:`Tracking`: numpy arrays only.  pandas enters later, in
:mod:`pcapstate.analysis`, where users meet the results.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate import conversations, replay
from pcapstate.jit import entry
from pcapstate.jobs import resolve, run_all, shares
from pcapstate.table import PacketTable

DEFAULT_TIME_WAIT_S = 60.0  # 2*MSL as Linux implements it (TCP_TIMEWAIT_LEN)


@dataclass
class Tracking:
    table: PacketTable
    conversations: conversations.Conversations
    packets: np.ndarray  # the replay's input matrix (replay.PK_* columns)
    result: replay.ReplayResult
    time_wait_s: float
    shares: list[np.ndarray] | None = None  # the replay order split by conversation, one share a thread (--jobs)
    # A part of a larger trace (a Dask partition: some conversations of it) ends where the trace ends, and its
    # connections carry the trace's numbers: None is the table's own last packet and 0, 1, 2 ...
    end_ns: int | None = None
    flow_ids: np.ndarray | None = None

    @property
    def orders(self) -> list[np.ndarray]:
        """The replay order, or its shares: what each thread of a pass over connections walks."""
        return [self.conversations.order] if self.shares is None else self.shares

    @property
    def capture_start_ns(self) -> int:
        return int(self.table["ts_ns"].min()) if len(self.table) else 0

    @property
    def capture_end_ns(self) -> int:
        if self.end_ns is not None:
            return self.end_ns
        return int(self.table["ts_ns"].max()) if len(self.table) else 0

    def flow_numbers(self, flows) -> np.ndarray:
        """The numbers the tables show for connections ``flows`` (indices of this tracking's connections)."""
        return flow_numbers(flows, self.flow_ids)


def flow_numbers(flows, flow_ids: np.ndarray | None) -> np.ndarray:
    """Connection indices ``flows`` (-1: none, kept) as numbered by ``flow_ids`` (None: as they are)."""
    flows = np.asarray(flows, dtype=np.int64)
    if flow_ids is None or not len(flow_ids):
        return flows
    return np.where(flows >= 0, flow_ids[np.maximum(flows, 0)], flows)


def packet_matrix(table: PacketTable, convs: conversations.Conversations, jobs: int = 1) -> np.ndarray:
    """The replay's (n, N_PK) int64 input: one row per packet-table row (``jobs`` threads fill a slice each)."""
    n = len(table)
    pk = np.empty((n, replay.N_PK), dtype=np.int64)
    columns = [np.ascontiguousarray(a, dtype=t) for a, t in (
        (convs.conv, np.int64), (convs.direction, np.uint8), (table["flags"], np.uint16), (table["seq"], np.uint32),
        (table["ack"], np.uint32), (table["payload_len"], np.uint32), (table["ts_ns"], np.int64),
        (table["sport"], np.uint16), (table["dport"], np.uint16))]
    bounds = np.linspace(0, n, max(jobs, 1) + 1).astype(np.int64).tolist()
    run_all(lambda at: _fill_packet_matrix(pk[at[0]:at[1]], *(c[at[0]:at[1]] for c in columns)),
            list(zip(bounds, bounds[1:])))
    return pk


@entry("i8[:, ::1]", "i8[::1]", "u1[::1]", "u2[::1]", "u4[::1]", "u4[::1]", "u4[::1]", "i8[::1]", "u2[::1]", "u2[::1]")
def _fill_packet_matrix(pk, conv, direction, flags, seq, ack, length, ts, sport, dport):
    """A row at a time (numpy's column by column assignment walks the whole matrix once per column)."""
    for r in range(pk.shape[0]):
        pk[r, replay.PK_CONV], pk[r, replay.PK_DIR], pk[r, replay.PK_FLAGS] = conv[r], direction[r], flags[r]
        pk[r, replay.PK_SEQ], pk[r, replay.PK_ACK], pk[r, replay.PK_LEN] = seq[r], ack[r], length[r]
        pk[r, replay.PK_TS], pk[r, replay.PK_SPORT], pk[r, replay.PK_DPORT] = ts[r], sport[r], dport[r]


def guess_client_direction(pk: np.ndarray, convs: conversations.Conversations) -> np.ndarray:
    """Per conversation, the direction of its client when no SYN says so.

    The first sender of a SYN-ACK is the server; without one, the endpoint with
    the lower port is (ties: the first sender is the client).
    """
    guess = np.zeros(convs.count, dtype=np.int64)
    if convs.count == 0:
        return guess
    order = convs.order
    conv_in_order = pk[order, replay.PK_CONV]
    first_pos = np.full(convs.count, len(order), dtype=np.int64)
    first_pos[conv_in_order[::-1]] = np.arange(len(order) - 1, -1, -1)  # the earliest wins (as below)
    first_row = order[first_pos]
    sport, dport = pk[first_row, replay.PK_SPORT], pk[first_row, replay.PK_DPORT]
    guess[:] = np.where(sport < dport, 1, 0)  # direction 0 is the first row's sender
    is_synack = (pk[order, replay.PK_FLAGS] & 0x17) == 0x12
    synack_pos = np.flatnonzero(is_synack)
    if len(synack_pos):
        convs_with = conv_in_order[synack_pos]
        first_synack = np.full(convs.count, -1, dtype=np.int64)
        first_synack[convs_with[::-1]] = synack_pos[::-1]  # the earliest wins
        has = first_synack >= 0
        guess[has] = 1 - pk[order[first_synack[has]], replay.PK_DIR]
    return guess


def track(table: PacketTable, time_wait: float = DEFAULT_TIME_WAIT_S, jobs: int = 1,
          end_ns: int | None = None) -> Tracking:
    """Replay every TCP connection of ``table`` from both endpoints.

    ``time_wait`` is 2*MSL in seconds: how long an endpoint stays in TIME_WAIT
    before the timer closes it (when the capture lasts that long).  ``jobs``:
    threads for the passes over connections (:mod:`pcapstate.jobs`; 0: as
    many as pay off), here and in the later passes that read the tracking.
    ``end_ns``: when the capture ended, if later than ``table``'s last packet
    (a part of a larger trace).
    """
    convs = conversations.group(table)
    if convs.out_of_order:
        table.stats.warn(f"{convs.out_of_order} packets are earlier than the packet before them in the file; "
                         "replayed in timestamp order")
    threads = resolve(jobs, len(table))
    pk = packet_matrix(table, convs, threads)
    guess = guess_client_direction(pk, convs)
    end = end_ns if end_ns is not None else int(table["ts_ns"].max()) if len(table) else 0
    split = shares(convs.order, convs.conv, threads) if threads > 1 else None
    result = replay.replay(pk, convs.order, convs.count, guess, int(round(time_wait * 1e9)), end, split)
    return Tracking(table, convs, pk, result, time_wait, split, end_ns)
