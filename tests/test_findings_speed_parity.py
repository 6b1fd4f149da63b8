"""The findings compiled with numba and as plain Python: the same retransmissions, chains and anomalies.

The findings stage (:mod:`pcapstate.findings`) selects with compiled loops
and whole-array numpy operations, written once and run compiled through
:mod:`pcapstate.jit`, or as plain Python with ``PCAPSTATE_NO_JIT=1``.  Every
output of :func:`pcapstate.findings.compute` is compared between the two on
every sample, every Zeek conformance trace, a synthetic capture of the
benchmark generator, two built captures of rare findings and a few hundred captures mutated as the fuzzer mutates
them (which between them raise every anomaly kind and every backoff pattern).
The plain-Python side runs in one subprocess with ``PCAPSTATE_NO_JIT=1``, on
the very inputs of the compiled side (the tracking's arrays), so only the
findings differ between the two.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fuzz
from builder import Talk
from pcapstate import jit
from pcapstate.decode import decode_bytes, read_capture
from pcapstate.errors import PcapstateError
from pcapstate.findings import compute
from pcapstate.findings import anomalies, backoff, retransmissions
from pcapstate.findings.anomalies import KIND_NAMES, Thresholds
from pcapstate.tracker import track

ROOT = Path(__file__).resolve().parents[1]
TRACES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek" / "traces"
CAPTURES = sorted((ROOT / "samples").glob("*.pcap*")) + sorted(TRACES.glob("*.pcap*"))
MUTATED = 400

pytestmark = pytest.mark.skipif(not jit.ENABLED, reason="numba missing or PCAPSTATE_NO_JIT set: nothing compiled")

# Runs in the subprocess: the same findings, uncompiled, over the pickled inputs.
PLAIN_PYTHON = """
import pickle, sys
sys.path.insert(0, sys.argv[3])
from pcapstate import jit
from test_findings_speed_parity import outputs
assert not jit.ENABLED, "PCAPSTATE_NO_JIT=1 must leave the findings uncompiled"
with open(sys.argv[1], "rb") as handle:
    cases = pickle.load(handle)
with open(sys.argv[2], "wb") as handle:
    pickle.dump({label: outputs(*inputs) for label, inputs in cases.items()}, handle)
"""


def inputs_of(tracking) -> SimpleNamespace:
    """What :func:`compute` reads of a tracking, as plain arrays (picklable)."""
    result = tracking.result
    return SimpleNamespace(
        result=SimpleNamespace(rows=result.rows, connections=result.connections, endpoints=result.endpoints,
                               transitions=result.transitions),
        table={"window": np.asarray(tracking.table["window"]), "frame": np.asarray(tracking.table["frame"])},
        packets=tracking.packets, conversations=SimpleNamespace(order=tracking.conversations.order),
        orders=tracking.orders, capture_end_ns=tracking.capture_end_ns, flow_ids=tracking.flow_ids)


def outputs(tracking, names, thresholds) -> dict[str, object]:
    """Every output of :func:`compute`, flattened to arrays and lists."""
    found = compute(tracking, names, thresholds)
    retx, chains, anomalies = found.retransmissions, found.chains, found.anomalies
    flat = {f"retransmissions.{name}": getattr(retx, name)
            for name in ("klass", "kind", "flags", "original_row", "attempt", "interval_ns")}
    flat |= {f"chains.{name}": getattr(chains, name)
             for name in ("flow", "side", "kind", "original_known", "answer_row", "initial_rto")}
    flat |= {"chains.rows": [r.tolist() for r in chains.rows], "chains.intervals": chains.intervals,
             "chains.pattern": chains.pattern}
    flat |= {f"anomalies.{name}": getattr(anomalies, name) for name in ("flow", "kind", "endpoint", "row", "ts")}
    flat["anomalies.detail"] = anomalies.detail
    return flat


def names_for(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Endpoint names from a few addresses and services, so that floods can form."""
    return [(f"10.0.{rng.randrange(3)}.{rng.randrange(40)}:{rng.randrange(1, 9)}",
             f"10.1.0.{rng.randrange(2)}:{rng.choice((80, 443))}") for _ in range(count)]


