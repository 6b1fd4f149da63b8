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
from pcapstate.table import PacketTable

DEFAULT_TIME_WAIT_S = 60.0  # 2*MSL as Linux implements it (TCP_TIMEWAIT_LEN)


@dataclass
class Tracking:
    table: PacketTable
    conversations: conversations.Conversations
    packets: np.ndarray  # the replay's input matrix (replay.PK_* columns)
    result: replay.ReplayResult
    time_wait_s: float

    @property
    def capture_start_ns(self) -> int:
        return int(self.table["ts_ns"].min()) if len(self.table) else 0

    @property
    def capture_end_ns(self) -> int:
        return int(self.table["ts_ns"].max()) if len(self.table) else 0


def packet_matrix(table: PacketTable, convs: conversations.Conversations) -> np.ndarray:
    """The replay's (n, N_PK) int64 input: one row per packet-table row."""
    pk = np.empty((len(table), replay.N_PK), dtype=np.int64)
    columns = [np.ascontiguousarray(a, dtype=t) for a, t in (
        (convs.conv, np.int64), (convs.direction, np.uint8), (table["flags"], np.uint16), (table["seq"], np.uint32),
        (table["ack"], np.uint32), (table["payload_len"], np.uint32), (table["ts_ns"], np.int64),
        (table["sport"], np.uint16), (table["dport"], np.uint16))]
    _fill_packet_matrix(pk, *columns)
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
    np.minimum.at(first_pos, conv_in_order, np.arange(len(order)))
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


def track(table: PacketTable, time_wait: float = DEFAULT_TIME_WAIT_S) -> Tracking:
    """Replay every TCP connection of ``table`` from both endpoints.

    ``time_wait`` is 2*MSL in seconds: how long an endpoint stays in TIME_WAIT
    before the timer closes it (when the capture lasts that long).
    """
    convs = conversations.group(table)
    if convs.out_of_order:
        table.stats.warn(f"{convs.out_of_order} packets are earlier than the packet before them in the file; "
                         "replayed in timestamp order")
    pk = packet_matrix(table, convs)
    guess = guess_client_direction(pk, convs)
    end = int(table["ts_ns"].max()) if len(table) else 0
    result = replay.replay(pk, convs.order, convs.count, guess, int(round(time_wait * 1e9)), end)
    return Tracking(table, convs, pk, result, time_wait)
