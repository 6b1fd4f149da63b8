"""The packet table: every TCP packet of a capture as one array per field.

Every decoder (dpkt, tshark, tcpdump text, and later a compiled fast path) fills
the same columns through :class:`TableBuilder`; nothing downstream of the decoder
reads bytes or per-packet objects.  Columns are numpy arrays of equal length, one
row per TCP packet, in file order.

Addresses are 16-byte rows (IPv4 as IPv4-mapped IPv6, ``::ffff:a.b.c.d``) so one
fixed-width column holds both families and a flow key is a plain byte comparison.

A capture set (several files read as one trace, :mod:`pcapstate.decode.capture_set`)
is one table too, its rows merged in timestamp order.  Its table carries two more
columns, ``file`` (the index of the row's file in ``PacketTable.files``, which
lists the files in order of their first packet) and ``file_frame`` (the frame
number within that file), and ``frame`` is then the global frame number in the
merged trace (see :func:`pcapstate.decode.capture_set.merge`).  A single file's
table has neither column and ``files`` is empty: its ``frame`` is the file's.

Fields a source did not carry (tcpdump text prints no seq on a pure ACK, no
window on some lines) are marked absent in the ``known`` bit mask rather than
invented; their array value is 0.
"""
from __future__ import annotations

import ipaddress
from array import array
from dataclasses import dataclass, field
from enum import IntFlag

import numpy as np

MAX_SACK_BLOCKS = 4
V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class Known(IntFlag):
    """Which optional fields a packet row really carries (``known`` column)."""

    SEQ = 1
    ACK = 2
    WIN = 4
    LEN = 8
    OPTIONS = 16  # the TCP options were seen (absent options then mean "not sent")
    TS = 32  # the timestamp has a date (tcpdump text without -tttt has only time of day)

    ALL = SEQ | ACK | WIN | LEN | OPTIONS | TS


# name -> (numpy dtype, array.array typecode or None for 2-D/bytes columns)
SCALAR_COLUMNS: dict[str, tuple[str, str]] = {
    "frame": ("uint32", "L"),  # 1-based, counts every record in the file (as tshark)
    "ts_ns": ("int64", "q"),  # capture time, nanoseconds since the Unix epoch
    "ip_version": ("uint8", "B"),
    "sport": ("uint16", "H"),
    "dport": ("uint16", "H"),
    "seq": ("uint32", "L"),
    "ack": ("uint32", "L"),
    "flags": ("uint16", "H"),  # 9 TCP flag bits, see pcapstate.flags
    "window": ("uint16", "H"),  # raw header value, not scaled
    "payload_len": ("uint32", "L"),  # TCP payload length on the wire (from IP lengths)
    "mss": ("uint16", "H"),  # 0 = no MSS option
    "wscale": ("int16", "h"),  # -1 = no window-scale option; the raw shift count (0-255)
    "sack_permitted": ("bool", "B"),
    "ts_val": ("uint32", "L"),
    "ts_ecr": ("uint32", "L"),
    "has_timestamps": ("bool", "B"),
    "sack_count": ("uint8", "B"),
    "truncated": ("bool", "B"),  # captured length < wire length (snap length)
    "bad_checksum": ("bool", "B"),  # wrong IPv4 header or TCP checksum (checked on whole segments only)
    "known": ("uint8", "B"),  # Known bit mask
}
SET_COLUMNS: dict[str, str] = {  # only in the table of a capture set
    "file": "uint32",  # index into PacketTable.files
    "file_frame": "uint32",  # 1-based frame number within that file (``frame`` is then global)
}
ADDRESS_COLUMNS = ("src_ip", "dst_ip")  # (n, 16) uint8
SACK_COLUMN = "sack"  # (n, MAX_SACK_BLOCKS, 2) uint32: left, right edges
# What only the tcpdump-style packet listing prints: a decode with ``options=False`` leaves them out
# (the analysis never reads them; the SACK blocks alone are a quarter of the table).
OPTION_COLUMNS = ("mss", "wscale", "sack_permitted", "ts_val", "ts_ecr", "has_timestamps", "sack_count", "known",
                  SACK_COLUMN)


