"""``--engine dask``: a capture (set) analyzed on a Dask distributed cluster.

The same analysis as :func:`pcapstate.analyze`, table for table, with the
work on the workers and the client only gathering:

1. **Decode.**  Every file of the set is decoded on a worker
   (:func:`pcapstate.decode.read_file`, as the single-process reader does), one
   task per file.  Only each file's size, times and statistics come to the
   client, which orders the files as :func:`pcapstate.decode.capture_set.merge`
   does: for files one after the other in time (a rotated set), a packet's
   global row and frame are its file's offsets plus its own.  Files that
   overlap in time are merged on the client first (rows interleave), and the
   global rows and frames read from the merge.
2. **Shuffle.**  Each worker splits its files' packets into partitions by a
   hash of the connection's 4-tuple, the same for both directions (lower
   address:port first, as :mod:`pcapstate.conversations` keys a
   conversation), so every packet of a conversation, and so of its
   connections, lands in one partition.  The parts (every column the analysis
   reads, with the global row, frame, file and file frame) move worker to
   worker.
3. **Analyze each partition.**  Its packets in global order make a packet
   table that is replayed (:func:`pcapstate.tracker.track`, the same compiled
   replay) with the trace's end for the end-of-capture close, and analyzed as
   a part of the trace (:class:`pcapstate.analysis.Analysis` with
   ``whole_trace=False``).  A connection's replay, Zeek summary and findings
   read only its own conversation's packets, so each is what one process
   finds.
4. **Number.**  The client ranks every connection by its first packet in the
   replay order of the whole trace (timestamp, then global row), which is how
   one process numbers them, and sends each partition its connections' numbers.
5. **Tables.**  Each partition builds the tables with those numbers (the
   sentences too), and the client puts the parts together in each table's
   order (:func:`pcapstate.results.gather`).  The one finding that looks
   across conversations, ``half_open_flood``, is made on the client from the
   partitions' half-open connections
   (:func:`pcapstate.findings.anomalies.flood`).  With a Parquet directory
   (``--format parquet -o DIR``) the workers write their parts of each table
   themselves, as partitioned datasets, and nothing is gathered.

The client never holds the packets unless asked (``keep_table``): the
analysis it returns is a :class:`pcapstate.analysis.GatheredAnalysis`.
Dask is imported only here, and only when this engine is used.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from pcapstate import partitions as parts_of  # (``partitions`` is a parameter here)
from pcapstate.table import DecodeStats, PacketTable

ALL_TABLES = ("flows", "transitions", "packets", "packet_notes", "retransmissions", "retries", "anomalies")


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
    partition_tables_s: list = field(default_factory=list)  # findings and tables
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
    # Dask's default start method, spawn: worker processes forked from this multi-threaded one (the cluster's
    # event loop runs on a thread) started 1.3 s sooner, but a second cluster in one process hung for good.
    # a Client that starts its LocalCluster owns it: closing the client stops the workers
    return Client(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=processes,
                  dashboard_address=":0", silence_logs=50)  # not the heartbeat races of shutdown


def analyze(source, *, scheduler: str | None = None, client=None, partitions: int | None = None,
            decoder: str = "dpkt", time_wait: float = 60.0, zeek_checksums: bool = False, options: bool = True,
            tables=ALL_TABLES, keep_table: bool = True, parquet: str | None = None, **thresholds):
    """:func:`pcapstate.analyze` on a Dask cluster: a :class:`~pcapstate.analysis.GatheredAnalysis`.

    ``source``: a path, a list of paths, a directory or a glob (a capture set,
    as for :func:`pcapstate.analyze`).  ``client``: a ``distributed.Client``
    to use; else ``scheduler`` (an address such as ``tcp://host:8786``), else
    a local cluster started for this call (:func:`connect`) and closed after.
    ``partitions``: how many replay partitions (default: the cluster's
    threads).  ``options=False`` decodes without the columns only a packet
    listing prints (:func:`pcapstate.decode.read_capture`): less to move.
    ``tables``: which tables the workers build and the client gathers (the
    packets table is as long as the capture).  ``keep_table``: also bring
    the packet table to the client (``analysis.table``); without it,
    ``analysis.table`` is only its outline (source, statistics, files, length).
    ``parquet``: a directory where the workers write ``tables`` as partitioned
    Parquet datasets, ``<table>.parquet/part-NNNNN.parquet``, one part per
    partition (rows in the table's order within a part; the flood findings in
    a part of their own); nothing is gathered then.  The workers must see the
    directory (a local cluster, or a shared filesystem).
    """
    own = client is None
    if own:
        client = connect(scheduler)
    try:
        return _analyze(client, source, partitions, decoder, time_wait, zeek_checksums, thresholds, options,
                        tuple(tables), keep_table, parquet)
    finally:
        if own:
            client.close()


@dataclass
class _Member:
    """A decoded file as the client knows it: where its table is, and what :func:`_meta` said of it."""

    path: str
    future: object
    first_ns: int | None  # its first record's timestamp: the set's order
    rows: int
    low: int  # its first TCP packet's timestamp
    high: int  # its latest TCP packet's timestamp
    records: int
    stats: DecodeStats
    backwards: int  # packets earlier than the one before them in the file


def _analyze(client, source, partitions, decoder, time_wait, zeek_checksums, thresholds, options=True,
             tables=ALL_TABLES, keep_table=True, parquet=None):
    from pcapstate.analysis import GatheredAnalysis, _names_a_set
    from pcapstate.decode.capture_set import CaptureSetError, describe, expand
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
    count = max(1, int(partitions or sum(client.nthreads().values()) or 1))
    stats.partitions = count
    limits = Thresholds(**thresholds)

    # 1. decode, one task per file; the tables stay on the workers, the client sees their sizes, times and stats
    ordered, problems = _decoded(client, paths, decoder, is_set, options)
    stats.decode_s = time.perf_counter() - started
    source_name = describe(specs, len(ordered), len(paths)) if is_set else paths[0]
    placed = _placed(client, ordered, source_name, is_set, problems)
    # 2. shuffle: each file's packets split by conversation hash, on the worker that decoded it
    splits = [client.submit(_split, m.future, rows, frames, f if is_set else None, count, pure=False)
              for f, (m, (rows, frames)) in enumerate(zip(ordered, placed.where))]
    parts = [[client.submit(_pick, s, p, pure=False) for s in splits] for p in range(count)]
    # 3. replay and analyze each partition as a part of the trace
    setting = {"source": source_name, "files": placed.outline.files, "time_wait": time_wait, "thresholds": limits,
               "end_ns": max((m.high for m in ordered if m.rows), default=0), "zeek_checksums": zeek_checksums}
    analyzed = [client.submit(parts_of.analyze_partition, setting, *parts[p], pure=False) for p in range(count)]
    table = placed.table
    if keep_table and table is None:
        table = _merged(client, ordered, source_name, is_set)
        table.stats = placed.outline.stats
    # 4. number the connections as one process does
    keys = client.gather([client.submit(parts_of.connection_keys, a, pure=False) for a in analyzed])
    stats.wall_s["replay"] = time.perf_counter() - started
    # 5. the tables, built on the workers with those numbers, put together here (or written there)
    names = tuple(m.path for m in ordered) if is_set else ()
    gathered, built = _tables(client, analyzed, parts_of.numbers(keys), tables, parquet, limits, names, stats, started)
    _shuffle_stats(client, stats, splits, analyzed, count)
    stats.partition_packets = [b["packets"] for b in built]
    stats.partition_replay_s = [b["replay_s"] for b in built]
    stats.partition_tables_s = [b["tables_s"] for b in built]
    global last_stats
    last_stats = stats
    return GatheredAnalysis(table if keep_table else placed.outline, gathered, limits, zeek_checksums,
                            placed.read_warnings)


def _decoded(client, paths: list[str], decoder: str, is_set: bool, options: bool) -> tuple[list[_Member], list]:
    """Every file decoded on a worker: those read, in set order (as ``capture_set.merge`` orders them), and
    a warning for each file skipped.  As in one process, a lone file that cannot be read is an error, as
    is a set of which none can."""
    from pcapstate.decode.capture_set import CaptureSetError, natural_key
    from pcapstate.errors import DecoderUnavailableError

    decoded = client.map(_decode, paths, [decoder] * len(paths), [is_set] * len(paths), [options] * len(paths),
                         pure=False)
    metas = client.gather(client.map(_meta, decoded, pure=False))
    members, problems, errors = [], [], []
    for path, future, meta in zip(paths, decoded, metas):
        if meta[0] == "error":
            if isinstance(meta[1], DecoderUnavailableError) or not is_set:
                raise meta[1]
            errors.append(meta[1])
            problems.append(f"{meta[1]}; skipped")
            continue
        members.append(_Member(path, future, *meta[2:]))
    if not members:
        if len(errors) == 1:
            raise errors[0]
        shown = "; ".join(str(e) for e in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise CaptureSetError(f"none of the {len(paths)} files is a capture pcapstate can read ({shown})")
    members.sort(key=lambda m: (m.first_ns is None, m.first_ns if m.first_ns is not None else 0,
                                natural_key(m.path)))
    return members, problems


@dataclass
class _Placement:
    """Where each file's packets go in the whole trace, and what is known of it before any replay."""

    where: list  # per file: (first global row, frames to add), or (its global rows, its global frames)
    outline: object  # TableOutline: the trace's source, statistics and warnings, files, length
    read_warnings: int  # how many of the warnings are the files' own (the rest: the replay's)
    table: PacketTable | None  # the merged table, when the files had to be merged to place them


def _placed(client, ordered: list[_Member], source: str, is_set: bool, problems: list[str]) -> _Placement:
    """Files one after the other in time (a rotated set, or one file): a packet's global row and frame are
    its file's offsets plus its own, known now.  Files that overlap: merged here first, rows and frames
    read from the merge."""
    from pcapstate import conversations
    from pcapstate.decode.capture_set import set_stats
    from pcapstate.table import TableOutline

    table = None
    if parts_of.one_after_another(ordered):
        row_at = np.cumsum([0] + [m.rows for m in ordered]).tolist()
        frame_at = np.cumsum([0] + [m.records for m in ordered]).tolist()
        where = list(zip(row_at, frame_at))[:len(ordered)]
        backwards = sum(m.backwards for m in ordered)
        if is_set:
            stats, files = set_stats([(m.path, m.stats, m.records, m.rows, m.first_ns) for m in ordered])
        else:
            stats, files = ordered[0].stats, ()
    else:
        table = _merged(client, ordered, source, is_set)
        file_of_row = table["file"].astype(np.int64)
        where = []
        for f, member in enumerate(ordered):
            rows = np.flatnonzero(file_of_row == f)
            holders = _where(client, member.future)
            where.append((client.scatter(rows, workers=holders), client.scatter(table["frame"][rows], workers=holders)))
        backwards = conversations.replay_order(table["ts_ns"])[1]
        stats, files = table.stats, table.files
    stats.warnings[:0] = problems
    read_warnings = len(stats.warnings)
    if backwards:
        stats.warn(f"{backwards} packets are earlier than the packet before them in the file; "
                   "replayed in timestamp order")
    return _Placement(where, TableOutline(sum(m.rows for m in ordered), stats, source, files), read_warnings, table)


def _tables(client, analyzed: list, numbers: list[np.ndarray], tables: tuple, parquet: str | None, limits,
            names: tuple, stats: DaskStats, started: float) -> tuple[dict, list[dict]]:
    """The tables built on the workers with the connections' numbers: gathered and put together here, or
    (``parquet``: a directory) written there as partitioned datasets, with the flood findings' part
    written here.  Returns the gathered tables (none for parquet) and what each partition reported."""
    datasets = None
    if parquet is not None:
        from pcapstate.report.formats import parquet_datasets

        datasets = parquet_datasets(tables, parquet)
    built = client.gather([client.submit(parts_of.partition_tables, a, n, tables, datasets, p, pure=False)
                           for p, (a, n) in enumerate(zip(analyzed, numbers))])
    stats.wall_s["tables"] = time.perf_counter() - started
    gathered = {}
    if datasets is None:
        gathered = _gathered_tables(built, tables, limits, names)
    elif "anomalies" in tables:
        from pcapstate.report.formats import write_parquet_part
        from pcapstate.results import sort_anomalies

        floods = sort_anomalies(parts_of.floods([b["half_open"] for b in built], limits, names))
        write_parquet_part(floods, datasets["anomalies"], len(analyzed))
    stats.wall_s["gather"] = time.perf_counter() - started
    return gathered, built


def _merged(client, ordered: list[_Member], source: str, is_set: bool) -> PacketTable:
    """The files' tables brought to the client and merged as the single-process reader merges them."""
    from pcapstate.decode.capture_set import merge

    outcomes = client.gather([m.future for m in ordered])
    if not is_set:
        return outcomes[0][1]
    return merge([(m.path, outcome[1], outcome[2]) for m, outcome in zip(ordered, outcomes)], source)


def _gathered_tables(built: list[dict], tables: tuple, limits, names: tuple) -> dict:
    """Per table, how to put it together from the partitions' parts (the anomalies with the flood finding
    added): done when the table is first read, so a writer prints one while the next is assembled."""
    from pcapstate import results
    from pcapstate.columns import unpacked

    def assemble(name: str):
        parts = [unpacked(b["tables"][name]) for b in built]
        if name == "anomalies":
            parts.append(parts_of.floods([b["half_open"] for b in built], limits, names))
        return results.gather(name, parts)

    return {name: (lambda name=name: assemble(name)) for name in tables}


def _shuffle_stats(client, stats: DaskStats, splits: list, analyzed: list, count: int) -> None:
    """Bytes of packet columns cut into partitions, and of those that moved to another worker."""
    sizes = client.gather([client.submit(_part_sizes, s, pure=False) for s in splits])
    who = client.who_has(splits + analyzed)
    stats.shuffle_total_bytes = int(sum(sum(s) for s in sizes))
    moved = 0
    for p in range(count):
        target = set(who.get(analyzed[p].key, ()))
        for f in range(len(splits)):
            if not (set(who.get(splits[f].key, ())) & target):  # cut on another worker than the one that analyzed
                moved += sizes[f][p]
    stats.shuffle_bytes = int(moved)


def _meta(decoded):
    """What the client needs of a decoded file: ("ok" or "error", the error, then :class:`_Member`'s fields)."""
    kind, payload, first_ns = decoded
    if kind == "error":
        return kind, payload, None, 0, 0, 0, 0, DecodeStats(), 0
    ts = payload["ts_ns"]
    frame = payload["frame"]
    records = max(payload.stats.records, int(frame[-1]) if len(frame) else 0)
    if len(ts) == 0:
        return kind, None, first_ns, 0, 0, 0, records, payload.stats, 0
    backwards = int(np.count_nonzero(ts[1:] < ts[:-1]))
    return kind, None, first_ns, len(ts), int(ts[0]), int(ts.max()), records, payload.stats, backwards


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


def _split(decoded, rows, frames, file_index: int | None, count: int) -> list:
    """A decoded file's packets in ``count`` parts (:func:`pcapstate.partitions.split`)."""
    return parts_of.split(decoded[1], rows, frames, file_index, count)


def _pick(parts, p: int):
    return parts[p]


def _part_sizes(parts) -> list[int]:
    return [rows.nbytes + sum(c.nbytes for c in columns.values()) for rows, columns in parts]


