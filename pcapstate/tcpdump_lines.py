"""tcpdump's text for one TCP packet, both ways: relative numbers, lines, parsing.

Reproduces what ``tcpdump -n`` (4.99, ``print-tcp.c``, function ``tcp_print``)
prints for each TCP segment of a :class:`~pcapstate.table.PacketTable`:

* **Relative numbers** (:func:`relative_seq_ack`).  tcpdump keeps one entry per
  address/port pair, the same for both directions (``tcp_seq_hash``, keyed on
  a collating order: the side with the lower port, or on equal ports the lower
  address, is "src").  Only segments with the ACK flag touch it.  A segment with
  ACK whose pair has no entry yet, or which also carries SYN, (re)records the
  entry — ``th->seq = seq, th->ack = ack - 1`` from the "src" side's point of
  view — and prints its own seq and ack *absolute*; every later ACK-bearing
  segment of the pair prints them relative to that entry, modulo 2**32.
  Segments without ACK (a SYN, a bare RST) always print absolute numbers.  So a
  handshake prints ``[S] seq ISN``, ``[S.] seq ISN', ack ISN+1`` (absolute,
  recording), then ``[.] ack 1``.
* **What is printed** (``tcpdump -n``, no ``-vv``): ``seq a`` when the segment
  carries payload or SYN/FIN/RST, as ``seq a:b`` with ``b = a + length`` when it
  carries payload; ``ack`` only with the ACK flag; ``win`` always; SACK block
  edges relative to the same entry as the acknowledgement.
* **Lines** (:func:`render_lines`): ``HH:MM:SS.ffffff IP src.port > dst.port:
  Flags [S.], seq …, ack …, win …, options […], length …`` in UTC, as
  ``TZ=UTC tcpdump -n -r`` prints it, ``IP6`` for IPv6.

Known gaps, because the packet table does not keep what tcpdump prints them
from: options are rendered in the order Linux writes them (``tcp_options_write``:
mss, sackOK+TS or nop,nop,TS, nop,wscale, nop,nop,sackOK, nop,nop,sack) since the
table keeps the values of MSS, window scale, SACK-permitted, timestamps and SACK
blocks but not the order, the padding nops, nor other option kinds (TFO, MPTCP,
MD5, unknown ones); ``urg N`` is not printed (no urgent-pointer column); nothing
after ``length`` (tcpdump's application-layer decoding) is printed; a segment
tcpdump could not fully decode (``[|tcp]``, ``[bad hdr length …]``) is rendered
as if complete.  Fields a text-decoded table does not know (``Known`` bits) are
left out of the line rather than printed as 0.

The other direction, for :mod:`pcapstate.decode.text`: :func:`parse_tcp` reads
the innermost ``a.p > b.q: Flags [..], …`` segment of a packet's text into a
:class:`TcpText`, :func:`parse_options` its option list into table columns, and
the same entry logic run backwards (:meth:`TcpSeqHash.lookup` given printed
numbers) recovers absolute sequence numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pcapstate.flags import Flag, bracketed, from_tcpdump
from pcapstate.table import Known, PacketTable

MASK32 = 0xFFFFFFFF
_SHOWS_SEQ = Flag.SYN | Flag.FIN | Flag.RST
_NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(slots=True)
class SeqEntry:
    """One ``tcp_seq_hash`` entry: bases of the key's "src" and "dst" sides."""

    seq: int  # th->seq: subtracted from the "src" side's sequence numbers
    ack: int  # th->ack: subtracted from the "dst" side's sequence numbers

    def own_base(self, rev: bool) -> int:
        """Base of the sending side's sequence numbers."""
        return self.ack if rev else self.seq

    def peer_base(self, rev: bool) -> int:
        """Base of the receiving side's sequence numbers (acks, SACK edges)."""
        return self.seq if rev else self.ack


