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
    n = len(table)
    pk = np.empty((n, replay.N_PK), dtype=np.int64)
    pk[:, replay.PK_CONV] = convs.conv
    pk[:, replay.PK_DIR] = convs.direction
    pk[:, replay.PK_FLAGS] = table["flags"]
    pk[:, replay.PK_SEQ] = table["seq"]
    pk[:, replay.PK_ACK] = table["ack"]
    pk[:, replay.PK_LEN] = table["payload_len"]
    pk[:, replay.PK_TS] = table["ts_ns"]
    pk[:, replay.PK_SPORT] = table["sport"]
    pk[:, replay.PK_DPORT] = table["dport"]
    return pk


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
