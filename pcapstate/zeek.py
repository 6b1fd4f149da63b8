"""Zeek's connection summary: ``conn_state`` and ``history`` of conn.log, per flow.

A second, independent reading of the packets that follows Zeek (9.x) rather
than RFC 9293, so that operators can set pcapstate's flows beside conn.log.
pcapstate's RFC timelines are not involved.  The rules, from Zeek's source:

* Endpoints are INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL (first seen
  mid-stream), ESTABLISHED, CLOSED (FIN) or RESET (:class:`ZeekState`),
  stepped per packet as ``TCPSessionAdapter.cc`` does (``Update*State``).
* The originator is the first packet's sender, except that a first packet
  other than a SYN sent from a likely server port (``likely_server_ports``)
  makes the receiver the originator, unless the destination port is one too
  and the packet is a SYN-ACK or comes from the higher port
  (``TCPAnalyzer::WantConnection``); a SYN answering a SYN-ACK seen first
  swaps them again.  Each swap writes ``^`` (``Connection::FlipRoles``).
* History letters (``update_history``; ``Session::CheckHistory``): upper case
  from the originator; A, D, I, Q at most once per direction; S, H, F, R
  again only when the sequence number differs from the last packet with that
  flag; C (bad checksum), G (content gap), T (retransmitted payload),
  W (zero window) on the 1st, 10th, 100th... event (``ScaledHistoryEntry``).
* A packet with a bad checksum is dropped after its C/c (``ValidateChecksum``;
  ``validate_checksums=False`` is Zeek's ``-C``).
* ``conn_state`` is ``Conn::conn_state`` of
  ``scripts/base/protocols/conn/main.zeek`` (:func:`conn_state`).
* Zeek ends a connection on a SYN with a new sequence number or after a close
  (``IsReuse``) and on its timers; the next packet of the 4-tuple opens a new
  one.  pcapstate's flows are not re-split: each flow reports the Zeek
  connection its first packet opened (see :mod:`pcapstate.zeek_tcp`), and
  ``split`` says where Zeek logs the flow's later packets as more connections.

Known differences: a bad IPv4 header checksum is treated like a bad TCP
checksum (Zeek drops such a packet without a C: the packet table has one
``bad_checksum`` flag for both); ``X`` (an application analyzer's limit) and
gaps that depend on application analyzers are not reproduced;
``likely_server_ports`` is that of a plain ``zeek -r`` run; from tcpdump text
without sequence numbers the letters that compare them (S H F R T G) are
approximate.
"""
from __future__ import annotations

import re

import numpy as np

from pcapstate import replay as rp
from pcapstate.zeek_seq import (
    CLOSED, E_MISSED, E_PKTS, E_STATE, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT, endpoint_size)
from pcapstate.zeek_tcp import (
    C_DONE, C_LAST, C_ORIG_SIDE, C_START, N_P, P_ACK, P_BAD, P_CONN, P_DPORT, P_FLAGS, P_LEN, P_SEQ, P_SIDE, P_SPORT,
    P_TRUNC, P_TS, P_WIN, ZeekPass, ZeekState)

# likely_server_ports of a plain ``zeek -r`` run: the TCP ports the base protocol
# scripts add (a bare ``zeek -b`` run only has those of the scripts it loads).
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631, 636,
    989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432,
    6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000})
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")


