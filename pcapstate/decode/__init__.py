"""Decode a capture file into the columnar packet table.

``read_capture(path)`` detects the format from the content, never the name:
pcap or pcapng (either optionally gzip-compressed), or the text that
``tcpdump -n`` prints.  pcap and pcapng go through the compiled fast path
(:mod:`pcapstate.decode.fast`), which hands dpkt whatever it does not handle;
``decoder="dpkt-reference"`` decodes every record through dpkt alone, the
reference the fast path is tested against (and the default when the JIT is
off: the fast path as plain Python is slower than dpkt).  Both fill identical
tables.  ``decoder="pyshark"`` fills the same table through tshark's
dissectors instead of dpkt.

``read_capture([path, ...])`` reads a capture set, several files as one trace
(:mod:`pcapstate.decode.capture_set`): rotated files (``tcpdump -C`` or
``-G``), or captures of one moment taken at several places.
"""
from __future__ import annotations

import gzip
import mmap
import os
import zlib

from pcapstate import jit
from pcapstate.errors import CaptureReadError, NotACaptureError, UnsupportedLinkTypeError
from pcapstate.table import PacketTable, TableBuilder

DECODERS = ("dpkt", "dpkt-reference", "pyshark")
_GZIP_MAGIC = b"\x1f\x8b"


def read_capture(path, decoder: str = "dpkt", progress=None, options: bool = True) -> PacketTable:
    """Decode every TCP packet of the capture at ``path``.

    Raises a :class:`pcapstate.errors.PcapstateError` subclass when the file is
    unreadable, not a capture, or of an unsupported link type.  A file cut short
    is decoded up to its last complete record; ``table.stats.warnings`` says
    what was ignored.  ``progress`` (a :class:`pcapstate.progress.Progress`)
    is told how far decoding has got.

    ``path`` may also be a list (or tuple) of paths: a capture set, read as one
    trace by :func:`pcapstate.decode.capture_set.read_capture_set` (files in
    order of their first packet, packets merged in timestamp order; a file that
    cannot be read is skipped with a warning naming it).

    ``options=False`` leaves out the columns only a packet listing prints
    (:data:`pcapstate.table.OPTION_COLUMNS`: TCP options, SACK blocks): the
    analysis never reads them, and the fast decoder then never writes them.
    """
    if isinstance(path, (list, tuple)):
        from pcapstate.decode.capture_set import read_capture_set

        return read_capture_set(path, decoder=decoder, progress=progress, options=options)
    table, _content = read_file(os.fspath(path), decoder, progress, options)
    return table


def read_file(path: str, decoder: str = "dpkt", progress=None, options: bool = True) -> tuple[PacketTable, object]:
    """One capture file's table, and its bytes as decoded (None through tshark)."""
    if decoder == "pyshark":
        from pcapstate.decode.tshark import read_with_tshark

        table = read_with_tshark(path)
        return (table if options else table.without_options()), None
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    content, warnings = _load(path)
    table = decode_bytes(content, path, progress, fast=None if decoder == "dpkt" else False, options=options)
    table.stats.warnings[:0] = warnings
    return table, content


def decode_bytes(content, source: str = "", progress=None, fast: bool | None = None,
                 options: bool = True) -> PacketTable:
    """Decode a capture already in memory (pcap, pcapng or tcpdump text).

    pcap and pcapng go through the fast path when the JIT is on (``fast=None``),
    always (``True``: as plain Python when it is off), or never (``False``: the
    dpkt reference decoder alone).  ``options``: as :func:`read_capture`.
    """
    table = _decode_bytes(content, source, progress, fast, options)
    return table if options else table.without_options()


def _decode_bytes(content, source: str, progress, fast: bool | None, options: bool) -> PacketTable:
    from pcapstate.decode.records import sniff_format

    head = bytes(content[:4096])
    kind = sniff_format(head)
    if kind is not None:
        return _decode_binary(content, source, progress, fast, options)
    from pcapstate.decode.text import decode_text, looks_like_tcpdump_text

    if looks_like_tcpdump_text(head):
        text = bytes(content).decode("utf-8", errors="replace")
        return decode_text(text.splitlines(), source)
    raise NotACaptureError(source)


def _load(path: str) -> tuple[object, list[str]]:
    """The file's bytes (decompressed if gzip), and warnings about them."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
            if head == _GZIP_MAGIC:
                handle.seek(0)
                return _gunzip(handle.read())
            handle.seek(0)
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return b"", []
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), []
    except IsADirectoryError:
        raise CaptureReadError(f"{path}: is a directory") from None
    except OSError as error:
        raise CaptureReadError(f"{path}: {error.strerror or error}") from None


def _gunzip(compressed: bytes) -> tuple[bytes, list[str]]:
    """Decompress, keeping whatever a truncated or damaged stream yields."""
    try:
        return gzip.decompress(compressed), []
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(compressed)
        except zlib.error:
            data = b""
        return data, [f"gzip stream damaged or truncated ({error}); decoded the {len(data)} bytes recovered"]


def _decode_binary(content, source: str, progress=None, fast: bool | None = None, options: bool = True) -> PacketTable:
    check_link_type(content, source)
    if fast or (fast is None and jit.ENABLED):
        from pcapstate.decode.fast import decode_fast

        return decode_fast(content, source, progress, options)
    from pcapstate.decode.layers import SUPPORTED_LINKTYPES, decode_record
    from pcapstate.decode.records import read_records

    builder = TableBuilder(source)
    stats = builder.stats
    unsupported: dict[int, int] = {}
    consumed = 0
    for record in read_records(content, stats):
        stats.records += 1
        if progress is not None:
            consumed += 16 + len(record.data)  # a record header and its bytes: near enough for pcapng too
            if stats.records & 0xFFF == 0:
                progress.update(consumed, stats.records)
        if record.linktype not in SUPPORTED_LINKTYPES:
            unsupported[record.linktype] = unsupported.get(record.linktype, 0) + 1
            continue
        decode_record(record, builder)
    _report_unsupported(source, stats, unsupported)
    return builder.finish()


def check_link_type(content, source: str) -> None:
    """A pcap file whose header names a link type no decoder reads: :class:`UnsupportedLinkTypeError`."""
    from pcapstate.decode.linktypes import SUPPORTED_LINKTYPES, linktype_name
    from pcapstate.decode.records import pcap_linktype

    header_type = pcap_linktype(content)
    if header_type is not None and header_type not in SUPPORTED_LINKTYPES:
        raise UnsupportedLinkTypeError(source, header_type, linktype_name(header_type))


def _report_unsupported(source: str, stats, unsupported: dict[int, int]) -> None:
    """pcapng interfaces of unsupported link types: an error when they are all there is."""
    from pcapstate.decode.linktypes import linktype_name

    for linktype, count in sorted(unsupported.items()):
        if count == stats.records:
            raise UnsupportedLinkTypeError(source, linktype, linktype_name(linktype))
        stats.skipped[f"unsupported link type {linktype} ({linktype_name(linktype)})"] = count
        stats.warn(f"{count} packets on interfaces of unsupported link type {linktype} ({linktype_name(linktype)}) skipped")
