"""pcapstate.partitions: a trace cut by conversation (the Dask engine's shuffle, the parts of a long capture)."""
from __future__ import annotations

import numpy as np
import pytest

from pcapstate import partitions
from pcapstate.decode import read_capture
from synthetic import write_synthetic


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return read_capture(str(write_synthetic(tmp_path_factory.mktemp("s") / "s.pcap", 300)), options=False)


def reference_parts(table, count: int) -> np.ndarray:
    """The same hash written with NumPy, column at a time: the compiled loop must give it exactly."""
    src = np.ascontiguousarray(table["src_ip"]).view(np.uint64)
    dst = np.ascontiguousarray(table["dst_ip"]).view(np.uint64)
    sport, dport = table["sport"].astype(np.uint64), table["dport"].astype(np.uint64)
    forward = (src[:, 0] < dst[:, 0]) | ((src[:, 0] == dst[:, 0]) & (
        (src[:, 1] < dst[:, 1]) | ((src[:, 1] == dst[:, 1]) & (sport <= dport))))
    pick = lambda a, b: np.where(forward, a, b)  # noqa: E731
    h = np.full(len(table), 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for value in (pick(src[:, 0], dst[:, 0]), pick(src[:, 1], dst[:, 1]), pick(sport, dport),
                      pick(dst[:, 0], src[:, 0]), pick(dst[:, 1], src[:, 1]), pick(dport, sport)):
            h = (h ^ value) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(31)
    return h % np.uint64(count)


@pytest.mark.parametrize("count", [1, 2, 7, 512])
def test_both_directions_of_a_conversation_go_to_one_part(table, count):
    part = partitions.partition_of(table, count)
    assert part.dtype == np.uint16 and (part < count).all()
    assert (part == reference_parts(table, count)).all()
    key = {}
    for row in range(len(table)):
        a = (bytes(table["src_ip"][row]), int(table["sport"][row]))
        b = (bytes(table["dst_ip"][row]), int(table["dport"][row]))
        assert key.setdefault(tuple(sorted((a, b))), int(part[row])) == int(part[row])
    if count > 1:
        assert len(set(part.tolist())) > 1  # not all in one


def test_split_keeps_every_row_once_in_order_with_global_rows_and_frames(table):
    cut = partitions.split(table, 1000, 50, 3, 4)
    rows = np.concatenate([r for r, _ in cut])
    assert sorted(rows.tolist()) == list(range(1000, 1000 + len(table)))
    for r, columns in cut:
        assert (np.diff(r) > 0).all()
        assert (columns["frame"] == table["frame"][r - 1000] + 50).all()
        assert (columns["file"] == 3).all() and (columns["file_frame"] == table["frame"][r - 1000]).all()


def test_too_many_parts_is_refused(table):
    with pytest.raises(ValueError):
        partitions.partition_of(table, 70_000)
