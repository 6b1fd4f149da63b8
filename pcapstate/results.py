"""The result tables (flows, transitions, packets, retransmissions, retries, anomalies) as columns.

One function per table turns the tracking (:mod:`pcapstate.tracker`), the
Zeek summary (:mod:`pcapstate.zeek`) and the findings
(:mod:`pcapstate.findings`) into a :class:`pcapstate.columns.Table`, without
pandas: :mod:`pcapstate.analysis` makes the documented DataFrames of them, and
the machine-readable writers print them as they are.  Columns, dtypes and
meanings: :mod:`pcapstate.analysis`.
"""
from __future__ import annotations

import numpy as np

from pcapstate import replay as rp
from pcapstate.columns import Categories, Nullable, Objects, Table, Texts, Times, texts
from pcapstate.findings.anomalies import KIND_NAMES
from pcapstate.findings.backoff import PATTERNS
from pcapstate.findings.retransmissions import CLASS_NAMES, KIND_NAMES as SEGMENT_NAMES
from pcapstate.flags import to_tcpdump
from pcapstate.states import CAUSE_NAMES, NOTE_NAMES, SIDE_NAMES, STATE_NAMES, Note
from pcapstate.table import V4_MAPPED_PREFIX, PacketTable, format_address
from pcapstate.zeek import CONN_STATES

HANDSHAKE_NAMES = ("complete", "partial", "none")
FLAG_TEXTS = tuple(to_tcpdump(v) for v in range(0x200)) + ("",)  # code 0x200: no packet, or an assumption
NO_FLAGS = 0x200
NOTE_TEXTS = tuple("" if n == Note.NONE else name for n, name in zip(Note, NOTE_NAMES))


def endpoints(tracking) -> Table:
    """Per connection, the client's and the server's address and port (the first columns of :func:`flows`)."""
    conn, table = tracking.result.connections, tracking.table
    first = conn[:, rp.C_FIRST_ROW]
    client_is_src = tracking.conversations.direction[first] == conn[:, rp.C_CLIENT_DIR]
    src, dst = row_addresses(table, first)
    return Table({
        "client_addr": Texts(np.where(client_is_src, src.codes, dst.codes), src.values),
        "client_port": np.where(client_is_src, table["sport"][first], table["dport"][first]).astype(np.uint16),
        "server_addr": Texts(np.where(client_is_src, dst.codes, src.codes), src.values),
        "server_port": np.where(client_is_src, table["dport"][first], table["sport"][first]).astype(np.uint16),
    })


def flows(tracking, zeek: dict, addresses: Table) -> Table:
    """One row per connection, with each endpoint's final state and Zeek's summary.

    ``addresses``: :func:`endpoints` of the same tracking.
    """
    result, table = tracking.result, tracking.table
    conn, ends, rows = result.connections, result.endpoints, result.rows
    n = len(conn)
    first, last = conn[:, rp.C_FIRST_ROW], conn[:, rp.C_LAST_ROW]
    sides, flow_of_row = rows[:, rp.R_SIDE], rows[:, rp.R_CONN]
    start_ns, end_ns = table["ts_ns"][first], table["ts_ns"][last]
    columns = Table({
        "flow": tracking.flow_numbers(np.arange(n, dtype=np.int64)),
        **addresses.columns,
        "start": Times(start_ns),
        "end": Times(end_ns),
        "start_epoch": start_ns / 1e9,
        "end_epoch": end_ns / 1e9,
        "duration": (end_ns - start_ns) / 1e9,
        "packets": conn[:, rp.C_PACKETS].astype(np.int64),
        "client_packets": np.bincount(flow_of_row[sides == 0], minlength=n)[:n].astype(np.int64),
        "server_packets": np.bincount(flow_of_row[sides == 1], minlength=n)[:n].astype(np.int64),
        "client_state": states(ends[0::2, rp.E_STATE]),
        "server_state": states(ends[1::2, rp.E_STATE]),
        "handshake": Categories(handshake_codes(conn), HANDSHAKE_NAMES),
        "roles_guessed": conn[:, rp.C_GUESSED] == 1,
        "first_frame": table["frame"][first].astype(np.int64),
        "last_frame": table["frame"][last].astype(np.int64),
        "conn_state": Categories(np.asarray(zeek["conn_state_code"], dtype=np.int64), CONN_STATES),
        "history": texts(zeek["history"], keep_object=True),
        "zeek_orig": Categories(np.where(zeek["orig_is_client"], 0, 1), SIDE_NAMES),
        "zeek_split": np.asarray(zeek["split"], dtype=bool),
    })
    columns = insert_files(columns, table, "last_frame", last, "last_")
    return insert_files(columns, table, "last_frame", first, "first_")


