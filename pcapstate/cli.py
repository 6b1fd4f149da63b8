"""The ``pcapstate`` command: a thin layer of click sub-commands over the library.

Bad input never shows a traceback: every :class:`PcapstateError` is printed as
one line ``pcapstate: error: …`` with exit status 2 (``--debug`` re-raises it).
Decoder warnings (a truncated file, skipped records) go to stderr as
``pcapstate: warning: …`` and do not change the exit status.

Every command that reads a capture also reads a capture set, one trace made of
several files (:mod:`pcapstate.decode.capture_set`): several CAPTURE arguments,
a directory, or a glob pattern (quoted, so that pcapstate expands it).  A file
of a set that cannot be read is skipped with a warning naming it; only when
none can be read is that an error.
"""
from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager

# numpy's bundled OpenBLAS starts a thread per core at import, which spin for a while after
# starting; pcapstate does no linear algebra, and on a two-core machine they take the other core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from pcapstate import __version__
from pcapstate.errors import CaptureReadError, FlowNotFoundError, PcapstateError
from pcapstate.report.plots import KINDS as PLOT_KINDS  # light: matplotlib waits for a picture

EXIT_BAD_INPUT = 2


class _Context:
    debug = False


def _decoder_option(command):
    return click.option(
        "--decoder",
        type=click.Choice(["dpkt", "pyshark"]),
        default="dpkt",
        show_default=True,
        help="dpkt (fast, built in) or pyshark (tshark's dissectors; opens tunnels and 802.11).",
    )(command)


_THRESHOLD_OPTIONS = (
    ("--stuck-after", "stuck_after", click.FloatRange(min=0), 5.0,
     "Seconds in CLOSE_WAIT or FIN_WAIT_2 (before leaving it) that count as stuck."),
    ("--flood-connections", "flood_connections", click.IntRange(min=1), 20,
     "half_open_flood: at least this many half-open connections to one service ..."),
    ("--flood-sources", "flood_sources", click.IntRange(min=1), 10, "... from at least this many addresses ..."),
    ("--flood-window", "flood_window", click.FloatRange(min=0), 10.0, "... starting within this many seconds."),
)


def _threshold_options(command):
    """The anomaly thresholds, shared by every command that reports anomalies."""
    for flag, name, kind, default, text in reversed(_THRESHOLD_OPTIONS):
        command = click.option(flag, name, type=kind, default=default, show_default=True, help=text)(command)
    return command


OUTPUT_FORMATS = ("table", "json", "jsonl", "csv", "parquet")
OUTPUT_TABLES = ("flows", "transitions", "retransmissions", "retries", "anomalies")  # what analyze writes to files
STREAMED_FORMATS = ("json", "jsonl", "csv")  # written a chunk at a time: a long capture is analyzed in parts


def output_options(command):
    """--format and -o, the same for every command that prints tables (as sqlite-utils shares its own)."""
    command = click.option(
        "-o", "--output", type=click.Path(), default=None,
        help="Write to this file instead of standard output; with csv or parquet and several tables, "
             "to this directory, one <table>.csv or <table>.parquet each.")(command)
    return click.option(
        "--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
        help="table for people; json, jsonl (one record per line), csv or parquet for programs.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapstate")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
