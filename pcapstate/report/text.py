"""Plain-text tables: fixed columns, no colour, stable enough to paste in a README.

A deliberately tiny formatter rather than a terminal-UI library: the output is
read in terminals, CI logs and bug reports alike, and must not depend on the
terminal it was produced in.
"""
from __future__ import annotations

from typing import Iterable, Sequence


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a table; columns whose index is in ``right`` are right-aligned."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [_line(headers, widths, right), _line(["-" * w for w in widths], widths, right)]
    lines += [_line(row, widths, right) for row in text_rows]
    return lines


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[int]) -> str:
    parts = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
    return "  ".join(parts).rstrip()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3f}"
    return str(value)


def endpoint(addr: str, port: int) -> str:
    """``10.0.0.1:80`` or ``[fe80::1]:80``."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def seconds(value: float) -> str:
    """A duration a person reads: ``0.000037 s``, ``1.104 s``, ``2 min 5.1 s``; ``-`` for none (NaN)."""
    if value != value:  # (an initial RTO without a retransmission timed out to measure it)
        return "-"
    if value < 0.001:
        return f"{value:.6f} s"
    if value < 60:
        return f"{value:.3f} s"
    minutes, rest = divmod(value, 60)
    return f"{int(minutes)} min {rest:.1f} s"
