"""The compiler switch: compiled functions run prebuilt, compiled by numba, or as plain Python.

Every hot loop of pcapstate (decoding, the replay, the retransmission and
Zeek passes, the JSON writer) is written once, in the subset of Python numba
compiles: integer arrays, integer constants, small functions.  ``@njit``
marks such a function; ``@entry(...)`` marks one that Python calls, with the
types of its arguments.  That code runs in one of three ways (:data:`MODE`):

* ``"prebuilt"``: the entry points compiled ahead of time into
  ``pcapstate/_core*.so`` when pcapstate was installed (:mod:`pcapstate.aot`);
  loads in milliseconds, numba is not even imported.  The default whenever
  that module is there and was built from these very sources.
* ``"numba"``: compiled by numba on first use and cached on disk (only the
  very first run compiles); numba's import and cache loading cost about 0.8 s.
* ``"plain"``: the very same code as plain Python, for debugging and as the
  reference the compiled code is tested against: ``PCAPSTATE_NO_JIT=1``, or no
  numba and no prebuilt module.

``PCAPSTATE_CORE=prebuilt|numba|plain`` asks for one (prebuilt falls back to
numba when the module is missing or stale); ``PCAPSTATE_NO_JIT=1`` wins.
"""
from __future__ import annotations

import os

from pcapstate import aot


def _choose() -> str:
    if os.environ.get("PCAPSTATE_NO_JIT", "") not in ("", "0"):
        return "plain"
    wanted = os.environ.get("PCAPSTATE_CORE", "prebuilt")
    if wanted == "plain":
        return "plain"
    if wanted == "prebuilt" and aot.is_fresh():
        return "prebuilt"
    try:
        import numba  # noqa: F401
    except ImportError:  # plain Python: slower, same results
        return "plain"
    return "numba"


MODE = _choose()
BUILDING = os.environ.get("PCAPSTATE_BUILDING_CORE") == "1"  # pcapstate.aot_build is compiling the prebuilt core
ENABLED = MODE != "plain"  # whether the hot loops run compiled, one way or the other
ENTRIES: list[tuple[object, tuple]] = []  # (plain function, argument declarations) of every @entry


def njit(function):
    """Compile ``function`` with numba (cached, releasing the GIL), or leave it plain.

    Prebuilt, a helper is plain Python: its compiled self lives inside the
    entry points that call it.
    """
    if MODE != "numba":
        return function
    from numba import njit as numba_njit

    return numba_njit(cache=True, nogil=True)(function)


def inline(function, on_first_use: bool = False):
    """:func:`njit`, but inlined into its callers when the prebuilt core is built.

    numba takes a reference to every array a compiled helper is given, on each
    call (an atomic increment and decrement), and across calls it cannot
    elide them: in the replay, with several such calls per packet, that was
    40 % of the time.  Inlined, they go; the price is compile time (half a
    minute more), paid once at install.  Compiling on first use, numba
    compiles such a helper as any other, unless ``on_first_use`` asks for
    inlining then too (the decoder's byte readers: cheap to compile, and
    called ten times a packet).
    """
    if MODE != "numba" or not (BUILDING or on_first_use):
        return njit(function)
    from numba import njit as numba_njit

    return numba_njit(inline="always", cache=True, nogil=True)(function)


def entry(*argument_types):
    """Mark a compiled function that Python calls; ``argument_types`` as in :mod:`pcapstate.aot`."""

    def decorate(function):
        ENTRIES.append((function, argument_types))
        if MODE == "prebuilt":
            return aot.bind(function, argument_types)
        return njit(function)

    return decorate


def ran_compiled(function) -> bool:
    """Whether ``function`` (an ``@entry``) runs compiled: prebuilt, or numba with a compiled signature."""
    return hasattr(function, "prebuilt") or bool(getattr(function, "signatures", None))
