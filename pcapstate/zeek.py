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

The per-packet pass and ``conn_state`` run compiled (:mod:`pcapstate.jit`), or
as the same plain Python with ``PCAPSTATE_NO_JIT=1``; the pass leaves each
flow's history as character codes, which become strings here, once per flow.
"""
from __future__ import annotations

import numpy as np

from pcapstate.jit import entry, njit
from pcapstate.zeek_seq import (
    CLOSED, E_MISSED, E_PKTS, E_STATE, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT, endpoint_size,
    new_endpoints)
from pcapstate.zeek_tcp import (
    C_DONE, C_LAST, C_LETTERS, C_ORIG_SIDE, C_START, L_A, L_F, L_FLIP, L_G, L_H, L_I, L_Q, L_R, L_S, ZeekState,
    history_codes, new_connections, run)

# likely_server_ports of a plain ``zeek -r`` run: the TCP ports the base protocol
# scripts add (a bare ``zeek -b`` run only has those of the scripts it loads).
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631, 636,
    989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432,
    6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000})
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH = range(len(CONN_STATES))
# room for the letters of a typical connection; the pass runs again, with more, when one has more
HISTORY_ROOM = 24


@njit
def rstos0_history(letters: np.ndarray, n: int) -> bool:
    """Whether the first ``n`` letters match ``^?S[^HAFGIQ]*R.*``: a SYN, then an R before any H A F G I Q."""
    i = 1 if n > 0 and letters[0] == L_FLIP else 0
    if i >= n or letters[i] != L_S:
        return False
    for j in range(i + 1, n):
        if letters[j] == L_R:
            return True
        if letters[j] in (L_H, L_A, L_F, L_G, L_I, L_Q):
            return False
    return False


@entry("i8", "i8", "i8", "i8", "u1[::1]", "i8")
def conn_state_code(orig: int, resp: int, orig_size: int, resp_size: int, letters: np.ndarray, n: int) -> int:
    """Conn::conn_state for TCP (an index into CONN_STATES), from both endpoints' final states."""
    o_inactive, r_inactive = orig in (INACTIVE, PARTIAL), resp in (INACTIVE, PARTIAL)
    if resp == RESET:
        if orig in (SYN_SENT, SYN_ACK_SENT) or (orig == RESET and orig_size == 0 and resp_size == 0):
            return REJ
        return RSTRH if o_inactive else RSTR
    if orig == RESET:
        if r_inactive:
            return RSTOS0 if rstos0_history(letters, n) else OTH
        return RSTO
    if orig == CLOSED and resp == CLOSED:
        return SF
    if orig == CLOSED:
        return SH if r_inactive else S2
    if resp == CLOSED:
        return SHR if o_inactive else S3
    if orig == SYN_SENT and resp == INACTIVE:
        return S0
    if orig == ESTABLISHED and resp == ESTABLISHED:
        return S1
    return OTH


def conn_state(orig: int, resp: int, orig_size: int, resp_size: int, history: str) -> str:
    """Conn::conn_state for TCP, from both endpoints' final :class:`ZeekState`."""
    letters = np.frombuffer(history.encode("ascii"), dtype=np.uint8).copy()
    return CONN_STATES[conn_state_code(int(orig), int(resp), int(orig_size), int(resp_size), letters, len(letters))]


@entry("i8[:, ::1]", "i8[:, ::1]", "u1[:, ::1]", "i8[::1]", "i8[:, ::1]", "i8[::1]")
def finish(ends: np.ndarray, conn: np.ndarray, hist: np.ndarray, orig: np.ndarray, sizes: np.ndarray,
           states: np.ndarray) -> None:
    """Per flow: the originator's endpoint row, both endpoints' sizes and the conn_state code."""
    for k in range(conn.shape[0]):
        o = 2 * k + max(conn[k, C_ORIG_SIDE], 0)
        orig[k] = o
        sizes[k, 0], sizes[k, 1] = endpoint_size(ends, o), endpoint_size(ends, o ^ 1)
        states[k] = conn_state_code(ends[o, E_STATE], ends[o ^ 1, E_STATE], sizes[k, 0], sizes[k, 1], hist[k],
                                    conn[k, C_LETTERS])


