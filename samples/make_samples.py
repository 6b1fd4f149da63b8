#!/usr/bin/env python3
"""Make real Linux-kernel TCP captures of chosen scenarios, with the kernel's own state log.

Usage (as root):  sudo python3 samples/make_samples.py [scenario ...]
Without arguments every scenario is made; `--list` prints them.

For each scenario this script
  * builds two fresh network namespaces, ``pcs_cli`` (client, 10.77.0.1) and ``pcs_srv``
    (server, 10.77.0.2), joined by the veth pair ``pcs_c`` / ``pcs_s`` (IPv6 off, static
    neighbour entries so no ARP, TSO/GSO limited to one segment so the capture shows wire-size
    segments), with per-namespace TCP sysctls that shorten the timers;
  * adds iptables rules *inside* the namespaces (drops happen in the receiver's INPUT chain, after
    the capture point, so the capture still shows the lost packet), and for delay a user-space
    NFQUEUE holder written here in pure Python (the kernel has no netem);
  * captures on ``pcs_c`` in the client namespace: ``tcpdump -n -s 128 -U -w samples/<name>.pcap``
    (pcap, microsecond timestamps from CLOCK_REALTIME);
  * records every socket state change of the kernel from the tracepoint
    ``sock:inet_sock_set_state`` (plus ``tcp:tcp_retransmit_skb``, ``tcp:tcp_retransmit_synack``,
    ``tcp:tcp_send_reset``, ``tcp:tcp_receive_reset``) in a private tracefs instance
    (``instances/pcapstate_samples``) whose ``trace_clock`` is ``mono`` (CLOCK_MONOTONIC), and
    converts them to epoch seconds with an offset CLOCK_REALTIME - CLOCK_MONOTONIC measured at
    the start of the scenario (the tightest of 50 back-to-back readings) and checked with a
    ``trace_marker`` write;
  * polls ``/proc/net/tcp`` in both namespaces every 50 ms (request sockets of half-open
    connections, NEW_SYN_RECV, never fire the tracepoint; this is where they show up);
  * writes ``samples/<name>.kernel.json``.
Servers and clients are real sockets of the Python socket module run inside the namespaces by
this same script in a helper mode (``--helper ROLE JSON``). Everything is undone on exit
(namespaces, which hold the iptables rules; the tracing instance; child processes).
Only addresses 10.77.x.y inside these namespaces are ever used.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NS_C, NS_S = "pcs_cli", "pcs_srv"
IF_C, IF_S = "pcs_c", "pcs_s"
MAC_C, MAC_S = "02:77:00:00:00:01", "02:77:00:00:00:02"
CLI, SRV = "10.77.0.1", "10.77.0.2"
FLOOD_NET = "10.77.1.0/24"
PORT = 5000
SNAPLEN = 128
TRACEFS = "/sys/kernel/tracing"
INSTANCE = TRACEFS + "/instances/pcapstate_samples"
TRACE_EVENTS = ["sock/inet_sock_set_state", "tcp/tcp_retransmit_skb",
                "tcp/tcp_retransmit_synack", "tcp/tcp_send_reset", "tcp/tcp_receive_reset"]
REQUIRED_TOOLS = ("ip", "iptables", "tcpdump")
TOOL_PACKAGES = {"ip": "iproute2", "iptables": "iptables", "tcpdump": "tcpdump"}
NFQ_DELAY = 0.100  # one-way delay added by the NFQUEUE holder, seconds

# Kernel state names -> RFC 9293 names (NEW_SYN_RECV is Linux's request sock, kept as is).
STATE_NAMES = {
    "TCP_ESTABLISHED": "ESTABLISHED", "TCP_SYN_SENT": "SYN_SENT", "TCP_SYN_RECV": "SYN_RCVD",
    "TCP_FIN_WAIT1": "FIN_WAIT_1", "TCP_FIN_WAIT2": "FIN_WAIT_2", "TCP_TIME_WAIT": "TIME_WAIT",
    "TCP_CLOSE": "CLOSED", "TCP_CLOSE_WAIT": "CLOSE_WAIT", "TCP_LAST_ACK": "LAST_ACK",
    "TCP_LISTEN": "LISTEN", "TCP_CLOSING": "CLOSING", "TCP_NEW_SYN_RECV": "NEW_SYN_RECV",
}
PROC_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RCVD", 4: "FIN_WAIT_1",
               5: "FIN_WAIT_2", 6: "TIME_WAIT", 7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK",
               10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}

# Sysctls read back from both namespaces and recorded in every kernel.json.
RECORDED_SYSCTLS = ["tcp_syn_retries", "tcp_syn_linear_timeouts", "tcp_synack_retries",
                    "tcp_orphan_retries", "tcp_fin_timeout", "tcp_syncookies",
                    "tcp_max_syn_backlog", "tcp_retries2", "tcp_sack", "tcp_timestamps",
                    "tcp_early_retrans"]

# Shortened timers. SYN: tcp_syn_linear_timeouts=2 (Linux >= 6.x default: 4) gives 3 retries
# 1 s apart, then doubling; tcp_syn_retries=3 bounds the *time* (1+2+4+8 = 15 s), not the count.
CLIENT_SYSCTLS = {"tcp_syn_retries": 3, "tcp_syn_linear_timeouts": 2, "tcp_orphan_retries": 4,
                  "tcp_fin_timeout": 10}
SERVER_SYSCTLS = {"tcp_synack_retries": 3, "tcp_orphan_retries": 4, "tcp_fin_timeout": 10}


# --------------------------------------------------------------------------------------------
# Scenarios. Each: description, client/server helper names and params, iptables rules per side,
# duration (hard bound from the first packet, seconds), tail (capture time after both helpers
# exited), extra sysctls.
def ipt_drop(*match):
    return ["-A", "INPUT", "-p", "tcp"] + list(match) + ["-j", "DROP"]


SCENARIOS = {
    "refused": dict(
        description="No listener on 10.77.0.2:5000: the client's SYN is answered by RST "
                    "(connection refused). Client CLOSED->SYN_SENT->CLOSED.",
        client="connect_only", duration=3, tail=0.5),
    "listen_no_client": dict(
        description="Server listens on 10.77.0.2:5000 for 2 s, nobody connects, then it closes "
                    "the listener. The capture has no packets at all; only the kernel log "
                    "shows LISTEN.",
        server="listen_only", server_params={"hold": 2.0}, duration=3, tail=0.3),
    "client_closes_first": dict(
        description="Client sends 'helloworld', server replies 'HELLOWORLD', the client closes "
                    "first (FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT), the server closes 0.3 s after "
                    "reading EOF (CLOSE_WAIT, LAST_ACK, CLOSED). Linux TIME_WAIT lasts a fixed "
                    "60 s and is not waited for: the client is still in TIME_WAIT at the end.",
        server="echo_close_after_eof", client="hello_close", duration=4, tail=0.5),
    "server_closes_first": dict(
        description="Server replies then closes first (FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT); the "
                    "client reads EOF, lingers 2 s in CLOSE_WAIT, then closes (LAST_ACK, "
                    "CLOSED).",
        server="echo_close", client="hello_wait_eof_close", client_params={"linger": 2.0},
        duration=5, tail=0.5),
    "close_wait_leak": dict(
        description="Server replies then closes first; the client application never calls "
                    "close(): client stays in CLOSE_WAIT and the server in FIN_WAIT_2 until the "
                    "capture ends (3 s). Not closed before the end of the capture.",
        server="echo_close", client="hello_wait_eof_close", client_params={"linger": 600},
        duration=3, tail=0.0),
    "syn_dropped": dict(
        description="iptables in the server namespace drops every SYN to port 5000 (INPUT, after "
                    "the capture point). The client stays in SYN_SENT and retransmits the SYN "
                    "5 times (tcp_syn_linear_timeouts=2: 1, 1, 1 s apart, then doubling 2, 4 s) "
                    "and gives up 8 s after the last one, once the 15 s that tcp_syn_retries=3 "
                    "allows have passed: connect() fails with ETIMEDOUT, SYN_SENT -> CLOSED. "
                    "The server stays in LISTEN.",
        server="listen_only", server_params={"hold": 600}, client="connect_only",
        rules={"server": [ipt_drop("-d", SRV, "--dport", str(PORT), "--syn")]},
        duration=20, tail=1.0),
    "synack_dropped": dict(
        description="iptables in the client namespace drops the server's SYN-ACKs (INPUT). The "
                    "server's request sock (NEW_SYN_RECV, shown as SYN_RCVD in /proc/net/tcp; no "
                    "tracepoint fires for request socks) retransmits the SYN-ACK "
                    "(tcp_synack_retries=3) on its own timer and also on each retransmitted SYN; "
                    "the client retransmits its SYN as in syn_dropped and fails with ETIMEDOUT "
                    "(SYN_SENT -> CLOSED); the server's SYN-ACK retries go on until the request "
                    "sock expires.",
        server="listen_only", server_params={"hold": 600}, client="connect_only",
        rules={"client": [ipt_drop("-s", SRV, "--sport", str(PORT),
                                   "--tcp-flags", "SYN,ACK", "SYN,ACK")]},
        duration=20, fixed=True),
    "fin_dropped": dict(
        description="After the request/reply the client closes; iptables in the server namespace "
                    "drops the client's FINs. The client (orphaned) stays in FIN_WAIT_1 and "
                    "retransmits the FIN with doubling RTO (tcp_orphan_retries=4) until it gives "
                    "up (FIN_WAIT_1 -> CLOSED, no RST sent). The server never sees the FIN and "
                    "stays ESTABLISHED.",
        server="echo_hold", server_params={"hold": 600}, client="hello_close",
        rules={"server": [ipt_drop("-s", CLI, "--dport", str(PORT),
                                   "--tcp-flags", "FIN", "FIN")]},
        duration=9, fixed=True),
    "last_fin_dropped": dict(
        description="The client closes first (FIN_WAIT_1, FIN_WAIT_2); the server reads EOF "
                    "(CLOSE_WAIT) and closes 0.5 s later (LAST_ACK), but its FINs are dropped by "
                    "iptables in the client namespace. The server retransmits the FIN "
                    "(tcp_orphan_retries=4) and gives up (LAST_ACK -> CLOSED). The orphaned "
                    "client FIN_WAIT_2 ends after tcp_fin_timeout=10 s.",
        server="echo_close_after_eof", server_params={"delay": 0.5}, client="hello_close",
        rules={"client": [ipt_drop("-s", SRV, "--sport", str(PORT),
                                   "--tcp-flags", "FIN", "FIN")]},
        duration=10, fixed=True),
    "syn_flood": dict(
        description="30 SYNs from forged sources 10.77.1.1-30 (raw socket in the client "
                    "namespace, 20 ms apart) to a listener with backlog 128. The server answers "
                    "each with a SYN-ACK (routed back into the veth, dropped unanswered in the "
                    "client namespace's raw PREROUTING) and keeps 30 half-open request socks "
                    "(NEW_SYN_RECV; /proc/net/tcp shows SYN_RCVD) retransmitting SYN-ACKs "
                    "(tcp_synack_retries=3: after 1, 2, 4 s) before dropping them. "
                    "tcp_syncookies=1 (default) but cookies never engage: 30 < backlog.",
        server="listen_only", server_params={"hold": 600}, client="syn_flood",
        client_params={"count": 30, "interval": 0.02},
        duration=18, fixed=True),
    "simultaneous_close": dict(
        description="A user-space NFQUEUE holder delays every TCP packet by 100 ms in both "
                    "namespaces' INPUT (after the capture point). After a request/reply both "
                    "applications call close() at the same instant, so the FINs cross: both "
                    "sides go FIN_WAIT_1 -> CLOSING -> TIME_WAIT.",
        server="echo_close_at", client="hello_close_at", nfq=True,
        duration=6, tail=1.0),
    "data_loss": dict(
        description="The server sends 200 KB: 100 KB in one go, then 25 chunks of 4000 bytes "
                    "40 ms apart (then waits for the client's close); iptables in the client "
                    "namespace drops 5 % of the server's data segments at random (-m statistic "
                    "--mode random --probability 0.05) and a NFQUEUE holder delays every packet "
                    "10 ms in each direction (RTT ~20 ms). Loss inside a flight is repaired by "
                    "fast retransmission (SACK/RACK), loss at the end of a chunk by tail-loss "
                    "probes. To force retransmission timeouts too, a second rule drops all of the "
                    "server's data segments from 1.0 s to 1.9 s after the capture start "
                    "(see 'blackout'), covering the last chunks: their loss probe and the "
                    "first RTO retransmissions are lost too, so the RTO doubles.",
        server="send_bulk", server_params={"size": 200000, "chunks": 25, "chunk": 4000,
                                           "gap": 0.04},
        client="recv_all_close", nfq=0.010, blackout=(1.0, 0.9),
        rules={"client": [ipt_drop("-s", SRV, "--sport", str(PORT), "-m", "length",
                                   "--length", "200:65535", "-m", "statistic",
                                   "--mode", "random", "--probability", "0.05")]},
        duration=12, tail=0.5),
    "reset_midstream": dict(
        description="The client streams 1000-byte chunks every 50 ms; the server reads 2000 "
                    "bytes, waits, and closes with unread data in its receive queue, so the "
                    "kernel sends RST instead of FIN (ESTABLISHED -> CLOSED on both).",
        server="read_some_close", client="stream_until_error", duration=4, tail=0.5),
    "half_close": dict(
        description="The client sends a request and shutdown(SHUT_WR) (FIN_WAIT_1, FIN_WAIT_2); "
                    "the server (CLOSE_WAIT) keeps sending 5 chunks of 100 bytes 0.2 s apart "
                    "after the client's FIN, then closes (LAST_ACK); the client reads to EOF "
                    "(TIME_WAIT).",
        server="half_close_server", client="half_close_client", duration=5, tail=0.5),
    "simultaneous_open": dict(
        description="No listener: both endpoints bind a fixed port and connect() to each other "
                    "at the same instant (10.77.0.1:40015 <-> 10.77.0.2:5000) while a NFQUEUE "
                    "holder delays every packet 100 ms in both INPUTs, so the SYNs cross: "
                    "SYN_SENT -> SYN_RCVD -> ESTABLISHED on both. Then each sends 5 bytes and "
                    "the 10.77.0.1 side closes first.",
        server="simopen_server", client="simopen_client", nfq=True,
        duration=6, tail=1.0),
}
CLIENT_PORTS = {name: 40001 + i for i, name in enumerate(SCENARIOS)}


# --------------------------------------------------------------------------------------------
# Helper mode: runs inside a namespace.
def _out(msg, **kw):
    kw.update(t=round(time.time(), 6), msg=msg)
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def _listener(p):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((SRV, PORT))
    s.listen(p.get("backlog", 128))
    _out("READY")
    return s


def _accept(lst):
    lst.settimeout(30)
    c, peer = lst.accept()
    c.settimeout(None)
    _out("accepted", peer="%s:%d" % peer)
    return c


def _client_sock(p):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((CLI, p["cport"]))  # explicit port: the SYN_SENT tracepoint then shows it
    return s


def _connect(p):
    s = _client_sock(p)
    t0 = time.time()
    try:
        s.connect((SRV, PORT))
    except OSError as e:
        _out("connect failed", error=os.strerror(e.errno), after=round(time.time() - t0, 3))
        s.close()
        return None
    _out("connected")
    return s


def _recv_until_eof(c):
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            return n
        n += len(d)


def _sleep_until(t):
    while time.time() < t:
        time.sleep(min(0.01, max(0.0, t - time.time())))


def h_listen_only(p):
    lst = _listener(p)
    time.sleep(p["hold"])
    lst.close()
    _out("listener closed")


def h_connect_only(p):
    s = _connect(p)
    if s:
        s.close()


def h_echo_close_after_eof(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    d = c.recv(100)
    c.sendall(d.upper())
    n = _recv_until_eof(c)
    _out("peer closed (EOF)", extra_bytes=n)
    time.sleep(p.get("delay", 0.3))
    c.close()
    _out("closed")


def h_echo_close(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    d = c.recv(100)
    c.sendall(d.upper())
    time.sleep(0.2)
    c.close()
    _out("closed")
    time.sleep(p.get("hold", 0))


def h_echo_hold(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    d = c.recv(100)
    c.sendall(d.upper())
    time.sleep(p["hold"])


def h_hello_close(p):
    s = _connect(p)
    s.sendall(b"helloworld")
    _out("reply", data=s.recv(100).decode())
    time.sleep(0.2)  # let the delayed ACK of the reply go out alone, before the FIN
    s.close()
    _out("closed")


def h_hello_wait_eof_close(p):
    s = _connect(p)
    s.sendall(b"helloworld")
    _out("reply", data=s.recv(100).decode())
    n = _recv_until_eof(s)
    _out("peer closed (EOF)", extra_bytes=n)
    time.sleep(p["linger"])
    s.close()
    _out("closed")


def h_echo_close_at(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    d = c.recv(100)
    c.sendall(d.upper())
    _sleep_until(p["close_at"])
    c.close()
    _out("closed")


def h_hello_close_at(p):
    s = _connect(p)
    time.sleep(0.3)  # the handshake's ACK reaches the server alone (see simultaneous_close)
    s.sendall(b"helloworld")
    _out("reply", data=s.recv(100).decode())
    _sleep_until(p["close_at"])
    s.close()
    _out("closed")


def h_send_bulk(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    data = bytes(i % 251 for i in range(p["size"]))
    tail = p.get("chunks", 0) * p.get("chunk", 0)
    c.sendall(data[:len(data) - tail])
    for i in range(len(data) - tail, len(data), p.get("chunk", 1)):
        time.sleep(p["gap"])
        c.sendall(data[i:i + p["chunk"]])
    _out("sent", bytes=p["size"])
    n = _recv_until_eof(c)
    c.close()
    _out("closed", extra_bytes=n)


def h_recv_all_close(p):
    s = _connect(p)
    n = 0
    while n < p.get("size", 200000):
        d = s.recv(65536)
        if not d:
            break
        n += len(d)
    _out("received", bytes=n)
    s.close()
    _out("closed")


def h_read_some_close(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    got = 0
    while got < 2000:
        got += len(c.recv(2000 - got))
    time.sleep(0.3)  # more chunks arrive and stay unread
    c.close()  # unread data -> RST (RFC 2525 2.17)
    _out("closed with unread data", read=got)


def h_stream_until_error(p):
    s = _connect(p)
    sent = 0
    try:
        for _ in range(60):
            s.sendall(b"x" * 1000)
            sent += 1000
            time.sleep(0.05)
    except OSError as e:
        _out("send failed", error=os.strerror(e.errno), sent=sent)
    s.close()


def h_half_close_server(p):
    lst = _listener(p)
    c = _accept(lst)
    lst.close()
    req = c.recv(100)
    n = _recv_until_eof(c)
    _out("peer shut down its side (EOF)", request=req.decode(), extra_bytes=n)
    for i in range(5):
        time.sleep(0.2)
        c.sendall(b"%d" % i * 100)
    c.close()
    _out("closed")


def h_half_close_client(p):
    s = _connect(p)
    s.sendall(b"request")
    time.sleep(0.1)
    s.shutdown(socket.SHUT_WR)
    _out("shutdown(SHUT_WR)")
    n = _recv_until_eof(s)
    _out("EOF", received=n)
    s.close()
    _out("closed")


def _simopen(local, lport, remote, rport, p, first_close):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((local, lport))
    _out("READY")
    _sleep_until(p["connect_at"])
    try:
        s.connect((remote, rport))
    except OSError as e:
        _out("connect failed", error=os.strerror(e.errno))
        return
    _out("connected")
    s.sendall(b"hello")
    _out("got", data=s.recv(100).decode())
    if not first_close:
        n = _recv_until_eof(s)
        _out("EOF", extra_bytes=n)
    time.sleep(0.3)
    s.close()
    _out("closed")


def h_simopen_server(p):
    _simopen(SRV, PORT, CLI, p["cport"], p, first_close=False)


def h_simopen_client(p):
    _simopen(CLI, p["cport"], SRV, PORT, p, first_close=True)


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def h_syn_flood(p):
    """Raw SYNs from forged 10.77.1.x sources (IP_HDRINCL)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = socket.inet_aton(SRV)
    for i in range(1, p["count"] + 1):
        src = socket.inet_aton("10.77.1.%d" % i)
        sport, seq = 20000 + i, 0x10000000 * (i % 15) + i
        opts = struct.pack("!BBH", 2, 4, 1460)  # MSS
        tcp = struct.pack("!HHIIBBHHH", sport, PORT, seq, 0, (5 + 1) << 4, 0x02, 64240, 0, 0)
        tcp += opts
        pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i, 0x4000, 64,
                         socket.IPPROTO_TCP, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        s.sendto(ip + tcp, (SRV, 0))
        time.sleep(p["interval"])
    _out("sent forged SYNs", count=p["count"])