def transitions(tracking) -> Table:
    """One row per state change of one endpoint, by flow then time."""
    t, table = tracking.result.transitions, tracking.table
    t = np.take(t, np.lexsort((t[:, rp.T_TS], t[:, rp.T_CONN])), axis=0)  # (lexsort is stable; np.take is ~5x
    # faster than t[order] for a matrix's rows)
    row = t[:, rp.T_ROW]
    has_flags = (row >= 0) & (t[:, rp.T_CAUSE] != rp.CAUSE_ASSUMED)
    flags = table["flags"][np.where(has_flags, row, 0)] if len(table) else np.zeros(len(t), dtype=np.int64)
    columns = Table({
        "flow": tracking.flow_numbers(t[:, rp.T_CONN]),
        "endpoint": Categories(t[:, rp.T_SIDE], SIDE_NAMES),
        "ts": Times(t[:, rp.T_TS]),
        "ts_epoch": t[:, rp.T_TS] / 1e9,
        "frame": frames(table, row),
        "from_state": states(t[:, rp.T_FROM]),
        "to_state": states(t[:, rp.T_TO]),
        "flags": Texts(np.where(has_flags, flags, NO_FLAGS), FLAG_TEXTS),
        "cause": Categories(t[:, rp.T_CAUSE], CAUSE_NAMES),
        "evidence_frame": frames(table, t[:, rp.T_EVIDENCE]),
    })
    return insert_files(columns, table, "frame", row)


def packets(tracking, only: np.ndarray | None = None) -> Table:
    """The packet table with flags in tcpdump notation, the flow, and both states after each packet.

    ``only``: the packet rows to make (in order), such as one connection's; None: every packet."""
    table = tracking.table
    picked = np.arange(len(table), dtype=np.int64) if only is None else np.asarray(only, dtype=np.int64)

    def column(name):
        return table[name] if only is None else np.take(table[name], picked, axis=0)

    rows = tracking.result.rows if only is None else np.take(tracking.result.rows, picked, axis=0)
    src, dst = row_addresses(table, picked)
    ts_ns = column("ts_ns")
    columns = Table({
        "frame": column("frame").astype(np.int64),
        "ts": Times(ts_ns),
        "ts_epoch": ts_ns / 1e9,
        "src_addr": src,
        "src_port": column("sport"),
        "dst_addr": dst,
        "dst_port": column("dport"),
        "flags": Texts(column("flags").astype(np.int64), FLAG_TEXTS),
        "seq": column("seq"),
        "ack": column("ack"),
        "len": column("payload_len").astype(np.int64),
        "win": column("window"),
        "flow": tracking.flow_numbers(rows[:, rp.R_CONN]),
        "sender": Categories(rows[:, rp.R_SIDE], SIDE_NAMES),
        "client_state": states(rows[:, rp.R_CLIENT_STATE]),
        "server_state": states(rows[:, rp.R_SERVER_STATE]),
        "sender_note": Texts(rows[:, rp.R_NOTE_SENDER], NOTE_TEXTS),
        "receiver_note": Texts(rows[:, rp.R_NOTE_RECEIVER], NOTE_TEXTS),
    })
    return insert_files(columns, table, "frame", picked)


def packet_notes(tracking) -> Table:
    """Only the packets whose step was noted: ``frame``, ``sender_note``, ``receiver_note``."""
    rows = tracking.result.rows
    noted = np.flatnonzero((rows[:, rp.R_NOTE_SENDER] != Note.NONE) | (rows[:, rp.R_NOTE_RECEIVER] != Note.NONE))
    return Table({
        "frame": tracking.table["frame"][noted].astype(np.int64),
        "sender_note": Texts(rows[noted, rp.R_NOTE_SENDER], NOTE_TEXTS),
        "receiver_note": Texts(rows[noted, rp.R_NOTE_RECEIVER], NOTE_TEXTS),
    })


def retransmissions(tracking, findings) -> Table:
    """One row per re-sent segment, in time order."""
    table, retx = tracking.table, findings.retransmissions
    rows = np.flatnonzero(retx.klass > 0)
    rows = rows[np.lexsort((table["frame"][rows], table["ts_ns"][rows]))]
    replay_rows = tracking.result.rows
    interval = retx.interval_ns[rows]
    columns = Table({
        "flow": tracking.flow_numbers(replay_rows[rows, rp.R_CONN]),
        "sender": Categories(replay_rows[rows, rp.R_SIDE], SIDE_NAMES),
        "kind": Categories(retx.kind[rows], SEGMENT_NAMES),
        "class": Categories(retx.klass[rows].astype(np.int64) - 1, CLASS_NAMES[1:]),
        "frame": table["frame"][rows].astype(np.int64),
        "ts": Times(table["ts_ns"][rows]),
        "ts_epoch": table["ts_ns"][rows] / 1e9,
        "original_frame": frames(table, retx.original_row[rows]),
        "attempt": retx.attempt[rows],
        "interval": np.where(interval >= 0, interval / 1e9, np.nan),
    })
    return insert_files(columns, table, "frame", rows)


