"""The command line compiles only captures big enough to pay for it, unless the core is prebuilt.

Without the prebuilt core (``PCAPSTATE_CORE=numba``: what runs when it is
missing or stale) small captures run as plain Python; with it, everything runs
compiled, and numba is never imported.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pcapstate import engine
from synthetic import write_synthetic

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _without_prebuilt_core(monkeypatch):
    monkeypatch.delenv("PCAPSTATE_NO_JIT", raising=False)
    monkeypatch.setenv("PCAPSTATE_CORE", "numba")


def test_small_captures_run_plain(monkeypatch):
    _without_prebuilt_core(monkeypatch)
    engine.choose_for(["analyze", str(SAMPLES / "refused.pcap"), "--format"])
    assert os.environ.get("PCAPSTATE_NO_JIT") == "1"


def test_big_inputs_and_capture_sets_compile(monkeypatch, tmp_path):
    _without_prebuilt_core(monkeypatch)
    big = tmp_path / "big.pcap"
    big.write_bytes(bytes(engine.JIT_MIN_BYTES))
    engine.choose_for(["analyze", str(big)])
    assert "PCAPSTATE_NO_JIT" not in os.environ
    rotated = tmp_path / "rotated"  # a capture set counts the sum of its files
    rotated.mkdir()
    for name in ("cap.pcap", "cap.pcap1"):
        (rotated / name).write_bytes(bytes(engine.JIT_MIN_BYTES // 2))
    engine.choose_for(["check", str(rotated)])
    assert "PCAPSTATE_NO_JIT" not in os.environ
    engine.choose_for(["analyze", str(rotated / "cap.pcap*")])
    assert "PCAPSTATE_NO_JIT" not in os.environ
    engine.choose_for(["analyze", str(rotated / "cap.pcap"), str(rotated / "cap.pcap1")])
    assert "PCAPSTATE_NO_JIT" not in os.environ


def test_a_small_capture_set_runs_plain(monkeypatch):
    _without_prebuilt_core(monkeypatch)
    engine.choose_for(["check", str(SAMPLES)])  # 15 small captures
    assert os.environ.get("PCAPSTATE_NO_JIT") == "1"


def test_the_user_decides_first(monkeypatch):
    monkeypatch.setenv("PCAPSTATE_NO_JIT", "0")
    engine.choose_for([str(SAMPLES / "refused.pcap")])
    assert os.environ["PCAPSTATE_NO_JIT"] == "0"


def test_with_the_prebuilt_core_small_captures_run_compiled_too(monkeypatch):
    monkeypatch.delenv("PCAPSTATE_NO_JIT", raising=False)
    monkeypatch.delenv("PCAPSTATE_CORE", raising=False)
    engine.choose_for(["analyze", str(SAMPLES / "refused.pcap")])
    assert "PCAPSTATE_NO_JIT" not in os.environ


def _modes_of_analysis(capture: Path, **env_changes) -> tuple[str, bool]:
    """(jit.MODE, whether numba was imported) of ``pcapstate analyze capture`` in a fresh process."""
    code = ("import sys; from pcapstate.cli import main\n"
            "try:\n    main(['analyze', sys.argv[1], '--format', 'json', '-o', '/dev/null'])\n"
            "except SystemExit:\n    pass\n"
            "from pcapstate import jit; print(jit.MODE, 'numba' in sys.modules, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}
    result = subprocess.run([sys.executable, "-c", code, str(capture)], capture_output=True, text=True,
                            env={**env, **env_changes})
    mode, numba = result.stderr.strip().splitlines()[-1].split()
    return mode, numba == "True"


def test_a_small_analysis_never_imports_numba():
    assert _modes_of_analysis(SAMPLES / "refused.pcap") == ("prebuilt", False)
    assert _modes_of_analysis(SAMPLES / "refused.pcap", PCAPSTATE_CORE="numba") == ("plain", False)


def test_a_big_analysis_runs_prebuilt_without_numba(tmp_path):
    big = write_synthetic(tmp_path / "big.pcap", connections=4000)
    assert big.stat().st_size >= engine.JIT_MIN_BYTES
    assert _modes_of_analysis(big) == ("prebuilt", False)
