"""The kernel is the judge: replayed states agree with the kernel's own log.

For every sample with a ``.kernel.json`` (real Linux sockets, the tracepoint
``sock:inet_sock_set_state``), every state each endpoint's kernel socket went
through must appear in pcapstate's walk for that endpoint, in the same order,
at a consistent time:

* no earlier than pcapstate's transition (less 5 ms: the kernel changes state
  just before the packet that shows it leaves), and
* no later than the packet that proved it (pcapstate's ``evidence_frame``, or
  the transition itself) plus 150 ms: the samples delay packets by up to
  100 ms after the capture point, so a receiver can change state that much
  after the capture saw the packet; the /proc poll adds up to one interval.

A state the kernel reaches on a timer with no packet (giving up a SYN_SENT or
a FIN_WAIT_1, expiring a request sock) may be missing at the end of the walk:
no packet shows it.  Leaving TIME_WAIT is the one timer pcapstate infers, and
only when the capture lasts 2*MSL.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import kernel_log
from pcapstate.analysis import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KERNEL_LOGS = sorted(SAMPLES.glob("*.kernel.json"))
EARLY = 0.005
LATE = 0.150


def test_every_sample_has_a_kernel_log():
    pcaps = sorted(SAMPLES.glob("*.pcap"))
    assert len(KERNEL_LOGS) >= 15
    assert {p.name.removesuffix(".kernel.json") for p in KERNEL_LOGS} == {p.stem for p in pcaps}


def our_walk(analysis, flow: int, endpoint: str) -> list[tuple[str, float, float]]:
    """(state, earliest, latest) for the endpoint's first state and each change."""
    rows = analysis.transitions
    rows = rows[(rows["flow"] == flow) & (rows["endpoint"] == endpoint)]
    if rows.empty:  # never changed: a refusing server stays CLOSED throughout
        state = analysis.flows.loc[flow, f"{endpoint}_state"]
        return [(str(state), float("-inf"), float("inf"))]
    frames = analysis.packets.set_index("frame")["ts_epoch"]
    first = rows.iloc[0]
    walk = [("?" if first.from_state != first.from_state else str(first.from_state), float("-inf"), first.ts_epoch)]
    for row in rows.itertuples(index=False):
        proof = row.evidence_frame
        latest = row.ts_epoch if pd.isna(proof) else frames[proof]
        walk.append((str(row.to_state), row.ts_epoch, latest))
    return walk


def find_flow(analysis, socket: kernel_log.KernelSocket) -> tuple[int, str]:
    flows = analysis.flows
    local, remote = socket.local, socket.remote
    for flow in flows.itertuples(index=False):
        client, server = f"{flow.client_addr}:{flow.client_port}", f"{flow.server_addr}:{flow.server_port}"
        if (local, remote) == (client, server):
            return flow.flow, "client"
        if (local, remote) == (server, client):
            return flow.flow, "server"
    raise AssertionError(f"no connection {local} <-> {remote} in the analysis")


def check(socket: kernel_log.KernelSocket, walk: list[tuple[str, float, float]], last_packet: float) -> list[str]:
    """Mismatches between the kernel's walk and ours (empty when they agree)."""
    problems = []
    position = 0
    for number, step in enumerate(socket.walk):
        found = next((i for i in range(position, len(walk)) if walk[i][0] == step.state), None)
        if found is None:
            rest = socket.walk[number:]
            if all(s.ts is not None and s.ts > last_packet for s in rest) or _timer_ending(rest):
                break  # reached on a timer no packet shows
            problems.append(f"kernel state {step.state} (at {step.ts}) missing from ours "
                            f"{[w[0] for w in walk]} after position {position}")
            break
        state, earliest, latest = walk[found]
        if step.ts is not None:
            late = LATE + (kernel_log.POLL_INTERVAL if step.polled else 0.0)
            if not (earliest - EARLY <= step.ts <= latest + late):
                problems.append(f"{state}: kernel at {step.ts:.6f}, ours between {earliest:.6f} and {latest:.6f}")
        position = found + 1
    return problems


def _timer_ending(rest: list[kernel_log.KernelStep]) -> bool:
    """The kernel's last change, to CLOSED, needs no packet (a give-up or an expiry)."""
    return len(rest) == 1 and rest[0].state == "CLOSED"


@pytest.mark.parametrize("log", KERNEL_LOGS, ids=lambda p: p.name.removesuffix(".kernel.json"))
def test_replay_agrees_with_the_kernel(log):
    capture = log.with_name(log.name.replace(".kernel.json", ".pcap"))
    analysis = analyze(capture)
    sockets = kernel_log.load(log)
    last_packet = float(analysis.packets["ts_epoch"].max()) if len(analysis.packets) else 0.0
    problems = []
    for socket in sockets:
        flow, endpoint = find_flow(analysis, socket)
        walk = our_walk(analysis, flow, endpoint)
        problems += [f"{socket.side} {socket.local}: {p}" for p in check(socket, walk, last_packet)]
    assert not problems, "\n".join(problems)


def test_the_judge_catches_a_wrong_walk():
    socket = kernel_log.KernelSocket("client", "a:1", "b:2", [
        kernel_log.KernelStep("CLOSED", None), kernel_log.KernelStep("SYN_SENT", 10.0),
        kernel_log.KernelStep("ESTABLISHED", 10.1)])
    right = [("CLOSED", float("-inf"), 10.0), ("SYN_SENT", 10.0, 10.0), ("ESTABLISHED", 10.05, 10.1)]
    assert check(socket, right, 20.0) == []
    assert check(socket, right[:2], 20.0)  # a state missing
    late = [("CLOSED", float("-inf"), 10.0), ("SYN_SENT", 10.0, 10.0), ("ESTABLISHED", 11.0, 11.0)]
    assert check(socket, late, 20.0)  # the kernel changed before the capture could show it
