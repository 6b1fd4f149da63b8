"""The Zeek pass compiled with numba and as plain Python: the same summaries.

:mod:`pcapstate.zeek_tcp` and :mod:`pcapstate.zeek_seq` are written once and
run compiled through :mod:`pcapstate.jit`, or as plain Python with
``PCAPSTATE_NO_JIT=1``.  Every array of the summary is compared between the two
on every sample, every Zeek conformance trace, a synthetic capture of the
benchmark generator and a history longer than the pass first makes room for.
The plain-Python side runs in one subprocess with ``PCAPSTATE_NO_JIT=1``, on the
very inputs of the compiled side (packet matrix, replay order), so only the
Zeek pass differs between the two.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builder import Talk
from synthetic import write_synthetic
from pcapstate import jit
from pcapstate.analysis import analyze
from pcapstate.zeek import HISTORY_ROOM, LIKELY_SERVER_PORTS, packet_inputs, port_mask, zeek_summary
from pcapstate.zeek_tcp import run

ROOT = Path(__file__).resolve().parents[1]
TRACES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek" / "traces"
CAPTURES = sorted((ROOT / "samples").glob("*.pcap*")) + sorted(TRACES.glob("*.pcap*"))
RESETS = HISTORY_ROOM + 6  # server RSTs, each with a new sequence number: one letter each

pytestmark = pytest.mark.skipif(not jit.ENABLED, reason="numba missing or PCAPSTATE_NO_JIT set: nothing compiled")

# Runs in the subprocess: the same pass, uncompiled, over the pickled inputs.
PLAIN_PYTHON = """
import pickle, sys
from pcapstate import jit
from pcapstate.zeek import summarise_packets
assert not jit.ENABLED, "PCAPSTATE_NO_JIT=1 must leave the pass uncompiled"
with open(sys.argv[1], "rb") as handle:
    cases = pickle.load(handle)
with open(sys.argv[2], "wb") as handle:
    pickle.dump({label: summarise_packets(*inputs) for label, inputs in cases.items()}, handle)
"""


def synthetic_capture(directory: Path) -> Path:
    """300 connections of the benchmark generator's mix."""
    return write_synthetic(directory / "synth-300.pcap", 300)


def long_history_capture(directory: Path) -> Path:
    talk = Talk()
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    for i in range(RESETS):
        talk.server("R.", seq=talk.server_isn + 1 + 100 * i)
    return talk.write(directory)


def plain_python(cases: dict[str, tuple], directory: Path) -> dict[str, dict]:
    inputs, outputs = directory / "inputs.pickle", directory / "outputs.pickle"
    inputs.write_bytes(pickle.dumps(cases))
    env = {**os.environ, "PCAPSTATE_NO_JIT": "1"}
    subprocess.run([sys.executable, "-c", PLAIN_PYTHON, str(inputs), str(outputs)], env=env, check=True)
    return pickle.loads(outputs.read_bytes())


@pytest.fixture(scope="module")
def summaries(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """label -> (compiled summary, plain-Python summary), Zeek's checksum check on and off."""
    directory = tmp_path_factory.mktemp("zeek_compiled")
    captures = {path.name: path for path in CAPTURES}
    captures["synthetic"] = synthetic_capture(directory)
    captures["long_history"] = long_history_capture(directory)
    compiled, cases = {}, {}
    for name, path in captures.items():
        tracking = analyze(path).tracking
        for validate in (True, False):
            label = f"{name} validate={validate}"
            compiled[label] = zeek_summary(tracking, validate_checksums=validate)
            cases[label] = (packet_inputs(tracking), tracking.conversations.order,
                            len(tracking.result.connections), port_mask(LIKELY_SERVER_PORTS), validate)
    plain = plain_python(cases, directory)
    return {label: (compiled[label], plain[label]) for label in compiled}


def assert_same(compiled: dict, plain: dict) -> None:
    assert compiled.keys() == plain.keys()
    for name, ours in compiled.items():
        theirs = plain[name]
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), name
        if ours.dtype == object:
            assert ours.tolist() == theirs.tolist(), name
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=name)  # NaN (no duration) equals NaN


def test_the_pass_is_compiled(summaries):
    assert jit.ran_compiled(run), "the Zeek pass ran as plain Python"


def test_every_capture_is_compared(summaries):
    assert len(CAPTURES) > 50, f"samples or Zeek traces missing: {TRACES}"
    assert len(summaries) == 2 * (len(CAPTURES) + 2)


@pytest.mark.parametrize("name", [path.name for path in CAPTURES] + ["synthetic", "long_history"])
@pytest.mark.parametrize("validate", [True, False])
def test_compiled_and_plain_python_agree(summaries, name, validate):
    assert_same(*summaries[f"{name} validate={validate}"])


def test_synthetic_capture_has_every_kind_of_end(summaries):
    compiled, _ = summaries["synthetic validate=True"]
    assert len(compiled["conn_state"]) == 300
    assert {"SF", "S0", "REJ", "S1"} <= set(compiled["conn_state"])


def test_a_history_longer_than_the_first_room_is_whole(summaries):
    for summary in summaries["long_history validate=True"]:
        assert (summary["conn_state"][0], summary["history"][0]) == ("RSTR", "ShA" + "r" * RESETS)
