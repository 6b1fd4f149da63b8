"""``pcapstate.analyze()``: the tracking results as pandas DataFrames.

This is where users meet the data: the tables are DataFrames, built on first
access and cached, from the columns of :mod:`pcapstate.results`.  pandas is
imported only when a DataFrame is asked for: ``Analysis.columnar(name)`` gives
the same table as plain columns (:class:`pcapstate.columns.Table`), which is
what the command line's json, jsonl and csv output print.

``Analysis.flows`` — one row per TCP connection, in order of first packet:

================  ======================  ==============================================
column            dtype                   meaning
================  ======================  ==============================================
flow              int64                   connection id, 0.. (like tshark's tcp.stream)
client_addr       object (str)            address of the client (IPv4 or IPv6 text)
client_port       uint16
server_addr       object (str)
server_port       uint16
start, end        datetime64[ns, UTC]     first and last packet
start_epoch,      float64                 the same as seconds since the Unix epoch
end_epoch
duration          float64                 end - start, seconds
packets           int64                   packets of this connection
client_packets,   int64                   packets sent by each side
server_packets
client_state,     category (11 states)    final state of each endpoint, RFC 9293 order
server_state
handshake         category                complete / partial / none
roles_guessed     bool                    no SYN seen: who is client was guessed
first_frame,      int64                   frame numbers of the first and last packet
last_frame
conn_state        category (13 codes)     Zeek's conn_state (S0, S1, SF, REJ, ... OTH)
history           object (str or None)    Zeek's history string (None where Zeek logs -)
zeek_orig         category                which endpoint Zeek calls the originator: its
                                          history letters are upper case for that side
zeek_split        bool                    Zeek would log this flow's later packets as
                                          further connections (conn_state/history are
                                          those of the first)
================  ======================  ==============================================

``Analysis.transitions`` — one row per state change of one endpoint, by flow
then time:

================  ======================  ==============================================
flow              int64
endpoint          category                client / server
ts                datetime64[ns, UTC]     when (see "cause" for how it is known)
ts_epoch          float64
frame             Int64 (nullable)        the packet that caused it; <NA> for a timer
from_state        category (11 states)    NaN when unknown (connection seen mid-stream)
to_state          category (11 states)
flags             object (str)            tcpdump notation of that packet ("S.", "F." …);
                                          "" for a timer or an assumption
cause             category                sent (observed) / received (inferred) /
                                          timer / assumed
evidence_frame    Int64 (nullable)        for "received": the receiver's own packet
                                          that proved it (its ACK), <NA> when none
================  ======================  ==============================================

``Analysis.packets`` — the packet table, one row per TCP packet in file order:
frame, ts, ts_epoch, src_addr, src_port, dst_addr, dst_port, flags (tcpdump
notation), seq, ack (absolute, uint32), len (payload bytes), win (raw),
flow, sender (client/server), client_state and server_state after the packet
(what each endpoint's state was known to be once the packet was captured),
sender_note and receiver_note (irregularities of that step, "" when none;
see :class:`pcapstate.states.Note`).

Capture sets (``analyze([...])``, a directory or a glob: several files read
as one trace, :mod:`pcapstate.decode.capture_set`).  ``frame`` everywhere is
then the global frame number of the merged trace (for rotated files, that is
the frame number in the capture before it was split), and the tables say
where each frame is: ``packets``, ``transitions``, ``retransmissions`` and
``anomalies`` gain ``file`` (category: the file's name, categories in set
order, i.e. by first packet) and ``file_frame`` (the frame number inside that
file, as ``tshark -r FILE`` numbers it) right after ``frame``; ``flows`` gains
``first_file``, ``first_file_frame``, ``last_file``, ``last_file_frame``
after ``last_frame``, and ``retries`` ``first_file`` and ``first_file_frame``
(the chain's first send) after ``first_frame``.  ``Analysis.files`` lists the files and
``Analysis.locate(frame)`` turns any frame (``retries.answer_frame``, an
``evidence_frame``) into ``(file, file_frame)``.  A single file's tables have
none of these columns, exactly as before.
"""
from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from pcapstate import results
from pcapstate.columns import Nullable, Table
from pcapstate.findings import Findings, compute
from pcapstate.findings.anomalies import Thresholds
from pcapstate.states import STATE_NAMES, State
from pcapstate.table import PacketTable
from pcapstate.tracker import DEFAULT_TIME_WAIT_S, Tracking, track