def synthetic_capture(directory: Path) -> Path:
    """300 connections of the benchmark generator's mix."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "benchmarks" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    path = directory / "synth-300.pcap"
    generate.write_pcap(path, generate.generate(300))
    return path


def rare_captures(directory: Path) -> list[Path]:
    """What the mutated captures rarely hold: data sent after the sender's own FIN, and a SYN retried
    at constant intervals."""
    after_fin = Talk()
    for sender, flags, data in (("client", "S", 0), ("server", "S.", 0), ("client", ".", 0), ("client", "F.", 0),
                                ("server", ".", 0), ("client", "P.", 5), ("client", "P.", 5)):
        getattr(after_fin, sender)(flags, data)
    constant = Talk()
    syn = constant.client("S", lost=True)
    for _ in range(3):
        constant.resend(syn, lost=True, after=1.0)
    return [after_fin.write(directory, "data_after_fin.pcap"), constant.write(directory, "constant_retries.pcap")]


def cases(directory: Path) -> dict[str, tuple]:
    """label -> (tracking inputs, names, thresholds)."""
    rng = random.Random(20)
    tracked = {}
    for path in CAPTURES + [synthetic_capture(directory)] + rare_captures(directory):
        try:
            tracked[path.name] = track(read_capture(path))
        except PcapstateError:
            continue
    seeds = fuzz.seeds()
    for i in range(MUTATED):
        data = fuzz.mutate(rng.choice(seeds), rng)
        try:
            tracked[f"mutated {i}"] = track(decode_bytes(data, "mutated"))
        except PcapstateError:
            continue
    out = {}
    for label, tracking in tracked.items():
        thresholds = Thresholds() if not label.startswith("mutated") else Thresholds(
            stuck_after=rng.choice((0.0, 0.01, 5.0)), flood_connections=rng.choice((1, 2, 20)),
            flood_sources=rng.choice((1, 2, 10)), flood_window=rng.choice((0.001, 1.0, 10.0)))
        out[label] = (inputs_of(tracking), names_for(len(tracking.result.connections), rng), thresholds)
    return out


def plain_python(inputs: dict[str, tuple], directory: Path) -> dict[str, dict]:
    given, taken = directory / "inputs.pickle", directory / "outputs.pickle"
    given.write_bytes(pickle.dumps(inputs))
    env = {**os.environ, "PCAPSTATE_NO_JIT": "1"}
    subprocess.run([sys.executable, "-c", PLAIN_PYTHON, str(given), str(taken), str(Path(__file__).parent)],
                   env=env, check=True, cwd=ROOT)
    return pickle.loads(taken.read_bytes())


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """label -> (compiled outputs, plain-Python outputs)."""
    directory = tmp_path_factory.mktemp("findings_compiled")
    inputs = cases(directory)
    compiled = {label: outputs(*case) for label, case in inputs.items()}
    plain = plain_python(inputs, directory)
    return {label: (compiled[label], plain[label]) for label in compiled}


def assert_same(compiled: dict, plain: dict, label: str) -> None:
    assert compiled.keys() == plain.keys()
    for name, ours in compiled.items():
        theirs = plain[name]
        if isinstance(ours, np.ndarray):
            assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), (label, name)
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{label}: {name}")  # NaN equals NaN
        else:
            assert ours == theirs, (label, name)


def test_the_findings_are_compiled(results):
    assert jit.ran_compiled(retransmissions._sends_of), "the retransmission chains ran as plain Python"
    assert jit.ran_compiled(backoff._backoff) and jit.ran_compiled(backoff._answers), \
        "the retry chains ran as plain Python"
    assert jit.ran_compiled(anomalies._first_sent) and jit.ran_compiled(anomalies._next_of_endpoint), \
        "the anomaly detectors ran as plain Python"


def test_every_capture_is_compared(results):
    assert len(CAPTURES) > 50, f"samples or Zeek traces missing: {TRACES}"
    assert len(results) > len(CAPTURES) + MUTATED // 2


def test_every_kind_and_pattern_is_compared(results):
    """The cases raise every anomaly kind and every backoff pattern, so every detector is compared."""
    kinds = {int(k) for compiled, _ in results.values() for k in compiled["anomalies.kind"]}
    patterns = {p for compiled, _ in results.values() for p in compiled["chains.pattern"]}
    assert {KIND_NAMES[k] for k in kinds} == set(KIND_NAMES)
    assert patterns == set(backoff.PATTERNS)


def test_compiled_and_plain_python_agree(results):
    for label, (compiled, plain) in results.items():
        assert_same(compiled, plain, label)


def test_ragged_rows_behave_as_a_sequence():
    rows = backoff.Ragged(np.array([5, 6, 7, 8], dtype=np.int64), np.array([0, 1, 4], dtype=np.int64))
    assert len(rows) == 2 and rows[1].tolist() == [6, 7, 8] and rows[-2].tolist() == [5]
    assert [r.tolist() for r in rows] == [[5], [6, 7, 8]]
    assert rows.take(np.array([1, 0])).values.tolist() == [6, 7, 8, 5]
    with pytest.raises(IndexError):
        rows[2]
