"""The ``pcapstate`` command: a thin layer of click sub-commands over the library.

Bad input never shows a traceback: every :class:`PcapstateError` is printed as
one line ``pcapstate: error: …`` with exit status 2 (``--debug`` re-raises it).
Decoder warnings (a truncated file, skipped records) go to stderr as
``pcapstate: warning: …`` and do not change the exit status.
"""
from __future__ import annotations

import sys

import click

from pcapstate import __version__
from pcapstate.errors import PcapstateError

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


def load(capture: str, decoder: str = "dpkt"):
    """Decode ``capture`` and print its decoder warnings on stderr."""
    from pcapstate.decode import read_capture

    table = read_capture(capture, decoder=decoder)
    for message in table.stats.warnings:
        click.echo(f"pcapstate: warning: {capture}: {message}", err=True)
    return table


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
