"""A trace cut into parts by conversation, each part analyzed on its own, the parts put back together.

The pieces both out-of-one-process engines share: :mod:`pcapstate.dask_engine`
(parts on a cluster's workers) and :mod:`pcapstate.streaming` (parts spilled to
disk and analyzed one after the other, for captures longer than memory).

1. :func:`partition_of` / :func:`split`: every packet of a conversation (both
   directions, and so every connection of it) goes to one part, by a hash of
   its unordered 4-tuple.  A packet keeps its global row (its place in the
   whole trace's packet table) and its global frame.
2. :func:`analyze_partition`: a part's packets in global order, replayed with
   the trace's end and analyzed as a part of the trace (``whole_trace=False``).
3. :func:`connection_keys` and :func:`numbers`: every connection ranked by its
   first packet (timestamp, then global row), which is how one process numbers
   them.
4. :func:`partition_tables`: a part's tables with those numbers, and its
   half-open connections, from which :func:`floods` makes the one finding that
   looks across conversations (``half_open_flood``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pcapstate.table import DecodeStats, PacketTable


def partition_of(table: PacketTable, count: int) -> np.ndarray:
    """Per row, its partition (uint16): a hash of the unordered 4-tuple (both directions of a conversation
    agree), compiled (:func:`pcapstate.conversations.parts`)."""
    from pcapstate.conversations import parts

    if not 0 < count <= np.iinfo(np.uint16).max:
        raise ValueError(f"{count} partitions: 1 to 65,535")
    return parts(table, count)


def split(table: PacketTable, rows, frames, file_index: int | None, count: int) -> list:
    """A file's packets in ``count`` parts: (global rows, columns with global ``frame`` [and ``file``,
    ``file_frame`` in a set]) each.  ``rows`` and ``frames``: the global ones, or the offsets to add."""
    n = len(table)
    if np.ndim(rows) == 0:
        rows = np.arange(rows, rows + n, dtype=np.int64)
        frames = table["frame"].astype(np.int64) + frames
    columns = dict(table.columns)
    columns["frame"] = np.asarray(frames).astype(table["frame"].dtype)
    if file_index is not None:
        from pcapstate.table import SET_COLUMNS

        columns["file"] = np.full(n, file_index, dtype=SET_COLUMNS["file"])
        columns["file_frame"] = table["frame"].astype(SET_COLUMNS["file_frame"])
    part = partition_of(table, count)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(count + 1)).tolist()
    # Each column gathered once in part order, each part a slice of it: a gather per part and column took
    # twice as long on windows of a few hundred thousand packets in 14 parts.
    rows = np.asarray(rows)[order]
    columns = {name: np.take(column, order, axis=0) for name, column in columns.items()}
    return [(rows[a:b], {name: column[a:b] for name, column in columns.items()}) for a, b in zip(bounds, bounds[1:])]


def one_after_another(files) -> bool:
    """Whether no file's packets (or, for a file without TCP, records) begin before an earlier file's end:
    a rotated set, whose packets are its files' one after the other.  ``files`` in set order, each with
    ``rows`` (TCP packets), ``low``/``high`` (first and latest of their timestamps), ``records`` and
    ``first_ns`` (its first record's timestamp)."""
    latest = None
    for f in files:
        begins = f.low if f.rows else f.first_ns if f.records else None
        if begins is not None and latest is not None and begins < latest:
            return False
        if f.rows:
            latest = f.high if latest is None else max(latest, f.high)
    return True


def numbers(keys: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Per partition, its connections' numbers in the whole trace: ranks by (first packet's time, global row)."""
    ts = np.concatenate([k[0] for k in keys]) if keys else np.zeros(0, np.int64)
    rows = np.concatenate([k[1] for k in keys]) if keys else np.zeros(0, np.int64)
    rank = np.empty(len(ts), dtype=np.int64)
    rank[np.lexsort((rows, ts))] = np.arange(len(ts))
    bounds = np.cumsum([0] + [len(k[0]) for k in keys]).tolist()
    return [rank[a:b] for a, b in zip(bounds, bounds[1:])]


def floods(halves: list[dict], limits, names: tuple):
    """The ``half_open_flood`` findings of the whole trace, from the partitions' half-open connections."""
    from pcapstate import results
    from pcapstate.columns import Nullable
    from pcapstate.findings.anomalies import HalfOpen, _concatenate, flood

    joined = {key: np.concatenate([h[key] for h in halves]) for key in ("flow", "opened", "unanswered", "frame",
                                                                         "file", "file_frame")}
    order = np.argsort(joined["flow"], kind="stable")  # in flow order, as one process lists them
    listed = lambda key: [text for h in halves for text in h[key]]  # noqa: E731
    service, sources = listed("service"), listed("source")
    half = HalfOpen(joined["flow"][order], joined["opened"][order], np.arange(len(order)),
                    joined["unanswered"][order], [service[i] for i in order.tolist()],
                    [sources[i] for i in order.tolist()])
    found = _concatenate(list(flood(half, limits)))
    at = np.asarray(found.row, dtype=np.int64)
    frame = joined["frame"][order][at]
    columns = results.anomaly_columns(found, np.full(len(at), -1), Nullable(frame, np.zeros(len(at), dtype=bool)))
    if names:  # a capture set
        columns = results.with_files(columns, names, "frame", joined["file"][order][at],
                                     joined["file_frame"][order][at])
    return columns


@dataclass
class Partition:
    """A partition's analysis, kept on its worker between the numbering and the tables."""

    rows: np.ndarray  # each packet's global row
    analysis: object
    replay_s: float


def replayed(setting: dict, *parts):
    """A partition's packets in global order, replayed: (each packet's global row, the tracking)."""
    from pcapstate.tracker import track

    rows = np.concatenate([p[0] for p in parts])
    columns = {name: np.concatenate([p[1][name] for p in parts]) for name in parts[0][1]}
    if len(rows) > 1 and (rows[1:] < rows[:-1]).any():  # parts in another order than the trace's
        order = np.argsort(rows, kind="stable")
        rows, columns = rows[order], {name: np.take(column, order, axis=0) for name, column in columns.items()}
    table = PacketTable(columns, DecodeStats(), setting["source"], setting["files"])
    return rows, track(table, setting["time_wait"], jobs=setting.get("jobs", 1), end_ns=setting["end_ns"])


def analyze_partition(setting: dict, *parts) -> Partition:
    """A partition's packets in global order, replayed and analyzed as a part of the trace."""
    from pcapstate.analysis import Analysis

    started = time.perf_counter()
    rows, tracking = replayed(setting, *parts)
    analysis = Analysis(tracking, setting["thresholds"], setting["zeek_checksums"], whole_trace=False)
    return Partition(rows, analysis, time.perf_counter() - started)


def connection_keys(part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """Per connection of the partition, its first packet's timestamp and global row: what numbers it."""
    return keys_of(part.analysis.tracking, part.rows)


def keys_of(tracking, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`connection_keys` of a partition's tracking, its packets' global rows ``rows``."""
    from pcapstate import replay

    first = tracking.result.connections[:, replay.C_FIRST_ROW]
    return tracking.table["ts_ns"][first].astype(np.int64), rows[first]


def partition_tables(part: Partition, numbers: np.ndarray, tables: tuple, datasets: dict | None = None,
                      index: int = 0) -> dict:
    """The partition's part of every table, its connections numbered ``numbers``, and its half-open ones.

    ``datasets``: per table, the Parquet dataset to write the part to (as
    part ``index``) instead of returning it.
    """
    started = time.perf_counter()
    from pcapstate.columns import packed

    analysis = part.analysis
    analysis.tracking.flow_ids = numbers
    if datasets is None:
        built = {name: packed(analysis.columnar(name)) for name in tables}  # a third of the bytes to move
    else:
        from pcapstate.report.formats import write_parquet_part

        built = {name: str(write_parquet_part(analysis.columnar(name), datasets[name], index)) for name in tables}
    half = half_open_of(analysis) if "anomalies" in tables else {}
    return {"tables": built, "half_open": half, "packets": len(part.rows), "replay_s": part.replay_s,
            "tables_s": time.perf_counter() - started}


def half_open_of(analysis) -> dict:
    """A partition's half-open connections, as :func:`floods` reads them."""
    found = analysis.findings.half_open
    table = analysis.table
    frame = table["frame"][found.row].astype(np.int64)
    return {"flow": found.flow, "opened": found.opened, "unanswered": found.unanswered,
            "service": found.service, "source": found.source, "frame": frame,
            "file": table["file"][found.row].astype(np.int64) if table.is_set else np.zeros(len(found.row), np.int64),
            "file_frame": table["file_frame"][found.row].astype(np.int64) if table.is_set else frame}
