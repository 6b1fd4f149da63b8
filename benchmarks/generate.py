#!/usr/bin/env python3
"""Deterministic synthetic captures for the benchmarks: a busy server's TCP traffic.

    python3 benchmarks/generate.py --connections 20000 -o benchmarks/data/synth-20k.pcap

Ethernet / IPv4 / TCP with valid IP and TCP checksums (the payload is zeros,
captured up to a snap length of 128 bytes as ``tcpdump -s 128`` would), packets
in timestamp order, connections overlapping in time.  The mix, per connection:

* 70 % normal: handshake, 1-12 request/response exchanges of 1-1,400 bytes, client closes;
* 8 % SYN unanswered, retried 2-6 times with doubling intervals from 1 s;
* 8 % refused (SYN answered by RST);
* 5 % SYN-ACK unanswered (a forged source), the server retrying 2-5 times;
* 5 % normal, with one to three data segments lost and retransmitted after an RTO;
* 2 % the server closes and the client lingers in CLOSE_WAIT;
* 2 % simultaneous close.

The same seed gives the same bytes.  ``--duration`` spreads the connection
starts (default: one second per 330 connections, a constant concurrency).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
SNAPLEN = 128
HEADERS = 14 + 20 + 20
KINDS = (("normal", 0.70), ("syn_unanswered", 0.08), ("refused", 0.08), ("synack_unanswered", 0.05),
         ("data_loss", 0.05), ("close_wait", 0.02), ("simultaneous_close", 0.02))
SERVERS = [(0x0A000001 + i, port) for i in range(8) for port in (80, 443, 8080)]


class Connection:
    """Builds one connection's packets as (time, from_client, flags, seq, ack, length)."""

    def __init__(self, rng: random.Random, start: float) -> None:
        self.rng = rng
        self.t = start
        self.rtt = rng.uniform(0.0005, 0.05)
        self.isn = [rng.getrandbits(32), rng.getrandbits(32)]
        self.nxt = [0, 0]  # relative next sequence number of client (0) and server (1)
        self.packets: list[tuple[float, int, int, int, int, int]] = []

    def send(self, side: int, flags: int, length: int = 0, after: float | None = None,
             seq: int | None = None, ack: int | None = None) -> int:
        self.t += self.rtt / 2 if after is None else after
        rel = self.nxt[side] if seq is None else seq
        acked = self.nxt[1 - side] if ack is None else ack
        self.packets.append((self.t, side == 0, flags, (self.isn[side] + rel) & 0xFFFFFFFF,
                             (self.isn[1 - side] + acked) & 0xFFFFFFFF if flags & ACK else 0, length))
        end = rel + length + (1 if flags & (SYN | FIN) else 0)
        self.nxt[side] = max(self.nxt[side], end)
        return rel

    def handshake(self) -> None:
        self.send(0, SYN, after=0)
        self.send(1, SYN | ACK)
        self.send(0, ACK)

    def exchanges(self, lossy: bool = False) -> None:
        losses = set(self.rng.sample(range(24), self.rng.randint(1, 3))) if lossy else set()
        for i in range(self.rng.randint(1, 12)):
            request, reply = self.rng.randint(1, 1400), self.rng.randint(1, 1400)
            if 2 * i in losses:  # the request is lost beyond the capture point and resent after an RTO
                seq = self.send(0, PSH | ACK, request, after=self.rng.uniform(0.001, 0.05))
                self.send(0, PSH | ACK, request, after=0.2 + self.rtt, seq=seq)
            else:
                self.send(0, PSH | ACK, request, after=self.rng.uniform(0.001, 0.05))
            self.send(1, PSH | ACK, reply, after=self.rtt / 2 + self.rng.uniform(0.0001, 0.01))
            self.send(0, ACK)

    def client_close(self) -> None:
        self.send(0, FIN | ACK, after=self.rng.uniform(0.001, 0.1))
        self.send(1, ACK)
        self.send(1, FIN | ACK, after=self.rng.uniform(0.0001, 0.01))
        self.send(0, ACK)


def build(kind: str, rng: random.Random, start: float) -> Connection:
    c = Connection(rng, start)
    if kind in ("normal", "data_loss"):
        c.handshake()
        c.exchanges(lossy=kind == "data_loss")
        c.client_close()
    elif kind == "syn_unanswered":
        c.send(0, SYN, after=0)
        for attempt in range(rng.randint(2, 6)):
            c.send(0, SYN, after=2.0 ** attempt, seq=0)
    elif kind == "refused":
        c.send(0, SYN, after=0)
        c.send(1, RST | ACK, seq=0)
    elif kind == "synack_unanswered":
        c.send(0, SYN, after=0)
        c.send(1, SYN | ACK)
        for attempt in range(rng.randint(2, 5)):
            c.send(1, SYN | ACK, after=2.0 ** attempt, seq=0)
    elif kind == "close_wait":
        c.handshake()
        c.exchanges()
        c.send(1, FIN | ACK, after=rng.uniform(0.001, 0.1))
        c.send(0, ACK)  # and the client never closes
    else:  # simultaneous close: both FINs leave before either arrives
        c.handshake()
        c.exchanges()
        fin = c.nxt[0]
        c.send(0, FIN | ACK, after=rng.uniform(0.001, 0.1))
        c.send(1, FIN | ACK, after=0.0001, ack=fin)
        c.send(0, ACK)
        c.send(1, ACK, after=0.0001)
    return c