class TcpSeqHash:
    """tcpdump's ``tcp_seq_hash``: find or record the entry of a segment's pair.

    A dict keyed on (IP version, "src" address, "dst" address, "src" port,
    "dst" port) in tcpdump's collating order stands for its chained hash table
    (IPv4 and IPv6 have separate tables there, hence the version in the key).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, SeqEntry] = {}
        self._last_syn: dict[tuple, int] = {}  # (key, rev) -> seq of the last bare SYN

    @staticmethod
    def key(version: int, src: bytes, dst: bytes, sport: int, dport: int) -> tuple[tuple, bool]:
        """The pair's key and ``rev`` (the sender is the key's "dst" side)."""
        rev = sport > dport or (sport == dport and src > dst)
        if rev:
            return (version, dst, src, dport, sport), True
        return (version, src, dst, sport, dport), False

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def adopt_relative(self, key: tuple) -> None:
        """Enter the pair with zero bases: its numbers are taken as already relative."""
        self._entries[key] = SeqEntry(0, 0)

    def lookup(self, key: tuple, rev: bool, flags: int, seq: int | None, ack: int | None):
        """tcpdump's find-or-record for one segment: ``(recorded, entry)``.

        ``entry`` is None for a segment without ACK (printed absolute, no
        entry touched); ``recorded`` is True when this segment (re)recorded the
        entry, i.e. tcpdump printed its numbers absolute.  ``seq=None`` (a text
        line that did not print it) records the base as the last bare SYN's
        seq + 1 of the same sender, or 0 when none was seen.
        """
        if not flags & Flag.ACK:
            if flags & Flag.SYN and seq is not None:
                self._last_syn[(key, rev)] = seq
            return False, None
        entry = self._entries.get(key)
        if entry is not None and not flags & Flag.SYN:
            return False, entry
        own = seq if seq is not None else (self._last_syn.get((key, rev), -1) + 1) & MASK32
        peer = ((ack if ack is not None else 0) - 1) & MASK32
        entry = SeqEntry(peer, own) if rev else SeqEntry(own, peer)
        self._entries[key] = entry
        return True, entry


@dataclass
class RelativeNumbers:
    """Per row: printed seq and ack, whether each is printed, SACK edge base."""

    seq: np.ndarray
    ack: np.ndarray
    show_seq: np.ndarray
    show_ack: np.ndarray
    sack_base: np.ndarray


def relative_seq_ack(table: PacketTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(seq_out, ack_out, show_seq, show_ack)``: what ``tcpdump -n`` prints.

    ``seq_out``/``ack_out`` (uint32) are the numbers tcpdump prints for every
    row (its relative numbering, see the module docstring), ``show_seq`` and
    ``show_ack`` (bool) say whether it prints them at all.  For rows whose seq
    or ack the table does not know (text sources), ``show_*`` is False.
    """
    numbers = _relative_numbers(table)
    return numbers.seq, numbers.ack, numbers.show_seq, numbers.show_ack


def _relative_numbers(table: PacketTable) -> RelativeNumbers:
    n = len(table)
    seq_out = np.zeros(n, dtype=np.uint32)
    ack_out = np.zeros(n, dtype=np.uint32)
    sack_base = np.zeros(n, dtype=np.uint32)
    known = table["known"].astype(np.int64)
    hashes = TcpSeqHash()
    for row, (key, rev, flags, seq, ack, seq_known) in enumerate(_segments(table, known)):
        recorded, entry = hashes.lookup(key, rev, flags, seq if seq_known else None, ack)
        if entry is None or recorded:
            seq_out[row], ack_out[row] = seq, ack
        else:
            seq_out[row] = (seq - entry.own_base(rev)) & MASK32
            ack_out[row] = (ack - entry.peer_base(rev)) & MASK32
        if entry is not None:
            sack_base[row] = entry.peer_base(rev)
    flags = table["flags"].astype(np.int64)
    shows_seq = (table["payload_len"] > 0) | ((flags & int(_SHOWS_SEQ)) != 0)
    show_seq = shows_seq & ((known & Known.SEQ) != 0)
    show_ack = ((flags & int(Flag.ACK)) != 0) & ((known & Known.ACK) != 0)
    return RelativeNumbers(seq_out, ack_out, show_seq, show_ack, sack_base)


