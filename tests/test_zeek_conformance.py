"""pcapstate's Zeek summary against conn.log baselines from Zeek's own test suite.

The data (../shared/conformance/zeek beside the checkout, as in CI) is described
in its README: ``expected.json`` lists, per Zeek btest, the TCP rows of the
conn.log Zeek produced for one trace.  Connections are matched as that README's
"Matching connections" says: by the unordered pair of endpoints, in order of
start among rows sharing a pair; a row without addresses belongs to a case with
exactly one TCP connection.  A row matches when pcapstate names the same
originator and gives the same ``conn_state`` and ``history`` (Zeek's ``X``,
set by application analyzers, removed).

Cases whose test changes Zeek beyond loading base scripts in a way that can
change those fields (packet filters, timer limits, checksum exceptions,
tunnels, link-layer encapsulations: ``special`` without ``special_minor_only``)
are left out and counted.  Run with ``-s`` to see every mismatch.
"""
from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pcapstate.analysis import analyze
from pcapstate.zeek import zeek_summary

ZEEK = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek"
REQUIRED_RATE = 0.95


@dataclass
class Outcome:
    matched: int = 0
    total: int = 0
    left_out: dict[str, str] = field(default_factory=dict)  # case -> reason
    mismatches: list[str] = field(default_factory=list)


def load_cases() -> list[dict]:
    return json.loads((ZEEK / "expected.json").read_text())


def is_left_out(case: dict) -> bool:
    return bool(case.get("special")) and not case.get("special_minor_only")


def endpoint(address: str, port: int) -> tuple[str, int]:
    return str(ipaddress.ip_address(address)), int(port)


def reported(path: Path, flags: list[str]) -> list[dict]:
    """pcapstate's connections with their Zeek summary, in flow order."""
    analysis = analyze(path)
    flows = analysis.flows
    summary = zeek_summary(analysis.tracking, validate_checksums="-C" not in flags)
    result = []
    for i in range(len(flows)):
        client = endpoint(flows["client_addr"].iat[i], flows["client_port"].iat[i])
        server = endpoint(flows["server_addr"].iat[i], flows["server_port"].iat[i])
        orig, resp = (client, server) if summary["orig_is_client"][i] else (server, client)
        result.append({"orig": orig, "resp": resp, "conn_state": summary["conn_state"][i],
                       "history": summary["history"][i]})
    return result


def zeek_history(history: str | None) -> str | None:
    return history.replace("X", "") or None if history else None


def compare_case(case: dict, outcome: Outcome) -> None:
    ours = reported(ZEEK / case["trace"], case["zeek_flags"])
    by_pair: dict[frozenset, list[dict]] = defaultdict(list)
    for connection in ours:
        by_pair[frozenset((connection["orig"], connection["resp"]))].append(connection)
    taken: dict[frozenset, int] = defaultdict(int)
    for row in case["connections"]:
        outcome.total += 1
        expected = (row["conn_state"], zeek_history(row["history"]))
        if row["orig_h"] is None:
            candidates, orig = (ours if len(ours) == 1 else []), None
            label = "(no addresses)"
        else:
            orig, resp = endpoint(row["orig_h"], row["orig_p"]), endpoint(row["resp_h"], row["resp_p"])
            pair = frozenset((orig, resp))
            candidates = by_pair[pair][taken[pair]:taken[pair] + 1]
            taken[pair] += 1
            label = f"{orig[0]}:{orig[1]} > {resp[0]}:{resp[1]}"
        if not candidates:
            outcome.mismatches.append(f"{case['case']}  {label}: expected {expected}, pcapstate has no connection")
            continue
        got = candidates[0]
        same_orig = orig is None or got["orig"] == orig
        if same_orig and (got["conn_state"], got["history"]) == expected:
            outcome.matched += 1
        else:
            flipped = "" if same_orig else " (the other side is our originator)"
            outcome.mismatches.append(
                f"{case['case']}  {label}: expected {expected}, got {(got['conn_state'], got['history'])}{flipped}")


def run_all() -> Outcome:
    outcome = Outcome()
    for case in load_cases():
        if is_left_out(case):
            outcome.left_out[case["case"]] = case["special_reason"]
            continue
        compare_case(case, outcome)
    return outcome


def report(outcome: Outcome) -> str:
    lines = [f"Zeek conn.log conformance: {outcome.matched}/{outcome.total} TCP connections match "
             f"({outcome.matched / max(outcome.total, 1):.1%}); {len(outcome.left_out)} cases left out as special"]
    lines += [f"  left out: {case}: {reason}" for case, reason in outcome.left_out.items()]
    lines += [f"  mismatch: {line}" for line in outcome.mismatches]
    return "\n".join(lines)


def test_conformance_data_is_there():
    assert (ZEEK / "expected.json").is_file(), f"conformance data missing: {ZEEK}"


def test_zeek_conn_state_and_history_match():
    outcome = run_all()
    print("\n" + report(outcome))
    assert outcome.total > 0
    assert outcome.matched >= REQUIRED_RATE * outcome.total, report(outcome)


if __name__ == "__main__":  # python3 tests/test_zeek_conformance.py: the figures alone
    print(report(run_all()))
