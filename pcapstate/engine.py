"""Compiled or plain: decide before numba is imported, from the size of the input.

With the prebuilt core (:mod:`pcapstate.aot`) there is nothing to decide: it
loads in milliseconds, and every capture runs compiled.  Without it, compiling
pays for itself only on captures of some size: importing numba and loading its
cached machine code costs about 0.8 s before the first packet, while plain
Python replays a few thousand packets in a few tens of milliseconds.  The
command line then runs small captures (below :data:`JIT_MIN_BYTES` in all) as
plain Python, the same code (:mod:`pcapstate.jit`), and large ones compiled.
``PCAPSTATE_NO_JIT`` set by the user wins either way.  A capture set (a
directory, a glob pattern, several files) counts as the sum of its files' sizes.
"""
from __future__ import annotations

import glob
import os

JIT_MIN_BYTES = 1 << 20  # about 10,000 packets


def choose_for(paths: list[str]) -> None:
    """Set ``PCAPSTATE_NO_JIT=1`` when ``paths`` hold too little to be worth compiling.

    ``paths`` are the command line's words: files count their size, a
    directory the size of the files in it, a glob pattern (quoted, for
    pcapstate to expand) that of the files it matches; other words nothing.
    """
    if "PCAPSTATE_NO_JIT" in os.environ or _prebuilt_core():
        return
    total = 0
    for path in paths:  # command words and options are no files: they count for nothing
        total += _input_bytes(path)
        if total >= JIT_MIN_BYTES:
            return
    os.environ["PCAPSTATE_NO_JIT"] = "1"


def _prebuilt_core() -> bool:
    """Whether the prebuilt core will run (it does unless the user asked for numba or plain Python)."""
    from pcapstate import aot  # light: numpy and the module itself; no compiler switch

    return os.environ.get("PCAPSTATE_CORE", "prebuilt") == "prebuilt" and aot.is_fresh()


def _input_bytes(word: str) -> int:
    """Bytes of the file, directory (its files, not below) or glob pattern ``word`` names; 0 for anything else.

    Kept free of pcapstate's own imports: this runs before the compiler switch is read.
    """
    try:
        if os.path.isfile(word):
            return os.path.getsize(word)
        if os.path.isdir(word):
            return sum(e.stat().st_size for e in os.scandir(word) if e.is_file())
        if any(c in word for c in "*?["):
            return sum(os.path.getsize(m) for m in glob.glob(word) if os.path.isfile(m))
    except OSError:
        pass
    return 0
