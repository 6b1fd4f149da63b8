"""The second decoder: tshark's dissectors fill the same packet table as dpkt.

This is the ``pcapstate[pyshark]`` extra (``read_capture(path, decoder="pyshark")``).
pyshark is required and locates the tshark binary (``get_process_path``, which
honours pyshark's ``config.ini``), but packets are not read through pyshark's
``FileCapture``: that builds a Python object per packet from tshark's JSON and
decodes about a thousand packets a second.  Instead tshark is run once with
``-T fields`` naming only the fields the table needs, one tab-separated line
per frame, parsed as it streams (tens of thousands of packets a second).
tshark is always invoked with an argument list, never through a shell.

tshark is configured to dissect the way the dpkt decoder reads
(``pcapstate.decode.layers``), so that one frame is at most one row:

* no IP reassembly (``ip.defragment``, ``ipv6.defragment``) and no TCP
  reassembly (``tcp.desegment_tcp_streams``); non-first IP fragments (of any
  protocol) count in ``stats.fragments`` and give no row; a first fragment is
  a row whose ``payload_len`` is the TCP bytes in that fragment (tshark prints
  no ``tcp.len`` there: it is computed from the IP lengths, as dpkt does);
* raw sequence numbers (``tcp.relative_sequence_numbers`` off, sequence
  analysis off): ``tcp.seq_raw``/``tcp.ack_raw`` and raw SACK edges;
* an IP total length (or IPv6 payload length) of 0 means "TCP segmentation
  offload, use what was captured" for both families (``ip.tso_support``,
  ``ipv6.tso_support``), as dpkt does;
* checksums are validated (``ip.check_checksum``, ``tcp.check_checksum``):
  ``bad_checksum`` is tshark's "bad" verdict on the row's IPv4 header or TCP
  segment, as the dpkt decoder computes it (segments not captured whole are
  not verified);
* the user's Wireshark profile is not read (``WIRESHARK_CONFIG_DIR`` points to
  an empty directory), so disabled protocols or "decode as" rules there cannot
  change the table.

Which TCP header of a frame is its row: the outermost one that is not quoted
inside an ICMP/ICMPv6 error.  Where dpkt and tshark decode the same layers the
tables are identical.  Where tshark decodes more, they differ on purpose:

* tunnels (GRE, IP-in-IP, VXLAN, Geneve, GTP-U, Teredo, …): dpkt stops at the
  outer header and counts the frame as "not TCP"; tshark opens the tunnel and
  the inner TCP packet is the row (its addresses and ports are the inner ones);
* link types dpkt does not decode (802.11, PPP, …): dpkt raises
  ``UnsupportedLinkTypeError``; tshark decodes them;
* an IPv4 ethertype whose header says version 6 (and the reverse) is
  dissected by tshark as the version it claims; dpkt follows the ethertype.

``-T fields`` prints every occurrence of a field in a frame without saying
which protocol layer it came from.  That is unambiguous when a frame has one
TCP header; frames with several (a tunnel carried over TCP, or an ICMP error
carried over TCP quoting another TCP header) are re-read in a second tshark
pass as JSON, where each TCP layer is its own object.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import tempfile

from pcapstate.errors import CaptureReadError, DecoderUnavailableError, NotACaptureError
from pcapstate.table import Known, PacketTable, TableBuilder

INSTALL_HINT = "pip install 'pcapstate[pyshark]' and install tshark (e.g. apt-get install tshark)"

PREFERENCES = (
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "ip.tso_support:TRUE",
    "ipv6.tso_support:TRUE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.relative_sequence_numbers:FALSE",
    "tcp.analyze_sequence_numbers:FALSE",
    "tcp.check_checksum:TRUE",
    "ip.check_checksum:TRUE",
)

FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.frag_offset",
    "ip.flags.mf",
    "ip.len",
    "ip.hdr_len",
    "ip.checksum.status",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.plen",
    "ipv6.fraghdr.nxt",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "ipv6.fraghdr.ident",
    "ipv6.hopopts.nxt",
    "ipv6.hopopts.len_oct",
    "ipv6.dstopts.nxt",
    "ipv6.dstopts.len_oct",
    "ipv6.routing.nxt",
    "ipv6.routing.len_oct",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.hdr_len",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.urgent_pointer",
    "tcp.len",
    "tcp.checksum.status",
    "tcp.option_kind",
    "tcp.options.mss_val",
    "tcp.options.wscale.shift",
    "tcp.options.timestamp.tsval",
    "tcp.options.timestamp.tsecr",
    "tcp.options.sack.count",
    "tcp.options.sack_le",
    "tcp.options.sack_re",
)
_COLUMN = {name: index for index, name in enumerate(FIELDS)}
# fixed-header fields every complete TCP header has (urgent pointer: its last 2 bytes)
_TCP_FIXED = ("tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.hdr_len", "tcp.flags",
              "tcp.window_size_value", "tcp.urgent_pointer", "tcp.len")
_IPV6_EXTENSION_LENGTH = {
    "ipv6.hopopts": "ipv6.hopopts.len_oct",
    "ipv6.dstopts": "ipv6.dstopts.len_oct",
    "ipv6.routing": "ipv6.routing.len_oct",
}
_IPV6_EXTENSIONS = ("ipv6.hopopts", "ipv6.dstopts", "ipv6.routing", "ipv6.fraghdr")
_IPV6_EXTENSION_NUMBERS = frozenset({0, 43, 44, 60})  # hop-by-hop, routing, fragment, destination
_ICMP = frozenset({"icmp", "icmpv6"})
_IP_LAYERS = frozenset({"ip", "ipv6"})
_CHECKSUM_BAD = "0"  # PROTO_CHECKSUM_E_BAD of ip/tcp.checksum.status (1 good, 2 unverified)
_TCP_OPT_SACK_PERMITTED = 4
_TCP_OPT_SACK = 5
_QUIET_STDERR = ("Running as user",)
_RANGES_PER_RUN = 2000  # display-filter terms per JSON run (an argument is at most 128 KiB)


_TSHARK_PLACES = ("/usr/bin/tshark", "/usr/local/bin/tshark", "/usr/sbin/tshark",
                  "/Applications/Wireshark.app/Contents/MacOS/tshark",
                  r"C:\Program Files\Wireshark\tshark.exe")


def tshark_path() -> str:
    """The tshark binary on the PATH or in its usual places, or ``DecoderUnavailableError``.

    Not pyshark's ``get_process_path``: it reads ``config.ini`` from the
    current directory, so analyzing captures in a directory someone else
    prepared would run whatever program that file names (and an unrelated
    ``config.ini`` there makes it raise).
    """
    import importlib.util
    import shutil

    if importlib.util.find_spec("pyshark") is None:
        raise DecoderUnavailableError(f"the pyshark decoder needs pyshark and tshark: {INSTALL_HINT}")
    found = shutil.which("tshark") or next((p for p in _TSHARK_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        raise DecoderUnavailableError(f"the pyshark decoder needs tshark, which was not found: {INSTALL_HINT}")
    return found


def tshark_command(path: str, fields=FIELDS, tshark: str | None = None) -> list[str]:
    """The argument list that prints ``fields`` for every frame of ``path``."""
    # "-r -" would read standard input: a file whose name starts with "-" goes as "./-…"
    command = [tshark or tshark_path(), "-n", "-r", os.path.join(".", path) if path.startswith("-") else path]
    for preference in PREFERENCES:
        command += ["-o", preference]
    command += ["-T", "fields", "-E", "header=n", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in fields:
        command += ["-e", name]
    return command


def read_with_tshark(path: str | os.PathLike) -> PacketTable:
    """Decode every TCP packet of the capture at ``path`` through tshark.

    Raises ``DecoderUnavailableError`` without pyshark or tshark, and the
    same input errors as the dpkt decoder (``CaptureReadError``,
    ``NotACaptureError``).  What tshark says on stderr about a damaged or cut
    file ends up in ``table.stats.warnings``.
    """
    path = os.fspath(path)
    tshark = tshark_path()
    if os.path.isdir(path):
        raise CaptureReadError(f"{path}: is a directory")
    if not os.path.exists(path):
        raise CaptureReadError(f"{path}: No such file or directory")
    if not os.access(path, os.R_OK):
        raise CaptureReadError(f"{path}: Permission denied")
    if os.path.getsize(path) == 0:
        raise NotACaptureError(path)  # as the dpkt decoder says (tshark reads no frames)
    builder = TableBuilder(path)
    stats = builder.stats
    ambiguous: list[int] = []
    run = _Tshark(tshark_command(path, tshark=tshark), path)
    with run as lines:
        for line in lines:
            values = line.rstrip("\n").split("\t")
            if len(values) != len(FIELDS) or not values[0].isdigit():
                stats.records += 1
                stats.skip("unreadable tshark output", tcp_related=True)
                continue
            if _decode_frame(values, builder) is _AMBIGUOUS:
                ambiguous.append(int(values[0]))
    stats.warnings += run.warnings
    if ambiguous:
        _append_from_json(path, tshark, ambiguous, builder)
    return _in_frame_order(builder.finish())


# --- running tshark -----------------------------------------------------------


class _Tshark:
    """Context manager: stream tshark's stdout lines, then check how it ended.

    tshark runs from an argument list (no shell), with an empty configuration
    directory so the user's profile cannot change what it prints.
    """

    def __init__(self, command: list[str], path: str) -> None:
        self.command, self.path = command, path
        self.warnings: list[str] = []

    def __enter__(self):
        self._config = tempfile.TemporaryDirectory(prefix="pcapstate-tshark-")
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=self._config.name)
        try:
            self._process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                env=env, text=True, encoding="utf-8", errors="replace",
            )
        except OSError as error:
            self._cleanup()
            raise DecoderUnavailableError(f"cannot run tshark ({error}): {INSTALL_HINT}") from None
        self._lines = 0
        return self._count(self._process.stdout)

    def _count(self, stream):
        for line in stream:
            self._lines += 1
            yield line

    def __exit__(self, kind, value, traceback):
        process = self._process
        if kind is not None:
            process.kill()
        process.stdout.close()
        status = process.wait()
        self._stderr.seek(0)
        messages = [m.strip() for m in self._stderr.read().decode("utf-8", "replace").splitlines()]
        messages = [m for m in messages if m and not m.startswith(_QUIET_STDERR)]
        self._cleanup()
        if kind is not None:
            return False
        if status != 0 and self._lines == 0:
            _raise_for(self.path, messages, status)
        self.warnings = [f"tshark: {message.removeprefix('tshark: ')}" for message in messages]
        return False

    def _cleanup(self) -> None:
        self._stderr.close()
        self._config.cleanup()


def _raise_for(path: str, messages: list[str], status: int) -> None:
    text = " ".join(messages)
    if "isn't a capture file" in text or "unknown file format" in text:
        if _is_tcpdump_text(path):
            raise CaptureReadError(f"{path}: tcpdump text output: tshark reads only capture files; use the dpkt decoder")
        raise NotACaptureError(path)
    if "appears to have been cut short" in text or "appears to be damaged or corrupt" in text:
        return  # no complete frame: an empty table, the message as a warning
    raise CaptureReadError(f"{path}: tshark failed (status {status}): {text or 'no message'}")


def _is_tcpdump_text(path: str) -> bool:
    try:
        from pcapstate.decode.text import looks_like_tcpdump_text

        with open(path, "rb") as handle:
            return looks_like_tcpdump_text(handle.read(4096))
    except (ImportError, OSError):
        return False


def _in_frame_order(table: PacketTable) -> PacketTable:
    frames = table.columns["frame"]
    if len(frames) < 2 or bool((frames[1:] > frames[:-1]).all()):
        return table
    return table.take(frames.argsort(kind="stable"))


# --- frames with several TCP headers: a JSON pass -----------------------------


def _append_from_json(path: str, tshark: str, frames: list[int], builder: TableBuilder) -> None:
    """Rows of ``frames`` from tshark's JSON, where each TCP layer is its own object."""
    stats = builder.stats
    seen: set[int] = set()
    for packet in _json_packets(path, tshark, frames):
        values = _values_from_json(packet)
        if values is None or not values[0].isdigit():
            stats.skip("unreadable tshark output", tcp_related=True)
            continue
        seen.add(int(values[0]))
        _decode_frame(values, builder, resolved=True)
    missing = len(set(frames) - seen)
    if missing:
        stats.undecodable += missing
        stats.skipped["unreadable tshark output"] = stats.skipped.get("unreadable tshark output", 0) + missing
        stats.warn(f"tshark's JSON pass did not print {missing} frames with several TCP headers")


