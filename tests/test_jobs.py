"""``--jobs N`` (pcapstate.jobs): the same tables with any number of threads, and real threads.

Connections are shared out by conversation and walked by several threads
(the replay, the Zeek pass, the retransmission analysis), connections then
numbered as one walk numbers them; the JSON printer prints chunks ahead on
threads.  Every table of every sample, of Zeek's traces and of synthetic
captures must come out the same as with one thread.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcapstate
from pcapstate import jobs
from pcapstate.errors import PcapstateError
from synthetic import with_swapped_records, write_synthetic

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "samples").glob("*.pcap"))
TRACES = REPO.parent / "shared" / "conformance" / "zeek" / "traces"
TABLES = ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("jobs") / "synth.pcap", 3000)


def assert_same_tables(path, threads: int) -> None:
    one, many = pcapstate.analyze(path, jobs=1), pcapstate.analyze(path, jobs=threads)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(one, name), getattr(many, name), check_exact=True, obj=f"{path}: {name}")


@pytest.mark.parametrize("threads", [2, 3])
def test_every_sample_gives_the_same_tables_with_threads(threads):
    for path in SAMPLES:
        assert_same_tables(path, threads)


def test_zeek_traces_give_the_same_tables_with_threads():
    compared = 0
    for path in sorted(p for p in TRACES.iterdir() if p.is_file()) if TRACES.is_dir() else []:
        try:
            pcapstate.analyze(path)
        except PcapstateError:
            continue
        assert_same_tables(path, 2)
        compared += 1
    assert compared > 30, f"Zeek traces missing: {TRACES}"


@pytest.mark.parametrize("threads", [2, 4])
def test_a_synthetic_capture_gives_the_same_tables_with_threads(synth, threads):
    assert_same_tables(synth, threads)


def test_a_capture_out_of_time_order_gives_the_same_tables_with_threads(synth, tmp_path):
    """Records out of timestamp order are replayed in timestamp order: connections numbered by that order."""
    shuffled = with_swapped_records(synth, tmp_path / "shuffled.pcap", swaps=200, seed=7)
    assert pcapstate.analyze(shuffled).tracking.conversations.out_of_order > 0
    assert_same_tables(shuffled, 2)


def test_a_capture_set_gives_the_same_tables_with_threads():
    files = [REPO / "samples" / "fin_dropped.pcap", REPO / "samples" / "refused.pcap",
             REPO / "samples" / "simultaneous_close.pcap"]
    assert_same_tables([str(f) for f in files], 2)


def test_the_command_line_writes_the_same_bytes_with_threads(synth):
    def json_of(*extra):
        return subprocess.run([sys.executable, "-m", "pcapstate", "analyze", str(synth), "--format", "json",
                               *extra], capture_output=True, check=True).stdout

    one = json_of("-j", "1")
    assert len(one) > 100_000
    assert json_of("-j", "2") == one
    assert json_of("-j", "3", "--flow", "7") == json_of("-j", "1", "--flow", "7")


def test_shares_split_by_conversation_and_keep_the_replay_order():
    order = np.array([5, 0, 3, 1, 4, 2, 6], dtype=np.int64)
    conv = np.array([0, 1, 0, 2, 1, 3, 2], dtype=np.int64)
    parts = jobs.shares(order, conv, 2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(7))
    for part in parts:
        positions = [order.tolist().index(r) for r in part.tolist()]
        assert positions == sorted(positions)  # still in replay order
        assert len({int(c) % 2 for c in conv[part]}) == 1  # whole conversations
    assert jobs.shares(order, conv, 1)[0] is order


def test_how_many_threads():
    assert jobs.resolve(3, 10) == 3
    assert jobs.resolve(jobs.AUTO, 10) == 1  # small: one thread
    assert jobs.resolve(jobs.AUTO, 10_000_000) == max(1, min(jobs.os.cpu_count() or 1, 50))


def test_the_compiled_passes_run_side_by_side(synth):
    """Two replays on two threads take less than twice one: the prebuilt code releases the GIL."""
    from pcapstate import conversations, replay
    from pcapstate.decode import read_capture
    from pcapstate.tracker import guess_client_direction, packet_matrix

    table = read_capture(synth, options=False)
    convs = conversations.group(table)
    pk = packet_matrix(table, convs)
    guess = guess_client_direction(pk, convs)
    busy = []

    def replays() -> None:
        start = time.thread_time()
        for _ in range(5):  # long enough to time
            replay.replay(pk, convs.order, convs.count, guess, 60_000_000_000, 0)
        busy.append(time.thread_time() - start)

    threads = [threading.Thread(target=replays) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    # CPU time of both threads well beyond the wall time: they ran at once, not one after the other
    assert sum(busy) > 1.3 * wall or (jobs.os.cpu_count() or 1) < 2
