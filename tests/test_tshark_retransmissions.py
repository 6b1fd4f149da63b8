"""Data retransmissions agree with tshark's (the reference users hold pcapstate against).

tshark flags a frame with ``tcp.analysis.retransmission``,
``tcp.analysis.fast_retransmission`` or ``tcp.analysis.spurious_retransmission``;
pcapstate lists it in ``Analysis.retransmissions``.  Over every sample, every
Zeek conformance trace and a crafted lossy transfer (every class, many times),
the data-carrying frames must agree with precision and recall of at least 0.95
each, and the class (timeout / fast / spurious) must agree where both flag a
frame.  Every disagreement is printed.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from builder import Talk
from pcapstate.analysis import analyze

ROOT = Path(__file__).resolve().parent.parent
ZEEK_TRACES = ROOT.parent / "shared" / "conformance" / "zeek" / "traces"
FIELDS = ("frame.number", "tcp.len", "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
          "tcp.analysis.spurious_retransmission")


def tshark_retransmissions(path: Path) -> dict[int, str]:
    """Frames with payload that tshark calls retransmissions, with its class."""
    command = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for field in FIELDS:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        frame, length, plain, fast, spurious = (line.split("\t") + [""] * 5)[:5]
        if not length or not length.split(",")[0].isdigit() or int(length.split(",")[0]) == 0:
            continue
        if fast:
            found[int(frame)] = "fast"
        elif spurious:
            found[int(frame)] = "spurious"
        elif plain:
            found[int(frame)] = "timeout"
    return found


def ours(path: Path) -> dict[int, str]:
    a = analyze(path)
    frames = a.packets.set_index("frame")["len"]
    r = a.retransmissions
    return {int(f): str(c) for f, c in zip(r.frame, r["class"]) if frames[f] > 0}


def lossy_transfer(seed: int = 7, episodes: int = 100) -> Talk:
    """A long transfer through every kind of loss tshark recognises."""
    rng = random.Random(seed)
    talk = Talk()
    talk.client("S")
    talk.server("S.", after=0.02)
    talk.client(".", after=0.02)
    for _ in range(episodes):
        for _ in range(rng.randint(1, 4)):  # in-order data, acknowledged
            talk.client("P.", rng.randint(100, 1400), after=0.005)
        talk.server(".", after=0.02)
        episode = rng.choice(("fast", "timeout", "spurious", "backoff", "reordered"))
        globals()[f"_{episode}"](talk, rng)
    return talk


def _fast(talk: Talk, rng) -> None:
    hole = talk.client("P.", 1000, lost=True, after=0.005)
    for _ in range(3):
        talk.client("P.", 1000, after=0.001)
        talk.server(".", ack=hole.seq, after=0.001)
    talk.resend(hole, after=0.003)
    talk.server(".", after=0.02)


def _timeout(talk: Talk, rng) -> None:
    lost = talk.client("P.", 1000, lost=True, after=0.005)
    talk.resend(lost, after=0.2 + rng.random() / 10)
    talk.server(".", after=0.02)


def _spurious(talk: Talk, rng) -> None:
    data = talk.client("P.", 1000, after=0.005)
    talk.server(".", after=0.02)  # the ACK is lost beyond the capture point
    talk.resend(data, after=0.25)
    talk.server(".", after=0.02)


def _backoff(talk: Talk, rng) -> None:
    lost = talk.client("P.", 1000, lost=True, after=0.005)
    for delay in (0.2, 0.4):
        talk.resend(lost, lost=True, after=delay)
    talk.resend(lost, after=0.8)
    talk.server(".", after=0.02)


def _reordered(talk: Talk, rng) -> None:
    late = talk.client("P.", 500, lost=True, after=0.005)
    talk.client("P.", 500, after=0.0003)
    talk.resend(late, after=0.0003)  # arrives within 3 ms: out of order, not retransmitted
    talk.server(".", after=0.02)


def corpus(tmp_path: Path) -> list[Path]:
    crafted = lossy_transfer().write(tmp_path, "lossy.pcap")
    traces = sorted(p for p in ZEEK_TRACES.iterdir() if p.is_file()) if ZEEK_TRACES.is_dir() else []
    return sorted((ROOT / "samples").glob("*.pcap")) + traces + [crafted]


def test_zeek_traces_are_there():
    assert ZEEK_TRACES.is_dir(), f"{ZEEK_TRACES} is missing (../shared beside the checkout)"


def test_data_retransmissions_agree_with_tshark(tmp_path):
    assert shutil.which("tshark"), "tshark is installed by tests/run.sh"
    both = only_ours = only_tshark = class_mismatch = 0
    report = []
    for path in corpus(tmp_path):
        mine, theirs = ours(path), tshark_retransmissions(path)
        common = mine.keys() & theirs.keys()
        both += len(common)
        only_ours += len(mine.keys() - theirs.keys())
        only_tshark += len(theirs.keys() - mine.keys())
        wrong = [f for f in common if mine[f] != theirs[f]]
        class_mismatch += len(wrong)
        if mine.keys() != theirs.keys() or wrong:
            report.append(f"{path.name}: only pcapstate {sorted(mine.keys() - theirs.keys())[:10]}, "
                          f"only tshark {sorted(theirs.keys() - mine.keys())[:10]}, "
                          f"class differs {[(f, mine[f], theirs[f]) for f in wrong[:10]]}")
    precision = both / max(both + only_ours, 1)
    recall = both / max(both + only_tshark, 1)
    print(f"\ndata retransmissions: {both} agreed, {only_ours} only pcapstate, {only_tshark} only tshark, "
          f"{class_mismatch} with another class; precision {precision:.3f}, recall {recall:.3f}")
    print("\n".join(report))
    assert both >= 100, "the corpus must hold enough retransmissions to mean something"
    assert precision >= 0.95 and recall >= 0.95, "\n".join(report)
    assert class_mismatch <= 0.05 * both, "\n".join(report)


@pytest.mark.parametrize("episode", ["fast", "timeout", "spurious", "backoff"])
def test_each_crafted_class_is_what_tshark_says(tmp_path, episode):
    talk = Talk()
    talk.client("S")
    talk.server("S.", after=0.02)
    talk.client(".", after=0.02)
    talk.client("P.", 100, after=0.01)
    talk.server(".", after=0.02)
    globals()[f"_{episode}"](talk, random.Random(1))
    path = talk.write(tmp_path)
    assert ours(path) == tshark_retransmissions(path) != {}
