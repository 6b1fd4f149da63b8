"""tcpdump's flag notation: rendering and parsing back (print-tcp.c order F S R P . U E W e)."""
import pytest
from hypothesis import given, strategies as st

from pcapstate.flags import Flag, bracketed, from_tcpdump, to_tcpdump

F, S, R, P, A = Flag.FIN, Flag.SYN, Flag.RST, Flag.PSH, Flag.ACK


@pytest.mark.parametrize(
    "flags, text",
    [
        (S, "[S]"),
        (S | A, "[S.]"),
        (A, "[.]"),
        (P | A, "[P.]"),
        (F | A, "[F.]"),
        (F | P | A, "[FP.]"),
        (R, "[R]"),
        (R | A, "[R.]"),
        (S | Flag.ECE | Flag.CWR, "[SEW]"),
        (S | A | Flag.ECE, "[S.E]"),
        (0, "[none]"),
        (F | S, "[FS]"),
        (A | Flag.URG, "[.U]"),
        (0x1FF, "[FSRP.UEWe]"),
    ],
)
def test_renders_as_tcpdump_does(flags, text):
    assert bracketed(flags) == text
    assert from_tcpdump(text) == flags


def test_without_brackets():
    assert to_tcpdump(S | A) == "S."
    assert from_tcpdump("P.") == P | A


@given(st.integers(min_value=0, max_value=0x1FF))
def test_round_trip_every_value(value):
    assert from_tcpdump(bracketed(value)) == value


def test_rejects_characters_tcpdump_never_prints():
    with pytest.raises(ValueError):
        from_tcpdump("[SX]")
