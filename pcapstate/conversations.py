"""Group the packet table's rows by their unordered 4-tuple ("conversation").

A conversation is every packet between one (address, port) pair and another,
in either direction.  Connections are a finer split, made by the replay: one
conversation holds several connections when a port is reused.  Everything here
is vectorised over the packet table (no per-packet Python).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcapstate.jit import entry, njit
from pcapstate.table import PacketTable


@dataclass
class Conversations:
    """Per packet row: its conversation id and direction; the replay order."""

    conv: np.ndarray  # int64 per row: conversation id, 0.. in order of first packet
    direction: np.ndarray  # uint8 per row: 0 = from the conversation's first sender, 1 = back
    order: np.ndarray  # int64: row indices in replay order (timestamp, then file order)
    count: int  # number of conversations
    out_of_order: int  # rows whose timestamp is earlier than the previous row's


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
    src = np.ascontiguousarray(table["src_ip"]).view(np.uint64)
    dst = np.ascontiguousarray(table["dst_ip"]).view(np.uint64)
    sport = table["sport"].astype(np.int64)
    dport = table["dport"].astype(np.int64)
    # The hash table holds conversations, not packets: sized for a guess (a sixteenth of the packets), and
    # when that guess is too small the pass stops and runs again with a table four times as large.
    bits = max(4, int(2 * max(n // 16, 1) - 1).bit_length())
    with np.errstate(over="ignore"):  # the hash wraps around 2**64 on purpose (plain-Python mode warns)
        while True:
            conv, direction, count = _assign(src, dst, sport, dport, order, bits)
            if count >= 0:
                return Conversations(conv, direction, order, int(count), backwards)
            bits += 2


@njit
def _mix(h, value):
    """One step of a 64-bit hash (splitmix-style multiply and xor-shift)."""
    h = (h ^ value) * np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(31))


@njit
def _key_hash(a0, a1, ap, b0, b1, bp):
    h = np.uint64(0x243F6A8885A308D3)
    for value in (a0, a1, np.uint64(ap), b0, b1, np.uint64(bp)):
        h = _mix(h, value)
    return h


@njit
def _conversation_hash(s0, s1, sp, d0, d1, dp):
    """The key hash of a packet's 4-tuple, lower endpoint first: one hash for both directions."""
    if (s0, s1, sp) <= (d0, d1, dp):
        return _key_hash(s0, s1, sp, d0, d1, dp)
    return _key_hash(d0, d1, dp, s0, s1, sp)


def parts(table: PacketTable, count: int) -> np.ndarray:
    """Per row, which of ``count`` parts its conversation goes to (uint16): the conversation key's hash
    (both directions agree) modulo ``count``.  :mod:`pcapstate.partitions` cuts a trace by it."""
    if len(table) == 0:
        return np.zeros(0, dtype=np.uint16)
    src = np.ascontiguousarray(table["src_ip"]).view(np.uint64)
    dst = np.ascontiguousarray(table["dst_ip"]).view(np.uint64)
    sport = np.ascontiguousarray(table["sport"], dtype=np.uint16)
    dport = np.ascontiguousarray(table["dport"], dtype=np.uint16)
    with np.errstate(over="ignore"):  # the hash wraps around 2**64 on purpose (plain-Python mode warns)
        return _parts(src, dst, sport, dport, count)


@entry("u8[:, ::1]", "u8[:, ::1]", "u2[::1]", "u2[::1]", "i8")
def _parts(src, dst, sport, dport, count):
    n = sport.shape[0]
    part = np.empty(n, dtype=np.uint16)
    for i in range(n):
        h = _conversation_hash(src[i, 0], src[i, 1], sport[i], dst[i, 0], dst[i, 1], dport[i])
        part[i] = np.uint16(h % np.uint64(count))
    return part


@entry("u8[:, ::1]", "u8[:, ::1]", "i8[::1]", "i8[::1]", "i8[::1]", "i8")
def _assign(src, dst, sport, dport, order, bits):
    """Per row: conversation id (0.. in first-seen order) and direction (0: the first sender's).

    An open-addressing hash table of conversation ids; each conversation keeps the
    row of its first packet, whose fields are its key.  Once the table is half
    full the pass gives up, with a count of -1: the caller runs it again with
    a larger one (``bits``: the table has ``2**bits`` slots).
    """
    n = order.shape[0]
    mask = (1 << bits) - 1
    table = np.full(1 << bits, -1, dtype=np.int64)
    first_row = np.empty(n, dtype=np.int64)
    conv = np.empty(n, dtype=np.int64)
    direction = np.zeros(n, dtype=np.uint8)
    count = 0
    limit = (1 << bits) // 2
    for i in range(n):
        row = order[i]
        s0, s1, d0, d1, sp, dp = src[row, 0], src[row, 1], dst[row, 0], dst[row, 1], sport[row], dport[row]
        h = _conversation_hash(s0, s1, sp, d0, d1, dp)
        slot = np.int64(h & np.uint64(mask))
        while True:
            c = table[slot]
            if c < 0:
                if count == limit:
                    return conv, direction, -1
                table[slot] = count
                first_row[count] = row
                conv[row] = count
                count += 1
                break
            f = first_row[c]
            if src[f, 0] == s0 and src[f, 1] == s1 and sport[f] == sp and dst[f, 0] == d0 \
                    and dst[f, 1] == d1 and dport[f] == dp:
                conv[row] = c  # same direction as the first packet
                break
            if src[f, 0] == d0 and src[f, 1] == d1 and sport[f] == dp and dst[f, 0] == s0 \
                    and dst[f, 1] == s1 and dport[f] == sp:
                conv[row] = c
                direction[row] = 1
                break
            slot = (slot + 1) & mask
    return conv, direction, count
