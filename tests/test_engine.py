"""The command line compiles only captures big enough to pay for it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pcapstate import engine

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_small_captures_run_plain(monkeypatch):
    monkeypatch.delenv("PCAPSTATE_NO_JIT", raising=False)
    engine.choose_for(["analyze", str(SAMPLES / "refused.pcap"), "--format"])
    assert os.environ.get("PCAPSTATE_NO_JIT") == "1"


def test_big_inputs_and_capture_sets_compile(monkeypatch, tmp_path):
    monkeypatch.delenv("PCAPSTATE_NO_JIT", raising=False)
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
    monkeypatch.delenv("PCAPSTATE_NO_JIT", raising=False)
    engine.choose_for(["check", str(SAMPLES)])  # 15 small captures
    assert os.environ.get("PCAPSTATE_NO_JIT") == "1"


def test_the_user_decides_first(monkeypatch):
    monkeypatch.setenv("PCAPSTATE_NO_JIT", "0")
    engine.choose_for([str(SAMPLES / "refused.pcap")])
    assert os.environ["PCAPSTATE_NO_JIT"] == "0"


def test_a_small_analysis_never_imports_numba():
    code = ("import sys; from pcapstate.cli import main\n"
            "try:\n    main(['analyze', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "print('numba' in sys.modules, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "PCAPSTATE_NO_JIT"}
    result = subprocess.run([sys.executable, "-c", code, str(SAMPLES / "refused.pcap")], capture_output=True,
                            text=True, env=env)
    assert result.stderr.strip().splitlines()[-1] == "False"
