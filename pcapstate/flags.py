"""TCP flag bits and tcpdump's notation for them (``[S]``, ``[S.]``, ``[FP.]`` …).

tcpdump (print-tcp.c, ``tcp_flag_values``) prints one character per set flag in
a fixed order — F S R P . U E W e — and ``none`` when no flag is set.  The bit
values are those of the TCP header's flags field, with the AE bit (RFC 3168's
NS, RFC 9293's reserved bit 8) as 0x100.
"""
from __future__ import annotations

from enum import IntFlag


class Flag(IntFlag):
    FIN = 0x001
    SYN = 0x002
    RST = 0x004
    PSH = 0x008
    ACK = 0x010
    URG = 0x020
    ECE = 0x040
    CWR = 0x080
    AE = 0x100


# tcpdump's print order and characters
_NOTATION: tuple[tuple[int, str], ...] = (
    (Flag.FIN, "F"),
    (Flag.SYN, "S"),
    (Flag.RST, "R"),
    (Flag.PSH, "P"),
    (Flag.ACK, "."),
    (Flag.URG, "U"),
    (Flag.ECE, "E"),
    (Flag.CWR, "W"),
    (Flag.AE, "e"),
)
_BIT_OF_CHAR = {char: int(bit) for bit, char in _NOTATION}

# Rendering is on every output path; 512 possible values, so precompute them all (with plain ints: IntFlag's
# & would take most of a start-up's millisecond budget here).
_PLAIN_NOTATION = tuple((int(bit), char) for bit, char in _NOTATION)
_RENDERED = tuple(
    "".join(char for bit, char in _PLAIN_NOTATION if value & bit) or "none" for value in range(0x200)
)


def to_tcpdump(flags: int) -> str:
    """``0x12`` -> ``'S.'`` (without brackets); ``0`` -> ``'none'``."""
    return _RENDERED[int(flags) & 0x1FF]


def bracketed(flags: int) -> str:
    """``0x12`` -> ``'[S.]'``, as after ``Flags`` in a tcpdump line."""
    return f"[{_RENDERED[int(flags) & 0x1FF]}]"


def from_tcpdump(text: str) -> int:
    """Parse ``'[S.]'``, ``'S.'`` or ``'[none]'`` back to the flag bits.

    Raises ValueError on a character tcpdump never prints.
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    if body == "none":
        return 0
    value = 0
    for char in body:
        try:
            value |= _BIT_OF_CHAR[char]
        except KeyError:
            raise ValueError(f"not a tcpdump flag character: {char!r} in {text!r}") from None
    return value
