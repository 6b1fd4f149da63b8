"""The prebuilt core (pcapstate.aot, pcapstate.aot_build): there, fresh, complete, checked, and honest.

The project's install (``pip install -e .``, which tests/run.sh runs) builds
it; these tests fail when that build did not happen.  The analyses it gives
are compared with numba's and plain Python's here (whole JSON outputs) and in
the per-stage parity tests (test_decode_fast, test_zeek_compiled,
test_findings_speed_parity), whose in-process side now runs prebuilt.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcapstate import aot, aot_build, jit
from synthetic import write_synthetic

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def test_the_install_built_a_fresh_core_and_it_runs():
    assert aot.is_fresh(), "pcapstate/_core*.so missing or stale: run pip install -e . or python3 -m pcapstate.aot_build"
    assert jit.MODE == "prebuilt"


def test_every_module_with_entry_points_is_built():
    with_entries = set()
    for path in (ROOT / "pcapstate").rglob("*.py"):
        if re.search(r"^@entry\(", path.read_text(), flags=re.M):
            with_entries.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert with_entries == set(aot_build.CORE_MODULES)
    for module in aot_build.CORE_MODULES:
        __import__(module)
    assert len(jit.ENTRIES) >= 19
    for function, _ in jit.ENTRIES:
        assert callable(getattr(aot.core(), aot.symbol(function)))


def test_the_hot_loops_are_built_without_reference_counts():
    """numba's reference counting of arrays (NRT_incref/decref at every inlined call) was most of the replay's
    time: the entry points that allocate nothing are built without it (pcapstate.aot_build)."""
    import json

    uncounted = set(json.loads(aot.MANIFEST.read_text())["uncounted"])
    assert {"replay_state__run_packets", "replay_state__close_all", "zeek_tcp__run",
            "decode_fast_layers__parse_records", "report_json_rows___write_rows"} <= uncounted
    assert "conversations___assign" not in uncounted  # (it allocates its tables: counted)


def test_declarations_parse():
    assert aot.parse("i8") == aot.Arg("i8", 0)
    assert aot.parse("u1[::1]") == aot.Arg("u1", 1)
    assert aot.parse("i8[:, ::1]") == aot.Arg("i8", 2)
    assert aot.parse("u4[:, :, ::1]") == aot.Arg("u4", 3)
    assert aot.parse("readonly u1[::1]") == aot.Arg("u1", 1, readonly=True)
    assert aot.parse(("b1", "i8")) == (aot.Arg("b1"), aot.Arg("i8"))
    assert aot.array(np.uint16, 1) == aot.Arg("u2", 1)
    for bad in ("int64", "i8[:]", "i8[::2]", "x9"):
        with pytest.raises(ValueError):
            aot.parse(bad)


def test_a_wrong_argument_is_a_type_error_not_misread_memory():
    from pcapstate.findings.anomalies import _flagged  # (pk i8[:, ::1], mask i8, value i8)

    pk = np.zeros((4, 9), dtype=np.int64)
    assert _flagged(pk, 0x10, 0x10).tolist() == []
    with pytest.raises(TypeError, match="argument 0 is a 2-D float64 array"):
        _flagged(pk.astype(np.float64), 0x10, 0x10)
    with pytest.raises(TypeError, match="not C-contiguous"):
        _flagged(np.asfortranarray(pk), 0x10, 0x10)
    with pytest.raises(TypeError, match="argument 1 is str"):
        _flagged(pk, "0x10", 0x10)
    with pytest.raises(TypeError, match="3 arguments, declared 3|2 arguments, declared 3"):
        _flagged(pk, 0x10)


def test_read_only_only_where_declared():
    from pcapstate.decode.fast_records import empty_frames, walk_pcapng  # (readonly u1[::1], Frames)

    data = np.frombuffer((SAMPLES / "refused.pcap").read_bytes(), dtype=np.uint8)
    assert not data.flags.writeable
    walk_pcapng(data, empty_frames(0))  # declared read-only: fine
    from pcapstate.findings.anomalies import _flagged

    frozen = np.zeros((1, 9), dtype=np.int64)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        _flagged(frozen, 1, 1)


def _copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pcapstate", tmp_path / "pcapstate", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _mode_in(root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}
    result = subprocess.run([sys.executable, "-c", "from pcapstate import jit; print(jit.MODE)"], cwd=root,
                            env={**env, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_an_edited_source_leaves_the_stale_core_unused(tmp_path):
    root = _copy_of_package(tmp_path)
    assert _mode_in(root) == "prebuilt"
    replay_state = root / "pcapstate" / "replay_state.py"
    replay_state.write_text(replay_state.read_text() + "\n# an edit\n")
    assert _mode_in(root) == "numba"


def test_a_damaged_manifest_or_module_leaves_it_unused(tmp_path):
    root = _copy_of_package(tmp_path)
    manifest = root / "pcapstate" / "_core.json"
    manifest.write_text("{not json")
    assert _mode_in(root) == "numba"
    shutil.copy2(ROOT / "pcapstate" / "_core.json", manifest)
    for module in (root / "pcapstate").glob("_core.*.so"):
        module.write_bytes(b"not a shared object")
    assert _mode_in(root) == "numba"


def _json_of(capture: Path, core: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if k not in ("PCAPSTATE_NO_JIT", "PCAPSTATE_CORE")}
    env["PCAPSTATE_NO_JIT" if core == "plain" else "PCAPSTATE_CORE"] = "1" if core == "plain" else core
    result = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", str(capture), "--format", "json"],
                            env=env, capture_output=True, check=True)
    return result.stdout


@pytest.mark.parametrize("capture", ["fin_dropped.pcap", "simultaneous_close.pcap", "data_loss.pcap"])
def test_prebuilt_numba_and_plain_python_write_the_same_analysis(capture):
    prebuilt = _json_of(SAMPLES / capture, "prebuilt")
    assert prebuilt == _json_of(SAMPLES / capture, "numba") == _json_of(SAMPLES / capture, "plain")


def test_prebuilt_and_numba_agree_on_a_large_synthetic_capture(tmp_path):
    capture = write_synthetic(tmp_path / "synth.pcap", 3000)
    assert _json_of(capture, "prebuilt") == _json_of(capture, "numba")
