"""``pcapstate.analyze()``: the tracking results as pandas DataFrames.

This is where users meet the data, so pandas is imported here and nowhere
upstream.  Tables are built on first access and cached.

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
import pandas as pd

from pcapstate import replay as rp
from pcapstate.flags import to_tcpdump
from pcapstate.states import CAUSE_NAMES, NOTE_NAMES, SIDE_NAMES, STATE_NAMES, Note, State
from pcapstate.table import PacketTable, format_address
from pcapstate.findings import Findings, compute
from pcapstate.findings.anomalies import KIND_NAMES, Thresholds
from pcapstate.findings.backoff import PATTERNS
from pcapstate.findings.retransmissions import CLASS_NAMES, KIND_NAMES as SEGMENT_NAMES
from pcapstate.tracker import DEFAULT_TIME_WAIT_S, Tracking, track
from pcapstate.zeek import CONN_STATES

STATE_DTYPE = pd.CategoricalDtype(list(STATE_NAMES), ordered=True)
ENDPOINT_DTYPE = pd.CategoricalDtype(list(SIDE_NAMES))
CAUSE_DTYPE = pd.CategoricalDtype(list(CAUSE_NAMES))
HANDSHAKE_NAMES = ("complete", "partial", "none")
HANDSHAKE_DTYPE = pd.CategoricalDtype(list(HANDSHAKE_NAMES))
SEGMENT_DTYPE = pd.CategoricalDtype(list(SEGMENT_NAMES))
CLASS_DTYPE = pd.CategoricalDtype(list(CLASS_NAMES[1:]))
PATTERN_DTYPE = pd.CategoricalDtype(list(PATTERNS))
ANOMALY_DTYPE = pd.CategoricalDtype(list(KIND_NAMES), ordered=True)  # worst first
CONN_STATE_DTYPE = pd.CategoricalDtype(list(CONN_STATES))
_FLAG_TEXT = np.array([to_tcpdump(v) for v in range(0x200)], dtype=object)
_NOTE_TEXT = np.array(["" if n == Note.NONE else name for n, name in zip(Note, NOTE_NAMES)], dtype=object)


def analyze(source, *, decoder: str = "dpkt", time_wait: float = DEFAULT_TIME_WAIT_S,
            zeek_checksums: bool = False, **thresholds) -> "Analysis":
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
    offload carry wrong checksums on every outgoing packet.

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
    return Analysis(track(table, time_wait=time_wait), Thresholds(**thresholds), zeek_checksums)


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
                 zeek_checksums: bool = False) -> None:
        self.tracking = tracking
        self.table = tracking.table
        self.thresholds = thresholds
        self.zeek_checksums = zeek_checksums

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

    @cached_property
    def files(self) -> pd.DataFrame:
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
        start_ns = np.array([m[3] if m[3] is not None else 0 for m in members], dtype=np.int64)
        return pd.DataFrame({
            "file": np.arange(count, dtype=np.int64),
            "name": pd.Series([m[0] for m in members], dtype=object),
            "records": np.array([m[1] for m in members], dtype=np.int64),
            "packets": np.array([m[2] for m in members], dtype=np.int64),
            "start": _datetimes(start_ns).where(np.array([m[3] is not None for m in members])),
            "first_frame": _frames(table, first),
            "last_frame": _frames(table, last),
            "warnings": np.array([m[4] for m in members], dtype=np.int64),
        })

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

    # -- flows
    @cached_property
    def flows(self) -> pd.DataFrame:
        """One row per connection, with each endpoint's final state (columns: module docstring).

        >>> analyze("samples/fin_dropped.pcap").flows[["client_state", "server_state"]].values.tolist()
        [['FIN_WAIT_1', 'ESTABLISHED']]
        """
        conn = self.tracking.result.connections
        ends = self.tracking.result.endpoints
        rows = self.tracking.result.rows
        table = self.table
        n = len(conn)
        first, last = conn[:, rp.C_FIRST_ROW], conn[:, rp.C_LAST_ROW]
        client_is_src = self.tracking.conversations.direction[first] == conn[:, rp.C_CLIENT_DIR]
        src_text, dst_text = _row_addresses(table, first)
        sides = rows[:, rp.R_SIDE]
        flow_of_row = rows[:, rp.R_CONN]
        client_packets = np.bincount(flow_of_row[sides == 0], minlength=n)[:n]
        server_packets = np.bincount(flow_of_row[sides == 1], minlength=n)[:n]
        start_ns, end_ns = table["ts_ns"][first], table["ts_ns"][last]
        flows = pd.DataFrame({
            "flow": np.arange(n, dtype=np.int64),
            "client_addr": np.where(client_is_src, src_text, dst_text),
            "client_port": np.where(client_is_src, table["sport"][first], table["dport"][first]).astype(np.uint16),
            "server_addr": np.where(client_is_src, dst_text, src_text),
            "server_port": np.where(client_is_src, table["dport"][first], table["sport"][first]).astype(np.uint16),
            "start": _datetimes(start_ns),
            "end": _datetimes(end_ns),
            "start_epoch": start_ns / 1e9,
            "end_epoch": end_ns / 1e9,
            "duration": (end_ns - start_ns) / 1e9,
            "packets": conn[:, rp.C_PACKETS].astype(np.int64),
            "client_packets": client_packets.astype(np.int64),
            "server_packets": server_packets.astype(np.int64),
            "client_state": _states(ends[0::2, rp.E_STATE]),
            "server_state": _states(ends[1::2, rp.E_STATE]),
            "handshake": pd.Categorical.from_codes(_handshake_codes(conn), dtype=HANDSHAKE_DTYPE),
            "roles_guessed": conn[:, rp.C_GUESSED] == 1,
            "first_frame": table["frame"][first].astype(np.int64),
            "last_frame": table["frame"][last].astype(np.int64),
            "conn_state": pd.Categorical(self.zeek["conn_state"], dtype=CONN_STATE_DTYPE),
            "history": pd.Series(self.zeek["history"], dtype=object),
            "zeek_orig": pd.Categorical.from_codes(np.where(self.zeek["orig_is_client"], 0, 1).astype(np.int8),
                                                   dtype=ENDPOINT_DTYPE),
            "zeek_split": np.asarray(self.zeek["split"], dtype=bool),
        })
        _insert_files(flows, table, "last_frame", last, "last_")
        return _insert_files(flows, table, "last_frame", first, "first_")

    @cached_property
    def zeek(self) -> dict[str, np.ndarray]:
        """Zeek's conn.log view of every flow (:func:`pcapstate.zeek.zeek_summary`)."""
        from pcapstate.zeek import zeek_summary

        return zeek_summary(self.tracking, validate_checksums=self.zeek_checksums)

    # -- transitions
    @cached_property
    def transitions(self) -> pd.DataFrame:
        """One row per state change of one endpoint, by flow then time.

        >>> t = analyze("samples/fin_dropped.pcap").transitions
        >>> t[["endpoint", "from_state", "to_state", "cause"]].head(3).values.tolist()
        [['client', 'CLOSED', 'SYN_SENT', 'sent'], ['server', 'CLOSED', 'LISTEN', 'assumed'], \
['server', 'LISTEN', 'SYN_RCVD', 'received']]
        """
        t = self.tracking.result.transitions
        table = self.table
        order = np.lexsort((np.arange(len(t)), t[:, rp.T_TS], t[:, rp.T_CONN]))
        t = t[order]
        row = t[:, rp.T_ROW]
        has_row = row >= 0
        safe_row = np.where(has_row, row, 0)
        flags_text = np.where(has_row & (t[:, rp.T_CAUSE] != rp.CAUSE_ASSUMED),
                              _FLAG_TEXT[table["flags"][safe_row]] if len(table) else "", "")
        evidence = t[:, rp.T_EVIDENCE]
        transitions = pd.DataFrame({
            "flow": t[:, rp.T_CONN].astype(np.int64),
            "endpoint": pd.Categorical.from_codes(t[:, rp.T_SIDE], dtype=ENDPOINT_DTYPE),
            "ts": _datetimes(t[:, rp.T_TS]),
            "ts_epoch": t[:, rp.T_TS] / 1e9,
            "frame": _frames(table, row),
            "from_state": _states(t[:, rp.T_FROM]),
            "to_state": _states(t[:, rp.T_TO]),
            "flags": flags_text.astype(object),
            "cause": pd.Categorical.from_codes(t[:, rp.T_CAUSE], dtype=CAUSE_DTYPE),
            "evidence_frame": _frames(table, evidence),
        })
        return _insert_files(transitions, table, "frame", row)

    # -- packets
    @cached_property
    def packets(self) -> pd.DataFrame:
        """The packet table: flags in tcpdump notation, flow id, both states after each packet.

        >>> p = analyze("samples/fin_dropped.pcap").packets
        >>> p[["frame", "flags", "sender", "client_state", "server_state"]].head(3).values.tolist()
        [[1, 'S', 'client', 'SYN_SENT', 'LISTEN'], [2, 'S.', 'server', 'SYN_SENT', 'SYN_RCVD'], \
[3, '.', 'client', 'ESTABLISHED', 'ESTABLISHED']]
        """
        table = self.table
        rows = self.tracking.result.rows
        src_text, dst_text = _row_addresses(table, np.arange(len(table)))
        packets = pd.DataFrame({
            "frame": table["frame"].astype(np.int64),
            "ts": _datetimes(table["ts_ns"]),
            "ts_epoch": table["ts_ns"] / 1e9,
            "src_addr": src_text,
            "src_port": table["sport"],
            "dst_addr": dst_text,
            "dst_port": table["dport"],
            "flags": _FLAG_TEXT[table["flags"]],
            "seq": table["seq"],
            "ack": table["ack"],
            "len": table["payload_len"].astype(np.int64),
            "win": table["window"],
            "flow": rows[:, rp.R_CONN],
            "sender": pd.Categorical.from_codes(rows[:, rp.R_SIDE], dtype=ENDPOINT_DTYPE),
            "client_state": _states(rows[:, rp.R_CLIENT_STATE]),
            "server_state": _states(rows[:, rp.R_SERVER_STATE]),
            "sender_note": _NOTE_TEXT[rows[:, rp.R_NOTE_SENDER]],
            "receiver_note": _NOTE_TEXT[rows[:, rp.R_NOTE_RECEIVER]],
        })
        return _insert_files(packets, table, "frame", np.arange(len(table), dtype=np.int64))

    @cached_property
    def packet_notes(self) -> pd.DataFrame:
        """Only the packets whose step was noted (``frame``, ``sender_note``, ``receiver_note``).

        What the terminal summary needs, without building :attr:`packets` for
        every packet of a large capture.

        >>> analyze("samples/client_closes_first.pcap").packet_notes.columns.tolist()
        ['frame', 'sender_note', 'receiver_note']
        """
        rows = self.tracking.result.rows
        noted = np.flatnonzero((rows[:, rp.R_NOTE_SENDER] != Note.NONE) | (rows[:, rp.R_NOTE_RECEIVER] != Note.NONE))
        return pd.DataFrame({
            "frame": self.table["frame"][noted].astype(np.int64),
            "sender_note": _NOTE_TEXT[rows[noted, rp.R_NOTE_SENDER]],
            "receiver_note": _NOTE_TEXT[rows[noted, rp.R_NOTE_RECEIVER]],
        })

    # -- findings
    @cached_property
    def findings(self) -> Findings:
        flows = self.flows
        names = [(_endpoint(c, cp), _endpoint(s, sp)) for c, cp, s, sp in zip(
            flows["client_addr"], flows["client_port"], flows["server_addr"], flows["server_port"])]
        return compute(self.tracking, names, self.thresholds)

    @cached_property
    def retransmissions(self) -> pd.DataFrame:
        """One row per re-sent segment, classed as Wireshark does (timeout, fast, spurious).

        >>> r = analyze("samples/fin_dropped.pcap").retransmissions
        >>> r[["kind", "class", "attempt", "interval"]].head(3).values.tolist()
        [['FIN', 'timeout', 1, 0.207945], ['FIN', 'timeout', 2, 0.208017], ['FIN', 'timeout', 3, 0.435997]]
        """
        retx = self.findings.retransmissions
        rows = np.flatnonzero(retx.klass > 0)
        rows = rows[np.lexsort((self.table["frame"][rows], self.table["ts_ns"][rows]))]
        replay_rows = self.tracking.result.rows
        interval = retx.interval_ns[rows]
        found = pd.DataFrame({
            "flow": replay_rows[rows, rp.R_CONN].astype(np.int64),
            "sender": pd.Categorical.from_codes(replay_rows[rows, rp.R_SIDE], dtype=ENDPOINT_DTYPE),
            "kind": pd.Categorical.from_codes(retx.kind[rows], dtype=SEGMENT_DTYPE),
            "class": pd.Categorical.from_codes(retx.klass[rows] - 1, dtype=CLASS_DTYPE),
            "frame": self.table["frame"][rows].astype(np.int64),
            "ts": _datetimes(self.table["ts_ns"][rows]),
            "ts_epoch": self.table["ts_ns"][rows] / 1e9,
            "original_frame": _frames(self.table, retx.original_row[rows]),
            "attempt": retx.attempt[rows],
            "interval": np.where(interval >= 0, interval / 1e9, np.nan),
        })
        return _insert_files(found, self.table, "frame", rows)

    @cached_property
    def retries(self) -> pd.DataFrame:
        """One row per segment sent more than once: the retry chain and its backoff.

        >>> r = analyze("samples/fin_dropped.pcap").retries
        >>> r[["sender", "kind", "sends", "pattern", "answered"]].values.tolist()
        [['client', 'FIN', 6, 'linear-then-doubling', False]]
        """
        chains = self.findings.chains
        table = self.table
        first = np.array([r[0] for r in chains.rows], dtype=np.int64)
        last = np.array([r[-1] for r in chains.rows], dtype=np.int64)
        start, end = table["ts_ns"][first], table["ts_ns"][last]
        retries = pd.DataFrame({
            "flow": chains.flow,
            "sender": pd.Categorical.from_codes(chains.side, dtype=ENDPOINT_DTYPE),
            "kind": pd.Categorical.from_codes(chains.kind, dtype=SEGMENT_DTYPE),
            "original_frame": _frames(table, np.where(chains.original_known, first, -1)),
            "first_frame": table["frame"][first].astype(np.int64),
            "last_frame": table["frame"][last].astype(np.int64),
            "sends": np.array([len(r) for r in chains.rows], dtype=np.int64),
            "start": _datetimes(start),
            "span": (end - start) / 1e9,
            "intervals": pd.Series([tuple(round(i, 6) for i in x) for x in chains.intervals], dtype=object),
            "pattern": pd.Categorical(chains.pattern, dtype=PATTERN_DTYPE),
            "initial_rto": chains.initial_rto,
            "answered": chains.answer_row >= 0,
            "answer_frame": _frames(table, chains.answer_row),
        })
        return _insert_files(retries, table, "first_frame", first, "first_")

    @cached_property
    def anomalies(self) -> pd.DataFrame:
        """Findings worst first, each with a one-sentence ``detail``; ``flow`` is <NA> capture-wide.

        >>> analyze("samples/fin_dropped.pcap").anomalies["kind"].tolist()
        ['fin_unacked', 'open_at_end']
        """
        found = self.findings.anomalies
        flow = np.array(found.flow, dtype=np.int64)
        endpoint = np.array(found.endpoint, dtype=np.int64)
        ts = np.array(found.ts, dtype=np.int64)
        frame = pd.DataFrame({
            "flow": pd.arrays.IntegerArray(np.maximum(flow, 0), flow < 0),
            "kind": pd.Categorical.from_codes(np.array(found.kind, dtype=np.int64), dtype=ANOMALY_DTYPE),
            "endpoint": pd.Categorical.from_codes(endpoint, dtype=ENDPOINT_DTYPE),
            "ts": _datetimes(ts),
            "ts_epoch": ts / 1e9,
            "frame": _frames(self.table, np.array(found.row, dtype=np.int64)),
            "detail": pd.Series(found.detail, dtype=object),
        })
        _insert_files(frame, self.table, "frame", np.array(found.row, dtype=np.int64))
        return frame.sort_values(["kind", "ts_epoch", "flow"], kind="stable").reset_index(drop=True)

    def flow(self, flow_id: int) -> dict[str, pd.DataFrame]:
        """Every table restricted to one connection.

        >>> a = analyze("samples/fin_dropped.pcap")
        >>> parts = a.flow(0)
        >>> sorted(parts)
        ['anomalies', 'flows', 'packets', 'retransmissions', 'retries', 'transitions']
        >>> parts["retries"][["sender", "kind", "sends"]].values.tolist()
        [['client', 'FIN', 6]]
        """
        tables = ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies")
        return {name: getattr(self, name)[getattr(self, name)["flow"] == flow_id] for name in tables}

    def states_at(self, t, *, closed: bool = True) -> pd.DataFrame:
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