def packet_inputs(tracking) -> tuple[np.ndarray, ...]:
    """What the pass reads of every packet: the replay's packet matrix and per-row output, and three columns."""
    table = tracking.table
    return (tracking.packets, tracking.result.rows, np.ascontiguousarray(table["window"], dtype=np.uint16),
            np.ascontiguousarray(table["truncated"], dtype=np.bool_),
            np.ascontiguousarray(table["bad_checksum"], dtype=np.bool_))


def zeek_summary(tracking, *, validate_checksums: bool = True,
                 likely_server_ports=LIKELY_SERVER_PORTS) -> dict[str, np.ndarray]:
    """Zeek's conn.log fields for every flow (index = pcapstate flow id).

    ``conn_state``: object array of str (``conn_state_code``: its index into
    CONN_STATES); ``history``: object array of str, None
    where Zeek logs ``-``; ``orig_is_client``: bool, Zeek's originator is
    pcapstate's client; ``orig_pkts``, ``resp_pkts``, ``missed_bytes``: int64;
    ``duration``: float64 seconds, NaN where Zeek logs ``-`` (zero duration);
    ``orig_bytes``, ``resp_bytes``: int64, -1 where Zeek logs ``-``; ``split``:
    bool, Zeek gives later packets of the flow to further connections (a new
    SYN, or one of its timers ended the first), which this summary leaves out.
    """
    return summarise_packets(packet_inputs(tracking), tracking.orders, len(tracking.result.connections),
                             port_mask(likely_server_ports), validate_checksums)


def port_mask(ports) -> np.ndarray:
    """A bool per TCP port number, True for ``ports``."""
    mask = np.zeros(65536, dtype=np.bool_)
    mask[sorted(ports)] = True
    return mask


def summarise_packets(packets: tuple, order, n_conn: int, server_port: np.ndarray,
                      validate: bool) -> dict[str, np.ndarray]:
    """:func:`zeek_summary` over the pass's inputs: :func:`packet_inputs`, the replay order, a port mask.

    ``order`` may be a list of shares of it (:mod:`pcapstate.jobs`), each walked on a thread of its own.
    """
    from pcapstate.jobs import run_all

    orders = order if isinstance(order, list) else [order]
    room = HISTORY_ROOM
    while True:  # twice at most: the first run counts the letters of the longest history
        ends, conn = new_endpoints(2 * n_conn), new_connections(n_conn, room)
        run_all(lambda share: run(*packets, share, ends, conn, server_port, bool(validate)), orders)
        longest = int(conn[:, C_LETTERS].max(initial=0))
        if longest <= room:
            return _summarise(ends, conn)
        room = longest


def histories(hist: np.ndarray) -> np.ndarray:
    """Letter codes, a zero-padded uint8 row per flow, as strings (None for none)."""
    # A row of bytes viewed as one fixed-width bytes value: numpy drops the zero padding.
    raw = np.ascontiguousarray(hist).view(f"S{hist.shape[1]}").reshape(-1)
    text = raw.astype(f"U{hist.shape[1]}")
    history = text.astype(object)
    history[text == ""] = None
    return history


def _summarise(ends: np.ndarray, conn: np.ndarray) -> dict[str, np.ndarray]:
    n_conn, hist = conn.shape[0], history_codes(conn)
    orig = np.zeros(n_conn, dtype=np.int64)
    sizes = np.zeros((n_conn, 2), dtype=np.int64)
    states = np.zeros(n_conn, dtype=np.int64)
    finish(ends, conn, hist, orig, sizes, states)
    duration_ns = conn[:, C_LAST] - conn[:, C_START]
    logged = duration_ns > 0
    return {
        "conn_state": np.array(CONN_STATES, dtype=object)[states],
        "conn_state_code": states,
        "history": histories(hist),
        "orig_is_client": conn[:, C_ORIG_SIDE] == 0,
        "orig_pkts": ends[orig, E_PKTS],
        "resp_pkts": ends[orig ^ 1, E_PKTS],
        "orig_bytes": np.where(logged, sizes[:, 0], -1),
        "resp_bytes": np.where(logged, sizes[:, 1], -1),
        "missed_bytes": ends[orig, E_MISSED] + ends[orig ^ 1, E_MISSED],
        "duration": np.where(logged, duration_ns / 1e9, np.nan),
        "split": conn[:, C_DONE] == 1,
    }


__all__ = ["CONN_STATES", "LIKELY_SERVER_PORTS", "ZeekState", "conn_state", "packet_inputs", "port_mask",
           "summarise_packets", "zeek_summary"]
