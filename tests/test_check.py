"""`pcapstate check`: golden expectations for CI, and the samples' own expectations.

The samples' expectation files are reviewed against the kernel: their
transitions must pass the same judge as the live analysis
(tests/test_kernel_agreement.py), so an expectation that contradicts the
kernel cannot be committed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_log
from pcapstate.check import captures_in, compare, expected_path, load
from test_kernel_agreement import check as kernel_check

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcapstate", "check", *args], capture_output=True, text=True)


@pytest.fixture
def copy(tmp_path) -> Path:
    """Two samples and their expectations in a scratch directory."""
    for name in ("close_wait_leak", "syn_dropped"):
        shutil.copy(SAMPLES / f"{name}.pcap", tmp_path)
        shutil.copy(SAMPLES / f"{name}.expected.json", tmp_path)
    return tmp_path


def test_every_sample_has_expectations_and_they_hold():
    captures = captures_in(SAMPLES)
    assert len(captures) >= 15
    assert all(expected_path(c).exists() for c in captures)
    result = run(str(SAMPLES))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == f"{len(captures)} captures checked: {len(captures)} ok, 0 failed"


def test_an_edited_field_fails_with_a_diff_naming_it(copy):
    target = copy / "close_wait_leak.expected.json"
    target.write_text(target.read_text().replace('"server_state": "FIN_WAIT_2"', '"server_state": "FIN_WAIT_1"'))
    result = run(str(copy))
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "close_wait_leak.pcap: 1 differences" in result.stdout
    assert ("flows, flow 0 (10.77.0.1:40005 -> 10.77.0.2:5000): server_state: expected 'FIN_WAIT_1', "
            "got 'FIN_WAIT_2'") in result.stdout
    assert result.stdout.splitlines()[-1] == "2 captures checked: 1 ok, 1 failed"


def test_a_missing_transition_is_named(copy):
    target = copy / "syn_dropped.expected.json"
    document = load(target)
    del document["transitions"][1]
    from pcapstate.check import dumps

    target.write_text(dumps(document))
    result = run(str(copy / "syn_dropped.pcap"))
    assert result.returncode == 1
    assert "transitions, flow 0: unexpected" in result.stdout and '"to_state": "LISTEN"' in result.stdout


def test_update_rewrites_and_says_what_changed(copy):
    target = copy / "close_wait_leak.expected.json"
    original = target.read_text()
    target.write_text(original.replace('"packets": 9', '"packets": 10'))
    result = run("--update", str(copy / "close_wait_leak.pcap"))
    assert result.returncode == 0
    assert "updated, 1 changes" in result.stdout and "packets: expected 10, got 9" in result.stdout
    assert target.read_text() == original
    assert "unchanged" in run("--update", str(copy / "close_wait_leak.pcap")).stdout


def test_update_creates_expectations_for_a_new_capture(tmp_path):
    shutil.copy(SAMPLES / "refused.pcap", tmp_path / "mine.pcap")
    result = run("--update", str(tmp_path / "mine.pcap"))
    assert "created" in result.stdout
    assert run(str(tmp_path / "mine.pcap")).returncode == 0
    assert json.loads((tmp_path / "mine.expected.json").read_text())["capture"] == "mine.pcap"


def test_explicit_expectation_file(copy, tmp_path):
    result = run("--expected", str(copy / "syn_dropped.expected.json"), str(copy / "syn_dropped.pcap"))
    assert result.returncode == 0
    wrong = run("--expected", str(copy / "syn_dropped.expected.json"), str(copy / "close_wait_leak.pcap"))
    assert wrong.returncode == 1


def test_missing_expectations_is_a_one_line_error(tmp_path):
    shutil.copy(SAMPLES / "refused.pcap", tmp_path)
    result = run(str(tmp_path / "refused.pcap"))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no expectations: create them with `pcapstate check --update`")
    assert len(result.stderr.splitlines()) == 1


def test_expected_names_follow_the_capture():
    assert expected_path(Path("a/x.pcap")) == Path("a/x.expected.json")
    assert expected_path(Path("a/x.pcapng.gz")) == Path("a/x.expected.json")


def test_compare_is_empty_for_equal_documents():
    document = load(SAMPLES / "half_close.expected.json")
    assert compare(document, document) == []


@pytest.mark.parametrize("log", sorted(SAMPLES.glob("*.kernel.json")), ids=lambda p: p.name.split(".")[0])
def test_sample_expectations_agree_with_the_kernel(log):
    """The committed expectations themselves pass the kernel judge (frame times from the capture)."""
    from pcapstate.decode import read_capture

    expected = load(log.with_name(log.name.replace(".kernel.json", ".expected.json")))
    table = read_capture(log.with_name(log.name.replace(".kernel.json", ".pcap")))
    frame_ts = dict(zip(table["frame"].tolist(), (table["ts_ns"] / 1e9).tolist()))
    last_packet = max(frame_ts.values(), default=0.0)
    for socket in kernel_log.load(log):
        flow, endpoint = _flow_of(expected, socket)
        assert kernel_check(socket, _walk(expected, flow, endpoint, frame_ts), last_packet) == []


def _flow_of(expected: dict, socket) -> tuple[int, str]:
    for flow in expected["flows"]:
        if (socket.local, socket.remote) == (flow["client"], flow["server"]):
            return flow["flow"], "client"
        if (socket.local, socket.remote) == (flow["server"], flow["client"]):
            return flow["flow"], "server"
    raise AssertionError(f"no flow for {socket.local} <-> {socket.remote}")


def _walk(expected: dict, flow: int, endpoint: str, frame_ts: dict) -> list[tuple[str, float, float]]:
    """The endpoint's walk as (state, earliest, latest), as the kernel judge takes it."""
    rows = [t for t in expected["transitions"] if t["flow"] == flow and t["endpoint"] == endpoint]
    if not rows:
        state = next(f for f in expected["flows"] if f["flow"] == flow)[f"{endpoint}_state"]
        return [(state, float("-inf"), float("inf"))]
    start = min(frame_ts.values())
    walk = [(rows[0]["from_state"] or "?", float("-inf"), start + rows[0]["t"])]
    for row in rows:
        when = start + row["t"]
        proof = row["evidence_frame"]
        walk.append((row["to_state"], when, frame_ts[proof] if proof is not None else when))
    return walk
