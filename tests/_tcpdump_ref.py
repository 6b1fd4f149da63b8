"""The reference for the tcpdump-text tests: real tcpdump runs, cut per frame.

``tcpdump_frames(capture)`` runs ``TZ=UTC tcpdump -n -# -r capture`` (``-#``
only prefixes each packet with its frame number, so frames line up with the
packet table's ``frame`` column) and returns each frame's text, continuation
lines (VXLAN's inner packet, ``-v``) joined to it.  ``tcp_fields(text)`` picks
out the innermost TCP segment's printed fields with a regex that is
deliberately independent of :mod:`pcapstate.decode.text`.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZEEK_TRACES = REPO.parent / "shared" / "conformance" / "zeek" / "traces"


def captures() -> list[Path]:
    """Every Zeek trace and every sample capture there is right now."""
    found = sorted(ZEEK_TRACES.glob("*.pcap")) + sorted(ZEEK_TRACES.glob("*.pcapng"))
    found += sorted((REPO / "samples").glob("*.pcap")) + sorted((REPO / "samples").glob("*.pcapng"))
    return found


def run_tcpdump(capture: Path, *options: str) -> list[str]:
    """stdout lines of ``TZ=UTC tcpdump -r capture OPTIONS`` (tcpdump must exist)."""
    env = dict(os.environ, TZ="UTC")
    done = subprocess.run(
        ["tcpdump", *options, "-r", str(capture)],
        capture_output=True, env=env, check=False,
    )
    if done.returncode != 0 and not done.stdout:
        raise RuntimeError(f"tcpdump failed on {capture}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode("utf-8", errors="replace").splitlines()


_NUMBERED = re.compile(r"^\s*(\d+)  ")


def tcpdump_frames(capture: Path, *options: str) -> dict[int, str]:
    """Frame number -> the text tcpdump printed for it (``-n -#`` plus OPTIONS)."""
    frames: dict[int, list[str]] = {}
    current = None
    for line in run_tcpdump(capture, "-n", "-#", *options):
        match = _NUMBERED.match(line)
        if match:
            current = int(match.group(1))
            frames[current] = [line[match.end():]]
        elif current is not None:
            frames[current].append(line.strip())
    return {frame: " ".join(parts) for frame, parts in frames.items()}


def line_frames(capture: Path, *options: str) -> list[int | None]:
    """For each line of ``tcpdump -n OPTIONS`` output, the frame it belongs to."""
    owners: list[int | None] = []
    current = None
    for line in run_tcpdump(capture, "-n", "-#", *options):
        match = _NUMBERED.match(line)
        current = int(match.group(1)) if match else current
        owners.append(current if match else None)
    return owners


_SEGMENT = re.compile(r"(?P<src>\S+)\.(?P<sport>\w+) > (?P<dst>\S+)\.(?P<dport>\w+): Flags \[(?P<flags>[^\]]*)\]")
_ITEMS = {
    "cksum": re.compile(r", cksum 0x[0-9a-f]+ \([^)]*\)"),
    "seq": re.compile(r", seq (\d+(?::\d+)?)"),
    "ack": re.compile(r", ack (\d+)"),
    "win": re.compile(r", win (\d+)"),
    "urg": re.compile(r", urg (\d+)"),
    "options": re.compile(r", options \[([^\]]*)\]"),
    "length": re.compile(r", length (\d+)"),
}


def tcp_fields(text: str) -> dict[str, str] | None:
    """The innermost TCP segment's printed fields, as strings, or None.

    Keys: src, sport, dst, dport, flags, and those of seq, ack, win, urg,
    options, length that were printed; ``encapsulated`` is True when another
    protocol's text precedes the segment in the frame (a tunnel).
    """
    matches = list(_SEGMENT.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    fields = {name: match.group(name) for name in ("src", "sport", "dst", "dport", "flags")}
    fields["encapsulated"] = _is_encapsulated(text[: match.start()])
    pos = match.end()
    progress = True
    while progress:
        progress = False
        for name, pattern in _ITEMS.items():
            item = pattern.match(text, pos)
            if item:
                fields[name] = item.group(1) if pattern.groups else item.group(0)
                pos, progress = item.end(), True
                break
    fields["rest"] = text[pos:]
    return fields


def _is_encapsulated(before: str) -> bool:
    """Text before the segment names an outer protocol (not just IP/IP6/MPLS/VLAN)."""
    return bool(re.search(r"\b(GREv\d|Geneve|VXLAN|UDP|gtp|GTP)\b|\d+\.\d+\.\d+\.\d+\.\d+ > ", before))


def option_set(options: str | None) -> list[str]:
    """The options the packet table keeps (mss, wscale, sackOK, TS, sack), sorted."""
    kept = re.compile(r"(?:mss|wscale|sackOK|TS|sack)\b")
    return sorted(item for item in (options or "").split(",") if kept.match(item))


def snap_cut(source: Path, target: Path, snaplen: int) -> Path:
    """Copy a classic pcap file keeping only the first ``snaplen`` bytes of each record."""
    import struct

    data = source.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = bytearray(data[:16] + struct.pack(order + "I", snaplen) + data[20:24])
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(order + "IIII", data, pos)
        kept = min(incl, snaplen)
        out += struct.pack(order + "IIII", sec, frac, kept, orig) + data[pos + 16 : pos + 16 + kept]
        pos += 16 + incl
    target.write_bytes(bytes(out))
    return target