# --- column helpers ----------------------------------------------------------------


def _states(codes: np.ndarray) -> pd.Categorical:
    """State codes (UNKNOWN = -1 becomes NaN) as the ordered state categorical."""
    codes = np.asarray(codes, dtype=np.int64)
    return pd.Categorical.from_codes(np.where(codes < 0, -1, codes), dtype=STATE_DTYPE)


def _datetimes(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def _frames(table: PacketTable, rows: np.ndarray) -> pd.arrays.IntegerArray:
    rows = np.asarray(rows, dtype=np.int64)
    valid = rows >= 0
    values = np.zeros(len(rows), dtype=np.int64)
    if len(table):
        values[valid] = table["frame"][rows[valid]]
    return pd.arrays.IntegerArray(values, ~valid)


def _insert_files(frame: pd.DataFrame, table: PacketTable, after: str, rows: np.ndarray,
                  prefix: str = "") -> pd.DataFrame:
    """For a capture set: ``file`` and ``file_frame`` of ``rows`` (-1: none) inserted after column ``after``.

    ``file`` is a categorical of the file names in set order; ``file_frame``
    has the dtype of the frame column it follows: int64, or nullable Int64
    where a row may have no packet (a timer's transition, a capture-wide anomaly).
    """
    if not table.is_set:
        return frame
    rows = np.asarray(rows, dtype=np.int64)
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    names = [f.name for f in table.files]
    codes = np.where(valid, table["file"][safe].astype(np.int64), -1) if len(table) else np.full(len(rows), -1)
    inside = table["file_frame"][safe].astype(np.int64) if len(table) else np.zeros(len(rows), dtype=np.int64)
    at = frame.columns.get_loc(after) + 1
    frame.insert(at, prefix + "file", pd.Categorical.from_codes(codes, categories=names))
    nullable = isinstance(frame[after].dtype, pd.Int64Dtype)
    frame.insert(at + 1, prefix + "file_frame", pd.arrays.IntegerArray(inside, ~valid) if nullable else inside)
    return frame


def _names_a_set(source) -> bool:
    """A directory or a glob pattern given to :func:`analyze` as one path."""
    from pcapstate.decode.capture_set import is_glob

    path = os.fspath(source)
    return os.path.isdir(path) or is_glob(path)


def _row_addresses(table: PacketTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source and destination addresses of ``rows`` as text, formatting each distinct address once."""
    result = []
    for column in ("src_ip", "dst_ip"):
        raw = table[column][rows] if len(rows) else np.zeros((0, 16), dtype=np.uint8)
        unique, inverse = np.unique(np.ascontiguousarray(raw).view(np.dtype((np.void, 16))).ravel(),
                                    return_inverse=True)
        text = np.array([format_address(bytes(u)) for u in unique], dtype=object)
        result.append(text[inverse.ravel()] if len(rows) else np.zeros(0, dtype=object))
    return result[0], result[1]


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _handshake_codes(conn: np.ndarray) -> np.ndarray:
    seen = conn[:, rp.C_SEEN]
    both_established = (seen & rp.SEEN_CLIENT_HANDSHAKE != 0) & (seen & rp.SEEN_SERVER_HANDSHAKE != 0)
    saw_open = (seen & (rp.SEEN_SYN | rp.SEEN_SYN_ACK)) != 0
    complete = both_established & (seen & rp.SEEN_SYN != 0) & (seen & rp.SEEN_SYN_ACK != 0)
    return np.where(complete, 0, np.where(saw_open, 1, 2)).astype(np.int8)


__all__ = ["Analysis", "analyze", "State"]