def retries(tracking, findings) -> Table:
    """One row per segment sent more than once: the chain and its backoff."""
    chains, table = findings.chains, tracking.table
    first = np.array([r[0] for r in chains.rows], dtype=np.int64)
    last = np.array([r[-1] for r in chains.rows], dtype=np.int64)
    start, end = table["ts_ns"][first], table["ts_ns"][last]
    intervals = np.empty(len(chains.intervals), dtype=object)
    intervals[:] = [tuple(round(i, 6) for i in x) for x in chains.intervals]
    columns = Table({
        "flow": tracking.flow_numbers(chains.flow),
        "sender": Categories(np.asarray(chains.side), SIDE_NAMES),
        "kind": Categories(np.asarray(chains.kind), SEGMENT_NAMES),
        "original_frame": frames(table, np.where(chains.original_known, first, -1)),
        "first_frame": table["frame"][first].astype(np.int64),
        "last_frame": table["frame"][last].astype(np.int64),
        "sends": np.array([len(r) for r in chains.rows], dtype=np.int64),
        "start": Times(start),
        "span": (end - start) / 1e9,
        "intervals": Objects(intervals),
        "pattern": Categories(_codes_of(chains.pattern, PATTERNS), PATTERNS),
        "initial_rto": np.asarray(chains.initial_rto),
        "answered": np.asarray(chains.answer_row) >= 0,
        "answer_frame": frames(table, chains.answer_row),
    })
    return insert_files(columns, table, "first_frame", first, "first_")


def anomalies(tracking, findings) -> Table:
    """Findings worst first (then by time and flow), each with its one-sentence ``detail``."""
    found, table = findings.anomalies, tracking.table
    row = np.array(found.row, dtype=np.int64)
    columns = anomaly_columns(found, tracking.flow_numbers(found.flow), frames(table, row))
    return sort_anomalies(insert_files(columns, table, "frame", row))


def anomaly_columns(found, flow: np.ndarray, frame: Nullable) -> Table:
    """The anomalies table's columns (not yet ordered) of ``found``, its flows numbered ``flow`` (-1: none)."""
    flow = np.asarray(flow, dtype=np.int64)
    ts = np.array(found.ts, dtype=np.int64)
    detail = np.empty(len(found.detail), dtype=object)
    detail[:] = found.detail
    return Table({
        "flow": Nullable(np.maximum(flow, 0), flow < 0),
        "kind": Categories(np.array(found.kind, dtype=np.int64), KIND_NAMES, ordered=True),
        "endpoint": Categories(np.array(found.endpoint, dtype=np.int64), SIDE_NAMES),
        "ts": Times(ts),
        "ts_epoch": ts / 1e9,
        "frame": frame,
        "detail": Objects(detail),
    })


def sort_anomalies(columns: Table) -> Table:
    """Kind (worst first), then time, then flow with the capture-wide ones last: a stable sort."""
    return in_order("anomalies", columns)


def order_keys(name: str, table: Table) -> list[np.ndarray]:
    """What orders table ``name`` across connections, most significant first.

    Rows of one connection keep their order among themselves (a stable sort),
    so parts of a trace that each hold whole conversations, put together and
    sorted on these, give the whole trace's table.
    """
    if name == "anomalies":
        flow = table["flow"]
        return [table["kind"].codes, table["ts_epoch"], np.where(flow.missing, np.iinfo(np.int64).max, flow.values)]
    if name in ("flows", "transitions"):
        return [table["flow"]]
    if name in ("packets", "packet_notes"):
        return [table["frame"]]
    if name == "retransmissions":
        return [table["ts"].ns, table["frame"]]
    if name == "retries":
        return [table["start"].ns, table["flow"]]
    raise KeyError(f"no table {name!r}")


def in_order(name: str, table: Table) -> Table:
    """``table`` stably sorted on :func:`order_keys` (itself when it is in that order already, as a part's
    flows and transitions are: nothing copied)."""
    keys = order_keys(name, table)
    if _in_order(keys):
        return table
    return table.take(np.lexsort(keys[::-1]))


def _in_order(keys: list[np.ndarray]) -> bool:
    """Whether the rows are sorted on ``keys`` (most significant first) already."""
    tied = None  # rows equal to the one before on the keys so far
    for key in keys:
        key = np.asarray(key)
        if key.dtype.kind == "f" and np.isnan(key).any():
            return False  # (NaN sorts last, but compares neither less nor equal)
        falls = key[1:] < key[:-1]
        if (falls if tied is None else falls & tied).any():
            return False
        tied = key[1:] == key[:-1] if tied is None else tied & (key[1:] == key[:-1])
    return True