def _segments(table: PacketTable, known: np.ndarray):
    """Per row: (key, rev, flags, seq, ack, seq_known) as plain Python values."""
    src = [bytes(row) for row in table["src_ip"]]
    dst = [bytes(row) for row in table["dst_ip"]]
    columns = zip(
        table["ip_version"].tolist(), src, dst, table["sport"].tolist(), table["dport"].tolist(),
        table["flags"].tolist(), table["seq"].tolist(), table["ack"].tolist(),
        ((known & Known.SEQ) != 0).tolist(),
    )
    for version, s, d, sport, dport, flags, seq, ack, seq_known in columns:
        key, rev = TcpSeqHash.key(version, s, d, sport, dport)
        yield key, rev, flags, seq, ack, seq_known


# --- whole lines -------------------------------------------------------------


def render_lines(table: PacketTable, packets: Iterable[int] | np.ndarray | None = None) -> list[str]:
    """One ``tcpdump -n -r`` style line per TCP packet (row) of ``table``.

    ``packets`` selects rows (indices or a boolean mask) to render; relative
    numbers are still computed over the whole table, as tcpdump does over the
    whole file.
    """
    numbers = _relative_numbers(table)
    if packets is None:
        rows = range(len(table))
    else:
        selected = np.asarray(packets)
        rows = np.flatnonzero(selected) if selected.dtype == bool else selected
    return [render_line(table, int(row), numbers) for row in rows]


def render_line(table: PacketTable, row: int, numbers: RelativeNumbers) -> str:
    """The line of one row, given the table's :class:`RelativeNumbers`."""
    known = int(table["known"][row])
    version = int(table["ip_version"][row])
    head = (
        f"{format_time(int(table['ts_ns'][row]))} {'IP' if version == 4 else 'IP6'} "
        f"{table.address('src_ip', row)}.{table['sport'][row]} > "
        f"{table.address('dst_ip', row)}.{table['dport'][row]}: Flags {bracketed(table['flags'][row])}"
    )
    parts = [head]
    length = int(table["payload_len"][row]) if known & Known.LEN else 0
    if numbers.show_seq[row]:
        seq = int(numbers.seq[row])
        parts.append(f"seq {seq}:{(seq + length) & MASK32}" if length else f"seq {seq}")
    if numbers.show_ack[row]:
        parts.append(f"ack {int(numbers.ack[row])}")
    if known & Known.WIN:
        parts.append(f"win {int(table['window'][row])}")
    options = render_options(table, row, int(numbers.sack_base[row])) if known & Known.OPTIONS else ""
    if options:
        parts.append(f"options [{options}]")
    if known & Known.LEN:
        parts.append(f"length {length}")
    return ", ".join(parts)


def format_time(ts_ns: int) -> str:
    """``HH:MM:SS.ffffff`` in UTC, microseconds truncated as libpcap does."""
    micros = (ts_ns % _NS_PER_DAY) // 1000
    seconds, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{fraction:06d}"


def render_options(table: PacketTable, row: int, sack_base: int) -> str:
    """The option list in Linux's order (see the module docstring), or ''."""
    mss = int(table["mss"][row])
    wscale = int(table["wscale"][row])
    sack_ok = bool(table["sack_permitted"][row])
    timestamps = bool(table["has_timestamps"][row])
    parts: list[str] = []
    if mss:
        parts.append(f"mss {mss}")
    if timestamps:
        parts += ["sackOK"] if sack_ok else ["nop", "nop"]
        parts.append(f"TS val {int(table['ts_val'][row])} ecr {int(table['ts_ecr'][row])}")
    if wscale >= 0:
        parts += ["nop", f"wscale {wscale}"]
    if sack_ok and not timestamps:
        parts += ["nop", "nop", "sackOK"]
    count = int(table["sack_count"][row])
    if count:
        edges = "".join(
            f"{{{(int(left) - sack_base) & MASK32}:{(int(right) - sack_base) & MASK32}}}"
            for left, right in table["sack"][row][:count]
        )
        parts += ["nop", "nop", f"sack {count} {edges}"]
    return ",".join(parts)


# --- lines back to fields -----------------------------------------------------