@dataclass
class DecodeStats:
    """What the decoder saw besides TCP packets, for the summary and warnings."""

    records: int = 0  # every record in the file (frames)
    tcp: int = 0
    non_tcp: int = 0  # other protocols, or not IP at all
    fragments: int = 0  # non-first IP fragments (cannot carry a TCP header)
    undecodable: int = 0  # records whose headers could not be parsed
    truncated_records: int = 0  # records cut by the snap length
    bytes_ignored: int = 0  # trailing bytes of a truncated file
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records without a TCP row
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def skip(self, reason: str, *, tcp_related: bool = False) -> None:
        """Count a record that yields no TCP row, under a named reason."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if tcp_related:
            self.undecodable += 1
        else:
            self.non_tcp += 1


@dataclass(frozen=True)
class CaptureFile:
    """One file of a capture set; its position in ``PacketTable.files`` is its ``file`` index."""

    name: str  # the path as given (or found in a directory or by a glob)
    records: int  # every record of the file: its frames 1..records
    packets: int  # TCP packets it gave (rows of the table)
    start_ns: int | None  # timestamp of its first record (None: no record); the set's order
    stats: DecodeStats = field(default_factory=DecodeStats, compare=False, repr=False)  # this file's own


@dataclass
class PacketTable:
    """Columns of equal length; see ``SCALAR_COLUMNS`` for names and dtypes.

    ``files`` is empty for one capture file; for a capture set it lists the
    files in set order and the columns include ``SET_COLUMNS``.
    """

    columns: dict[str, np.ndarray]
    stats: DecodeStats = field(default_factory=DecodeStats)
    source: str = ""
    files: tuple[CaptureFile, ...] = ()

    def __len__(self) -> int:
        return len(self.columns["frame"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def is_set(self) -> bool:
        """Read from a capture set (several files, or a directory or glob): has ``file`` and ``file_frame``."""
        return bool(self.files)

    @property
    def ts(self) -> np.ndarray:
        """Timestamps as float seconds since the epoch (microsecond-exact)."""
        return self.columns["ts_ns"] / 1e9

    def without_options(self) -> "PacketTable":
        """The table without :data:`OPTION_COLUMNS` (what ``options=False`` decodes)."""
        self.columns = {k: v for k, v in self.columns.items() if k not in OPTION_COLUMNS}
        return self

    def take(self, index) -> "PacketTable":
        """Rows selected by a boolean mask or an index array, same stats."""
        return PacketTable({k: v[index] for k, v in self.columns.items()}, self.stats, self.source, self.files)

    def address(self, column: str, row: int) -> str:
        """One address as text (``10.0.0.1`` or ``fe80::1``)."""
        return format_address(bytes(self.columns[column][row]))


@dataclass
class TableOutline:
    """What reports say of a packet table (its source, statistics, files and length) without its rows.

    An analysis made elsewhere in parts (``--engine dask``) needs no packet
    table on the machine that prints it; this stands in for one.
    """

    packets: int
    stats: DecodeStats = field(default_factory=DecodeStats)
    source: str = ""
    files: tuple[CaptureFile, ...] = ()

    def __len__(self) -> int:
        return self.packets

    def __getitem__(self, name: str) -> np.ndarray:
        raise KeyError(f"the packets of {self.source} were not gathered (column {name!r})")

    @property
    def is_set(self) -> bool:
        return bool(self.files)


def format_address(raw16: bytes) -> str:
    if raw16[:12] == V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw16[12:]))
    return str(ipaddress.IPv6Address(raw16))


def address_bytes(raw: bytes) -> bytes:
    """4- or 16-byte address as the 16-byte column value."""
    return V4_MAPPED_PREFIX + raw if len(raw) == 4 else raw


def parse_address(text: str) -> bytes:
    return address_bytes(ipaddress.ip_address(text).packed)


class TableBuilder:
    """Append rows one at a time (reference decoders), then ``finish()``.

    Columns grow in ``array.array`` buffers, not lists of Python objects, so a
    million packets cost a few tens of megabytes.
    """

    def __init__(self, source: str = "") -> None:
        self.stats = DecodeStats()
        self.source = source
        self._scalars = {name: array(code) for name, (_, code) in SCALAR_COLUMNS.items()}
        self._addresses = {name: bytearray() for name in ADDRESS_COLUMNS}
        self._sack = array("L")

    def append(
        self,
        *,
        frame: int,
        ts_ns: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int = 0,
        ack: int = 0,
        window: int = 0,
        payload_len: int = 0,
        mss: int = 0,
        wscale: int = -1,
        sack_permitted: bool = False,
        ts_val: int = 0,
        ts_ecr: int = 0,
        has_timestamps: bool = False,
        sack_blocks: tuple[tuple[int, int], ...] = (),
        truncated: bool = False,
        bad_checksum: bool = False,
        known: int = Known.ALL,
    ) -> None:
        """Add one TCP packet; ``src``/``dst`` are 4- or 16-byte packed addresses."""
        s = self._scalars
        s["frame"].append(frame)
        s["ts_ns"].append(ts_ns)
        s["ip_version"].append(4 if len(src) == 4 else 6)
        s["sport"].append(sport)
        s["dport"].append(dport)
        s["seq"].append(seq & 0xFFFFFFFF)
        s["ack"].append(ack & 0xFFFFFFFF)
        s["flags"].append(flags & 0x1FF)
        s["window"].append(window)
        s["payload_len"].append(payload_len)
        s["mss"].append(mss)
        s["wscale"].append(wscale)
        s["sack_permitted"].append(bool(sack_permitted))
        s["ts_val"].append(ts_val)
        s["ts_ecr"].append(ts_ecr)
        s["has_timestamps"].append(bool(has_timestamps))
        blocks = sack_blocks[:MAX_SACK_BLOCKS]
        s["sack_count"].append(len(blocks))
        s["truncated"].append(bool(truncated))
        s["bad_checksum"].append(bool(bad_checksum))
        s["known"].append(int(known))
        self._addresses["src_ip"] += address_bytes(src)
        self._addresses["dst_ip"] += address_bytes(dst)
        padded = list(blocks) + [(0, 0)] * (MAX_SACK_BLOCKS - len(blocks))
        for left, right in padded:
            self._sack.append(left & 0xFFFFFFFF)
            self._sack.append(right & 0xFFFFFFFF)
        self.stats.tcp += 1

    def finish(self) -> PacketTable:
        columns: dict[str, np.ndarray] = {}
        for name, (dtype, _) in SCALAR_COLUMNS.items():
            columns[name] = np.asarray(self._scalars[name]).astype(dtype)
        for name in ADDRESS_COLUMNS:
            columns[name] = np.frombuffer(bytes(self._addresses[name]), dtype=np.uint8).reshape(-1, 16).copy()
        columns[SACK_COLUMN] = np.asarray(self._sack, dtype=np.uint32).reshape(-1, MAX_SACK_BLOCKS, 2)
        return PacketTable(columns, self.stats, self.source)


def empty_table(source: str = "") -> PacketTable:
    return TableBuilder(source).finish()
