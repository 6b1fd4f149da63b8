"""``--engine dask``: a capture (set) decoded and replayed on a Dask distributed cluster.

The same analysis as :func:`pcapstate.analyze`, table for table, with the two
heavy stages spread over workers:

1. **Decode.**  Every file of the set is decoded on a worker
   (:func:`pcapstate.decode.read_file`, as the single-process reader does), one
   task per file.  The tables come to the client, which merges them exactly as
   :func:`pcapstate.decode.capture_set.merge` does (file order by first
   record, global ``frame``, ``file``, ``file_frame``), and which keeps the
   merged table: the result is an ordinary :class:`~pcapstate.analysis.Analysis`,
   whose packet table the reports read.
2. **Shuffle.**  Each worker splits its files' packets into partitions by a
   hash of the connection's 4-tuple, the same for both directions (lower
   address:port first, as :mod:`pcapstate.conversations` keys a
   conversation), so every packet of a conversation, and so of its
   connections, lands in one partition.  The parts move worker to worker
   (only the columns the replay reads, with each packet's global row).
3. **Replay.**  Each partition is put in global order, grouped into
   conversations and replayed with the same compiled replay
   (:func:`pcapstate.replay.replay`), with the capture's global end for the
   end-of-capture close.  A connection's replay reads only its own packets, so
   it is the same as in one process.
4. **Gather.**  The partitions' replay arrays come back with their rows and
   connections renumbered to the single-process numbering: connections in order
   of their first packet in the replay order (timestamp, then merged-trace
   order), which is how the replay numbers them; conversations likewise.  The
   merged arrays make a :class:`~pcapstate.tracker.Tracking` equal to the
   single-process one, and the findings (retransmissions, retries and all
   anomalies, including those that look across connections: ``half_open_flood``,
   ``port_reuse``) and the Zeek summary are computed from it on the client, by
   the same code as in one process.

Dask is imported only here, and only when this engine is used.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from pcapstate.table import DecodeStats, PacketTable

# the columns the replay and grouping read; only these travel in the shuffle
REPLAY_COLUMNS = ("ts_ns", "src_ip", "dst_ip", "sport", "dport", "flags", "seq", "ack", "payload_len")


@dataclass
class DaskStats:
    """What the last run measured (for the benchmark): partitions, shuffle volume, per-partition replay."""

    files: int = 0
    partitions: int = 0
    workers: int = 0
    decode_s: float = 0.0
    shuffle_bytes: int = 0  # bytes of packet columns that moved between partitions (parts not already local)
    shuffle_total_bytes: int = 0  # bytes of all parts, local or not
    partition_packets: list = field(default_factory=list)
    partition_replay_s: list = field(default_factory=list)
    wall_s: dict = field(default_factory=dict)


last_stats = DaskStats()


def connect(scheduler: str | None = None, workers: int | None = None, processes: bool = True):
    """A ``distributed.Client``: to ``scheduler`` (an address), else a new local cluster.

    The local cluster has one single-threaded worker process per core
    (``workers`` to change that; ``processes=False`` runs them as threads of
    this process, for tests).
    """
    from distributed import Client

    if scheduler:
        return Client(scheduler)
    # a Client that starts its LocalCluster owns it: closing the client stops the workers
    return Client(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=processes,
                  dashboard_address=":0", silence_logs=50)  # not the heartbeat races of shutdown


def analyze(source, *, scheduler: str | None = None, client=None, partitions: int | None = None,
            decoder: str = "dpkt", time_wait: float = 60.0, zeek_checksums: bool = False, options: bool = True,
            **thresholds):
    """:func:`pcapstate.analyze` on a Dask cluster; returns the same :class:`~pcapstate.analysis.Analysis`.

    ``source``: a path, a list of paths, a directory or a glob (a capture set,
    as for :func:`pcapstate.analyze`).  ``client``: a ``distributed.Client``
    to use; else ``scheduler`` (an address such as ``tcp://host:8786``), else
    a local cluster started for this call (:func:`connect`) and closed after.
    ``partitions``: how many replay partitions (default: the cluster's
    threads).  ``options=False`` decodes without the columns only a packet
    listing prints (:func:`pcapstate.decode.read_capture`): less to move.
    """
    own = client is None
    if own:
        client = connect(scheduler)
    try:
        return _analyze(client, source, partitions, decoder, time_wait, zeek_checksums, thresholds, options)
    finally:
        if own:
            client.close()


def _analyze(client, source, partitions, decoder, time_wait, zeek_checksums, thresholds, options=True):
    from pcapstate.analysis import Analysis, _names_a_set
    from pcapstate.decode.capture_set import CaptureSetError, expand, natural_key
    from pcapstate.errors import DecoderUnavailableError
    from pcapstate.findings.anomalies import Thresholds

    started = time.perf_counter()
    stats = DaskStats()
    is_set = isinstance(source, (list, tuple)) or _names_a_set(source)
    specs = [os.fspath(s) for s in source] if isinstance(source, (list, tuple)) else [os.fspath(source)]
    paths = expand(specs) if is_set else specs
    if not paths:
        raise CaptureSetError("no capture files given")
    stats.files = len(paths)
    stats.workers = len(client.scheduler_info().get("workers", {})) or 1
    nthreads = sum(client.nthreads().values()) or 1
    count = max(1, int(partitions or nthreads))
    stats.partitions = count

    # 1. decode, one task per file; the tables stay on the workers, the client first sees their sizes and times
    decoded = client.map(_decode, paths, [decoder] * len(paths), [is_set] * len(paths), [options] * len(paths),
                         pure=False)
    metas = client.gather(client.map(_meta, decoded, pure=False))
    stats.decode_s = time.perf_counter() - started
    members, problems, errors, kept = [], [], [], []
    for path, future, (kind, payload, first_ns, length, low, high) in zip(paths, decoded, metas):
        if kind == "error":
            if isinstance(payload, DecoderUnavailableError) or not is_set:
                raise payload
            errors.append(payload)
            problems.append(f"{payload}; skipped")
            continue
        members.append((path, future, first_ns, length, low, high))
        kept.append(future)
    if not members:
        if len(errors) == 1:
            raise errors[0]
        shown = "; ".join(str(e) for e in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise CaptureSetError(f"none of the {len(paths)} files is a capture pcapstate can read ({shown})")
    # Files one after the other in time (a rotated set, or one file): a packet's row in the merged trace is its
    # file's offset plus its row in the file, known before the merge, so the replay starts at once and the
    # client merges the tables meanwhile.  Files that overlap in time: merged first, rows read from the merge.
    ordered = sorted(members, key=lambda m: (m[2] is None, m[2] if m[2] is not None else 0, natural_key(m[0])))
    sequential, previous = True, None
    for m in ordered:
        if m[3]:
            if previous is not None and m[4] < previous:
                sequential = False
            previous = m[5]
    count_rows = sum(m[3] for m in members)
    table = None
    if sequential:
        offsets = dict(zip((m[0] for m in ordered), np.cumsum([0] + [m[3] for m in ordered])[:-1].tolist()))
        global_rows = [np.arange(offsets[m[0]], offsets[m[0]] + m[3], dtype=np.int64) for m in members]
    else:
        table = _merged(client, members, is_set, specs, paths, problems)
        file_of_row = table["file"].astype(np.int64)
        index_of = {m[0]: i for i, m in enumerate(members)}
        global_rows = [None] * len(members)
        for f, capture in enumerate(table.files):
            global_rows[index_of[capture.name]] = np.flatnonzero(file_of_row == f)

    # 2. shuffle: each file's packets split by conversation hash, on the worker that decoded it
    end_ns = max((m[5] for m in members if m[3]), default=0)
    two_msl_ns = int(round(time_wait * 1e9))
    row_futures = [client.scatter(rows, workers=_where(client, fut)) for rows, fut in zip(global_rows, kept)]
    splits = [client.submit(_split, fut, rows, count, pure=False) for fut, rows in zip(kept, row_futures)]
    parts = [[client.submit(_pick, s, p, pure=False) for s in splits] for p in range(count)]
    # 3. replay each partition
    replayed = [client.submit(_replay_partition, two_msl_ns, end_ns, *parts[p], pure=False) for p in range(count)]
    if table is None:
        table = _merged(client, members, is_set, specs, paths, problems)
    assert len(table) == count_rows
    stats.wall_s["decode_merge"] = time.perf_counter() - started
    results = client.gather(replayed)
    stats.wall_s["replay"] = time.perf_counter() - started
    sizes = client.gather([client.submit(_part_sizes, s, pure=False) for s in splits])
    who = client.who_has(splits + replayed)
    stats.shuffle_total_bytes = int(sum(sum(s) for s in sizes))
    moved = 0
    for p in range(count):
        target = set(who.get(replayed[p].key, ()))
        for f in range(len(splits)):
            origin = set(who.get(splits[f].key, ()))  # where the file's parts were cut
            if not (origin & target):
                moved += sizes[f][p]
    stats.shuffle_bytes = int(moved)
    stats.partition_packets = [r["packets"] for r in results]
    stats.partition_replay_s = [r["seconds"] for r in results]

    # 4. gather into the single-process numbering
    tracking = _gathered(table, results, time_wait)
    stats.wall_s["gather"] = time.perf_counter() - started
    global last_stats
    last_stats = stats
    return Analysis(tracking, Thresholds(**thresholds), zeek_checksums)


def _merged(client, members, is_set, specs, paths, problems) -> PacketTable:
    """The files' tables brought to the client and merged as the single-process reader merges them."""
    from pcapstate.decode.capture_set import describe, merge

    outcomes = client.gather([m[1] for m in members])
    if not is_set:
        return outcomes[0][1]
    table = merge([(m[0], outcome[1], outcome[2]) for m, outcome in zip(members, outcomes)],
                  describe(specs, len(members), len(paths)))
    table.stats.warnings[:0] = problems
    return table


def _meta(decoded):
    """("ok" or "error", the error, first record's ns, rows, first and greatest timestamp) of a decoded file."""
    kind, payload, first_ns = decoded
    if kind == "error":
        return kind, payload, None, 0, 0, 0
    ts = payload["ts_ns"]
    if len(ts) == 0:
        return kind, None, first_ns, 0, 0, 0
    return kind, None, first_ns, len(ts), int(ts[0]), int(ts.max())


def _where(client, future):
    holders = client.who_has([future]).get(future.key, ())
    return list(holders) or None


# --- worker tasks -----------------------------------------------------------------


def _decode(path: str, decoder: str, in_set: bool, options: bool = True):
    """One file decoded as the single-process reader decodes it: ("ok", table, first record's ns) or ("error", exc, None)."""
    from pcapstate.errors import PcapstateError

    try:
        if in_set:
            from pcapstate.decode import read_file
            from pcapstate.decode.capture_set import _first_record_ns

            table, content = read_file(path, decoder, options=options)
            return "ok", table, _first_record_ns(content, table)
        from pcapstate.decode import read_capture

        return "ok", read_capture(path, decoder=decoder, options=options), None
    except PcapstateError as error:
        return "error", error, None


def partition_of(table: PacketTable, count: int) -> np.ndarray:
    """Per row, its partition: a hash of the unordered 4-tuple (both directions of a conversation agree)."""
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    src = np.ascontiguousarray(table["src_ip"]).view(np.uint64)
    dst = np.ascontiguousarray(table["dst_ip"]).view(np.uint64)
    sport = table["sport"].astype(np.uint64)
    dport = table["dport"].astype(np.uint64)
    forward = (src[:, 0] < dst[:, 0]) | ((src[:, 0] == dst[:, 0]) & (
        (src[:, 1] < dst[:, 1]) | ((src[:, 1] == dst[:, 1]) & (sport <= dport))))
    a0, a1, ap = np.where(forward, src[:, 0], dst[:, 0]), np.where(forward, src[:, 1], dst[:, 1]), np.where(forward, sport, dport)
    b0, b1, bp = np.where(forward, dst[:, 0], src[:, 0]), np.where(forward, dst[:, 1], src[:, 1]), np.where(forward, dport, sport)
    h = np.full(len(table), 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for value in (a0, a1, ap, b0, b1, bp):
            h = (h ^ value) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(31)
    return (h % np.uint64(count)).astype(np.int64)


def _split(decoded, global_rows: np.ndarray, count: int):
    """A file's packets in ``count`` parts: (global rows, replay columns) each."""
    table = decoded[1]
    part = partition_of(table, count)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(count + 1))
    parts = []
    for p in range(count):
        pick = order[bounds[p]:bounds[p + 1]]
        parts.append((global_rows[pick], {name: table[name][pick] for name in REPLAY_COLUMNS}))
    return parts


def _pick(parts, p: int):
    return parts[p]


def _part_sizes(parts) -> list[int]:
    return [rows.nbytes + sum(c.nbytes for c in columns.values()) for rows, columns in parts]


def _replay_partition(two_msl_ns: int, end_ns: int, *parts):
    """Replay one partition's packets: the arrays of :func:`pcapstate.replay.replay`, rows and connections global."""
    from pcapstate import conversations, replay
    from pcapstate.tracker import guess_client_direction, packet_matrix

    started = time.perf_counter()
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    columns = {name: np.concatenate([p[1][name] for p in parts])[order] for name in REPLAY_COLUMNS}
    columns["frame"] = rows  # only its length is read
    table = PacketTable(columns, DecodeStats(), "")
    convs = conversations.group(table)
    pk = packet_matrix(table, convs)
    guess = guess_client_direction(pk, convs)
    result = replay.replay(pk, convs.order, convs.count, guess, two_msl_ns, end_ns)
    conn = result.connections
    first_local = conn[:, replay.C_FIRST_ROW].copy()
    for column in (replay.C_FIRST_ROW, replay.C_LAST_ROW):
        conn[:, column] = rows[conn[:, column]]
    trans = result.transitions
    for column in (replay.T_ROW, replay.T_EVIDENCE):
        valid = trans[:, column] >= 0
        trans[valid, column] = rows[trans[valid, column]]
    # each connection's first row's position in this partition's replay order, and its conversation's first row
    return {
        "rows": rows,
        "replay": result.rows,
        "connections": conn,
        "endpoints": result.endpoints,
        "transitions": trans,
        "conv": convs.conv.astype(np.int64),
        "direction": convs.direction,
        "first_local": first_local,
        "packets": len(rows),
        "seconds": time.perf_counter() - started,
    }


# --- gather -----------------------------------------------------------------------------


def _gathered(table: PacketTable, results: list[dict], time_wait: float):
    """The partitions' replay results as one :class:`~pcapstate.tracker.Tracking`, numbered as in one process."""
    from pcapstate import conversations, replay
    from pcapstate.jobs import AUTO, resolve, shares
    from pcapstate.tracker import Tracking, packet_matrix

    n = len(table)
    order, backwards = conversations.replay_order(table["ts_ns"])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n, dtype=np.int64)

    # conversations: numbered by the replay position of their first packet
    conv = np.empty(n, dtype=np.int64)
    direction = np.empty(n, dtype=np.uint8)
    conv_first, conv_base = [], 0
    for r in results:
        local_count = int(r["conv"].max()) + 1 if len(r["conv"]) else 0
        first = np.full(local_count, n, dtype=np.int64)
        np.minimum.at(first, r["conv"], position[r["rows"]])
        conv_first.append(first)
        r["conv_base"] = conv_base
        conv_base += local_count
    firsts = np.concatenate(conv_first) if conv_first else np.zeros(0, np.int64)
    conv_rank = np.empty(len(firsts), dtype=np.int64)
    conv_rank[np.argsort(firsts, kind="stable")] = np.arange(len(firsts))
    for r in results:
        conv[r["rows"]] = conv_rank[r["conv_base"] + r["conv"]]
        direction[r["rows"]] = r["direction"]
    convs = conversations.Conversations(conv, direction, order, len(firsts), backwards)
    if backwards:
        table.stats.warn(f"{backwards} packets are earlier than the packet before them in the file; "
                         "replayed in timestamp order")

    # connections: numbered by the replay position of their first packet
    conn_all = np.concatenate([r["connections"] for r in results]) if results else np.zeros((0, replay.N_C), np.int64)
    conn_rank = np.empty(len(conn_all), dtype=np.int64)
    conn_rank[np.argsort(position[conn_all[:, replay.C_FIRST_ROW]], kind="stable")] = np.arange(len(conn_all))
    connections = np.empty_like(conn_all)
    connections[conn_rank] = conn_all
    connections[:, replay.C_CONV] = conv[connections[:, replay.C_FIRST_ROW]] if len(connections) else 0
    endpoints = np.empty((2 * len(conn_all), replay.N_E), dtype=np.int64)
    rows = np.full((n, replay.N_R), replay.NO_VALUE, dtype=replay.ROWS_DTYPE)
    transitions = []
    base = 0
    for r in results:
        k = len(r["connections"])
        new = conn_rank[base:base + k]
        local = r["replay"].copy()
        has = local[:, replay.R_CONN] >= 0
        local[has, replay.R_CONN] = new[local[has, replay.R_CONN]]
        rows[r["rows"]] = local
        endpoints[2 * new] = r["endpoints"][0::2]
        endpoints[2 * new + 1] = r["endpoints"][1::2]
        t = r["transitions"].copy()
        t[:, replay.T_CONN] = new[t[:, replay.T_CONN]]
        transitions.append(t)
        base += k
    trans = np.concatenate(transitions) if transitions else np.zeros((0, replay.N_T), np.int64)
    trans = trans[np.argsort(trans[:, replay.T_CONN], kind="stable")]  # each connection's own order kept
    result = replay.ReplayResult(rows, connections, endpoints, trans)
    # the passes over connections that follow on this machine (Zeek, retransmissions) use its cores
    threads = resolve(AUTO, n)
    return Tracking(table, convs, packet_matrix(table, convs, threads), result, time_wait,
                    shares(order, conv, threads) if threads > 1 else None)
