#!/usr/bin/env python3
"""Helper for make_formats.sh (Python standard library only; run as root).

Sub-commands, each small and used by the shell script:

traffic side (run inside a network namespace with ``ip netns exec``)
  txcsum-off IFACE...        switch transmit checksum offload off (ethtool -K tx off,
                             done with the SIOCETHTOOL ioctl so ethtool is not needed)
  server PORT [--v6] [--ipopts HEX] [--v6ext]
                             TCP echo server for one connection, plus a UDP sink
  client ADDR PORT CPORT [--ipopts HEX] [--v6ext]
                             one TCP connection: handshake, "helloworld", echo, close
  udp ADDR PORT SIZE         one UDP datagram (fragmented by the kernel if large)
  ping ADDR [SIZE]           one ICMP / ICMPv6 echo request, waits for the reply
  vlanrelay TAGS C S T0 T1   a user-space 802.1Q/802.1ad switch (see make_formats.sh)
  tunrelay NETNS             two tun devices (here and in NETNS) joined by a relay

file side
  byteswap IN OUT            little-endian pcap -> big-endian pcap (same records)
  eth2af IN OUT LINKTYPE     Ethernet pcap -> LINKTYPE_NULL (0) / LINKTYPE_LOOP (108)
  broken DIR                 the deliberately broken files, made from real captures
  manifest DIR               manifest.json from tshark (never from pcapstate)
"""
from __future__ import annotations

import base64
import ctypes
import fcntl
import gzip
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

HELLO = b"helloworld"

# --------------------------------------------------------------------------- traffic


def txcsum_off(names: list[str]) -> None:
    SIOCETHTOOL = 0x8946
    ETHTOOL_STXCSUM = 0x17
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for name in names:
        buf = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
        ifr = struct.pack("16sP", name.encode(), ctypes.addressof(buf)).ljust(40, b"\0")
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def _ipv6_ext_options(sock: socket.socket) -> None:
    """A hop-by-hop and a destination-options header, each 8 bytes of PadN."""
    padn = b"\x00\x00\x01\x04\x00\x00\x00\x00"  # next hdr (kernel fills), len 0, PadN(4)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, padn)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, padn)


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def server(port: int, v6: bool, ipopts: bytes | None, v6ext: bool) -> None:
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    any_addr = "::" if v6 else "0.0.0.0"
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if ipopts:
        ls.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, ipopts)
    if v6ext:
        _ipv6_ext_options(ls)
    ls.bind((any_addr, port))
    ls.listen(4)
    us = socket.socket(fam, socket.SOCK_DGRAM)  # UDP sink on the same port number
    if v6:
        us.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    us.bind((any_addr, port))
    print("ready", flush=True)
    conns = 0
    while True:
        r, _, _ = select.select([ls, us], [], [], 30)
        if not r:
            return
        if us in r:
            us.recvfrom(65536)
        if ls in r:
            c, _ = ls.accept()
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
                if data.endswith(HELLO):
                    c.sendall(data)
                    data = b""
            c.close()
            conns += 1


def client(addr: str, port: int, cport: int, ipopts: bytes | None, v6ext: bool) -> None:
    fam = _family(addr)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ipopts:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, ipopts)
    if v6ext:
        _ipv6_ext_options(s)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", cport))
    s.settimeout(10)
    s.connect((addr, port))
    time.sleep(0.05)
    s.sendall(HELLO)
    got = b""
    while len(got) < len(HELLO):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    if got != HELLO:
        raise SystemExit(f"echo mismatch: {got!r}")
    time.sleep(0.05)
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()
    time.sleep(0.1)


