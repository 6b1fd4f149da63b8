"""Large synthetic captures for tests/test_scale.py, built with numpy in seconds.

Each builder returns the packet fields (``ts``, ``src``, ``dst``, ``sport``,
``dport``, ``seq``, ``ack``, ``flags``, ``length``), sorted by time, and
:func:`write` turns them into a microsecond pcap (Ethernet / IPv4 / TCP,
valid IP and TCP checksums, snap length 128 as ``tcpdump -s 128``) through
``benchmarks/generate.py``'s ``write_pcap``, the writer of the benchmark
captures.  The same seed gives the same bytes.

* :func:`many_connections`: one short connection per 4-tuple, a busy server's
  cheap mix (refused, scanned, complete, unanswered);
* :func:`one_long_connection`: a handshake, one request, a bulk download of
  millions of segments (sequence numbers wrap past 2**32 twice) with an ACK for
  every second segment, and a close;
* :func:`syn_flood`: SYNs to one service from random sources, unanswered or
  answered by one SYN-ACK each.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
C, S = 0, 1  # the side that sends: client, server
EPOCH = 1_790_000_000.0
SERVER = 0x0A000001  # 10.0.0.1
SERVER_PORT = 443

_GENERATE = Path(__file__).resolve().parent.parent / "benchmarks" / "generate.py"


def _benchmark_generator():
    spec = importlib.util.spec_from_file_location("pcapstate_benchmark_generate", _GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, fields: dict[str, np.ndarray]) -> int:
    """Write ``fields`` as a pcap at ``path``; returns the number of packets."""
    return _benchmark_generator().write_pcap(path, fields)


# One connection of each kind, packet by packet: (step in half round trips, side, flags,
# relative seq, relative ack, payload length).  Relative numbers count from each side's ISN.
TEMPLATES = {
    # SYN answered by RST: nothing listens (client CLOSED, server CLOSED)
    "refused": [(0, C, SYN, 0, 0, 0), (1, S, RST | ACK, 0, 1, 0)],
    # a half-open scan (nmap -sS): SYN, SYN-ACK, and the scanner's RST
    "scanned": [(0, C, SYN, 0, 0, 0), (1, S, SYN | ACK, 0, 1, 0), (2, C, RST, 1, 0, 0)],
    # handshake, and the client closes first (client TIME_WAIT, server CLOSED)
    "complete": [(0, C, SYN, 0, 0, 0), (1, S, SYN | ACK, 0, 1, 0), (2, C, ACK, 1, 1, 0),
                 (3, C, FIN | ACK, 1, 1, 0), (4, S, ACK, 1, 2, 0), (4.1, S, FIN | ACK, 1, 2, 0),
                 (5.1, C, ACK, 2, 2, 0)],
    # one SYN, never answered (client SYN_SENT)
    "unanswered": [(0, C, SYN, 0, 0, 0)],
}
MIX = (("refused", 0.50), ("scanned", 0.25), ("complete", 0.15), ("unanswered", 0.10))


def _plan(connections: int, seed: int, rate: float):
    """Kind (an index into :data:`MIX`), start, round trip and both ISNs of every connection."""
    kinds = np.random.default_rng(seed).choice(len(MIX), size=connections, p=[w for _, w in MIX])
    rng = np.random.default_rng(seed + 1)
    start = rng.uniform(0, connections / rate, connections)
    rtt = rng.uniform(0.0005, 0.05, connections)
    isn = rng.integers(0, 2**32, size=(connections, 2), dtype=np.uint64)
    return kinds, start, rtt, isn


def connection_kinds(connections: int = 1_000_000, seed: int = 8) -> np.ndarray:
    """The kind (an index into :data:`MIX`) of every connection of :func:`many_connections`."""
    return _plan(connections, seed, 1.0)[0]


def many_connections(connections: int = 1_000_000, seed: int = 8, rate: float = 1000.0) -> dict[str, np.ndarray]:
    """``connections`` short connections to four services, ``rate`` new ones per second.

    Connection ``i`` is client 11.a.b.c:port with a 4-tuple of its own (no
    port reuse), to one of 10.0.0.1-4 port 443; its round trip is 0.5-50 ms.
    """
    kinds, start, rtt, isn = _plan(connections, seed, rate)
    index = np.arange(connections, dtype=np.int64)
    client = (0x0B000001 + index // 60000).astype(np.uint32)
    client_port = (1024 + index % 60000).astype(np.uint16)
    server = (SERVER + index % 4).astype(np.uint32)
    parts = []
    for k, (name, _) in enumerate(MIX):
        template = np.array(TEMPLATES[name], dtype=np.float64)
        members = np.flatnonzero(kinds == k)
        parts.append((np.repeat(members, len(template)), np.tile(template.T, len(members))))
    conn = np.concatenate([p[0] for p in parts])
    step, side, flags, rel_seq, rel_ack, length = np.concatenate([p[1] for p in parts], axis=1)
    side = side.astype(np.int64)
    flags = flags.astype(np.uint8)
    from_client = side == C
    fields = {
        "ts": start[conn] + step * rtt[conn] / 2,
        "src": np.where(from_client, client[conn], server[conn]).astype(np.uint32),
        "dst": np.where(from_client, server[conn], client[conn]).astype(np.uint32),
        "sport": np.where(from_client, client_port[conn], SERVER_PORT).astype(np.uint16),
        "dport": np.where(from_client, SERVER_PORT, client_port[conn]).astype(np.uint16),
        "seq": ((isn[conn, side] + rel_seq.astype(np.uint64)) & 0xFFFFFFFF).astype(np.uint32),
        "ack": np.where(flags & ACK, (isn[conn, 1 - side] + rel_ack.astype(np.uint64)) & 0xFFFFFFFF, 0)
        .astype(np.uint32),
        "flags": flags,
        "length": length.astype(np.uint16),
    }
    fields["seq"][flags == RST | ACK] = 0  # Linux's RST to a SYN: seq 0, the ACK names the SYN
    return _sorted(fields)


def expected_census(connections: int = 1_000_000, seed: int = 8, rate: float = 1000.0,
                    time_wait: int = 60) -> dict[tuple[str, str], int]:
    """(client state, server state) -> connections at the end of :func:`many_connections`' capture.

    A complete connection's client enters TIME_WAIT with the server's FIN and
    stays there unless the capture's last packet comes ``time_wait`` seconds
    or more after it (then the 2*MSL timer closed it): computed on the
    microsecond timestamps the pcap holds.  A scanned connection's server is
    CLOSED: pcapstate follows the connection, not the listening socket,
    through the scanner's RST (see pcapstate.machine).
    """
    kinds, start, rtt, _ = _plan(connections, seed, rate)
    steps = np.array([max(p[0] for p in TEMPLATES[name]) for name, _ in MIX])
    capture_end = _micros(EPOCH + (start + steps[kinds] * rtt / 2)).max()
    complete = kinds == [name for name, _ in MIX].index("complete")
    server_fin = _micros(EPOCH + (start[complete] + 4.1 * rtt[complete] / 2))
    lingering = int(np.count_nonzero(server_fin + time_wait * 1_000_000 > capture_end))
    final = {"refused": ("CLOSED", "CLOSED"), "scanned": ("CLOSED", "CLOSED"),
             "complete": ("CLOSED", "CLOSED"), "unanswered": ("SYN_SENT", "LISTEN")}
    census: dict[tuple[str, str], int] = {}
    for k, (name, _) in enumerate(MIX):
        census[final[name]] = census.get(final[name], 0) + int(np.count_nonzero(kinds == k))
    census[("CLOSED", "CLOSED")] -= lingering
    census[("TIME_WAIT", "CLOSED")] = lingering
    return census


def _micros(ts: np.ndarray) -> np.ndarray:
    """Epoch seconds as the integer microseconds benchmarks/generate.py's write_pcap stores."""
    seconds = np.floor(ts).astype(np.int64)
    return seconds * 1_000_000 + np.rint((ts - seconds) * 1e6).astype(np.int64)


