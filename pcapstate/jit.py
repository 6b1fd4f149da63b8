"""The compiler switch: ``@njit`` compiles a function with numba, or leaves it plain Python.

Every hot loop of pcapstate (decoding, the replay, the retransmission and
Zeek passes) is written once, in the subset of Python numba compiles: integer
arrays, integer constants, small functions.  With numba installed it runs
compiled and cached on disk (only the very first run compiles); with
``PCAPSTATE_NO_JIT=1`` in the environment, or without numba, the very same code
runs as plain Python, for debugging and as the reference the compiled code is
tested against.
"""
from __future__ import annotations

import os

DISABLED = os.environ.get("PCAPSTATE_NO_JIT", "") not in ("", "0")

try:
    if DISABLED:
        raise ImportError("PCAPSTATE_NO_JIT is set")
    from numba import njit as _numba_njit

    ENABLED = True
except ImportError:  # plain Python: slower, same results
    _numba_njit = None
    ENABLED = False


def njit(function):
    """Compile ``function`` (cached, releasing the GIL), or return it unchanged."""
    if _numba_njit is None:
        return function
    return _numba_njit(cache=True, nogil=True)(function)