TABLES = ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies")


def __getattr__(name: str):
    # pandas dtypes, made (and pandas imported) only when asked for
    if name == "STATE_DTYPE":
        import pandas as pd

        return pd.CategoricalDtype(list(STATE_NAMES), ordered=True)
    raise AttributeError(f"module 'pcapstate.analysis' has no attribute {name!r}")


def analyze(source, *, decoder: str = "dpkt", time_wait: float = DEFAULT_TIME_WAIT_S,
            zeek_checksums: bool = False, jobs: int = 1, **thresholds) -> "Analysis":
    """Decode a capture and replay every TCP connection from both endpoints.

    ``source`` is a path (pcap, pcapng, gzip of either, or ``tcpdump -n``
    text) or an already decoded :class:`~pcapstate.table.PacketTable`.  A
    list or tuple of paths, a directory or a glob pattern (``"cap*.pcap"``)
    is a capture set, analyzed as one trace (module docstring).
    ``time_wait`` is 2*MSL in seconds (Linux: 60).  Other keywords set the
    anomaly thresholds (:class:`pcapstate.findings.anomalies.Thresholds`):
    ``stuck_after`` (seconds in CLOSE_WAIT or FIN_WAIT_2, default 5),
    ``flood_connections`` (20), ``flood_sources`` (10), ``flood_window`` (10 s).
    ``zeek_checksums`` makes the Zeek summary drop packets with bad checksums,
    as ``zeek -r`` does; by default it ignores them, as ``zeek -C`` and
    Wireshark do, since captures taken on a sending host with checksum
    offload carry wrong checksums on every outgoing packet.  ``jobs``:
    threads for the passes over connections (:mod:`pcapstate.jobs`; 0: one
    per core for a large capture); the tables are the same.

    >>> a = analyze("samples/client_closes_first.pcap")
    >>> a.flows[["client_state", "server_state", "handshake"]].iloc[0].tolist()
    ['TIME_WAIT', 'CLOSED', 'complete']
    """
    if isinstance(source, PacketTable):
        table = source
    elif isinstance(source, (list, tuple)) or _names_a_set(source):
        from pcapstate.decode.capture_set import expand, read_capture_set

        specs = [os.fspath(s) for s in source] if isinstance(source, (list, tuple)) else [os.fspath(source)]
        table = read_capture_set(expand(specs), decoder=decoder, specs=specs)
    else:
        from pcapstate.decode import read_capture

        table = read_capture(os.fspath(source), decoder=decoder)
    return Analysis(track(table, time_wait=time_wait, jobs=jobs), Thresholds(**thresholds), zeek_checksums)


