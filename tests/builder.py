"""Write small captures packet by packet, so a test reads like the exchange it checks.

    talk = Talk()                      # client 10.0.0.1:40000, server 10.0.0.2:80
    talk.client("S")                   # seq, ack and timestamps follow automatically
    talk.server("S.")
    talk.client(".")
    fin = talk.client("F.", lost=True)  # in the capture, never reaches the server
    talk.resend(fin)                    # the same segment again
    path = talk.write(tmp_path)         # a pcap made by dpkt (Ethernet, IPv4 or IPv6)

Each side tracks what it sent (snd_nxt) and what it received (rcv_nxt): a
packet's seq defaults to its sender's snd_nxt and its ack to the sender's
rcv_nxt; a packet that is not ``lost`` advances the receiver's rcv_nxt.
Initial sequence numbers sit just below 2**32, so every connection wraps.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from pcapstate.flags import from_tcpdump

MASK = 0xFFFFFFFF
_SYN, _FIN = 0x02, 0x01


@dataclass
class Packet:
    sender: str
    flags: int
    seq: int
    ack: int
    payload: bytes
    ts: float
    window: int = 64240


@dataclass
class _Side:
    addr: str
    port: int
    snd_nxt: int
    rcv_nxt: int = 0


@dataclass
class Talk:
    """One 4-tuple's packets in capture order; several Talks can share a file."""

    client_addr: str = "10.0.0.1"
    client_port: int = 40000
    server_addr: str = "10.0.0.2"
    server_port: int = 80
    client_isn: int = 0xFFFFFF00
    server_isn: int = 0xFFFFFFF0
    start: float = 1_700_000_000.0
    step: float = 0.010
    packets: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sides = {
            "client": _Side(self.client_addr, self.client_port, self.client_isn),
            "server": _Side(self.server_addr, self.server_port, self.server_isn),
        }
        self._clock = self.start - self.step

    def client(self, flags: str, data: int | bytes = 0, **options) -> Packet:
        return self._send("client", flags, data, **options)

    def server(self, flags: str, data: int | bytes = 0, **options) -> Packet:
        return self._send("server", flags, data, **options)

    def resend(self, packet: Packet, lost: bool = False, at: float | None = None, after: float | None = None) -> Packet:
        """The same segment (seq, flags, payload) again, with the sender's current ack."""
        flags = dpkt_flags_text(packet.flags)
        return self._send(packet.sender, flags, packet.payload, seq=packet.seq, lost=lost, at=at, after=after)

    def wait(self, seconds: float) -> None:
        self._clock += seconds

    def _send(self, sender: str, flags: str, data: int | bytes = 0, *, seq: int | None = None,
              ack: int | None = None, lost: bool = False, at: float | None = None,
              after: float | None = None, window: int = 64240) -> Packet:
        me = self._sides[sender]
        peer = self._sides["server" if sender == "client" else "client"]
        bits = from_tcpdump(flags)
        payload = data if isinstance(data, bytes) else b"x" * data
        seq = me.snd_nxt if seq is None else seq & MASK
        end = (seq + len(payload) + (1 if bits & _SYN else 0) + (1 if bits & _FIN else 0)) & MASK
        if ((end - me.snd_nxt) & MASK) < 0x80000000:
            me.snd_nxt = end
        if ack is None:
            ack = me.rcv_nxt
        if not lost and (bits & _SYN or ((end - peer.rcv_nxt) & MASK) < 0x80000000):
            peer.rcv_nxt = end  # a SYN defines where the peer's acks start
        self._clock = at if at is not None else self._clock + (after if after is not None else self.step)
        packet = Packet(sender, bits, seq, ack & MASK, payload, self._clock, window)
        self.packets.append(packet)
        return packet

    # -- writing
    def frames(self) -> list[tuple[float, bytes]]:
        return [(p.ts, self._frame(p)) for p in self.packets]

    def _frame(self, packet: Packet) -> bytes:
        me = self._sides[packet.sender]
        peer = self._sides["server" if packet.sender == "client" else "client"]
        segment = dpkt.tcp.TCP(sport=me.port, dport=peer.port, seq=packet.seq, ack=packet.ack,
                               flags=packet.flags & 0xFF, win=packet.window, data=packet.payload)
        if packet.flags & 0x100:
            segment.off_x2 = (segment.off_x2 & 0xF0) | 0x01  # the AE bit lives in the data-offset byte
        if ":" in me.addr:
            net = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, me.addr),
                               dst=socket.inet_pton(socket.AF_INET6, peer.addr), nxt=6, hlim=64, data=segment)
            net.plen = len(bytes(segment))
            ethertype = dpkt.ethernet.ETH_TYPE_IP6
        else:
            net = dpkt.ip.IP(src=socket.inet_aton(me.addr), dst=socket.inet_aton(peer.addr), p=6, ttl=64,
                             data=segment)
            net.len = 20 + len(bytes(segment))
            ethertype = dpkt.ethernet.ETH_TYPE_IP
        eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02",
                                     type=ethertype, data=net)
        return bytes(eth)

    def write(self, directory: Path, name: str = "talk.pcap") -> Path:
        return write_pcap(directory / name, self.frames())


def dpkt_flags_text(bits: int) -> str:
    from pcapstate.flags import to_tcpdump

    return to_tcpdump(bits)


def write_pcap(path: Path, frames: list[tuple[float, bytes]], sort: bool = False) -> Path:
    """Write (timestamp, Ethernet frame) pairs as a microsecond pcap, in the given order."""
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in sorted(frames, key=lambda f: f[0]) if sort else frames:
            writer.writepkt(frame, ts=ts)
    return path


def write_talks(path: Path, *talks: Talk) -> Path:
    """Several conversations in one file, interleaved by timestamp."""
    frames = [frame for talk in talks for frame in talk.frames()]
    return write_pcap(path, frames, sort=True)


def states(analysis, endpoint: str, flow: int = 0) -> list[str]:
    """The endpoint's walk: its first known state, then every state it changed to."""
    rows = analysis.transitions
    rows = rows[(rows["flow"] == flow) & (rows["endpoint"] == endpoint)]
    if rows.empty:
        return []
    first = rows["from_state"].iloc[0]
    walk = ["?" if first != first else str(first)]
    return walk + [str(s) for s in rows["to_state"]]


def causes(analysis, endpoint: str, flow: int = 0) -> list[str]:
    rows = analysis.transitions
    rows = rows[(rows["flow"] == flow) & (rows["endpoint"] == endpoint)]
    return [str(c) for c in rows["cause"]]