def one_long_connection(packets: int = 5_000_000, segment: int = 1448, gap: float = 10e-6) -> dict[str, np.ndarray]:
    """A single connection of exactly ``packets`` packets: a download of millions of segments.

    Handshake (3), the client's request (1), the server's bulk data with the
    client's ACK after every second segment (and after the last one), then the
    client closes first (4): client TIME_WAIT, server CLOSED.  Packets are
    ``gap`` seconds apart; the server's sequence numbers pass 2**32 twice (4.8 GB).
    """
    client, cport, isn_c, isn_s = 0x0B000001, 40000, 0x12345678, 0xF0000000
    request = 200
    bulk = packets - 3 - 1 - 4
    # bulk packets come in groups data, data, ack; a partial group at the end is data (+ its ack)
    groups, rest = divmod(bulk, 3)
    kind = np.tile(np.array([0, 0, 1], dtype=np.int8), groups)  # 0 server data, 1 client ACK
    kind = np.concatenate([kind, np.array([0, 1][:rest], dtype=np.int8)])  # the client's FIN acks a lone last one
    data = kind == 0
    sent = np.cumsum(data, dtype=np.int64) * segment  # server bytes sent up to and including each packet
    total = int(sent[-1])
    s_rel = 1 + sent - segment  # a data packet's relative seq (the SYN took 1)
    # the ACK after a pair acknowledges both
    bulk_seq = np.where(data, isn_s + s_rel, isn_c + 1 + request)
    bulk_ack = np.where(data, isn_c + 1 + request, isn_s + 1 + sent)
    head = [  # (side, flags, seq, ack, length)
        (C, SYN, isn_c, 0, 0),
        (S, SYN | ACK, isn_s, isn_c + 1, 0),
        (C, ACK, isn_c + 1, isn_s + 1, 0),
        (C, PSH | ACK, isn_c + 1, isn_s + 1, request),
    ]
    c_fin, s_fin = isn_c + 1 + request, isn_s + 1 + total
    tail = [
        (C, FIN | ACK, c_fin, s_fin, 0),
        (S, ACK, s_fin, c_fin + 1, 0),
        (S, FIN | ACK, s_fin, c_fin + 1, 0),
        (C, ACK, c_fin + 1, s_fin + 1, 0),
    ]
    h, t = np.array(head, dtype=np.int64), np.array(tail, dtype=np.int64)
    side = np.concatenate([h[:, 0], np.where(data, S, C), t[:, 0]])
    fields = {
        "ts": EPOCH + np.arange(packets, dtype=np.float64) * gap,
        "flags": np.concatenate([h[:, 1], np.where(data, PSH | ACK, ACK), t[:, 1]]).astype(np.uint8),
        "seq": (np.concatenate([h[:, 2], bulk_seq, t[:, 2]]) & 0xFFFFFFFF).astype(np.uint32),
        "ack": (np.concatenate([h[:, 3], bulk_ack, t[:, 3]]) & 0xFFFFFFFF).astype(np.uint32),
        "length": np.concatenate([h[:, 4], np.where(data, segment, 0), t[:, 4]]).astype(np.uint16),
    }
    from_client = side == C
    fields["src"] = np.where(from_client, client, SERVER).astype(np.uint32)
    fields["dst"] = np.where(from_client, SERVER, client).astype(np.uint32)
    fields["sport"] = np.where(from_client, cport, SERVER_PORT).astype(np.uint16)
    fields["dport"] = np.where(from_client, SERVER_PORT, cport).astype(np.uint16)
    return fields