_SEGMENT = re.compile(
    r"(?P<src>\S+)\.(?P<sport>[^\s.]+) > (?P<dst>\S+)\.(?P<dport>[^\s.:]+): Flags \[(?P<flags>[^\]]*)\]"
)
_ITEMS = (
    ("cksum", re.compile(r", cksum 0x[0-9a-f]+ \([^)]*\)")),
    ("seq", re.compile(r", seq (\d+)(?::(\d+))?")),
    ("ack", re.compile(r", ack (\d+)")),
    ("win", re.compile(r", win (\d+)")),
    ("urg", re.compile(r", urg (\d+)")),
    ("options", re.compile(r", options \[([^\]]*)\]")),
    ("length", re.compile(r", length (\d+)")),
)


@dataclass
class TcpText:
    """What one packet's text says about its (innermost) TCP segment."""

    src: str
    sport: str
    dst: str
    dport: str
    flags: int
    seq: int | None = None
    seq_end: int | None = None
    ack: int | None = None
    win: int | None = None
    options: str | None = None
    length: int | None = None
    cut: bool = False  # tcpdump stopped inside the TCP header ("[|tcp]")
    snapped: bool = False  # tcpdump ran out of captured bytes somewhere ("[|tcp]", "[|http]", …)


def parse_tcp(text: str) -> TcpText | None:
    """The innermost ``a.p > b.q: Flags [..], …`` segment of a packet's text.

    None when there is none; raises ValueError on a flags field tcpdump never
    prints.  Numbers are as printed (relative or absolute).
    """
    matches = list(_SEGMENT.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    segment = TcpText(
        match["src"], match["sport"], match["dst"], match["dport"], from_tcpdump(match["flags"])
    )
    pos = _parse_items(text, match.end(), segment)
    segment.cut = "[|tcp]" in text[match.end():] or (segment.length is None and "[|" in text[pos:])
    segment.snapped = "[|" in text[match.end():]
    return segment


def _parse_items(text: str, pos: int, segment: TcpText) -> int:
    """Read ``, seq …, ack …`` items in order from ``pos``; where they stop."""
    progress = True
    while progress:
        progress = False
        for name, pattern in _ITEMS:
            item = pattern.match(text, pos)
            if not item:
                continue
            if name == "seq":
                segment.seq = int(item[1])
                segment.seq_end = int(item[2]) if item[2] is not None else None
            elif name in ("ack", "win", "length"):
                setattr(segment, name, int(item[1]))
            elif name == "options":
                segment.options = item[1]
            pos, progress = item.end(), True
            break
    return pos


_OPTION_PATTERNS = (
    ("mss", re.compile(r"mss (\d+)")),
    ("wscale", re.compile(r"wscale (\d+)")),
    ("sackOK", re.compile(r"sackOK")),
    ("TS", re.compile(r"TS val (\d+) ecr (\d+)")),
    ("sack", re.compile(r"sack \d+ ((?:\{\d+:\d+\})+)")),
)


def parse_options(text: str | None, sack_base: int = 0) -> dict:
    """TableBuilder.append keywords from an option list (``mss 1460,sackOK,…``).

    SACK edges are printed relative: ``sack_base`` makes them absolute.  Option
    kinds the table has no column for (nop, eol, tfo, mptcp, …) are ignored.
    """
    found: dict = {}
    for item in (text or "").split(","):
        item = item.strip()
        for name, pattern in _OPTION_PATTERNS:
            match = pattern.fullmatch(item)
            if match:
                _take_option(found, name, match, sack_base)
                break
    return found


def _take_option(found: dict, name: str, match: re.Match, sack_base: int) -> None:
    if name == "mss":
        found["mss"] = int(match[1]) & 0xFFFF
    elif name == "wscale":
        found["wscale"] = min(int(match[1]), 255)
    elif name == "sackOK":
        found["sack_permitted"] = True
    elif name == "TS":
        found["ts_val"], found["ts_ecr"] = int(match[1]) & MASK32, int(match[2]) & MASK32
        found["has_timestamps"] = True
    else:
        edges = re.findall(r"\{(\d+):(\d+)\}", match[1])
        found["sack_blocks"] = tuple(
            ((int(left) + sack_base) & MASK32, (int(right) + sack_base) & MASK32) for left, right in edges
        )
