"""Decode the text tcpdump prints back into the packet table.

Accepts what ``tcpdump -n`` / ``-nn`` prints with or without ``-r``, with any
of these options: ``-v`` (the IP header on the first line, the TCP segment on an
indented continuation line), ``-e`` (link-level header before the IP part),
``-#`` (frame number prefix), timestamps as ``-t`` (none), default
(``HH:MM:SS.ffffff``, time of day), ``-tt`` (epoch seconds) or ``-tttt`` (date
and time); ``-x``/``-X`` hex lines and tunnels (GRE, Geneve, VXLAN's inner
packet on the next line) are tolerated, the innermost TCP segment is used.

Conventions (see :mod:`pcapstate.table`):

* ``frame`` is the 1-based number of the line where the packet's text starts
  (its timestamp line), so a report's "frame N" is line N of the text file.
* Fields tcpdump did not print are absent (their ``Known`` bit cleared, value
  0): no seq on a pure ACK, no length on a line cut by ``[|tcp]``.  A time of day
  without date clears ``Known.TS``; ``ts_ns`` is then the time since midnight of
  1970-01-01, plus one day each time the clock goes back by more than 12 hours
  (midnight passed).  ``-tttt`` dates are taken as UTC (run ``TZ=UTC tcpdump``).
* Sequence numbers are made absolute again by running tcpdump's own
  relative-numbering state (:class:`pcapstate.tcpdump_lines.TcpSeqHash`)
  backwards: exact for the complete output of a tcpdump run.  For an excerpt
  that starts mid-connection, a pair whose first ACK-bearing line prints
  ``seq 1`` or ``ack 1`` is taken as already relative (base 0); a pair whose
  recording line printed no seq (a pure ACK) gets the base its last bare SYN
  implies, else 0.  ``relative=False`` is for text printed with ``-S``.
* Non-TCP packets count in ``stats.non_tcp``; TCP packets that cannot be put in
  the table (host names printed without ``-n``, ``[|tcp]`` before the flags)
  and lines that are not tcpdump output count in ``stats.undecodable``, with
  one summary warning per reason, never an exception.

:func:`looks_like_tcpdump_text` recognises such text from its first bytes.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable

from pcapstate.flags import Flag
from pcapstate.table import Known, PacketTable, TableBuilder, address_bytes
from pcapstate.tcpdump_lines import MASK32, TcpSeqHash, TcpText, parse_options, parse_tcp

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# --- line shapes ----------------------------------------------------------------

_START = re.compile(
    r"^(?:\s*(?P<number>\d+)  )?"  # -#
    r"(?:(?:(?P<date>\d{4}-\d\d-\d\d) )?(?P<clock>\d\d:\d\d:\d\d(?:\.\d{1,9})?) "
    r"|(?P<epoch>\d{1,11}\.\d{1,9}) )?"
)
_NUMBERED = re.compile(r"\s*\d+  \S")  # -#
_HEAD = re.compile(r"(?:IP6? |ARP, |RARP, |MPLS |(?:[0-9a-f]{2}:){5}[0-9a-f]{2} > )")
_PACKETISH = re.compile(r"\S > \S.*?: |^IP6? \((?:tos|flowlabel|hlim)|^R?ARP, ")
_BANNER = re.compile(
    r"^(?:reading from (?:file|pipe)|tcpdump: |listening on |\d+ packets? (?:captured|received by filter|dropped by))"
)
_NEWLINE_INNER = re.compile(r"VXLAN(?:-GPE)?, .*\bvni \d+$")
_TCP_UNDECODED = re.compile(r"\[\|tcp\]|bad hdr length|IP bad-len|\btcp \d+ \[bad")
_FRAGMENT = re.compile(r": ip-proto-6\b|\bfrag \(0x[0-9a-f]+\)")


# --- detection --------------------------------------------------------------


def looks_like_tcpdump_text(head: bytes) -> bool:
    """True when the first bytes of a file are tcpdump's packet lines.

    Rejects binary (NUL bytes, invalid UTF-8), empty input and prose: at least
    one line must be a tcpdump packet line and at least 80 % of the lines that
    start at the margin must be packet or banner lines (indented lines, as
    ``-v`` and ``-x`` print, are neutral).
    """
    if not head.strip() or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.count("\ufffd") > 1:  # one may be a character cut at the end
        return False
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines.pop()  # probably cut in the middle
    margin = [line for line in lines if line.strip() and (not line[0].isspace() or _NUMBERED.match(line))]
    packets = sum(1 for line in margin if _is_packet_line(line))
    banners = sum(1 for line in margin if _BANNER.match(line))
    return packets > 0 and packets + banners >= 0.8 * len(margin)


def _is_packet_line(line: str) -> bool:
    """A timestamp or protocol head, then the shape of a packet (``a > b: ``, ``IP (tos``, ``ARP, ``)."""
    start = _START.match(line)
    rest = line[start.end():]
    if not (start["clock"] or start["epoch"] or _HEAD.match(rest)):
        return False
    return bool(_PACKETISH.search(rest))


# --- decoding ---------------------------------------------------------------


def decode_text(lines: Iterable[str], source: str = "", *, relative: bool = True) -> PacketTable:
    """Decode tcpdump's text (an iterable of lines) into a packet table."""
    decoder = _TextDecoder(TableBuilder(source), relative)
    for number, line in enumerate(lines, start=1):
        decoder.feed(number, line)
    return decoder.finish()


@dataclass
class _Packet:
    frame: int  # line number of its first line
    ts_ns: int
    dated: bool
    parts: list[str] = field(default_factory=list)


class _Clock:
    """Time of day to a monotonic ``ts_ns``: a day passes when the clock goes back 12 h."""

    def __init__(self) -> None:
        self.days = 0
        self.last: int | None = None

    def __call__(self, time_of_day_ns: int) -> int:
        if self.last is not None and time_of_day_ns < self.last - _DAY_NS // 2:
            self.days += 1
        self.last = time_of_day_ns
        return time_of_day_ns + self.days * _DAY_NS


class _Problems:
    """Counts per reason, with the first example, for one warning per reason."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, tuple[int, str]] = {}

    def add(self, reason: str, number: int, text: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, (number, text.strip()[:100]))

    def report(self, stats) -> None:
        for reason, count in self.counts.items():
            number, text = self.first[reason]
            stats.warn(f"{count} {reason} (first at line {number}: {text!r})")


class _TextDecoder:
    """Groups lines into packets and appends each TCP packet to the builder."""

    def __init__(self, builder: TableBuilder, relative: bool) -> None:
        self.builder = builder
        self.stats = builder.stats
        self.relative = relative
        self.seq_hash = TcpSeqHash()
        self.clock = _Clock()
        self.problems = _Problems()
        self.pending: _Packet | None = None
        self.stamped = False  # the text has timestamps: unstamped "IP …" lines continue a packet

    def feed(self, number: int, line: str) -> None:
        line = line.rstrip("\r\n").lstrip("\ufeff") if number == 1 else line.rstrip("\r\n")
        if not line.strip():
            return
        start = _START.match(line)
        rest = line[start.end():]
        if start["clock"] or start["epoch"] or (start["number"] and _HEAD.match(rest)):
            self._begin(number, start, rest)
        elif line[0].isspace() or ((self.stamped or self._open_ended()) and _HEAD.match(line)):
            self._continue(number, line)
        elif _is_packet_line(line):  # -t: no timestamps
            self._begin(number, start, rest)
        elif not _BANNER.match(line):
            self._flush()
            self._undecodable("lines that are not tcpdump packet lines", number, line)

    def finish(self) -> PacketTable:
        self._flush()
        self.problems.report(self.stats)
        return self.builder.finish()

    def _begin(self, number: int, start: re.Match, rest: str) -> None:
        self._flush()
        ts_ns, dated = self._timestamp(start)
        self.stamped = self.stamped or bool(start["clock"] or start["epoch"])
        self.pending = _Packet(number, ts_ns, dated, [rest])

    def _open_ended(self) -> bool:
        """The pending packet's text ends where tcpdump starts the inner packet on a new line (VXLAN)."""
        return self.pending is not None and bool(_NEWLINE_INNER.search(self.pending.parts[-1]))

    def _continue(self, number: int, line: str) -> None:
        if self.pending is None:
            self._undecodable("continuation lines without a packet line before them", number, line)
        else:
            self.pending.parts.append(line.strip())

    def _timestamp(self, start: re.Match) -> tuple[int, bool]:
        if start["epoch"]:
            seconds, _, fraction = start["epoch"].partition(".")
            return int(seconds) * _NS + _fraction_ns(fraction), True
        if not start["clock"]:
            return 0, False
        clock = _clock_ns(start["clock"])
        if start["date"]:
            year, month, day = map(int, start["date"].split("-"))
            return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _DAY_NS + clock, True
        return self.clock(clock), False

    def _undecodable(self, warning: str, number: int, text: str, skipped: str | None = None) -> None:
        """Count a line (or, with ``skipped``, a packet record) that gives no TCP row."""
        self.stats.undecodable += 1
        self.problems.add(warning, number, text)
        if skipped:
            self._skip(skipped)

    def _skip(self, reason: str) -> None:
        self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1

    def _flush(self) -> None:
        packet, self.pending = self.pending, None
        if packet is None:
            return
        self.stats.records += 1
        text = " ".join(packet.parts)
        try:
            segment = parse_tcp(text)
        except ValueError:
            self._undecodable("TCP packets with an unreadable flags field", packet.frame, text, "unreadable TCP flags")
            return
        if segment is None:
            self._not_tcp(packet, text)
            return
        self._append(packet, text, segment)

    def _not_tcp(self, packet: _Packet, text: str) -> None:
        if _TCP_UNDECODED.search(text):
            self._undecodable("TCP packets tcpdump could not decode", packet.frame, text, "TCP header tcpdump could not decode")
        elif _FRAGMENT.search(text):
            self.stats.fragments += 1
        else:
            self.stats.non_tcp += 1
            self._skip("not TCP")

    def _append(self, packet: _Packet, text: str, segment: TcpText) -> None:
        try:
            src, dst = _address(segment.src), _address(segment.dst)
            sport, dport = _port(segment.sport), _port(segment.dport)
        except ValueError:
            self._undecodable("TCP packets with host or port names (print them with tcpdump -n)", packet.frame, text,
                              "host or port names instead of numbers")
            return
        if not _in_range(segment, sport, dport):
            self._undecodable("TCP packets with numbers out of range", packet.frame, text, "TCP numbers out of range")
            return
        seq, ack, sack_base = self._absolute(src, dst, sport, dport, segment)
        self.builder.append(
            frame=packet.frame,
            ts_ns=packet.ts_ns,
            src=src,
            dst=dst,
            sport=sport,
            dport=dport,
            flags=segment.flags,
            seq=seq or 0,
            ack=ack or 0,
            window=segment.win or 0,
            payload_len=_payload_length(segment) or 0,
            truncated=segment.snapped,
            known=_known(segment, packet.dated),
            **parse_options(segment.options, sack_base),
        )

    def _absolute(self, src: bytes, dst: bytes, sport: int, dport: int, segment: TcpText):
        """Absolute seq and ack (None when not printed) and the SACK edges' base."""
        if not self.relative:
            return segment.seq, segment.ack, 0
        version = 4 if len(src) == 4 else 6
        key, rev = TcpSeqHash.key(version, address_bytes(src), address_bytes(dst), sport, dport)
        flags = segment.flags
        if flags & Flag.ACK and not flags & Flag.SYN and key not in self.seq_hash and _looks_relative(segment):
            self.seq_hash.adopt_relative(key)
        recorded, entry = self.seq_hash.lookup(key, rev, flags, segment.seq, segment.ack)
        if entry is None or recorded:
            return segment.seq, segment.ack, entry.peer_base(rev) if entry else 0
        seq = None if segment.seq is None else (segment.seq + entry.own_base(rev)) & MASK32
        ack = None if segment.ack is None else (segment.ack + entry.peer_base(rev)) & MASK32
        return seq, ack, entry.peer_base(rev)


# --- small helpers ----------------------------------------------------------


def _fraction_ns(digits: str) -> int:
    return int(digits.ljust(9, "0")[:9]) if digits else 0


def _clock_ns(clock: str) -> int:
    hms, _, fraction = clock.partition(".")
    hours, minutes, seconds = map(int, hms.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * _NS + _fraction_ns(fraction)


def _address(text: str) -> bytes:
    """Packed 4- or 16-byte address; ValueError for a host name."""
    return ipaddress.ip_address(text.split("%", 1)[0]).packed


def _port(text: str) -> int:
    """A port number, or a service name (old tcpdump's ``-n``) from the services database."""
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ValueError(f"unknown service name {text!r}") from None


def _in_range(segment: TcpText, sport: int, dport: int) -> bool:
    """Every number fits its header field (a mangled line may not)."""
    limits = ((sport, 0xFFFF), (dport, 0xFFFF), (segment.win, 0xFFFF), (segment.seq, MASK32),
              (segment.seq_end, MASK32), (segment.ack, MASK32), (segment.length, MASK32))
    return all(value is None or value <= limit for value, limit in limits)


def _looks_relative(segment: TcpText) -> bool:
    """A pair's first ACK-bearing line printing seq 1 or ack 1: relative already.

    That is what relative numbering prints near a connection's start (``ack 1``,
    ``seq 1:11``); an absolute 1 has odds of about 2**-32 (0 is no sign: a RST
    answering a SYN has seq 0).
    """
    return segment.seq == 1 or segment.ack == 1


def _payload_length(segment: TcpText) -> int | None:
    if segment.length is not None:
        return segment.length
    if segment.seq is not None and segment.seq_end is not None:
        return (segment.seq_end - segment.seq) & MASK32
    return None


def _known(segment: TcpText, dated: bool) -> int:
    known = 0
    for bit, value in ((Known.SEQ, segment.seq), (Known.ACK, segment.ack), (Known.WIN, segment.win)):
        if value is not None:
            known |= bit
    if _payload_length(segment) is not None:
        known |= Known.LEN
    if not segment.cut and (segment.options is not None or segment.length is not None):
        known |= Known.OPTIONS  # all options printed: one not printed was not sent
    if dated:
        known |= Known.TS
    return known