def gather(name: str, parts: list[Table]) -> Table:
    """Table ``name`` of a trace from the same table of parts of it (each a set of whole conversations, its
    flows already numbered as in the whole trace), in the order the whole trace's has (:func:`order_keys`)."""
    from pcapstate.columns import concat

    return in_order(name, concat(parts))


# --- column helpers ----------------------------------------------------------------


def states(codes: np.ndarray) -> Categories:
    """State codes (UNKNOWN = -1: missing) as the ordered state categorical."""
    codes = np.asarray(codes, dtype=np.int64)
    return Categories(np.where(codes < 0, -1, codes), STATE_NAMES, ordered=True)


def frames(table: PacketTable, rows: np.ndarray) -> Nullable:
    """Frame numbers of packet-table ``rows``; -1 (no packet) is missing."""
    rows = np.asarray(rows, dtype=np.int64)
    valid = rows >= 0
    values = np.zeros(len(rows), dtype=np.int64)
    if len(table):
        values[valid] = table["frame"][rows[valid]]
    return Nullable(values, ~valid)


def insert_files(columns: Table, table: PacketTable, after: str, rows: np.ndarray, prefix: str = "") -> Table:
    """For a capture set: ``file`` and ``file_frame`` of ``rows`` (-1: none) inserted after column ``after``.

    ``file`` is a categorical of the file names in set order; ``file_frame``
    has the type of the frame column it follows: int64, or nullable where a
    row may have no packet (a timer's transition, a capture-wide anomaly).
    """
    if not table.is_set:
        return columns
    rows = np.asarray(rows, dtype=np.int64)
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    codes = np.where(valid, table["file"][safe].astype(np.int64), -1) if len(table) else np.full(len(rows), -1)
    inside = table["file_frame"][safe].astype(np.int64) if len(table) else np.zeros(len(rows), dtype=np.int64)
    return with_files(columns, tuple(f.name for f in table.files), after, codes, inside, prefix)


def with_files(columns: Table, names: tuple, after: str, codes: np.ndarray, inside: np.ndarray,
               prefix: str = "") -> Table:
    """``file`` (``codes`` into the set's file ``names``, -1: none) and ``file_frame`` inserted after ``after``."""
    valid = codes >= 0
    nullable = isinstance(columns[after], Nullable)
    return columns.insert_after(after, {prefix + "file": Categories(codes, names),
                                        prefix + "file_frame": Nullable(inside, ~valid) if nullable else inside})


def row_addresses(table: PacketTable, rows: np.ndarray) -> tuple[Texts, Texts]:
    """Source and destination addresses of ``rows`` as text, each distinct address formatted once.

    Both columns share one list of distinct addresses.
    """
    raw = [np.ascontiguousarray(np.take(table[c], rows, axis=0) if len(rows) else np.zeros((0, 16), dtype=np.uint8))
           for c in ("src_ip", "dst_ip")]
    both = np.concatenate(raw).view(np.dtype((np.void, 16))).ravel()
    unique, inverse = np.unique(both, return_inverse=True)
    text = tuple(_address_texts(np.frombuffer(unique.tobytes(), dtype=np.uint8).reshape(-1, 16)))
    inverse = inverse.ravel().astype(np.int64)
    return Texts(inverse[:len(rows)], text), Texts(inverse[len(rows):], text)


def _address_texts(addresses: np.ndarray) -> list[str]:
    """16-byte addresses (IPv4 as IPv4-mapped IPv6) as text, IPv4 without the ipaddress module."""
    v4 = (addresses[:, :12] == np.frombuffer(V4_MAPPED_PREFIX, dtype=np.uint8)).all(axis=1)
    out = [""] * len(addresses)
    for k, (a, b, c, d) in zip(np.flatnonzero(v4).tolist(), addresses[v4, 12:].tolist()):
        out[k] = f"{a}.{b}.{c}.{d}"
    for k in np.flatnonzero(~v4).tolist():
        out[k] = format_address(bytes(addresses[k]))
    return out


def handshake_codes(conn: np.ndarray) -> np.ndarray:
    seen = conn[:, rp.C_SEEN]
    both_established = (seen & rp.SEEN_CLIENT_HANDSHAKE != 0) & (seen & rp.SEEN_SERVER_HANDSHAKE != 0)
    saw_open = (seen & (rp.SEEN_SYN | rp.SEEN_SYN_ACK)) != 0
    complete = both_established & (seen & rp.SEEN_SYN != 0) & (seen & rp.SEEN_SYN_ACK != 0)
    return np.where(complete, 0, np.where(saw_open, 1, 2)).astype(np.int64)


def _codes_of(values, names: tuple) -> np.ndarray:
    index = {name: k for k, name in enumerate(names)}
    return np.array([index.get(v, -1) for v in values], dtype=np.int64)
