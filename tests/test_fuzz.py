"""The fuzz harness in CI: a bounded number of mutated captures, and every saved crash.

The long run is ``python3 tests/fuzz.py --cases N`` (or ``--minutes M``); a
crash it finds is saved under tests/data/fuzz/ and replayed here for ever.
"""
from __future__ import annotations

import random
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz

SEEDS = fuzz.seeds()
SAVED = sorted(fuzz.CRASHES.glob("*.bin")) if fuzz.CRASHES.is_dir() else []


def test_there_are_seeds():
    assert len(SEEDS) >= 40


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, len(SEEDS) - 1), rng_seed=st.integers(0, 2**32 - 1))
def test_mutated_captures_never_crash(seed, rng_seed):
    fuzz.check(fuzz.mutate(SEEDS[seed], random.Random(rng_seed)))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data):
    fuzz.check(data)


@settings(max_examples=100, deadline=None)
@given(prefix=st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]),
       rest=st.binary(max_size=600))
def test_bytes_behind_a_capture_magic_never_crash(prefix, rest):
    fuzz.check(prefix + rest)


def test_saved_crashes_stay_fixed():
    assert SAVED, "tests/data/fuzz/ holds the inputs of crashes found so far"
    for path in SAVED:
        fuzz.check(path.read_bytes())


def test_the_checker_reports_crashes(monkeypatch):
    """The property is not vacuous: an exception that is not a PcapstateError escapes it."""
    import pcapstate.tracker

    def broken(table, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(pcapstate.tracker, "track", broken)
    with pytest.raises(ValueError):
        fuzz.check(SEEDS[0])
