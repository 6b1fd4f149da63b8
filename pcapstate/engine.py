"""Compiled or plain: decide before numba is imported, from the size of the input.

Compiling pays for itself only on captures of some size: importing numba and
loading its cached machine code costs about 0.6 s before the first packet,
while plain Python replays a few thousand packets in a few tens of
milliseconds.  The command line therefore runs small captures (below
:data:`JIT_MIN_BYTES` in all) as plain Python, the same code
(:mod:`pcapstate.jit`), and large ones compiled.  ``PCAPSTATE_NO_JIT`` set by
the user wins either way.
"""
from __future__ import annotations

import os

JIT_MIN_BYTES = 1 << 20  # about 10,000 packets


def choose_for(paths: list[str]) -> None:
    """Set ``PCAPSTATE_NO_JIT=1`` when ``paths`` hold too little to be worth compiling."""
    if "PCAPSTATE_NO_JIT" in os.environ:
        return
    total = 0
    for path in paths:  # command words and options are no files: they count for nothing
        try:
            if os.path.isdir(path):
                total += JIT_MIN_BYTES  # a capture set: assume it is worth compiling
            elif os.path.isfile(path):
                total += os.path.getsize(path)
        except OSError:
            continue
    if total < JIT_MIN_BYTES:
        os.environ["PCAPSTATE_NO_JIT"] = "1"