def udp(addr: str, port: int, size: int) -> None:
    fam = _family(addr)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    else:
        s.setsockopt(socket.IPPROTO_IPV6, 23, 0)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DONT
    payload = (b"udp-datagram " * (size // 13 + 1))[:size]
    s.sendto(payload, (addr, port))
    time.sleep(0.1)


def _inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(addr: str, size: int) -> None:
    payload = (b"ping-payload " * (size // 13 + 1))[:size]
    ident, seq = 0x7063, 1  # "pc"
    if _family(addr) == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_PMTUDISC_DONT: let the kernel fragment
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        csum = _inet_checksum(hdr + payload)
        pkt = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
        want = 0
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_IPV6, 23, 0)
        pkt = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload  # kernel sums ICMPv6
        want = 129
    s.settimeout(5)
    s.sendto(pkt, (addr, 0))
    deadline = time.time() + 5
    while time.time() < deadline:
        data = s.recv(65536)
        if s.family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if data and data[0] == want and struct.unpack("!H", data[4:6])[0] == ident:
            break
    else:
        raise SystemExit("no echo reply")
    time.sleep(0.05)


ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TPID = {"q": 0x8100, "ad": 0x88A8}


def vlanrelay(tags: str, c: str, srv: str, t0: str, t1: str) -> None:
    """Bridge C<->SRV through the trunk veth pair T0/T1, tagging on the trunk.

    The kernel here has no 802.1Q module (CONFIG_VLAN_8021Q off, no bridge VLAN
    filtering, no act_vlan), so a vlan interface cannot be made; this relay does
    what a VLAN switch does: frames from the access port C are sent on T0 with the
    tags pushed (outermost first), frames arriving on T0/T1 have their tags popped
    and go out of the other access port.  TAGS is e.g. ``q:10`` or ``ad:100,q:10``.
    """
    stack = b""
    for part in tags.split(","):
        kind, vid = part.split(":")
        stack += struct.pack("!HH", TPID[kind], int(vid))
    socks = {}
    for name in (c, srv, t0, t1):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        socks[name] = s
    route = {c: (t0, True), srv: (t1, True), t1: (srv, False), t0: (c, False)}
    by_fd = {s.fileno(): n for n, s in socks.items()}
    print("ready", flush=True)
    while True:
        r, _, _ = select.select(list(socks.values()), [], [], 60)
        if not r:
            return
        for s in r:
            frame, addr = s.recvfrom(65600)
            if addr[2] == PACKET_OUTGOING:
                continue
            src = by_fd[s.fileno()]
            out, push = route[src]
            if push:
                frame = frame[:12] + stack + frame[12:]
            else:
                while struct.unpack("!H", frame[12:14])[0] in (0x8100, 0x88A8):
                    frame = frame[:12] + frame[16:]
            socks[out].send(frame)


def tunrelay(peer_netns: str) -> None:
    """tun0 here and tun0 in PEER_NETNS, packets copied between them (a wire)."""
    TUNSETIFF = 0x400454CA
    IFF_TUN, IFF_NO_PI = 0x0001, 0x1000

    def open_tun() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
        return fd

    a = open_tun()
    libc = ctypes.CDLL(None, use_errno=True)
    nsfd = os.open(f"/var/run/netns/{peer_netns}", os.O_RDONLY)
    if libc.setns(nsfd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    b = open_tun()
    print("ready", flush=True)
    peer = {a: b, b: a}
    while True:
        r, _, _ = select.select([a, b], [], [], 60)
        if not r:
            return
        for fd in r:
            try:
                os.write(peer[fd], os.read(fd, 65536))
            except OSError:
                pass


# --------------------------------------------------------------------------- files

PCAP_MAGICS = {
    0xA1B2C3D4: "usec",
    0xA1B23C4D: "nsec",
}


def read_pcap(path: str) -> tuple[bytes, str, list[tuple[bytes, bytes]]]:
    """(global header, endian char, [(record header, data)]) of a little-endian pcap."""
    raw = open(path, "rb").read()
    magic = struct.unpack("<I", raw[:4])[0]
    if magic not in PCAP_MAGICS:
        raise SystemExit(f"{path}: not a little-endian pcap")
    records = []
    off = 24
    while off < len(raw):
        hdr = raw[off:off + 16]
        incl = struct.unpack("<I", hdr[8:12])[0]
        records.append((hdr, raw[off + 16:off + 16 + incl]))
        off += 16 + incl
    return raw[:24], "<", records


def byteswap(src: str, dst: str) -> None:
    """Rewrite every header field big-endian, as a pcap writer on a big-endian host does."""
    ghdr, _, records = read_pcap(src)
    fields = struct.unpack("<IHHiIII", ghdr)
    out = [struct.pack(">IHHiIII", *fields)]
    for hdr, data in records:
        out.append(struct.pack(">IIII", *struct.unpack("<IIII", hdr)) + data)
    open(dst, "wb").write(b"".join(out))


def eth2af(src: str, dst: str, linktype: int) -> None:
    """Replace the 14-byte Ethernet header by the 4-byte address-family header.

    LINKTYPE_NULL (0): AF value in the byte order of the writing host (little-
    endian here): AF_INET 2, AF_INET6 24 (the BSD value tcpdump/Wireshark accept
    alongside 28 and 30).  LINKTYPE_LOOP (108): the same values in network order.
    """
    ghdr, _, records = read_pcap(src)
    fields = list(struct.unpack("<IHHiIII", ghdr))
    fields[6] = linktype
    out = [struct.pack("<IHHiIII", *fields)]
    for hdr, data in records:
        sec, frac, incl, orig = struct.unpack("<IIII", hdr)
        ethertype = struct.unpack("!H", data[12:14])[0]
        af = {0x0800: 2, 0x86DD: 24}.get(ethertype)
        if af is None:
            continue  # only IP frames have an address family
        afhdr = struct.pack("<I" if linktype == 0 else ">I", af)
        body = afhdr + data[14:]
        out.append(struct.pack("<IIII", sec, frac, len(body), orig - 10) + body)
    open(dst, "wb").write(b"".join(out))


# A real 8x8 JPEG (made once with Pillow's encoder, quality 75), kept here so the
# script does not need Pillow.
JPEG_B64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAx"
    "NDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjL/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUF"
    "BAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVW"
    "V1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi"
    "4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAEC"
    "AxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVm"
    "Z2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq"
    "8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCjoXgb7v7r9KKKK4MVmOI9o9TbIs2xX1OPvH//2Q=="
)

PROSE = """\
The harbour was quiet that morning. A few gulls argued over the remains of a
fisherman's breakfast while the tide crept up the stone steps, one by one, as it
had done for three hundred years. Nobody on the quay was in a hurry; the ferry
would come when it came, and the weather, for once, had nothing to say about it.
"""


def pcap_record_offsets(path: str) -> list[tuple[int, int]]:
    """(offset of record header, offset just past its data) of a little-endian pcap."""
    raw = open(path, "rb").read()
    out, off = [], 24
    while off + 16 <= len(raw):
        incl = struct.unpack("<I", raw[off + 8:off + 12])[0]
        out.append((off, off + 16 + incl))
        off += 16 + incl
    return out


def pcapng_blocks(raw: bytes) -> list[tuple[int, int, int]]:
    """(type, offset, length) of every block of a little-endian pcapng file."""
    out, off = [], 0
    while off + 12 <= len(raw):
        btype, blen = struct.unpack("<II", raw[off:off + 8])
        out.append((btype, off, blen))
        off += blen
    return out


def broken(d: str) -> None:
    j = lambda name: os.path.join(d, name)  # noqa: E731
    src = open(j("le_usec.pcap"), "rb").read()
    recs = pcap_record_offsets(j("le_usec.pcap"))
    # cut in the middle of record 6's data (records 1..5 complete)
    start, end = recs[5]
    open(j("truncated_mid_record.pcap"), "wb").write(src[:start + 16 + (end - start - 16) // 2])
    # cut inside record 6's 16-byte header (after 7 bytes of it)
    open(j("truncated_mid_header.pcap"), "wb").write(src[:start + 7])
    # record 6's incl_len set to 0xFFFFFFFF; records 7.. are still there, intact
    huge = bytearray(src)
    huge[start + 8:start + 12] = struct.pack("<I", 0xFFFFFFFF)
    open(j("huge_record_len.pcap"), "wb").write(bytes(huge))

    ng = open(j("two_interfaces.pcapng"), "rb").read()
    blocks = pcapng_blocks(ng)
    epbs = [b for b in blocks if b[0] == 6]
    # cut in the middle of the 6th enhanced packet block
    _, off, blen = epbs[5]
    open(j("truncated.pcapng"), "wb").write(ng[:off + blen // 2])
    # the 6th enhanced packet block's leading block-total-length made absurd
    bad = bytearray(ng)
    bad[off + 4:off + 8] = struct.pack("<I", 0x7FFFFFF0)
    open(j("bad_block_len.pcapng"), "wb").write(bytes(bad))

    open(j("not_a_capture.jpg"), "wb").write(base64.b64decode(JPEG_B64))
    open(j("empty.pcap"), "wb").write(b"")
    open(j("prose.txt"), "w").write(PROSE)


# --------------------------------------------------------------------------- manifest

TSHARK_FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.frag_offset",
    "ipv6.fraghdr.offset",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.len",
    "frame.interface_id",
]

# Each frame on its own: no IP reassembly (a reassembled datagram would be shown
# on its last fragment), no TCP analysis.
TSHARK_PREFS = [
    "-o", "ip.defragment:FALSE",
    "-o", "ipv6.defragment:FALSE",
    "-o", "tcp.analyze_sequence_numbers:FALSE",
    "-o", "tcp.desegment_tcp_streams:FALSE",
]


def tshark_frames(path: str) -> tuple[list[dict], str]:
    """Per-frame fields from tshark, and tshark's stderr (errors on broken files)."""
    cmd = ["tshark", "-n", "-r", path, *TSHARK_PREFS, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=f"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True)
    frames = []
    for line in p.stdout.splitlines():
        vals = line.split("\t")
        frames.append(dict(zip(TSHARK_FIELDS, vals)))
    return frames, p.stderr.strip()


def _int(text: str) -> int:
    return int(text, 0)


def frame_facts(frames: list[dict]) -> dict:
    """The facts a decoder test asserts, from tshark's per-frame fields."""
    tcp = []
    non_tcp = fragments = truncated_records = 0
    for f in frames:
        protos = f["frame.protocols"].split(":")
        cut = _int(f["frame.cap_len"]) < _int(f["frame.len"])
        truncated_records += cut
        frag_off = f["ip.frag_offset"] or f["ipv6.fraghdr.offset"]
        if frag_off and int(frag_off) > 0:
            fragments += 1
            continue
        # TCP carried directly by the (first) IP header, not quoted inside ICMP
        ip_at = next((i for i, p in enumerate(protos) if p in ("ip", "ipv6")), None)
        is_tcp = ip_at is not None and "tcp" in protos and "icmp" not in protos and "icmpv6" not in protos
        if not is_tcp:
            non_tcp += 1
            continue
        v6 = bool(f["ipv6.src"]) and not f["ip.src"]
        tcp.append({
            "frame": int(f["frame.number"]),
            "time_epoch": f["frame.time_epoch"],
            "ts_ns": _epoch_ns(f["frame.time_epoch"]),
            "ip_version": 6 if v6 else 4,
            "src": f["ipv6.src"] if v6 else f["ip.src"],
            "dst": f["ipv6.dst"] if v6 else f["ip.dst"],
            "sport": int(f["tcp.srcport"]),
            "dport": int(f["tcp.dstport"]),
            "seq_raw": int(f["tcp.seq_raw"]),
            "ack_raw": int(f["tcp.ack_raw"]),
            "flags": _int(f["tcp.flags"]) & 0x1FF,
            "window": int(f["tcp.window_size_value"]),
            "tcp_len": int(f["tcp.len"]),
            "truncated": cut,
            "interface_id": int(f["frame.interface_id"]) if f["frame.interface_id"] else 0,
        })
    return {
        "frames": len(frames),
        "tcp_count": len(tcp),
        "tcp_frames": [t["frame"] for t in tcp],
        "non_tcp": non_tcp,
        "fragments": fragments,
        "truncated_records": truncated_records,
        "tcp": tcp,
    }


def _epoch_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def capinfos_linktypes(path: str) -> list[int]:
    """LINKTYPE_ values of a pcap header or of every pcapng interface block."""
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    if len(raw) < 24:
        return []
    magic = raw[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return [struct.unpack("<I", raw[20:24])[0]]
    if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return [struct.unpack(">I", raw[20:24])[0]]
    if magic == b"\x0a\x0d\x0d\x0a":
        out = []
        for btype, off, blen in pcapng_blocks(raw):
            if btype == 1 and off + 10 <= len(raw):
                out.append(struct.unpack("<H", raw[off + 8:off + 10])[0])
        return out
    return []


def pcapng_tsresol(path: str) -> list[int]:
    """if_tsresol byte of every interface (6 = microseconds when the option is absent)."""
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    out = []
    for btype, off, blen in pcapng_blocks(raw):
        if btype != 1:
            continue
        res = 6
        p, end = off + 16, off + blen - 4
        while p + 4 <= end:
            code, olen = struct.unpack("<HH", raw[p:p + 4])
            if code == 0:
                break
            if code == 9:
                res = raw[p + 4]
            p += 4 + (olen + 3) // 4 * 4
        out.append(res)
    return out


def tcpdump_count(path: str) -> tuple[int, str]:
    """Records tcpdump reads (it stops at the first error) and what it says."""
    p = subprocess.run(["tcpdump", "-n", "-r", path], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln and not ln.startswith(" ")]
    # tcpdump prints one line per record (continuation lines start with white space)
    err = "\n".join(ln for ln in p.stderr.splitlines() if not ln.startswith("reading from file"))
    return len(lines), err.strip()


# What the pcapstate decoder is expected to do with each file that is not a
# plain good capture.  "partial": the complete records before the damage are
# decoded, the rest is reported (a warning, bytes_ignored) and not guessed at.
BROKEN = {
    "truncated_mid_record.pcap": {"expect": "partial", "made_from": "le_usec.pcap",
                                  "how": "cut in the middle of record 6's data"},
    "truncated_mid_header.pcap": {"expect": "partial", "made_from": "le_usec.pcap",
                                  "how": "cut after 7 bytes of record 6's 16-byte header"},
    "huge_record_len.pcap": {"expect": "partial", "made_from": "le_usec.pcap",
                             "how": "record 6's incl_len set to 0xFFFFFFFF; records 7.. left intact behind it"},
    "truncated.pcapng": {"expect": "partial", "made_from": "two_interfaces.pcapng",
                         "how": "cut in the middle of the 6th enhanced packet block"},
    "bad_block_len.pcapng": {"expect": "partial", "made_from": "two_interfaces.pcapng",
                             "how": "6th enhanced packet block's block total length set to 0x7FFFFFF0"},
    "not_a_capture.jpg": {"expect": "error", "error": "NotACaptureError", "how": "an 8x8 JPEG image"},
    "empty.pcap": {"expect": "error", "error": "NotACaptureError", "how": "0 bytes"},
    "prose.txt": {"expect": "error", "error": "NotACaptureError", "how": "four lines of English prose"},
    "unsupported_linktype.pcap": {"expect": "error", "error": "UnsupportedLinkTypeError",
                                  "linktype": 147,
                                  "how": "editcap -T user0 of the first 3 records of le_usec.pcap"},
}


def complete_prefix(path: str) -> tuple[int, int]:
    """(complete records/packet blocks before the damage, bytes after them)."""
    raw = open(path, "rb").read()
    size = len(raw)
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        off = n = 0
        while off + 12 <= size:
            btype, blen = struct.unpack("<II", raw[off:off + 8])
            if blen < 12 or blen % 4 or off + blen > size:
                break
            if struct.unpack("<I", raw[off + blen - 4:off + blen])[0] != blen:
                break
            n += btype in (6, 3, 2)
            off += blen
        return n, size - off
    off, n = 24, 0
    while off + 16 <= size:
        incl = struct.unpack("<I", raw[off + 8:off + 12])[0]
        if incl > 262144 or off + 16 + incl > size:
            break
        n += 1
        off += 16 + incl
    return n, size - off


def manifest(d: str, descriptions: dict[str, str]) -> None:
    files = {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if name in ("manifest.json", "README.md", "make_formats.sh", "formats_helper.py") or name.startswith("."):
            continue
        if name.endswith(".py") or os.path.isdir(path):
            continue
        entry: dict = {"how_made": descriptions.get(name, "")}
        if name in BROKEN:
            entry.update(BROKEN[name])
            if entry["expect"] == "error":
                entry["linktypes"] = capinfos_linktypes(path) if name.endswith(".pcap") else []
                files[name] = entry
                continue
        frames, err = tshark_frames(path)
        entry.update(frame_facts(frames))
        entry.setdefault("expect", "ok")
        entry["linktypes"] = capinfos_linktypes(path)
        if ".pcapng" in name:
            entry["if_tsresol"] = pcapng_tsresol(path)
            entry["ts_precision"] = "per-interface"
        else:
            raw = open(path, "rb").read()
            if name.endswith(".gz"):
                raw = gzip.decompress(raw)
            entry["ts_precision"] = "nsec" if raw[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else "usec"
        entry["tshark_error"] = err
        entry["tcpdump_records"], entry["tcpdump_error"] = tcpdump_count(path)
        if entry["expect"] == "partial":
            n, ignored = complete_prefix(path)
            entry["complete_records"] = n
            entry["bytes_ignored"] = ignored
            if n != entry["frames"]:
                raise SystemExit(f"{name}: tshark read {entry['frames']} frames, expected {n}")
        files[name] = entry
    out = {
        "generated_by": "tests/data/formats/make_formats.sh (facts from tshark/tcpdump, not pcapstate)",
        "tshark": subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "tshark_fields": TSHARK_FIELDS,
        "tshark_prefs": TSHARK_PREFS,
        "files": files,
    }
    with open(os.path.join(d, "manifest.json"), "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=False)
        fh.write("\n")


def _opt(args: list[str], name: str) -> str | None:
    if name in args:
        i = args.index(name)
        val = args[i + 1]
        del args[i:i + 2]
        return val
    return None


def _flag(args: list[str], name: str) -> bool:
    if name in args:
        args.remove(name)
        return True
    return False


def main(argv: list[str]) -> None:
    cmd, args = argv[0], list(argv[1:])
    if cmd == "txcsum-off":
        txcsum_off(args)
    elif cmd == "server":
        ipopts = _opt(args, "--ipopts")
        server(int(args[0]), _flag(args, "--v6"), bytes.fromhex(ipopts) if ipopts else None, _flag(args, "--v6ext"))
    elif cmd == "client":
        ipopts = _opt(args, "--ipopts")
        v6ext = _flag(args, "--v6ext")
        client(args[0], int(args[1]), int(args[2]), bytes.fromhex(ipopts) if ipopts else None, v6ext)
    elif cmd == "udp":
        udp(args[0], int(args[1]), int(args[2]))
    elif cmd == "ping":
        ping(args[0], int(args[1]) if len(args) > 1 else 32)
    elif cmd == "vlanrelay":
        vlanrelay(*args)
    elif cmd == "tunrelay":
        tunrelay(args[0])
    elif cmd == "byteswap":
        byteswap(args[0], args[1])
    elif cmd == "eth2af":
        eth2af(args[0], args[1], int(args[2]))
    elif cmd == "broken":
        broken(args[0])
    elif cmd == "manifest":
        desc = {}
        readme = os.path.join(args[0], "README.md")
        if os.path.exists(readme):
            for line in open(readme):
                if line.startswith("- `") and "`" in line[3:]:
                    name = line[3:line.index("`", 3)]
                    desc[name] = line[line.index("`", 3) + 1:].lstrip(" :—-").strip()
        manifest(args[0], desc)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