def conn_state(orig: int, resp: int, orig_size: int, resp_size: int, history: str) -> str:
    """Conn::conn_state for TCP, from both endpoints' final :class:`ZeekState`."""
    o_inactive, r_inactive = orig in (INACTIVE, PARTIAL), resp in (INACTIVE, PARTIAL)
    if resp == RESET:
        if orig in (SYN_SENT, SYN_ACK_SENT) or (orig == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if orig == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0_HISTORY.fullmatch(history) else "OTH"
        return "RSTO"
    if orig == CLOSED and resp == CLOSED:
        return "SF"
    if orig == CLOSED:
        return "SH" if r_inactive else "S2"
    if resp == CLOSED:
        return "SHR" if o_inactive else "S3"
    if orig == SYN_SENT and resp == INACTIVE:
        return "S0"
    if orig == ESTABLISHED and resp == ESTABLISHED:
        return "S1"
    return "OTH"


def packet_matrix(tracking) -> np.ndarray:
    """The pass's (n, N_P) int64 input: packet-table columns and the replay's flow and side per row."""
    table, rows = tracking.table, tracking.result.rows
    pk = np.zeros((len(table), N_P), dtype=np.int64)
    pk[:, P_CONN], pk[:, P_SIDE] = rows[:, rp.R_CONN], rows[:, rp.R_SIDE]
    for column, name in ((P_FLAGS, "flags"), (P_SEQ, "seq"), (P_ACK, "ack"), (P_LEN, "payload_len"),
                         (P_TS, "ts_ns"), (P_WIN, "window"), (P_SPORT, "sport"), (P_DPORT, "dport"),
                         (P_TRUNC, "truncated"), (P_BAD, "bad_checksum")):
        pk[:, column] = table[name]
    return pk


def zeek_summary(tracking, *, validate_checksums: bool = True,
                 likely_server_ports=LIKELY_SERVER_PORTS) -> dict[str, np.ndarray]:
    """Zeek's conn.log fields for every flow (index = pcapstate flow id).

    ``conn_state``: object array of str; ``history``: object array of str, None
    where Zeek logs ``-``; ``orig_is_client``: bool, Zeek's originator is
    pcapstate's client; ``orig_pkts``, ``resp_pkts``, ``missed_bytes``: int64;
    ``duration``: float64 seconds, NaN where Zeek logs ``-`` (zero duration);
    ``orig_bytes``, ``resp_bytes``: int64, -1 where Zeek logs ``-``; ``split``:
    bool, Zeek gives later packets of the flow to further connections (a new
    SYN, or one of its timers ended the first), which this summary leaves out.
    """
    n_conn = len(tracking.result.connections)
    server_port = np.zeros(65536, dtype=np.bool_)
    server_port[sorted(likely_server_ports)] = True
    zeek = ZeekPass(packet_matrix(tracking), n_conn, server_port, validate_checksums)
    zeek.run(tracking.conversations.order)
    return _summarise(zeek, n_conn)


def _histories(hist: np.ndarray, n_conn: int) -> np.ndarray:
    letters: list[list[str]] = [[] for _ in range(n_conn)]
    for k, code in hist.tolist():
        letters[k].append(chr(code))
    history = np.empty(n_conn, dtype=object)
    history[:] = ["".join(chars) or None for chars in letters]
    return history


def _summarise(zeek: ZeekPass, n_conn: int) -> dict[str, np.ndarray]:
    ends, conn = zeek.ends, zeek.conn
    history = _histories(zeek.hist[: zeek.n_hist], n_conn)
    orig = 2 * np.arange(n_conn) + np.maximum(conn[:, C_ORIG_SIDE], 0)
    states = np.empty(n_conn, dtype=object)
    sizes = np.zeros((n_conn, 2), dtype=np.int64)
    for k in range(n_conn):
        o = int(orig[k])
        sizes[k] = endpoint_size(ends, o), endpoint_size(ends, o ^ 1)
        states[k] = conn_state(int(ends[o, E_STATE]), int(ends[o ^ 1, E_STATE]), int(sizes[k, 0]),
                               int(sizes[k, 1]), history[k] or "")
    duration_ns = conn[:, C_LAST] - conn[:, C_START]
    logged = duration_ns > 0
    return {
        "conn_state": states,
        "history": history,
        "orig_is_client": conn[:, C_ORIG_SIDE] == 0,
        "orig_pkts": ends[orig, E_PKTS].copy(),
        "resp_pkts": ends[orig ^ 1, E_PKTS].copy(),
        "orig_bytes": np.where(logged, sizes[:, 0], -1),
        "resp_bytes": np.where(logged, sizes[:, 1], -1),
        "missed_bytes": ends[orig, E_MISSED] + ends[orig ^ 1, E_MISSED],
        "duration": np.where(logged, duration_ns / 1e9, np.nan),
        "split": conn[:, C_DONE] == 1,
    }


__all__ = ["CONN_STATES", "LIKELY_SERVER_PORTS", "ZeekState", "conn_state", "zeek_summary"]
