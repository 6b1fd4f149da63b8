"""Read a sample's ``<name>.kernel.json`` into per-endpoint state walks.

The kernel's record needs two Linux facts undone before it compares with an
RFC-state replay (see samples/README.md, "Kernel facts visible in these logs"):

* An endpoint entering TIME_WAIT, or an orphaned FIN_WAIT_2, is replaced by a
  *timewait sock*: the tracepoint logs the full socket going to CLOSED and
  nothing more.  That CLOSED is dropped and the timewait sock's states, as the
  /proc/net/tcp poll saw them (``first_seen``, up to one poll interval late),
  are appended instead.
* Half-open connections live as request socks that fire no tracepoint; they
  are in ``untraced_sockets`` (seen by the poll only).  The accepted socket is
  cloned from the listener when the final ACK arrives and logs LISTEN ->
  SYN_RCVD -> ESTABLISHED within microseconds: that SYN_RCVD's time is the
  clone's, not when the SYN arrived, so it is kept without a time.
* A FIN that also acknowledges the endpoint's own FIN is processed by Linux in
  two steps (``tcp_rcv_state_process`` takes the ACK: FIN_WAIT_1 -> FIN_WAIT_2;
  ``tcp_fin`` then the FIN: -> TIME_WAIT), as RFC 9293 section 3.10.7.4 steps
  five and eight do.  pcapstate draws the diagram's single FIN_WAIT_1 ->
  TIME_WAIT arrow for it, so a FIN_WAIT_2 that the kernel left for TIME_WAIT
  within a millisecond, on one segment, is dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POLL_INTERVAL = 0.05  # /proc/net/tcp was polled every 50 ms


@dataclass
class KernelStep:
    state: str
    ts: float | None  # None: the socket's state before its first logged change
    polled: bool = False  # time from the /proc poll (first seen, up to a poll late)


@dataclass
class KernelSocket:
    side: str  # "client" or "server"
    local: str  # "addr:port"
    remote: str
    walk: list[KernelStep]
    untraced: bool = False


def load(path: Path) -> list[KernelSocket]:
    log = json.loads(Path(path).read_text())
    sockets = [_traced(entry, log["transitions"]) for entry in log["sockets"] if entry["remote"] != "0.0.0.0:0"]
    for entry in log.get("untraced_sockets", []):
        walk = [KernelStep(state, entry["first_seen"], polled=True) for state in entry["states"]]
        sockets.append(KernelSocket(entry["side"], entry["local"], entry["remote"], walk, untraced=True))
    return sockets


def _traced(entry: dict, transitions: list[dict]) -> KernelSocket:
    local, remote = entry["local"], entry["remote"]
    mine = [t for t in transitions
            if f"{t['saddr']}:{t['sport']}" == local and f"{t['daddr']}:{t['dport']}" == remote]
    walk = [KernelStep(mine[0]["from"], None)] if mine else []
    for t in mine:
        if t["to"] == "CLOSED" and "timewait sock" in t.get("note", ""):
            continue  # the connection is not closed: a timewait sock carries on
        walk.append(KernelStep(t["to"], t["ts"]))
    for tw in entry.get("timewait_sock") or []:
        if walk and walk[-1].state == tw["state"]:
            continue
        walk.append(KernelStep(tw["state"], tw["first_seen"], polled=True))
    timewait = [tw["state"] for tw in entry.get("timewait_sock") or []]
    return KernelSocket(entry["side"], local, remote, _fold_linux_steps(walk, mine, timewait))


SAME_SEGMENT = 0.001  # two kernel changes this close came from one segment


def _fold_linux_steps(walk: list[KernelStep], logged: list[dict], timewait: list[str]) -> list[KernelStep]:
    folded = []
    for i, step in enumerate(walk):
        after = walk[i + 1] if i + 1 < len(walk) else None
        if step.state == "SYN_RCVD" and folded and folded[-1].state == "LISTEN" and after is not None \
                and after.state == "ESTABLISHED" and after.ts - step.ts < SAME_SEGMENT:
            step = KernelStep("SYN_RCVD", None)  # the clone's time, not the SYN's
        if step.state == "FIN_WAIT_2" and folded and folded[-1].state == "FIN_WAIT_1" and \
                timewait[:1] == ["TIME_WAIT"] and _left_for_time_wait_at_once(step, after, logged):
            continue
        folded.append(step)
    return folded


def _left_for_time_wait_at_once(step: KernelStep, after: KernelStep | None, logged: list[dict]) -> bool:
    """FIN_WAIT_2 replaced by a timewait sock within a millisecond (the caller checks it was TIME_WAIT)."""
    if after is None or after.state != "TIME_WAIT" or step.ts is None:
        return False
    to_timewait = [t for t in logged if t["from"] == "FIN_WAIT_2" and "timewait sock" in t.get("note", "")]
    return bool(to_timewait) and to_timewait[0]["ts"] - step.ts < SAME_SEGMENT
