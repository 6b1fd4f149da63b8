"""The ``bad_checksum`` column against tcpdump's own checksum verdicts.

``tcpdump -vv`` checks the IPv4 header checksum (``bad cksum``) and the TCP
checksum (``cksum 0x... (incorrect -> 0x...)``) of every packet it can; the
dpkt decoder must flag exactly the frames tcpdump finds wrong, on every Zeek
trace and sample capture (frames where tcpdump printed no verdict, e.g. cut
by the snap length, are not compared).  The tshark decoder's verdicts are
compared with the dpkt decoder's in ``test_decode_tshark.py``.
"""
from __future__ import annotations

import re

import pytest

from _tcpdump_ref import captures, tcpdump_frames
from pcapstate.decode import read_capture

CAPTURES = captures()
_BAD = re.compile(r"bad cksum|\(incorrect -> 0x")
_VERDICT = re.compile(r"bad cksum|cksum 0x[0-9a-f]+ \((?:correct|incorrect)")


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_bad_checksum_agrees_with_tcpdump(capture):
    table = read_capture(capture)
    frames = tcpdump_frames(capture, "-vv")
    compared = 0
    for frame, flagged in zip(table["frame"].tolist(), table["bad_checksum"].tolist()):
        text = frames.get(frame, "")
        if not _VERDICT.search(text):
            continue
        compared += 1
        assert flagged == bool(_BAD.search(text)), f"{capture.name} frame {frame}: {text[:200]}"
    assert compared or not len(table) or table["truncated"].all() or not frames


def test_some_traces_have_bad_checksums():
    flagged = {c.name for c in CAPTURES if read_capture(c)["bad_checksum"].any()}
    assert {"tcp__syn-bad.pcap", "chksums__localhost-bad-chksum.pcap"} <= flagged