def _json_packets(path: str, tshark: str, frames: list[int]) -> list[dict]:
    """tshark's JSON for ``frames`` (runs of frame numbers, a few thousand per run)."""
    ranges: list[list[int]] = []
    for frame in sorted(set(frames)):
        if ranges and frame == ranges[-1][1] + 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    packets: list[dict] = []
    for start in range(0, len(ranges), _RANGES_PER_RUN):
        # comparisons rather than a set "in {…}", whose syntax changed between tshark versions
        wanted = " || ".join(f"(frame.number >= {a} && frame.number <= {b})" if a != b else f"frame.number == {a}"
                             for a, b in ranges[start : start + _RANGES_PER_RUN])
        command = [tshark, "-n", "-r", path]
        for preference in PREFERENCES:
            command += ["-o", preference]
        command += ["-Y", wanted, "-T", "json", "--no-duplicate-keys",
                    "-J", "frame ip ipv6 ipv6.hopopts ipv6.dstopts ipv6.routing ipv6.fraghdr tcp"]
        with _Tshark(command, path) as lines:
            text = "".join(lines)
        try:
            packets += json.loads(text) if text.strip() else []
        except json.JSONDecodeError:
            pass  # counted as frames not printed
    return packets


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _collect(node, key: str) -> list[str]:
    """Every value of ``key`` under ``node``, in document order."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found += [v for v in _as_list(value) if isinstance(v, str)]
            else:
                found += _collect(value, key)
    elif isinstance(node, list):
        for item in node:
            found += _collect(item, key)
    return found


def _collect_objects(node, key: str) -> list[dict]:
    """Every object under ``key`` below ``node``, in document order."""
    found: list[dict] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found += [v for v in _as_list(value) if isinstance(v, dict)]
            else:
                found += _collect_objects(value, key)
    elif isinstance(node, list):
        for item in node:
            found += _collect_objects(item, key)
    return found


_JSON_IP_LAYERS = ("ipv6.hopopts", "ipv6.dstopts", "ipv6.routing", "ipv6.fraghdr", "ipv6", "ip")


def _json_layer_of(name: str) -> str | None:
    """The JSON layer holding an IP-level field (``ip.flags.mf`` -> ``ip``)."""
    return next((layer for layer in _JSON_IP_LAYERS if name.startswith(layer + ".")), None)


def _values_from_json(packet: dict) -> list[str] | None:
    """A ``-T fields`` line holding only the row's TCP layer's fields."""
    try:
        layers_json = packet["_source"]["layers"]
        frame = layers_json["frame"]
        protocols = frame["frame.protocols"]
    except (KeyError, TypeError):
        return None
    layers = protocols.split(":")
    end = next((i for i, name in enumerate(layers) if name in _ICMP), len(layers))
    tcp_at = next((i for i in range(end) if layers[i] == "tcp"), None)
    values = [""] * len(FIELDS)
    for name in ("frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.protocols"):
        values[_COLUMN[name]] = str(frame.get(name, ""))
    for name in FIELDS:
        family = _json_layer_of(name)
        if family in _IPV6_EXTENSIONS:  # nested in the IPv6 object (or a layer of its own)
            found = _collect([layers_json.get("ipv6"), layers_json.get(family)], name)
            values[_COLUMN[name]] = ",".join(found)
        elif family is not None:  # one value per IP layer, in stack order
            per_layer = [(_collect(layer, name) or [""])[0] for layer in _as_list(layers_json.get(family))]
            values[_COLUMN[name]] = ",".join(per_layer) if any(per_layer) else ""
    if tcp_at is not None:
        tcp_layers = _as_list(layers_json.get("tcp"))
        layer = _nth(tcp_layers, layers[:tcp_at].count("tcp"))
        if layer is None:  # nothing of the header was printed: it is cut or broken
            return values
        for name in FIELDS:
            if name.startswith("tcp."):
                values[_COLUMN[name]] = ",".join(_collect(layer, name))
        # the whole blocks of the last SACK option that has any, as dpkt reads them
        per_option = [list(zip(_collect(tree, "tcp.options.sack_le"), _collect(tree, "tcp.options.sack_re")))
                      for tree in _collect_objects(layer, "tcp.options.sack_tree")]
        blocks = next((pairs for pairs in reversed(per_option) if pairs), [])
        values[_COLUMN["tcp.options.sack_le"]] = ",".join(edge for edge, _ in blocks)
        values[_COLUMN["tcp.options.sack_re"]] = ",".join(edge for _, edge in blocks)
        values[_COLUMN["tcp.options.sack.count"]] = str(len(blocks)) if blocks else ""
    return values


# --- one frame ------------------------------------------------------------------

_AMBIGUOUS = object()


def _values(values: list[str], name: str) -> list[str]:
    text = values[_COLUMN[name]]
    return text.split(",") if text else []


def _number(text: str) -> int:
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text)


def _ints(values: list[str], name: str) -> list[int]:
    return [_number(v) if v else None for v in _values(values, name)]


def _nth(items: list, index: int):
    """The index-th occurrence, or None (also for an empty placeholder)."""
    item = items[index] if 0 <= index < len(items) else None
    return None if item == "" else item


def parse_epoch_ns(text: str) -> int:
    """``'1464385864.999633000'`` -> exact nanoseconds (no float rounding).

    Also reads an ISO 8601 UTC time (``2016-05-27T21:51:04.999633000Z``), in
    case a tshark version prints absolute times that way.
    """
    text = text.strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, fraction = text.partition(".")
    if "T" in whole:
        seconds = _iso_seconds(whole)
        fraction = fraction.rstrip("Zz")
    else:
        seconds = int(whole or "0")
    ns = seconds * 1_000_000_000 + int((fraction + "000000000")[:9])
    return -ns if negative else ns


def _iso_seconds(text: str) -> int:
    from datetime import datetime, timezone

    moment = datetime.strptime(text.rstrip("Zz"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _decode_frame(values: list[str], builder: TableBuilder, *, resolved: bool = False):
    """Append the frame's row or count why it has none; ``_AMBIGUOUS`` if unsure.

    ``resolved``: the TCP fields are those of the row's TCP layer only (the
    JSON pass), although ``frame.protocols`` lists several TCP layers.
    """
    stats = builder.stats
    if not resolved:
        stats.records += 1
    frame_len, cap_len = int(values[_COLUMN["frame.len"]] or 0), int(values[_COLUMN["frame.cap_len"]] or 0)
    truncated = cap_len < frame_len
    if truncated and not resolved:
        stats.truncated_records += 1
    layers = values[_COLUMN["frame.protocols"]].split(":")
    end = next((i for i, name in enumerate(layers) if name in _ICMP), len(layers))
    tcp_at = next((i for i in range(end) if layers[i] == "tcp"), None)
    if tcp_at is None:
        _classify_no_tcp(values, layers, end, truncated, stats)
        return None
    if layers.count("tcp") > 1 and not resolved:
        return _AMBIGUOUS
    ip_at = max((i for i in range(tcp_at) if layers[i] in _IP_LAYERS), default=None)
    if ip_at is None:  # TCP without IP: only through some exotic encapsulation
        stats.skip("TCP without an IP header", tcp_related=True)
        return None
    family = layers[ip_at]
    occurrence = layers[:ip_at].count(family)
    src = _nth(_values(values, f"{family}.src"), occurrence)
    dst = _nth(_values(values, f"{family}.dst"), occurrence)
    fixed = {name: _nth(_values(values, name), 0) for name in _TCP_FIXED}
    if src is None or dst is None:
        stats.skip("malformed IP header", tcp_related=True)
        return None
    if fixed["tcp.len"] is None and all(v is not None for k, v in fixed.items() if k != "tcp.len"):
        # tshark leaves out the segment length when the header runs past the IP
        # payload ("short segment") and in the first fragment of a datagram
        ip_payload = _first_fragment_payload(values, layers, ip_at, tcp_at, occurrence)
        header_len = _number(fixed["tcp.hdr_len"])
        if ip_payload is None or header_len > ip_payload:
            stats.skip("TCP data offset beyond the packet", tcp_related=True)
            return None
        fixed["tcp.len"] = str(ip_payload - header_len)
    if any(v is None for v in fixed.values()):
        reason = "TCP header cut by snap length" if truncated else "malformed TCP header"
        stats.skip(reason, tcp_related=True)
        return None
    options = _options(values, resolved=resolved)
    if options is _AMBIGUOUS:
        return _AMBIGUOUS
    ip_status = _nth(_values(values, "ip.checksum.status"), occurrence) if family == "ip" else None
    options["bad_checksum"] = _CHECKSUM_BAD in (ip_status, _nth(_values(values, "tcp.checksum.status"), 0))
    _append(builder, int(values[_COLUMN["frame.number"]]), values[_COLUMN["frame.time_epoch"]],
            src, dst, {k: _number(v) for k, v in fixed.items()}, options, truncated)
    return None


def _first_fragment_payload(values, layers, ip_at, tcp_at, occurrence) -> int | None:
    """IP payload length (after extension headers) of a first fragment, else None."""
    if layers[ip_at] == "ip":
        if not _true(_nth(_values(values, "ip.flags.mf"), occurrence)):
            return None
        total = _nth(_ints(values, "ip.len"), occurrence)
        header = _nth(_ints(values, "ip.hdr_len"), occurrence)
        return total - header if total and header is not None else None
    payload = _nth(_ints(values, "ipv6.plen"), occurrence)
    if not payload:
        return None
    more = False
    for position in range(ip_at + 1, tcp_at):
        name = layers[position]
        index = layers[:position].count(name)
        if name == "ipv6.fraghdr":
            more = _true(_nth(_values(values, "ipv6.fraghdr.more"), index))
            payload -= 8
        elif name in _IPV6_EXTENSION_LENGTH:
            length = _nth(_ints(values, _IPV6_EXTENSION_LENGTH[name]), index)
            if length is None:
                return None
            payload -= length
        else:
            return None
    return payload if more else None


def _true(text: str | None) -> bool:
    return text is not None and text.strip().lower() in ("1", "true")


def _append(builder, frame, epoch, src, dst, fixed, options, truncated):
    builder.append(
        frame=frame,
        ts_ns=parse_epoch_ns(epoch),
        src=ipaddress.ip_address(src).packed,
        dst=ipaddress.ip_address(dst).packed,
        sport=fixed["tcp.srcport"],
        dport=fixed["tcp.dstport"],
        flags=fixed["tcp.flags"],
        seq=fixed["tcp.seq_raw"],
        ack=fixed["tcp.ack_raw"],
        window=fixed["tcp.window_size_value"],
        payload_len=fixed["tcp.len"],
        truncated=truncated,
        known=Known.ALL,
        **options,
    )


def _options(values: list[str], *, resolved: bool = False):
    """Options of the row's TCP header, as dpkt reads them (``_AMBIGUOUS`` if unsure).

    Of repeated options the last wins.  An option cut by the snap length is
    ignored, except a SACK option's blocks captured whole, which are kept (the
    row is marked truncated).  tshark prints nothing for an option whose length
    byte is wrong or runs past the header, and stops at End of Option List.
    """
    found: dict = {}
    kinds = _ints(values, "tcp.option_kind")
    if _TCP_OPT_SACK_PERMITTED in kinds:
        found["sack_permitted"] = True
    mss = _ints(values, "tcp.options.mss_val")
    if mss:
        found["mss"] = mss[-1]
    shift = _ints(values, "tcp.options.wscale.shift")
    if shift:
        found["wscale"] = shift[-1]
    stamps = list(zip(_ints(values, "tcp.options.timestamp.tsval"), _ints(values, "tcp.options.timestamp.tsecr")))
    if stamps:  # a cut option can only be the last: it has a tsval and no tsecr
        found.update(ts_val=stamps[-1][0], ts_ecr=stamps[-1][1], has_timestamps=True)
    left, right = _ints(values, "tcp.options.sack_le"), _ints(values, "tcp.options.sack_re")
    blocks = _sack_blocks(kinds.count(_TCP_OPT_SACK), _ints(values, "tcp.options.sack.count"), left, right, resolved)
    if blocks is _AMBIGUOUS:
        return _AMBIGUOUS
    if blocks:
        found["sack_blocks"] = blocks
    return found


def _sack_blocks(options: int, counts: list[int], left: list[int], right: list[int], resolved: bool):
    """Blocks of the last SACK option that has any (dpkt keeps earlier ones otherwise).

    tshark prints each whole block's edges, a lone left edge for a block cut
    short, and the option's block count once it is complete: an option cut
    by the snap length (always the last) has edges but no count.
    """
    pairs = list(zip(left, right))
    if resolved or options <= 1:  # every edge printed is the (one) option's
        return tuple(pairs)
    if len(left) != len(right):
        return _AMBIGUOUS  # a lone left edge in one of several options: whose is not printed
    per_option, at = [], 0
    for count in counts:
        per_option.append(pairs[at : at + count])
        at += count
    if at < len(pairs):
        per_option.append(pairs[at:])  # the last option, cut by the snap length
    return tuple(next((blocks for blocks in reversed(per_option) if blocks), ()))


def _classify_no_tcp(values, layers, end, truncated, stats) -> None:
    """A frame without a TCP row: not IP, not TCP, a fragment, or undecodable."""
    ip_at = max((i for i in range(end) if layers[i] in _IP_LAYERS), default=None)
    if ip_at is None:
        stats.skip("not IP")
        return
    family = layers[ip_at]
    occurrence = layers[:ip_at].count(family)
    if family == "ip":
        if _nth(_values(values, "ip.dst"), occurrence) is None:
            stats.skip("malformed IP header", tcp_related=True)
            return
        proto = _nth(_ints(values, "ip.proto"), occurrence)
        offset = _nth(_ints(values, "ip.frag_offset"), occurrence) or 0
    else:
        proto, offset = _ipv6_payload(values, layers, ip_at, end, occurrence)
        if _nth(_values(values, "ipv6.dst"), occurrence) is None or (proto is None and not offset):
            stats.skip("malformed IP header", tcp_related=True)
            return
    if offset > 0:  # non-first fragment of any protocol: no transport header in it
        stats.fragments += 1
        return
    if proto == 6:
        reason = "TCP header cut by snap length" if truncated else "malformed TCP header"
        stats.skip(reason, tcp_related=True)
        return
    stats.skip("not TCP")


def _ipv6_payload(values, layers, ip_at, end, occurrence):
    """(protocol after the extension headers, fragment offset) of an IPv6 layer.

    The protocol is None when an extension header is cut short: dpkt then
    fails to parse the whole IPv6 packet ("malformed IP header").
    """
    proto, offset = _nth(_ints(values, "ipv6.nxt"), occurrence), 0
    for position in range(ip_at + 1, end):  # extension headers are layers of their own
        name = layers[position]
        if not name.startswith("ipv6."):
            break
        index = layers[:position].count(name)
        proto = _nth(_ints(values, f"{name}.nxt"), index) if name in _IPV6_EXTENSIONS else None
        if name == "ipv6.fraghdr":
            if _nth(_values(values, "ipv6.fraghdr.ident"), index) is None:
                return None, 0  # shorter than its 8 bytes
            offset = _nth(_ints(values, "ipv6.fraghdr.offset"), index) or 0
    if proto in _IPV6_EXTENSION_NUMBERS:
        return None, offset  # tshark stopped before this extension header: cut short
    return proto, offset
