"""Group the packet table's rows by their unordered 4-tuple ("conversation").

A conversation is every packet between one (address, port) pair and another,
in either direction.  Connections are a finer split, made by the replay: one
conversation holds several connections when a port is reused.  Everything here
is vectorised over the packet table (no per-packet Python).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate.table import PacketTable


@dataclass
class Conversations:
    """Per packet row: its conversation id and direction; the replay order."""

    conv: np.ndarray  # int64 per row: conversation id, 0.. in order of first packet
    direction: np.ndarray  # uint8 per row: 0 = from the conversation's first sender, 1 = back
    order: np.ndarray  # int64: row indices in replay order (timestamp, then file order)
    count: int  # number of conversations
    out_of_order: int  # rows whose timestamp is earlier than the previous row's


def endpoint_keys(table: PacketTable) -> tuple[np.ndarray, np.ndarray]:
    """(n, 18) uint8 keys of the source and destination endpoints: address + port (big-endian)."""
    n = len(table)
    src = np.empty((n, 18), dtype=np.uint8)
    dst = np.empty((n, 18), dtype=np.uint8)
    src[:, :16] = table["src_ip"]
    dst[:, :16] = table["dst_ip"]
    src[:, 16:] = table["sport"].astype(">u2").view(np.uint8).reshape(n, 2)
    dst[:, 16:] = table["dport"].astype(">u2").view(np.uint8).reshape(n, 2)
    return src, dst


def replay_order(ts_ns: np.ndarray) -> tuple[np.ndarray, int]:
    """Row indices sorted by timestamp (stable: file order among equal times)."""
    n = len(ts_ns)
    backwards = int(np.count_nonzero(ts_ns[1:] < ts_ns[:-1])) if n > 1 else 0
    if backwards == 0:
        return np.arange(n, dtype=np.int64), 0
    return np.argsort(ts_ns, kind="stable").astype(np.int64), backwards


def group(table: PacketTable) -> Conversations:
    """Conversation id and direction of every row, and the replay order."""
    n = len(table)
    order, backwards = replay_order(table["ts_ns"])
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Conversations(empty, np.zeros(0, dtype=np.uint8), empty, 0, 0)
    src, dst = endpoint_keys(table)
    src_first = _lexicographic_less_equal(src, dst)
    low = np.where(src_first[:, None], src, dst)
    high = np.where(src_first[:, None], dst, src)
    pair = np.ascontiguousarray(np.concatenate([low, high], axis=1)).view(np.dtype((np.void, 36))).ravel()
    _, first_index, inverse = np.unique(pair, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    # Number conversations by their first packet in replay order, so ids read in time order.
    rank_in_replay = np.empty(n, dtype=np.int64)
    rank_in_replay[order] = np.arange(n, dtype=np.int64)
    first_seen = np.full(len(first_index), n, dtype=np.int64)
    np.minimum.at(first_seen, inverse, rank_in_replay)
    renumber = np.empty(len(first_index), dtype=np.int64)
    renumber[np.argsort(first_seen, kind="stable")] = np.arange(len(first_index), dtype=np.int64)
    conv = renumber[inverse]
    # Direction 0 is whichever endpoint sent the conversation's first packet.
    first_row = order[np.sort(first_seen)]
    first_sender_is_low = src_first[first_row]
    direction = (src_first != first_sender_is_low[conv]).astype(np.uint8)
    return Conversations(conv, direction, order, len(first_index), backwards)


def _lexicographic_less_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``a <= b`` comparing byte rows as big-endian numbers."""
    differs = a != b
    any_diff = differs.any(axis=1)
    first = np.argmax(differs, axis=1)
    rows = np.arange(len(a))
    return ~any_diff | (a[rows, first] < b[rows, first])