# ---- NFQUEUE holder: delays every queued packet by a fixed time, FIFO (pure netlink) --------
NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 3, 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2


def _nla(t, data):
    a = struct.pack("=HH", 4 + len(data), t) + data
    return a + b"\0" * (-len(a) % 4)


def _nfq_msg(mtype, queue, attrs, seq, flags=NLM_F_REQUEST):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | mtype,
                       flags, seq, 0) + body


def h_nfq_delay(p):
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    nl.bind((0, 0))
    q = p.get("queue", 0)
    nl.send(_nfq_msg(NFQNL_MSG_CONFIG, q, [_nla(1, struct.pack("!BxH", 1, socket.AF_INET))],
                     1, NLM_F_REQUEST | NLM_F_ACK))
    nl.send(_nfq_msg(NFQNL_MSG_CONFIG, q, [_nla(2, struct.pack("!IB", 0, 1))],
                     2, NLM_F_REQUEST | NLM_F_ACK))  # copy mode META
    for _ in range(2):
        d = nl.recv(65536)
        if struct.unpack_from("=H", d, 4)[0] == NLMSG_ERROR and struct.unpack_from("=i", d, 16)[0]:
            raise SystemExit("nfqueue config failed: %d" % struct.unpack_from("=i", d, 16)[0])
    _out("READY")
    pending, seq = [], 10
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, pid = pending.pop(0)
            seq += 1
            nl.send(_nfq_msg(NFQNL_MSG_VERDICT, q, [_nla(2, struct.pack("!II", 1, pid))], seq))
        timeout = max(0.0, pending[0][0] - now) if pending else 1.0
        if not select.select([nl], [], [], timeout)[0]:
            continue
        data = nl.recv(1 << 16)
        off = 0
        while off + 16 <= len(data):
            ln, mtype = struct.unpack_from("=IH", data, off)
            if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 20
                while a + 4 <= off + ln:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if atype & 0x7FFF == 1:  # NFQA_PACKET_HDR
                        pending.append((time.monotonic() + p["delay"],
                                        struct.unpack_from("!I", data, a + 4)[0]))
                    if alen < 4:
                        break
                    a += (alen + 3) & ~3
            if ln < 16:
                break
            off += (ln + 3) & ~3