def cli(debug: bool) -> None:
    """Reconstruct TCP handshakes and teardowns from a packet capture.

    CAPTURE is a pcap or pcapng file (gzip-compressed or not) or a text file of
    `tcpdump -n` output.  Several CAPTUREs, a directory or a quoted glob
    ('cap*.pcap') are a capture set (rotated files: tcpdump -C or -G), read as
    one trace: files in order of their first packet, packets merged by time.
    """
    _Context.debug = debug


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@output_options
def packets(captures: tuple[str, ...], decoder: str, fmt: str, output: str | None) -> None:
    """Print every TCP packet as `tcpdump -n -r` does, flags in tcpdump notation.

    Sequence numbers are relative per connection, as tcpdump prints them.  The
    other formats write the packet table instead: absolute seq/ack, the flow id,
    the sender and both endpoints' states after each packet.
    """
    table = load(captures, decoder, options=fmt == "table")
    if fmt != "table":
        from pcapstate.analysis import analyze as run_analysis

        _write_tables(fmt, {"packets": run_analysis(table).columnar("packets")}, output, table.source)
        return
    from pcapstate.tcpdump_lines import render_lines

    with _output(output) as out:
        for line in render_lines(table):
            out.write(line)
            out.write("\n")


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@click.option("--flow", "flow_id", type=int, default=None, help="Only this connection (its id in the first column).")
@click.option("--timeline", is_flag=True, help="A client | server ladder per connection: every packet and each side's state changes.")
@output_options
@click.option("--time-wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="2*MSL in seconds: how long TIME_WAIT lasts before the timer closes it (Linux: 60).")
@click.option("--all", "show_all", is_flag=True, help="List every connection (default: the first 50).")
@click.option("--engine", type=click.Choice(["single", "dask"]), default="single", show_default=True,
              help="dask: decode the files and replay the connections on a Dask distributed cluster "
                   "(pip install 'pcapstate[dask]'); the same tables.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="With --engine dask: the scheduler of an existing cluster (tcp://host:8786); "
                   "default: a local cluster, one worker process per core.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads for the replay, the Zeek pass, the retransmission analysis and the JSON printer, "
                   "connections shared out by 4-tuple (for a capture analyzed in parts: processes, each "
                   "analyzing and printing its share of the parts); 0: one per core for a large capture "
                   "(200,000 packets a job at least). The same tables either way.")
@_threshold_options
def analyze(captures: tuple[str, ...], decoder: str, flow_id: int | None, timeline: bool, fmt: str, output: str | None,
            time_wait: float, show_all: bool, engine: str = "single", scheduler: str | None = None, jobs: int = 0,
            **thresholds) -> None:
    """Replay every TCP connection from both endpoints and summarise it.

    One row per connection (client, server, duration, packets, final state of
    each side), then the connections counted by final state pair, as netstat
    would have shown them when the capture ended.

    A capture (a file, or a rotated set) of more than 32 MiB written as json,
    jsonl or csv, or summarised here (without --timeline or --flow), is
    analyzed in parts spilled to the temporary directory ($TMPDIR), so memory
    stays that of one part (one per job) however long the capture; the output
    is the same.
    """
    from pcapstate.analysis import analyze as run_analysis
    from pcapstate.jobs import resolve
    from pcapstate.progress import Progress

    if engine == "dask" or scheduler is not None:
        # parquet files written by the workers themselves, one part each, unless only one flow is asked for
        parquet = output if fmt == "parquet" and output is not None and flow_id is None else None
        analysis = _analyze_dask(captures, decoder, scheduler, time_wait, thresholds, whole=fmt == "table",
                                 parquet=parquet)
        read = analysis.read_warnings  # as load() prints them, then those of the analysis as below
        _print_warnings(captures[0] if len(captures) == 1 and not analysis.is_set else None,
                             analysis.warnings[:read])
        if parquet is not None:
            _print_warnings(analysis.table.source, analysis.warnings[read:])
            return
        _report_analysis(analysis, analysis.warnings[read:], flow_id, timeline, fmt, output, show_all,
                         resolve(jobs, len(analysis.table)))
        return
    streamed_text = fmt == "table" and not timeline  # (a timeline draws every packet: the capture whole)
    if (fmt in STREAMED_FORMATS or streamed_text) and flow_id is None and \
            _analyze_streaming(captures, decoder, fmt, output, time_wait, jobs, thresholds, show_all):
        return
    table = load(captures, decoder)
    already_warned = len(table.stats.warnings)
    progress = Progress(_input_size(captures))
    progress.status(f"replaying {len(table):,} packets from both endpoints")
    threads = resolve(jobs, len(table))
    try:
        analysis = run_analysis(table, time_wait=time_wait, jobs=threads, **thresholds)
        if threads > 1 and fmt != "table":
            analysis.start_findings()  # beside the Zeek pass and the flows table
        analysis.columnar("flows")  # built here, under the status line
    finally:
        progress.done()
    _report_analysis(analysis, analysis.warnings[already_warned:], flow_id, timeline, fmt, output, show_all, threads)


def _analyze_streaming(captures: tuple[str, ...], decoder: str, fmt: str, output: str | None, time_wait: float,
                       jobs: int, thresholds: dict, show_all: bool = False) -> bool:
    """``analyze`` of a capture too long to hold (:func:`_in_parts`), the tables printed (or, for the
    terminal's text, summarised) as they merge: True when done, False when it is to be analyzed whole."""
    from pcapstate.report import summary

    tables = summary.SUMMARY_TABLES if fmt == "table" else OUTPUT_TABLES
    parts = _in_parts(captures, decoder, tables, time_wait, jobs, thresholds)
    if parts is None:
        return False
    streamed, threads = parts
    with streamed:
        if fmt == "table":
            with _output(output) as out:
                _write_lines(out, summary.summary_lines(streamed.chunks, streamed.source, streamed.packets,
                                                        None if show_all else summary.DEFAULT_MAX_ROWS))
        else:
            _write_streamed(fmt, streamed, output, threads)
    return True


def _in_parts(captures: tuple[str, ...], decoder: str, tables: tuple[str, ...], time_wait: float, jobs: int,
              thresholds: dict):
    """A pcap file or rotated set too long to hold, analyzed in parts spilled to disk
    (:mod:`pcapstate.streaming`) for ``tables``, its warnings printed: ``(Streamed, jobs)``, the
    tables merging as they are read; None when the capture is to be analyzed whole."""
    from pcapstate import streaming
    from pcapstate.decode.capture_set import expand, is_set, total_size
    from pcapstate.jobs import resolve
    from pcapstate.progress import Progress

    as_set = is_set(captures)
    source = expand(captures) if as_set else captures[0]
    size = total_size(source if as_set else [source])  # (read once: the parts' count uses it too)
    threads = resolve(jobs, size // 100)  # as for the whole capture (about 100 bytes a packet)
    count = streaming.partitions_for(source, decoder, threads, size)
    if count <= 1:
        return None
    progress = Progress(size)
    progress.status(f"analyzing in {count} parts, {threads} at a time")
    try:
        streamed = streaming.analyze(source, count, tables=tables, time_wait=time_wait, jobs=threads,
                                     specs=captures, **thresholds)
    except streaming.NeedsWholeFile:
        return None
    finally:
        progress.done()
    read = streamed.read_warnings  # as load() prints them, then those of the replay
    _print_warnings(None if as_set else streamed.source, streamed.warnings[:read])
    _print_warnings(streamed.source, streamed.warnings[read:])
    return streamed, threads


def _write_streamed(fmt: str, streamed, output: str | None, threads: int) -> None:
    """Every table of ``streamed`` written as ``fmt`` (json, jsonl or csv) as it merges."""
    if fmt == "json":  # the helpers print tables while this process prints the first
        from pcapstate.report.jsonout import write_rows_file

        streamed.print_ahead(write_rows_file)
    _write_tables(fmt, streamed.tables, output, streamed.source, 1 if streamed.has_helpers else threads)


def _report_analysis(analysis, warnings: list[str], flow_id: int | None, timeline: bool, fmt: str,
                     output: str | None, show_all: bool, jobs: int = 1) -> None:
    """``analyze``'s output, whichever engine made ``analysis``: warnings, then the tables or the text."""
    capture = analysis.table.source
    _print_warnings(capture, warnings)
    _check_flow(capture, analysis, flow_id)
    if fmt != "table":
        names = OUTPUT_TABLES
        _write_tables(fmt, _tables(analysis, names, flow_id, jobs), output, capture, jobs)
        return
    with _output(output) as out:
        _write_lines(out, _analyze_text(analysis, flow_id, timeline, show_all))


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@click.option("--flow", "flow_id", type=int, default=None, help="Only this connection.")
@output_options
def retries(captures: tuple[str, ...], decoder: str, flow_id: int | None, fmt: str, output: str | None) -> None:
    """Every segment sent more than once: its attempts, intervals and backoff.

    One row per retry chain (a SYN, SYN-ACK, FIN, RST or data segment sent more
    than once): how many sends over how long, the intervals between them, the
    backoff they show (doubling, linear-then-doubling, constant, irregular), the
    initial RTO, and which frame finally acknowledged it.
    """
    from pcapstate.analysis import analyze as run_analysis
    from pcapstate.report.retries import RETRY_TABLES, retries_lines
    from pcapstate.tracker import DEFAULT_TIME_WAIT_S

    if fmt in STREAMED_FORMATS or fmt == "table":
        parts = _in_parts(captures, decoder, RETRY_TABLES, DEFAULT_TIME_WAIT_S, 0, {})  # (as run_analysis below)
        if parts is not None:
            streamed, threads = parts
            with streamed:
                _check_flow(streamed.source, streamed, flow_id)
                if fmt == "table":
                    with _output(output) as out:
                        _write_lines(out, retries_lines(streamed.chunks, streamed.source, flow_id))
                elif flow_id is None:
                    _write_streamed(fmt, streamed, output, threads)
                else:
                    _write_tables(fmt, {name: _one_flow(table, flow_id) for name, table in streamed.tables.items()},
                                  output, streamed.source)
            return
    table = load(captures, decoder)
    already_warned = len(table.stats.warnings)
    analysis = run_analysis(table)
    capture = analysis.table.source
    _print_warnings(capture, analysis.warnings[already_warned:])
    _check_flow(capture, analysis, flow_id)
    if fmt != "table":
        _write_tables(fmt, _tables(analysis, RETRY_TABLES, flow_id), output, capture)
        return
    with _output(output) as out:
        _write_lines(out, retries_lines(analysis.chunks, capture, flow_id))


def _one_flow(table, flow_id: int):
    """A table merging from parts (:class:`pcapstate.columns.ChunkedTable`), only the rows of one flow."""
    return table.with_reader(lambda: (chunk.take(chunk.flow_rows(flow_id)) for chunk in table.chunks()))


@cli.command()
@click.argument("kind", type=click.Choice(PLOT_KINDS), metavar="KIND")
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@click.option("--flow", "flow_id", type=int, default=None,
              help="ladder: this connection (default 0); states and retries: only this connection.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The picture to write: FILE.png or FILE.svg.")
@click.option("--size", type=str, default=None, metavar="WIDTHxHEIGHT",
              help="Size in pixels, e.g. 1600x900 (default: chosen for the picture).")
def plot(kind: str, captures: tuple[str, ...], decoder: str, flow_id: int | None, output: str,
         size: str | None) -> None:
    """Draw a picture of the capture: ladder, states, retries or census.

    ladder: one flow as a sequence diagram (client and server as two lines, every
    packet an arrow with its tcpdump flags, each side's state as it changes,
    retransmissions and anomalies in colour).  states: each endpoint's state over
    time, one bar per endpoint (a Gantt chart).  retries: the interval before
    each re-send on a log-2 axis, against a doubling line.  census: how many
    connections were in each state over time, for clients and for the server.
    """
    from pcapstate.analysis import analyze as run_analysis

    if os.path.splitext(output)[1].lower() not in (".png", ".svg"):
        raise click.BadParameter(f"{output!r}: a picture is .png or .svg", param_hint="'-o'")
    if kind == "census" and flow_id is not None:
        raise click.BadParameter("a census counts every connection; --flow is for ladder, states and retries",
                                 param_hint="'--flow'")
    pixels = _pixels(size)
    analysis = run_analysis(load(captures, decoder))
    capture = analysis.table.source
    if kind == "ladder" and analysis.connection_count == 0:
        raise FlowNotFoundError(capture, 0 if flow_id is None else flow_id, 0)
    _check_flow(capture, analysis, flow_id)
    from pcapstate.report.plots import figure, save

    try:
        width, height = save(figure(kind, analysis, flow_id, pixels), output)
    except OSError as error:
        raise CaptureReadError(f"{output}: cannot write: {error.strerror or error}") from None
    what = f"{kind} of flow {0 if flow_id is None else flow_id}" if kind == "ladder" else kind
    click.echo(f"{output}: {what}, {width} x {height} px")


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="The page to write: FILE.html.")
@click.option("--max-flows", type=click.IntRange(min=0), default=50, show_default=True,
              help="Connections drawn in detail (those with anomalies first); the page says how many were left out.")
@click.option("--time-wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="2*MSL in seconds (Linux: 60).")
@_threshold_options
def report(captures: tuple[str, ...], decoder: str, output: str, max_flows: int, time_wait: float,
           **thresholds) -> None:
    """Write one self-contained HTML page about the capture.

    The summary and the anomalies first, the connections by final state with
    pictures of every endpoint's states and of the census over time, then each
    connection with its ladder and its transitions.  Pictures are embedded, so
    the file can be mailed or attached to a ticket as it is.
    """
    from pcapstate.analysis import analyze as run_analysis
    from pcapstate.report.html import chosen_flows, render

    analysis = run_analysis(load(captures, decoder), time_wait=time_wait, **thresholds)
    page = render(analysis, max_flows)
    with _output(output) as out:
        out.write(page)
    shown = len(chosen_flows(analysis, max_flows))
    count, found = analysis.connection_count, len(analysis.anomalies)
    click.echo(f"{output}: {count} connection{'' if count == 1 else 's'}, {found} anomal{'y' if found == 1 else 'ies'}, "
               f"{shown} drawn in detail")


def _pixels(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    width, _, height = size.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and 100 <= int(width) <= 20000 and 100 <= int(height) <= 20000):
        raise click.BadParameter(f"{size!r}: WIDTHxHEIGHT in pixels, each 100 to 20000", param_hint="'--size'")
    return int(width), int(height)


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(), metavar="CAPTURE...")
@_decoder_option
@click.option("--set", "as_set", is_flag=True,
              help="The CAPTUREs (files, directories, globs) are one capture set, checked as one trace against "
                   "one expectation file: DIR.expected.json beside a directory, else beside the set's first file "
                   "in time order (or --expected).")
@click.option("--expected", type=click.Path(dir_okay=False), default=None,
              help="The expectation file (one CAPTURE or --set only; default: <capture>.expected.json beside it).")
@click.option("--update", is_flag=True, help="Write the expectations from this analysis and say what changed.")
@click.option("--time-wait", type=click.FloatRange(min=0), default=None,
              help="2*MSL in seconds (default: the expectation file's, else 60).")
def check(captures: tuple[str, ...], decoder: str, as_set: bool, expected: str | None, update: bool,
          time_wait: float | None) -> None:
    """Check that captures still analyze as their expectations say (for CI).

    Each CAPTURE is compared with the expectations beside it
    (samples/x.pcap -> samples/x.expected.json); a directory or a quoted glob
    means every capture in it.  With --set, all of them are one capture set
    (rotated files), analyzed as one trace.  Exit status 0 when everything
    matches, 1 with a readable diff (which flow, which field, expected and
    got) when something does not.  --update rewrites the expectations instead
    and says what changed.
    """
    from pathlib import Path

    from pcapstate.check import captures_in, expected_path
    from pcapstate.decode.capture_set import expand, is_glob, read_capture_set

    if as_set:
        table = read_capture_set(expand(captures), decoder=decoder, specs=captures, options=False)
        target = Path(expected) if expected is not None else _set_expected_path(captures, table)
        failed = _check_one(table.source, target, lambda: table, update, time_wait)
        _check_total(1, failed, update)
        return
    paths: list[Path] = []
    for name in captures:
        path = Path(name)
        if path.is_dir():
            paths += captures_in(path)
        elif is_glob(name):
            paths += [Path(p) for p in expand([name])]
        else:
            paths.append(path)
    if expected is not None and len(paths) != 1:
        raise click.UsageError("--expected needs exactly one capture (or --set)")
    failed = 0
    for path in paths:
        target = Path(expected) if expected is not None else expected_path(path)
        failed += _check_one(str(path), target, lambda path=path: load_quietly(str(path), decoder), update, time_wait)
    _check_total(len(paths), failed, update)


def _set_expected_path(captures: tuple[str, ...], table):
    """A set's expectations: ``DIR.expected.json`` beside a directory, else beside its first file in time order.

    Beside, not inside: ``pcapstate check DIR/`` without --set then never
    takes a set's expectations for those of its first file.
    """
    from pathlib import Path

    from pcapstate.check import EXPECTED_SUFFIX, expected_path

    if len(captures) == 1 and os.path.isdir(captures[0]):
        directory = Path(captures[0])
        directory = directory if directory.name else directory.resolve()
        return directory.with_name(directory.name + EXPECTED_SUFFIX)
    return expected_path(Path(table.files[0].name))


def _check_total(count: int, failed: int, update: bool) -> None:
    verb = "updated" if update else "checked"
    click.echo(f"{count} capture{'s' if count != 1 else ''} {verb}: "
               f"{count - failed} ok, {failed} {'changed' if update else 'failed'}")
    if failed and not update:
        sys.exit(1)


def _check_one(name: str, target, read, update: bool, time_wait: float | None) -> int:
    """Check (or update) one capture or capture set (``read()`` decodes it); 1 when it differs."""
    from pathlib import Path

    from pcapstate.analysis import analyze as run_analysis
    from pcapstate.check import compare, dumps, expectations, load

    old = load(target) if target.exists() or not update else None
    options = dict(old.get("options", {})) if old else {}
    if time_wait is not None:
        options["time_wait"] = time_wait
    options.setdefault("time_wait", 60.0)
    analysis = run_analysis(read(), time_wait=options["time_wait"])
    capture_name = Path(analysis.table.files[0].name if analysis.is_set else name).name
    got = expectations(analysis, capture_name, options)
    problems = compare(old, got) if old else []
    if update:
        if old is None or problems or dumps(old) != dumps(got):
            target.write_text(dumps(got), encoding="utf-8")
        state = "created" if old is None else (f"updated, {len(problems)} changes" if problems else "unchanged")
        click.echo(f"{state:>24}  {target}")
        for line in problems:
            click.echo(f"      {line}")
        return 1 if problems or old is None else 0
    click.echo(f"{'ok' if not problems else 'FAIL':>4}  {name}"
               + (f": {len(problems)} differences" if problems else ""))
    for line in problems:
        click.echo(f"      {line}")
    return 1 if problems else 0


def _analyze_dask(captures, decoder: str, scheduler: str | None, time_wait: float, thresholds: dict,
                  whole: bool = True, parquet: str | None = None):
    """``analyze --engine dask``: the analysis from :mod:`pcapstate.dask_engine` (dask imported only here).

    ``whole``: every table and the packet table, for the terminal's text;
    else only the tables a file of ``analyze`` holds (:data:`OUTPUT_TABLES`).
    """
    try:
        from pcapstate import dask_engine
    except ImportError as error:  # pragma: no cover - the extra is missing
        raise click.UsageError(f"--engine dask needs Dask distributed: pip install 'pcapstate[dask]' ({error})")
    try:
        import distributed  # noqa: F401
    except ImportError as error:
        raise click.UsageError(f"--engine dask needs Dask distributed: pip install 'pcapstate[dask]' ({error})")
    _return_freed_blocks()
    source = list(captures) if len(captures) != 1 else captures[0]
    tables = dask_engine.ALL_TABLES if whole else OUTPUT_TABLES
    return dask_engine.analyze(source, scheduler=scheduler, decoder=decoder, time_wait=time_wait, options=False,
                               tables=tables, keep_table=whole, parquet=parquet, **thresholds)


def load_quietly(capture: str, decoder: str):
    """Decode without printing warnings: check compares them with the expectations instead."""
    from pcapstate.decode import read_capture

    _return_freed_blocks()
    return read_capture(capture, decoder=decoder, options=False)


def _check_flow(capture: str, analysis, flow_id: int | None) -> None:
    if flow_id is not None and not (0 <= flow_id < analysis.connection_count):
        raise FlowNotFoundError(capture, flow_id, analysis.connection_count)


def _tables(analysis, names: tuple[str, ...], flow_id: int | None, jobs: int = 1):
    """The named tables of ``analysis`` as columns (no pandas), restricted to one flow when ``flow_id`` is given.

    With ``jobs`` > 1 a thread builds them one after the other while the
    writer writes each as soon as it is ready.
    """
    def made(name: str):
        table = analysis.columnar(name)
        return table if flow_id is None else table.take(table.flow_rows(flow_id))

    if jobs <= 1:
        return {name: made(name) for name in names}
    return _BuiltAhead(names, made)


class _BuiltAhead(Mapping):
    """Tables by name, built in order on a thread of their own; reading one waits for it."""

    def __init__(self, names: tuple[str, ...], make) -> None:
        from concurrent.futures import ThreadPoolExecutor

        builder = ThreadPoolExecutor(max_workers=1)
        self._futures = {name: builder.submit(make, name) for name in names}
        builder.shutdown(wait=False)

    def __getitem__(self, name: str):
        return self._futures[name].result()

    def __iter__(self):
        return iter(self._futures)

    def __len__(self) -> int:
        return len(self._futures)


def _write_tables(fmt: str, tables: dict, output: str | None, capture: str, jobs: int = 1) -> None:
    from pcapstate.report.formats import write_tables

    write_tables(fmt, tables, output, capture, jobs=jobs)


def _analyze_text(analysis, flow_id: int | None, timeline: bool, show_all: bool) -> list[str]:
    from pcapstate.report.summary import DEFAULT_MAX_ROWS, summary_lines
    from pcapstate.report.timeline import ladder_lines, timeline_lines

    if flow_id is not None:
        return timeline_lines(analysis, flow_id)
    lines = summary_lines(analysis.chunks, analysis.table.source, len(analysis.table),
                          None if show_all else DEFAULT_MAX_ROWS)
    if timeline:
        for flow, parts in analysis.each_flow_columns():
            lines += [""] + ladder_lines(flow, parts)
    return lines


@contextmanager
def _output(path: str | None):
    if path is None:
        yield sys.stdout
        return
    try:
        handle = open(path, "w", encoding="utf-8")
    except OSError as error:
        raise CaptureReadError(f"{path}: cannot write: {error.strerror or error}") from None
    with handle:
        yield handle


def _return_freed_blocks() -> None:
    """Have glibc hand every freed block of 1 MiB or more straight back to the system.

    By default it keeps freed blocks below a threshold that grows up to 32 MiB
    in its heaps, one heap per thread: the per-share arrays of ``--jobs``
    would stay resident after use, adding a tenth to the peak memory.
    Elsewhere than glibc this does nothing.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _write_lines(out, lines: list[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def load(captures, decoder: str = "dpkt", options: bool = False):
    """Decode the capture (one path) or capture set (several, a directory, a glob); print its warnings.

    One capture's warnings are printed as ``pcapstate: warning: FILE: …``; a
    set's already name their file (``FILE: …``, from the set reader).  Only
    the packet listing prints TCP options: every other command decodes
    without them (``options=False``, less memory).
    """
    from pcapstate.decode import read_capture
    from pcapstate.decode.capture_set import expand, is_set, read_capture_set
    from pcapstate.progress import Progress

    _return_freed_blocks()  # (not for a capture analyzed in parts: see pcapstate.streaming)
    specs = (captures,) if isinstance(captures, str) else tuple(captures)
    if not is_set(specs):
        capture = specs[0]
        progress = Progress(_size(capture))
        try:
            table = read_capture(capture, decoder=decoder, progress=progress, options=options)
        finally:
            progress.done()
        _print_warnings(capture, table.stats.warnings)
        return table
    paths = expand(specs)
    progress = Progress(_input_size(paths))
    try:
        table = read_capture_set(paths, decoder=decoder, progress=progress, specs=specs, options=options)
    finally:
        progress.done()
    _print_warnings(None, table.stats.warnings)
    return table


def _print_warnings(capture: str | None, messages: list[str]) -> None:
    """Warnings about ``capture`` (its name), or a set's read warnings (None: each message names its file)."""
    for message in messages:
        click.echo(f"pcapstate: warning: {capture + ': ' if capture else ''}{message}", err=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _input_size(captures) -> int:
    """Bytes of every file the CAPTURE arguments name (directories and globs expanded)."""
    from pcapstate.decode.capture_set import expand, total_size

    try:
        return total_size(expand(captures))
    except PcapstateError:
        return 0


def main(argv: list[str] | None = None) -> None:
    from pcapstate.engine import choose_for

    # A run is short and makes hundreds of thousands of small objects (addresses, sentences), none in a
    # reference cycle worth collecting before it ends: the cycle collector's passes only cost time (~6 %).
    gc.disable()
    choose_for([arg for arg in (sys.argv[1:] if argv is None else argv) if not arg.startswith("-")])
    try:
        cli.main(args=argv, prog_name="pcapstate", standalone_mode=False)
    except PcapstateError as error:
        if _Context.debug:
            raise
        click.echo(f"pcapstate: error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        click.echo("pcapstate: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except BrokenPipeError:  # `pcapstate packets x | head`
        sys.stderr.close()
        sys.exit(0)
    sys.exit(0)
