"""A capture cut anywhere loses nothing that was there.

For every sample and many cut points (every record boundary, one byte either
side of it, and random bytes), the cut file analyzes without error, and its
flows, transitions and retransmissions equal those of a file holding exactly
the complete records of the cut: what was readable is all kept, and the
connections still open at the cut are reported open at the capture's end.
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from pcapstate.analysis import analyze
from pcapstate.decode import read_capture

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.pcap"))
TABLES = ("flows", "transitions", "retransmissions")


def record_ends(data: bytes) -> list[int]:
    """Byte offsets where each pcap record ends (the file's own framing, little-endian pcap)."""
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
    ends, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
        if pos > len(data):
            break
        ends.append(pos)
    return ends


def cut_points(data: bytes, rng: random.Random) -> list[int]:
    ends = record_ends(data)
    chosen = {0, 3, 10, 24, 30, len(data) - 1}
    for end in ends[:: max(1, len(ends) // 12)]:
        chosen.update((end - 1, end, end + 1))
    chosen.update(rng.randrange(len(data)) for _ in range(10))
    return sorted(c for c in chosen if 0 <= c < len(data))


def frames(analysis) -> dict:
    return {name: getattr(analysis, name).drop(columns=["evidence_frame"], errors="ignore").to_dict("list")
            for name in TABLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_prefix_keeps_what_was_there(sample, tmp_path):
    data = sample.read_bytes()
    ends = record_ends(data)
    rng = random.Random(sample.stem)
    for cut in cut_points(data, rng):
        prefix = tmp_path / "cut.pcap"
        prefix.write_bytes(data[:cut])
        complete = [e for e in ends if e <= cut]
        exact = tmp_path / "exact.pcap"
        exact.write_bytes(data[: complete[-1]] if complete else data[:24])
        if cut < 4:  # not even the magic number: a clear error, never a crash
            with pytest.raises(Exception) as error:
                read_capture(prefix)
            assert type(error.value).__module__ == "pcapstate.errors"
            continue
        if cut < 24:  # a pcap cut inside its file header: no packets, and a warning saying so
            table = read_capture(prefix)
            assert len(table) == 0 and table.stats.warnings
            continue
        got, want = analyze(prefix), analyze(exact)
        assert len(got.packets) == len(want.packets), f"cut at byte {cut}"
        assert frames(got) == frames(want), f"cut at byte {cut}"
        if cut not in ends and cut not in (24, len(data)):
            assert any("truncated" in w or "ignored" in w for w in got.warnings), f"cut at byte {cut}"