def h_procpoll(p):
    """Print the set of (state, local, remote) of /proc/net/tcp whenever it changes."""
    def addr(h):
        ip, port = h.split(":")
        return "%s:%d" % (socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16))
    last = None
    _out("READY")
    while True:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
        cur = sorted("%s %s %s" % (PROC_STATES.get(int(r.split()[3], 16), r.split()[3]),
                                   addr(r.split()[1]), addr(r.split()[2])) for r in rows)
        if cur != last:
            _out("sockets", sockets=cur)
            last = cur
        time.sleep(p.get("interval", 0.05))


HELPERS = {k[2:]: v for k, v in globals().items() if k.startswith("h_")}


# --------------------------------------------------------------------------------------------
# Orchestrator (root namespace).
def sh(*cmd, check=True, ns=None):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def wr(path, value):
    with open(path, "w") as f:
        f.write(value)


class Proc:
    """A child process whose stdout JSON lines are collected by a thread."""

    def __init__(self, ns, argv, tag):
        self.tag, self.lines = tag, []
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.err = []
        threading.Thread(target=self._read, args=(self.p.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True).start()

    @staticmethod
    def _read(stream, out):
        for line in stream:
            out.append(line.rstrip("\n"))

    def wait_for(self, needle, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if any(needle in l for l in self.lines + self.err):
                return
            if self.p.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError("%s exited: %s" % (self.tag, "\n".join(self.err)))
            time.sleep(0.01)
        raise RuntimeError("%s not ready: %s" % (self.tag, "\n".join(self.err)))

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def helper_proc(ns, role, params, tag):
    argv = [sys.executable, os.path.abspath(__file__), "--helper", role, json.dumps(params)]
    return Proc(ns, argv, tag)


def teardown_netns():
    for ns in (NS_C, NS_S):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def setup_netns(sc):
    teardown_netns()
    for ns, sysctls in ((NS_C, dict(CLIENT_SYSCTLS, **sc.get("client_sysctls", {}))),
                        (NS_S, dict(SERVER_SYSCTLS, **sc.get("server_sysctls", {})))):
        sh("ip", "netns", "add", ns)
        sh("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0", ns=ns)
        sh("sysctl", "-q", "-w", *["net.ipv4.%s=%s" % kv for kv in sysctls.items()], ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "-n", NS_C, "link", "add", IF_C, "address", MAC_C, "type", "veth",
       "peer", "name", IF_S, "address", MAC_S, "netns", NS_S)
    for ns, dev, addr, peer, peermac in ((NS_C, IF_C, CLI, SRV, MAC_S),
                                         (NS_S, IF_S, SRV, CLI, MAC_C)):
        # one segment per skb: the capture shows wire-size segments, not 64 KB GSO packets
        sh("ip", "link", "set", dev, "gso_max_segs", "1", ns=ns)
        sh("ip", "addr", "add", addr + "/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "neigh", "replace", peer, "lladdr", peermac, "nud", "permanent", "dev", dev, ns=ns)
    sh("ip", "route", "add", FLOOD_NET, "via", CLI, "dev", IF_S, ns=NS_S)
    # forged-source SYN-ACKs reach the client namespace (and the capture), then vanish
    sh("iptables", "-t", "raw", "-A", "PREROUTING", "-d", FLOOD_NET, "-j", "DROP", ns=NS_C)
    for side, rules in sc.get("rules", {}).items():
        for rule in rules:
            sh("iptables", *rule, ns=NS_C if side == "client" else NS_S)
    if sc.get("nfq"):
        for ns in (NS_C, NS_S):
            sh("iptables", "-A", "INPUT", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "0",
               "--queue-bypass", ns=ns)


def run_blackout(start, when, info):
    """Insert a DROP rule in the client namespace for a while (a timed total outage)."""
    _sleep_until(start + when[0])
    sh("iptables", *info["rule"], ns=NS_C)
    info["from"] = round(time.time(), 6)
    _sleep_until(start + when[0] + when[1])
    sh("iptables", "-D", *info["rule"][1:2], *info["rule"][3:], ns=NS_C)
    info["to"] = round(time.time(), 6)


def nfq_delay(sc):
    """One-way delay of the scenario's NFQUEUE holders (None: no holder)."""
    if not sc.get("nfq"):
        return None
    return NFQ_DELAY if sc["nfq"] is True else sc["nfq"]


def read_sysctls(ns):
    out = {}
    for k in RECORDED_SYSCTLS:
        v = sh("sysctl", "-n", "net.ipv4." + k, ns=ns, check=False).strip()
        out["net.ipv4." + k] = int(v) if v.lstrip("-").isdigit() else (v or None)
    return out


def iptables_dump(ns):
    return [l for l in sh("iptables-save", ns=ns).splitlines() if l.startswith("-A")]


# ---- tracing ----
def trace_setup():
    if not os.path.isdir(TRACEFS + "/events"):
        sh("mount", "-t", "tracefs", "nodev", TRACEFS)
    if not os.path.isdir(INSTANCE):
        os.mkdir(INSTANCE)
    wr(INSTANCE + "/tracing_on", "0")
    wr(INSTANCE + "/trace_clock", "mono")
    wr(INSTANCE + "/buffer_size_kb", "4096")
    for ev in TRACE_EVENTS:
        wr("%s/events/%s/enable" % (INSTANCE, ev), "1")


def trace_teardown():
    if os.path.isdir(INSTANCE):
        try:
            wr(INSTANCE + "/tracing_on", "0")
            for ev in TRACE_EVENTS:
                wr("%s/events/%s/enable" % (INSTANCE, ev), "0")
        finally:
            os.rmdir(INSTANCE)


def clock_offset():
    """CLOCK_REALTIME - CLOCK_MONOTONIC in ns, from the tightest of 50 sandwiched readings."""
    best = None
    for _ in range(50):
        r1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        r2 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        if best is None or r2 - r1 < best[0]:
            best = (r2 - r1, (r1 + r2) // 2 - m)
    return best[1], best[0]


LINE_RE = re.compile(r"\s(\d+\.\d+): (\w+): (.*)$")


def parse_trace(text):
    events = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE_RE.search(line)
        if not m:
            continue
        ts, name, rest = float(m.group(1)), m.group(2), m.group(3)
        if name == "tracing_mark_write":
            events.append((ts, name, {"text": rest.strip()}))
            continue
        fields = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        events.append((ts, name, fields))
    return events


# ---- one scenario ----
def side_of(addr):
    if addr == CLI or addr.startswith("10.77.1."):
        return "client", NS_C
    return "server", NS_S


def ours(f, cport):
    """Events of this scenario only: its client port, its listener, or the forged sources.
    (Orphaned sockets of an earlier scenario can outlive its namespace and still fire.)"""
    if f.get("family") != "AF_INET":
        return False
    sa, da = f.get("saddr", ""), f.get("daddr", "")
    ports = (int(f.get("sport", 0)), int(f.get("dport", 0)))
    if cport in ports and {sa, da} == {CLI, SRV}:
        return True
    if sa == SRV and ports == (PORT, 0) and da == "0.0.0.0":
        return True
    return sa == SRV and ports[0] == PORT and da.startswith("10.77.1.")


def run_scenario(name):
    sc = SCENARIOS[name]
    pcap = os.path.join(HERE, name + ".pcap")
    procs = []
    print("== %s" % name, flush=True)
    try:
        setup_netns(sc)
        sysctls = {"client": read_sysctls(NS_C), "server": read_sysctls(NS_S)}
        rules = {"client": iptables_dump(NS_C), "server": iptables_dump(NS_S)}
        polls = {}
        for side, ns in (("client", NS_C), ("server", NS_S)):
            polls[side] = helper_proc(ns, "procpoll", {"interval": 0.05}, "poll-" + side)
            procs.append(polls[side])
            if sc.get("nfq"):
                q = helper_proc(ns, "nfq_delay", {"delay": nfq_delay(sc)}, "nfq-" + side)
                procs.append(q)
                q.wait_for("READY")
        for p in polls.values():
            p.wait_for("READY")
        # tracing on, clock offset, marker check
        wr(INSTANCE + "/trace", "")
        wr(INSTANCE + "/tracing_on", "1")
        off_ns, spread_ns = clock_offset()
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        wr(INSTANCE + "/trace_marker", "pcapstate-clock-check")
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        tcpdump = Proc(NS_C, ["tcpdump", "-n", "--immediate-mode", "-i", IF_C,
                              "-s", str(SNAPLEN), "-U",
                              "-Z", "root", "-w", pcap], "tcpdump")
        procs.append(tcpdump)
        tcpdump.wait_for("listening on")
        time.sleep(0.2)
        start = time.time()
        cport = CLIENT_PORTS[name]
        common = {"cport": cport}
        if name in ("simultaneous_close",):
            common["close_at"] = start + 2.0
        if name in ("simultaneous_open",):
            common["connect_at"] = start + 1.0
        apps = []
        if sc.get("server"):
            srv = helper_proc(NS_S, sc["server"], dict(common, **sc.get("server_params", {})),
                              "server")
            procs.append(srv)
            apps.append(srv)
            srv.wait_for("READY")
        if sc.get("client"):
            cli = helper_proc(NS_C, sc["client"], dict(common, **sc.get("client_params", {})),
                              "client")
            procs.append(cli)
            apps.append(cli)
        blackout = None
        if sc.get("blackout"):
            blackout = {"rule": ["-I", "INPUT", "1", "-p", "tcp", "-s", SRV, "--sport", str(PORT),
                                 "-m", "length", "--length", "100:65535", "-j", "DROP"],
                        "namespace": NS_C}
            threading.Thread(target=run_blackout, args=(start, sc["blackout"], blackout),
                             daemon=True).start()
        end = start + sc["duration"]
        # "fixed": the kernel keeps working after the applications are gone (orphan retries,
        # request socks): capture the whole duration.
        while time.time() < end and (sc.get("fixed") or any(a.alive() for a in apps)):
            time.sleep(0.05)
        time.sleep(max(0.0, min(sc.get("tail", 0.0), end - time.time())))
        stop = time.time()
        tcpdump.stop(signal.SIGINT)
        wr(INSTANCE + "/tracing_on", "0")
        with open(INSTANCE + "/trace") as f:
            trace_text = f.read()
        for p in procs:
            p.stop()
        npkts = None
        for l in tcpdump.err:
            m = re.match(r"(\d+) packets? captured", l)
            if m:
                npkts = int(m.group(1))
        app_log = []
        for a in apps + list(polls.values()):
            for l in a.lines:
                try:
                    d = json.loads(l)
                except ValueError:
                    continue
                if d["msg"] == "READY":
                    continue
                d["side"] = a.tag.replace("poll-", "")
                app_log.append(d)
            for l in a.err:
                if l.strip():
                    app_log.append({"t": None, "side": a.tag, "msg": "stderr", "line": l})
        write_kernel_json(name, sc, trace_text, off_ns, spread_ns, (m0, m1), sysctls, rules,
                          app_log, start, stop, npkts, blackout)
        print("   %s packets, %s" % (npkts, os.path.basename(pcap)), flush=True)
    finally:
        for p in procs:
            try:
                p.stop()
            except Exception:
                pass
        teardown_netns()


def write_kernel_json(name, sc, trace_text, off_ns, spread_ns, marks, sysctls, rules, app_log,
                      start, stop, npkts, blackout=None):
    off = off_ns / 1e9
    transitions, events, marker = [], [], None
    for ts, ev, f in parse_trace(trace_text):
        if ev == "tracing_mark_write":
            if "pcapstate-clock-check" in f["text"]:
                marker = ts
            continue
        if not ours(f, CLIENT_PORTS[name]):
            continue
        side, ns = side_of(f["saddr"])
        base = {"ts": round(ts + off, 6), "side": side, "namespace": ns,
                "saddr": f["saddr"], "sport": int(f["sport"]),
                "daddr": f["daddr"], "dport": int(f["dport"])}
        if ev == "inet_sock_set_state":
            if f.get("protocol") != "IPPROTO_TCP":
                continue
            base["from"] = STATE_NAMES.get(f["oldstate"], f["oldstate"])
            base["to"] = STATE_NAMES.get(f["newstate"], f["newstate"])
            transitions.append(base)
        else:
            base["event"] = ev
            if "state" in f:
                base["state"] = STATE_NAMES.get(f["state"], f["state"])
            events.append(base)
    # One entry per socket: a socket is born CLOSED -> * or, for an accepted one, as a clone of
    # the listener (LISTEN -> SYN_RCVD with a remote address).
    sockets, current = [], {}
    for t in transitions:
        key = (t["side"], t["saddr"], t["sport"], t["daddr"], t["dport"])
        born = t["from"] == "CLOSED" or (t["from"] == "LISTEN" and t["to"] == "SYN_RCVD")
        if born or key not in current:
            current[key] = {"side": t["side"], "namespace": t["namespace"],
                            "local": "%s:%d" % key[1:3], "remote": "%s:%d" % key[3:5],
                            "states": [t["from"]]}
            sockets.append((key, current[key]))
        current[key]["states"].append(t["to"])
    # A full socket that enters TIME_WAIT (or an orphaned FIN_WAIT_2, when tcp_fin_timeout <= 60)
    # is replaced by a timewait sock: the tracepoint then says "-> CLOSED" for the full socket
    # and never fires for the timewait sock. /proc/net/tcp still lists it: record what it shows.
    snaps = [d for d in app_log if d.get("msg") == "sockets"]
    for key, s in sockets:
        closed = [t for t in transitions if t["to"] == "CLOSED" and
                  (t["side"], t["saddr"], t["sport"], t["daddr"], t["dport"]) == key]
        if not closed or s["remote"].startswith("0.0.0.0") or s["states"][-1] != "CLOSED":
            continue
        seen = []
        for d in snaps:
            if d["side"] != key[0] or d["t"] < closed[-1]["ts"] - 0.001:
                continue
            for row in d["sockets"]:
                st, local, remote = row.split()
                if (local, remote) == (s["local"], s["remote"]) and st in ("FIN_WAIT_2",
                                                                            "TIME_WAIT"):
                    if not seen or seen[-1]["state"] != st:
                        seen.append({"state": st, "first_seen": d["t"]})
        if seen:
            s["timewait_sock"] = seen
            closed[-1]["note"] = ("full socket replaced by a timewait sock (/proc/net/tcp: %s); "
                                  "the connection is not closed yet" %
                                  " then ".join(x["state"] for x in seen))
    for _, s in sockets:
        s["final"] = s["states"][-1]
        if s.get("timewait_sock"):
            s["final"] = s["timewait_sock"][-1]["state"] + " (timewait sock)"
    # Sockets that only /proc/net/tcp saw (request socks of half-open connections). Snapshots
    # are logged on change only: a socket is gone by the first snapshot that lacks it.
    traced = {(s["side"], s["local"], s["remote"]) for _, s in sockets}
    proc_only, present = {}, {"client": set(), "server": set()}
    for d in snaps:
        now = set()
        for row in d["sockets"]:
            st, local, remote = row.split()
            key = (d["side"], local, remote)
            if key in traced:
                continue
            now.add(key)
            e = proc_only.setdefault(key, {"side": d["side"], "local": local, "remote": remote,
                                           "states": [], "first_seen": d["t"], "gone_by": None})
            if not e["states"] or e["states"][-1] != st:
                e["states"].append(st)
        for key in present[d["side"]] - now:
            proc_only[key]["gone_by"] = d["t"]
        present[d["side"]] = now
    clock_check = None
    if marker is not None:
        before, after = marks[0] / 1e9, marks[1] / 1e9
        clock_check = {"trace_marker_ts_mono": marker, "userspace_mono_before": before,
                       "userspace_mono_after": after,
                       "marker_within_window": before - 1e-6 <= marker <= after + 1e-6}
    doc = {
        "scenario": name,
        "description": sc["description"],
        "clock": ("Tracepoint timestamps use trace_clock=mono (CLOCK_MONOTONIC, printed with "
                  "microsecond precision); ts = mono + clock_offset_s, where clock_offset_s = "
                  "CLOCK_REALTIME - CLOCK_MONOTONIC measured in user space at the start of the "
                  "scenario (tightest of 50 sandwiched readings, uncertainty "
                  "clock_offset_uncertainty_s). The pcap's timestamps are CLOCK_REALTIME, so both "
                  "are epoch seconds on the same clock (NTP slewing during a run is ignored)."),
        "clock_offset_s": round(off, 9),
        "clock_offset_uncertainty_s": spread_ns / 1e9,
        "clock_check": clock_check,
        "capture": {"file": name + ".pcap", "interface": IF_C, "namespace": NS_C,
                    "snaplen": SNAPLEN, "packets": npkts, "start": round(start, 6),
                    "stop": round(stop, 6),
                    "command": "tcpdump -n --immediate-mode -i %s -s %d -U -w %s.pcap"
                               % (IF_C, SNAPLEN, name)},
        "endpoints": {"client": {"namespace": NS_C, "addr": CLI, "port": CLIENT_PORTS[name]},
                      "server": {"namespace": NS_S, "addr": SRV, "port": PORT}},
        "sysctls": sysctls,
        "iptables": rules,
        "nfqueue_delay_s": nfq_delay(sc),
        "blackout": blackout,
        "notes": [
            "Kernel state names mapped to RFC 9293: TCP_SYN_RECV->SYN_RCVD, TCP_CLOSE->CLOSED, "
            "TCP_FIN_WAIT1->FIN_WAIT_1, TCP_FIN_WAIT2->FIN_WAIT_2; TCP_NEW_SYN_RECV is kept as "
            "NEW_SYN_RECV (Linux request socks for half-open connections, which never fire "
            "inet_sock_set_state: see proc_net_tcp instead, where they read SYN_RCVD).",
            "side = the endpoint whose socket changed state (its saddr:sport is the local end); "
            "the listener's transitions have daddr 0.0.0.0:0.",
            "A socket entering TIME_WAIT, or an orphaned (closed by the application) socket "
            "reaching FIN_WAIT_2 while tcp_fin_timeout <= 60 s, is replaced by a timewait sock: "
            "the tracepoint logs the full socket going to CLOSED (annotated with 'note') and "
            "nothing for the timewait sock; its substates FIN_WAIT_2/TIME_WAIT as polled from "
            "/proc/net/tcp are under sockets[].timewait_sock. TIME_WAIT lasts a fixed 60 s on "
            "Linux and its end is not captured.",
            "A server's accepted socket is created from the listener when the handshake's final "
            "ACK arrives, so it logs LISTEN -> SYN_RCVD -> ESTABLISHED within microseconds; "
            "before that the half-open connection is a request sock (NEW_SYN_RECV), which "
            "fires no tracepoint.",
            "untraced_sockets: connections seen only in /proc/net/tcp (polled every 50 ms; "
            "first_seen/gone_by are poll times; gone_by null: still there at the end), i.e. "
            "request socks (NEW_SYN_RECV, listed there as SYN_RCVD) that never became full "
            "sockets.",
            "Only this scenario's events are kept (the tracepoint is global): its client port, "
            "its listener, the forged flood sources.",
        ],
        "sockets": [s for _, s in sockets],
        "untraced_sockets": list(proc_only.values()),
        "transitions": transitions,
        "tcp_events": events,
        "proc_net_tcp": [d for d in app_log if d.get("msg") == "sockets"],
        "app_log": [d for d in app_log if d.get("msg") != "sockets"],
    }
    with open(os.path.join(HERE, name + ".kernel.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main(argv):
    if len(argv) >= 3 and argv[0] == "--helper":
        try:
            HELPERS[argv[1]](json.loads(argv[2]))
        except KeyboardInterrupt:
            pass
        return 0
    if argv[:1] == ["--list"]:
        for n, sc in SCENARIOS.items():
            print("%-20s %s" % (n, sc["description"]))
        return 0
    if os.geteuid() != 0:
        print("make_samples.py must run as root (network namespaces, iptables, tracefs): "
              "sudo python3 samples/make_samples.py [scenario ...]", file=sys.stderr)
        return 2
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        print("make_samples.py needs %s: apt-get install -y %s" % (", ".join(missing), " ".join(
            sorted({TOOL_PACKAGES[t] for t in missing}))), file=sys.stderr)
        return 2
    names = argv or list(SCENARIOS)
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        print("unknown scenario(s): %s (see --list)" % ", ".join(bad), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        trace_setup()
        for n in names:
            run_scenario(n)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        teardown_netns()
        trace_teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