def syn_flood(sources: int = 100_000, answered: bool = False, seconds: float = 5.0,
              seed: int = 9) -> dict[str, np.ndarray]:
    """``sources`` SYNs to 10.0.0.1:443, each from its own random address and port, within ``seconds``.

    With ``answered`` the server sends one SYN-ACK to each (0.1 ms later) and
    no source ever completes the handshake; without, nothing answers.
    """
    rng = np.random.default_rng(seed)
    # distinct random public-looking addresses (1.0.0.0 - 223.255.255.255), drawn without repeats
    addr = (0x01000000 + rng.choice(0xDF000000, size=sources, replace=False)).astype(np.uint32)
    port = rng.integers(1024, 65536, size=sources).astype(np.uint16)
    start = np.sort(rng.uniform(0, seconds, sources))
    isn = rng.integers(0, 2**32, size=(sources, 2), dtype=np.uint64)
    syn = {
        "ts": start, "src": addr, "dst": np.full(sources, SERVER, np.uint32), "sport": port,
        "dport": np.full(sources, SERVER_PORT, np.uint16), "seq": isn[:, 0].astype(np.uint32),
        "ack": np.zeros(sources, np.uint32), "flags": np.full(sources, SYN, np.uint8),
        "length": np.zeros(sources, np.uint16),
    }
    if not answered:
        return _sorted(syn)
    synack = {
        "ts": start + 0.0001, "src": syn["dst"], "dst": addr, "sport": syn["dport"], "dport": port,
        "seq": isn[:, 1].astype(np.uint32), "ack": ((isn[:, 0] + 1) & 0xFFFFFFFF).astype(np.uint32),
        "flags": np.full(sources, SYN | ACK, np.uint8), "length": np.zeros(sources, np.uint16),
    }
    return _sorted({k: np.concatenate([syn[k], synack[k]]) for k in syn})


def _sorted(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(fields["ts"], kind="stable")
    out = {k: v[order] for k, v in fields.items()}
    out["ts"] = out["ts"] + EPOCH
    return out