def generate(connections: int, seed: int = 1, duration: float | None = None) -> dict[str, np.ndarray]:
    """Packet fields, sorted by time, for ``connections`` connections."""
    rng = random.Random(seed)
    duration = duration if duration is not None else connections / 330.0
    names, weights = zip(*KINDS)
    columns: list[list] = [[] for _ in range(10)]
    for i in range(connections):
        kind = rng.choices(names, weights)[0]
        conn = build(kind, rng, rng.uniform(0, duration))
        client = 0x0B000000 + i // 50000 * 65536 + (i % 50000) // 250 * 256 + i % 250 + 1
        server, port = SERVERS[i % len(SERVERS)]
        cport = 1024 + i % 50000
        for t, from_client, flags, seq, ack, length in conn.packets:
            src, dst, sport, dport = (client, server, cport, port) if from_client else (server, client, port, cport)
            for column, value in zip(columns, (t, src, dst, sport, dport, seq, ack, flags, length, 0)):
                column.append(value)
    fields = {name: np.asarray(col, dtype=dtype) for name, col, dtype in zip(
        ("ts", "src", "dst", "sport", "dport", "seq", "ack", "flags", "length", "_"), columns,
        ("f8", "u4", "u4", "u2", "u2", "u4", "u4", "u1", "u2", "u1"))}
    order = np.argsort(fields["ts"], kind="stable")
    fields = {k: v[order] for k, v in fields.items() if k != "_"}
    fields["ts"] += 1_790_000_000.0
    return fields


def _checksum(words: np.ndarray) -> np.ndarray:
    """Internet checksum of rows of 16-bit words (uint32 sums, folded)."""
    total = words.astype(np.uint64).sum(axis=1)
    while np.any(total >> 16):
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def _be(values: np.ndarray, size: int) -> np.ndarray:
    return values.astype(f">u{size}").view(np.uint8).reshape(-1, size)


def frames(f: dict[str, np.ndarray]) -> np.ndarray:
    """(n, 54) uint8: Ethernet, IPv4 and TCP headers with valid checksums."""
    n = len(f["ts"])
    h = np.zeros((n, HEADERS), dtype=np.uint8)
    h[:, 0:6] = (2, 0, 0, 0, 0, 2)
    h[:, 6:12] = (2, 0, 0, 0, 0, 1)
    h[:, 12:14] = (0x08, 0x00)
    ip = h[:, 14:34]
    ip[:, 0], ip[:, 8], ip[:, 9] = 0x45, 64, 6
    ip[:, 2:4] = _be(40 + f["length"].astype(np.uint32), 2)
    ip[:, 4:6] = _be(np.arange(n, dtype=np.uint32) & 0xFFFF, 2)
    ip[:, 6] = 0x40  # don't fragment
    ip[:, 12:16], ip[:, 16:20] = _be(f["src"], 4), _be(f["dst"], 4)
    ip[:, 10:12] = _be(_checksum(ip.view(">u2").astype(np.uint32)), 2)
    tcp = h[:, 34:54]
    tcp[:, 0:2], tcp[:, 2:4] = _be(f["sport"], 2), _be(f["dport"], 2)
    tcp[:, 4:8], tcp[:, 8:12] = _be(f["seq"], 4), _be(f["ack"], 4)
    tcp[:, 12], tcp[:, 13] = 0x50, f["flags"]
    tcp[:, 14:16] = _be(np.where(f["flags"] & RST, 0, 64240).astype(np.uint16), 2)
    pseudo = np.zeros((n, 12), dtype=np.uint8)
    pseudo[:, 0:8] = ip[:, 12:20]
    pseudo[:, 9] = 6
    pseudo[:, 10:12] = _be(20 + f["length"].astype(np.uint32), 2)
    words = np.concatenate([pseudo.view(">u2"), tcp.view(">u2")], axis=1).astype(np.uint32)
    tcp[:, 16:18] = _be(_checksum(words), 2)  # the payload is zeros: it adds nothing
    return h


def write_pcap(path: Path, f: dict[str, np.ndarray]) -> int:
    """Write the packets as a microsecond pcap with snap length 128; returns the packet count."""
    n = len(f["ts"])
    headers = frames(f)
    wire = HEADERS + f["length"].astype(np.int64)
    captured = np.minimum(wire, SNAPLEN)
    seconds = np.floor(f["ts"]).astype(np.int64)
    micros = np.rint((f["ts"] - seconds) * 1e6).astype(np.int64)
    carry = micros >= 1_000_000
    seconds, micros = seconds + carry, np.where(carry, micros - 1_000_000, micros)
    record = np.zeros((n, 16), dtype=np.uint8)
    for col, values in enumerate((seconds, micros, captured, wire)):
        record[:, 4 * col:4 * col + 4] = values.astype("<u4").view(np.uint8).reshape(n, 4)
    sizes = 16 + captured
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for k in range(16):
        out[offsets + k] = record[:, k]
    for k in range(HEADERS):
        out[offsets + 16 + k] = headers[:, k]  # payload bytes stay zero
    header = np.array([0xA1B2C3D4, 0x00040002, 0, 0, SNAPLEN, 1], dtype="<u4").view(np.uint8)
    header[4:8] = np.array([2, 4], dtype="<u2").view(np.uint8)
    with open(path, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(out.tobytes())
    return n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=None, help="seconds over which connections start")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    count = write_pcap(args.output, generate(args.connections, args.seed, args.duration))
    print(f"{args.output}: {count} packets, {args.connections} connections")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