class Analysis:
    """Results of :func:`analyze`; every table is a pandas DataFrame.

    States are ordered categoricals in RFC 9293 order (so ``<`` and sorting
    follow the diagram), times are timezone-aware UTC datetimes with the raw
    epoch seconds beside them (``ts`` and ``ts_epoch``).

    >>> a = analyze("samples/fin_dropped.pcap")
    >>> a.flows["client_state"].cat.categories[:4].tolist(), a.flows["client_state"].cat.ordered
    (['CLOSED', 'LISTEN', 'SYN_SENT', 'SYN_RCVD'], True)
    >>> str(a.packets["ts"].iloc[0]), float(a.packets["ts_epoch"].iloc[0])
    ('2026-11-22 15:49:06.257161+00:00', 1795362546.257161)
    """

    def __init__(self, tracking: Tracking, thresholds: Thresholds = Thresholds(),
                 zeek_checksums: bool = False, whole_trace: bool = True) -> None:
        self.tracking = tracking
        self.whole_trace = whole_trace  # False: a part of a trace (findings.compute)
        self.table = tracking.table if tracking is not None else None
        self.thresholds = thresholds
        self.zeek_checksums = zeek_checksums
        self._columnar: dict[str, Table] = {}
        self._findings = None  # Findings, or a Future of them (start_findings)

    def __repr__(self) -> str:
        return f"<Analysis {self.table.source!r}: {len(self.table)} TCP packets, {self.connection_count} connections>"

    @property
    def connection_count(self) -> int:
        return len(self.tracking.result.connections)

    @property
    def warnings(self) -> list[str]:
        return self.table.stats.warnings

    @property
    def is_set(self) -> bool:
        """Whether this is a capture set's analysis (tables carry ``file`` and ``file_frame``)."""
        return self.table.is_set

    def columnar(self, name: str) -> Table:
        """Table ``name`` (one of :data:`TABLES`, or ``packet_notes``) as plain columns, without pandas.

        The same rows, columns and values as the DataFrame of that name
        (``analysis.columnar("flows").to_pandas()`` equals ``analysis.flows``).

        >>> analyze("samples/fin_dropped.pcap").columnar("flows").names[:3]
        ['flow', 'client_addr', 'client_port']
        """
        if name not in self._columnar:
            tracking = self.tracking
            if name == "flows":
                made = results.flows(tracking, self.zeek, self.endpoints)
            elif name in ("transitions", "packets", "packet_notes"):
                made = getattr(results, name)(tracking)
            elif name in ("retransmissions", "retries", "anomalies"):
                made = getattr(results, name)(tracking, self.findings)
            else:
                raise KeyError(f"no table {name!r} (tables: {', '.join(TABLES)})")
            self._columnar[name] = made
        return self._columnar[name]

    def chunks(self, name: str) -> tuple[Table]:
        """Table ``name`` as the text reports read it, a chunk at a time: here, in one piece (an analysis in
        parts gives its merging chunks the same way, :meth:`pcapstate.streaming.Streamed.chunks`)."""
        return (self.columnar(name),)

    @cached_property
    def files(self):
        """The capture's files in set order (by first packet): one row, the capture itself, for one file.

        Columns: ``file`` [int64, the index the ``file`` columns' categories
        follow], ``name`` [str], ``records`` [int64, frames in the file],
        ``packets`` [int64, TCP packets], ``start`` [datetime64[ns, UTC]: the
        first record of a set's file, which orders the set (NaT: none); for
        one file, its first TCP packet], ``first_frame``, ``last_frame``
        [Int64, frames of its first and last TCP packet, global in a set],
        ``warnings`` [int64, decoder warnings about it].

        >>> analyze("samples/refused.pcap").files[["name", "records", "packets", "first_frame"]].values.tolist()
        [['samples/refused.pcap', 2, 2, 1]]
        """
        from pcapstate.columns import Objects, Times

        table = self.table
        if table.is_set:
            members = [(f.name, f.records, f.packets, f.start_ns, len(f.stats.warnings)) for f in table.files]
            file_of_row = table["file"].astype(np.int64)
        else:
            start = int(table["ts_ns"][0]) if len(table) else None
            members = [(table.source, max(table.stats.records, int(table["frame"][-1]) if len(table) else 0),
                        len(table), start, len(table.stats.warnings))]
            file_of_row = np.zeros(len(table), dtype=np.int64)
        count = len(members)
        first = np.full(count, -1, dtype=np.int64)
        last = np.full(count, -1, dtype=np.int64)
        rows = np.arange(len(table), dtype=np.int64)
        first[file_of_row[::-1]] = rows[::-1]
        last[file_of_row] = rows
        names = np.empty(count, dtype=object)
        names[:] = [m[0] for m in members]
        return Table({
            "file": np.arange(count, dtype=np.int64),
            "name": Objects(names),
            "records": np.array([m[1] for m in members], dtype=np.int64),
            "packets": np.array([m[2] for m in members], dtype=np.int64),
            "start": Times(np.array([m[3] if m[3] is not None else 0 for m in members], dtype=np.int64),
                           np.array([m[3] is None for m in members])),
            "first_frame": results.frames(table, first),
            "last_frame": results.frames(table, last),
            "warnings": np.array([m[4] for m in members], dtype=np.int64),
        }).to_pandas()

    def locate(self, frame: int) -> tuple[str, int]:
        """The file and the frame number inside it of a TCP packet's (global) ``frame``.

        For one file that is the file and ``frame`` itself; for a capture set,
        where ``frame`` counts across the merged files, the file holding it.
        A frame of no TCP packet is a KeyError.

        >>> analyze("samples/fin_dropped.pcap").locate(8)
        ('samples/fin_dropped.pcap', 8)
        """
        table = self.table
        frames = table["frame"]
        at = int(np.searchsorted(frames, frame)) if len(frames) else 0
        if at >= len(frames) or int(frames[at]) != int(frame):
            raise KeyError(f"no TCP packet has frame {frame}")
        if not table.is_set:
            return table.source, int(frame)
        return table.files[int(table["file"][at])].name, int(table["file_frame"][at])

    @cached_property
    def flows(self):
        """One row per connection, with each endpoint's final state (columns: module docstring).

        >>> analyze("samples/fin_dropped.pcap").flows[["client_state", "server_state"]].values.tolist()
        [['FIN_WAIT_1', 'ESTABLISHED']]
        """
        return self.columnar("flows").to_pandas()

    @cached_property
    def zeek(self) -> dict[str, np.ndarray]:
        """Zeek's conn.log view of every flow (:func:`pcapstate.zeek.zeek_summary`)."""
        from pcapstate.zeek import zeek_summary

        return zeek_summary(self.tracking, validate_checksums=self.zeek_checksums)

    @cached_property
    def transitions(self):
        """One row per state change of one endpoint, by flow then time.

        >>> t = analyze("samples/fin_dropped.pcap").transitions
        >>> t[["endpoint", "from_state", "to_state", "cause"]].head(3).values.tolist()
        [['client', 'CLOSED', 'SYN_SENT', 'sent'], ['server', 'CLOSED', 'LISTEN', 'assumed'], \
['server', 'LISTEN', 'SYN_RCVD', 'received']]
        """
        return self.columnar("transitions").to_pandas()

    @cached_property
    def packets(self):
        """The packet table: flags in tcpdump notation, flow id, both states after each packet.

        >>> p = analyze("samples/fin_dropped.pcap").packets
        >>> p[["frame", "flags", "sender", "client_state", "server_state"]].head(3).values.tolist()
        [[1, 'S', 'client', 'SYN_SENT', 'LISTEN'], [2, 'S.', 'server', 'SYN_SENT', 'SYN_RCVD'], \
[3, '.', 'client', 'ESTABLISHED', 'ESTABLISHED']]
        """
        return self.columnar("packets").to_pandas()

    @cached_property
    def packet_notes(self):
        """Only the packets whose step was noted (``frame``, ``sender_note``, ``receiver_note``).

        What the terminal summary needs, without building :attr:`packets` for
        every packet of a large capture.

        >>> analyze("samples/client_closes_first.pcap").packet_notes.columns.tolist()
        ['frame', 'sender_note', 'receiver_note']
        """
        return self.columnar("packet_notes").to_pandas()

    @cached_property
    def endpoints(self) -> Table:
        """Per flow, ``client_addr``, ``client_port``, ``server_addr``, ``server_port`` (columns)."""
        return results.endpoints(self.tracking)

    @property
    def findings(self) -> Findings:
        """Retransmissions, retry chains and anomalies (computed once; see :meth:`start_findings`)."""
        if self._findings is None:
            self._findings = self._compute_findings()
        elif not isinstance(self._findings, Findings):  # a Future: being computed on a thread
            self._findings = self._findings.result()
        return self._findings

    def start_findings(self) -> None:
        """Begin computing the findings on a thread of their own, beside what the caller does next.

        They read only the tracking and the endpoints, not the Zeek pass or the
        tables: the command line starts them right after the replay.
        """
        if self._findings is None:
            from concurrent.futures import ThreadPoolExecutor

            self.endpoints  # noqa: B018  (made here, not raced for by two threads)
            worker = ThreadPoolExecutor(max_workers=1)
            self._findings = worker.submit(self._compute_findings)
            worker.shutdown(wait=False)

    def _compute_findings(self) -> Findings:
        return compute(self.tracking, EndpointNames(self.endpoints), self.thresholds, self.whole_trace)

    @cached_property
    def retransmissions(self):
        """One row per re-sent segment, classed as Wireshark does (timeout, fast, spurious).

        >>> r = analyze("samples/fin_dropped.pcap").retransmissions
        >>> r[["kind", "class", "attempt", "interval"]].head(3).values.tolist()
        [['FIN', 'timeout', 1, 0.207945], ['FIN', 'timeout', 2, 0.208017], ['FIN', 'timeout', 3, 0.435997]]
        """
        return self.columnar("retransmissions").to_pandas()

    @cached_property
    def retries(self):
        """One row per segment sent more than once: the retry chain and its backoff.

        >>> r = analyze("samples/fin_dropped.pcap").retries
        >>> r[["sender", "kind", "sends", "pattern", "answered"]].values.tolist()
        [['client', 'FIN', 6, 'linear-then-doubling', False]]
        """
        return self.columnar("retries").to_pandas()

    @cached_property
    def anomalies(self):
        """Findings worst first, each with a one-sentence ``detail``; ``flow`` is <NA> capture-wide.

        >>> analyze("samples/fin_dropped.pcap").anomalies["kind"].tolist()
        ['fin_unacked', 'open_at_end']
        """
        return self.columnar("anomalies").to_pandas()

    def flow(self, flow_id: int) -> dict:
        """Every table restricted to one connection.

        >>> a = analyze("samples/fin_dropped.pcap")
        >>> parts = a.flow(0)
        >>> sorted(parts)
        ['anomalies', 'flows', 'packets', 'retransmissions', 'retries', 'transitions']
        >>> parts["retries"][["sender", "kind", "sends"]].values.tolist()
        [['client', 'FIN', 6]]

        Each DataFrame keeps the rows' labels in the whole table's (``a.packets.loc[parts["packets"].index]``
        is ``parts["packets"]``), but only the connection's rows are made: one connection of a long capture
        does not build the whole packet table.
        """
        parts = {}
        for name in ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies"):
            table, rows = self._flow_part(name, flow_id)
            frame = table.to_pandas()
            frame.index = rows
            parts[name] = frame
        return parts

    def flow_columns(self, flow_id: int, names=("flows", "transitions", "packets")) -> dict[str, Table]:
        """Tables ``names`` restricted to one connection, as plain columns (what :meth:`flow` gives as
        DataFrames).  Its packets are made for its own rows only, unless the whole packet table is made
        already: for one connection of a long capture, that table would be most of the time and memory.

        >>> analyze("samples/fin_dropped.pcap").flow_columns(0)["packets"]["frame"].tolist()[-2:]
        [12, 13]
        """
        return {name: self._flow_part(name, flow_id)[0] for name in names}

    def _flow_part(self, name: str, flow_id: int) -> tuple[Table, np.ndarray]:
        """Table ``name``'s rows of one connection, and their positions in the whole table."""
        if name == "packets" and name not in self._columnar and self.tracking is not None:
            from pcapstate.replay import R_CONN

            connection = self.tracking.result.rows[:, R_CONN]
            rows = np.flatnonzero(self.tracking.flow_numbers(connection) == flow_id)
            return results.packets(self.tracking, rows), rows
        table = self.columnar(name)
        rows = np.flatnonzero(table.flow_rows(flow_id))
        return table.take(rows), rows

    def each_flow_columns(self, names=("flows", "transitions", "packets")):
        """``(flow, flow_columns(flow))`` for every connection in order: each table sorted by flow once,
        then cut, not searched again for every connection (``--timeline`` of a long capture).

        >>> [(flow, len(parts["packets"])) for flow, parts in analyze("samples/refused.pcap").each_flow_columns()]
        [(0, 2)]
        """
        cuts = []
        for name in names:
            table = self.columnar(name)
            flows = table["flow"]
            flows = np.where(flows.missing, -1, flows.values) if isinstance(flows, Nullable) else np.asarray(flows)
            order = np.argsort(flows, kind="stable")  # (a connection's rows keep their order)
            bounds = np.searchsorted(flows[order], np.arange(self.connection_count + 1)).tolist()
            cuts.append((name, table.take(order), bounds))
        for flow in range(self.connection_count):
            yield flow, {name: by_flow.slice(bounds[flow], bounds[flow + 1]) for name, by_flow, bounds in cuts}

    def states_at(self, t, *, closed: bool = True):
        """Every connection's pair of states at time ``t``: ``netstat -an`` from a capture.

        ``t`` is a :class:`datetime.datetime` (a naive one is taken as UTC), a
        :class:`pandas.Timestamp`, a :class:`numpy.datetime64`, an ISO 8601
        string, or epoch seconds (int or float, as in the ``*_epoch`` columns).

        One row per connection that exists at ``t``, i.e. whose first packet
        is at or before ``t``, in flow order: ``flow``, ``client_addr``,
        ``client_port``, ``server_addr``, ``server_port``, then
        ``client_state`` and ``server_state`` (the ordered state categorical)
        and ``client_since`` and ``server_since`` (when that state began,
        ``NaT`` when no transition of that endpoint is at or before ``t``).

        Each endpoint's state is the ``to_state`` of its last transition at or
        before ``t`` (several at one instant: the last in table order).  An
        endpoint with no transition yet is in the ``from_state`` of its first
        one (CLOSED, or NaN when unknown: a connection seen mid-stream); an
        endpoint with no transition at all stays in its final state (a server
        that refused with a RST is CLOSED throughout).  States are those the
        capture shows: past its end they stay as the capture left them, and
        TIME_WAIT ends only where the transitions table has a timer row.
        Connections that ended before ``t`` are CLOSED on both sides; netstat
        would no longer list them, and ``closed=False`` leaves them out.

        >>> a = analyze("samples/close_wait_leak.pcap")
        >>> s = a.states_at(a.flows["end_epoch"].iloc[0])
        >>> s[["flow", "client_state", "server_state"]].values.tolist()
        [[0, 'CLOSE_WAIT', 'FIN_WAIT_2']]
        >>> a.states_at(a.flows["start"].iloc[0])[["client_state", "server_state"]].values.tolist()
        [['SYN_SENT', 'SYN_RCVD']]
        """
        from pcapstate.snapshot import states_at

        return states_at(self, t, closed=closed)


