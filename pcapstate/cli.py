"""The ``pcapstate`` command: a thin layer of click sub-commands over the library.

Bad input never shows a traceback: every :class:`PcapstateError` is printed as
one line ``pcapstate: error: …`` with exit status 2 (``--debug`` re-raises it).
Decoder warnings (a truncated file, skipped records) go to stderr as
``pcapstate: warning: …`` and do not change the exit status.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import click

from pcapstate import __version__
from pcapstate.errors import CaptureReadError, FlowNotFoundError, PcapstateError

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapstate")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
def cli(debug: bool) -> None:
    """Reconstruct TCP handshakes and teardowns from a packet capture.

    CAPTURE is a pcap or pcapng file (gzip-compressed or not) or a text file of
    `tcpdump -n` output.
    """
    _Context.debug = debug


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@_decoder_option
def packets(capture: str, decoder: str) -> None:
    """Print every TCP packet as `tcpdump -n -r` does, flags in tcpdump notation.

    Sequence numbers are relative per connection, as tcpdump prints them.
    """
    from pcapstate.tcpdump_lines import render_lines

    table = load(capture, decoder)
    out = sys.stdout
    for line in render_lines(table):
        out.write(line)
        out.write("\n")


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@_decoder_option
@click.option("--flow", "flow_id", type=int, default=None, help="Only this connection (its id in the first column).")
@click.option("--timeline", is_flag=True, help="A client | server ladder per connection: every packet and each side's state changes.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, json for programs.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@click.option("--time-wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="2*MSL in seconds: how long TIME_WAIT lasts before the timer closes it (Linux: 60).")
@click.option("--all", "show_all", is_flag=True, help="List every connection (default: the first 50).")
def analyze(capture: str, decoder: str, flow_id: int | None, timeline: bool, fmt: str, output: str | None,
            time_wait: float, show_all: bool) -> None:
    """Replay every TCP connection from both endpoints and summarise it.

    One row per connection (client, server, duration, packets, final state of
    each side), then the connections counted by final state pair, as netstat
    would have shown them when the capture ended.
    """
    from pcapstate.analysis import analyze as run_analysis
    from pcapstate.progress import Progress

    table = load(capture, decoder)
    already_warned = len(table.stats.warnings)
    progress = Progress(_size(capture))
    progress.status(f"replaying {len(table):,} packets from both endpoints")
    try:
        analysis = run_analysis(table, time_wait=time_wait)
        analysis.flows  # noqa: B018  (built here, under the status line)
    finally:
        progress.done()
    for message in analysis.warnings[already_warned:]:
        click.echo(f"pcapstate: warning: {capture}: {message}", err=True)
    _check_flow(capture, analysis, flow_id)
    with _output(output) as out:
        if fmt == "json":
            from pcapstate.report.jsonout import write_json

            tables = {"flows": analysis.flows, "transitions": analysis.transitions,
                      "retransmissions": analysis.retransmissions, "retries": analysis.retries,
                      "anomalies": analysis.anomalies}
            if flow_id is not None:
                tables = {name: frame[frame["flow"] == flow_id] for name, frame in tables.items()}
            write_json(tables, out, capture)
            return
        _write_lines(out, _analyze_text(analysis, flow_id, timeline, show_all))


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@_decoder_option
@click.option("--flow", "flow_id", type=int, default=None, help="Only this connection.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, json for programs.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
def retries(capture: str, decoder: str, flow_id: int | None, fmt: str, output: str | None) -> None:
    """Every segment sent more than once: its attempts, intervals and backoff.

    One row per retry chain (a SYN, SYN-ACK, FIN, RST or data segment sent more
    than once): how many sends over how long, the intervals between them, the
    backoff they show (doubling, linear-then-doubling, constant, irregular), the
    initial RTO, and which frame finally acknowledged it.
    """
    from pcapstate.analysis import analyze as run_analysis

    analysis = run_analysis(load(capture, decoder))
    _check_flow(capture, analysis, flow_id)
    with _output(output) as out:
        if fmt == "json":
            from pcapstate.report.jsonout import write_json

            tables = {"retries": analysis.retries, "retransmissions": analysis.retransmissions}
            if flow_id is not None:
                tables = {name: frame[frame["flow"] == flow_id] for name, frame in tables.items()}
            write_json(tables, out, capture)
            return
        from pcapstate.report.retries import retries_lines

        _write_lines(out, retries_lines(analysis, flow_id))


def _check_flow(capture: str, analysis, flow_id: int | None) -> None:
    if flow_id is not None and not (0 <= flow_id < analysis.connection_count):
        raise FlowNotFoundError(capture, flow_id, analysis.connection_count)


def _analyze_text(analysis, flow_id: int | None, timeline: bool, show_all: bool) -> list[str]:
    from pcapstate.report.summary import summary_lines
    from pcapstate.report.timeline import timeline_lines

    if flow_id is not None:
        return timeline_lines(analysis, flow_id)
    lines = summary_lines(analysis, None if show_all else 50)
    if timeline:
        for flow in range(analysis.connection_count):
            lines += [""] + timeline_lines(analysis, flow)
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


def _write_lines(out, lines: list[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def load(capture: str, decoder: str = "dpkt"):
    """Decode ``capture`` and print its decoder warnings on stderr."""
    from pcapstate.decode import read_capture
    from pcapstate.progress import Progress

    progress = Progress(_size(capture))
    try:
        table = read_capture(capture, decoder=decoder, progress=progress)
    finally:
        progress.done()
    for message in table.stats.warnings:
        click.echo(f"pcapstate: warning: {capture}: {message}", err=True)
    return table


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> None:
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