class GatheredAnalysis(Analysis):
    """An analysis whose tables were made elsewhere, in parts, and gathered (:mod:`pcapstate.dask_engine`).

    It holds the tables themselves and no tracking: the tables it was given
    (see :data:`TABLES`; each a Table, or a function that makes it when first
    read), and ``table``, the merged packet table or only its outline
    (:class:`pcapstate.table.TableOutline`: source, statistics, files and
    length), whichever was gathered.
    """

    def __init__(self, table, tables: dict[str, Table], thresholds: Thresholds = Thresholds(),
                 zeek_checksums: bool = False, read_warnings: int = 0) -> None:
        super().__init__(None, thresholds, zeek_checksums)
        self.table = table
        self._columnar = dict(tables)
        self.read_warnings = read_warnings  # the first warnings, those of reading the files (the rest: the replay's)

    @property
    def connection_count(self) -> int:
        return len(self.columnar("flows"))

    def columnar(self, name: str) -> Table:
        if name not in self._columnar:
            raise KeyError(f"table {name!r} was not gathered (gathered: {', '.join(self._columnar)})")
        if callable(self._columnar[name]):
            self._columnar[name] = self._columnar[name]()
        return self._columnar[name]

    @property
    def findings(self) -> Findings:
        raise AttributeError("a gathered analysis has its tables, not the findings they were made from")

    def start_findings(self) -> None:
        pass


class EndpointNames:
    """Per flow, the client's and the server's endpoint as text ("10.0.0.1:80", "[::1]:80"), made when asked for.

    The findings' sentences name the endpoints of the flows they speak of: a
    few, usually, of many.
    """

    def __init__(self, endpoints: Table) -> None:
        self._parts = [(endpoints[addr].values, endpoints[addr].codes.tolist(), endpoints[port].tolist())
                       for addr, port in (("client_addr", "client_port"), ("server_addr", "server_port"))]
        self._count = len(endpoints)

    def __getitem__(self, flow: int) -> tuple[str, str]:
        (c_text, c_code, c_port), (s_text, s_code, s_port) = self._parts
        return _endpoint(c_text[c_code[flow]], c_port[flow]), _endpoint(s_text[s_code[flow]], s_port[flow])

    def __len__(self) -> int:
        return self._count


def _names_a_set(source) -> bool:
    """A directory or a glob pattern given to :func:`analyze` as one path."""
    from pcapstate.decode.capture_set import is_glob

    path = os.fspath(source)
    return os.path.isdir(path) or is_glob(path)


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


__all__ = ["Analysis", "analyze", "State", "TABLES"]
