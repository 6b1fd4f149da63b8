"""Two helpers the compiled decoder (fast_records, fast_layers) shares.

* ``inline``: :func:`pcapstate.jit.inline`, inlined into its callers by numba
  whenever numba compiles, on first use too.  A helper numba compiles on its
  own takes a reference to every array it is given, on each call (an atomic
  increment and decrement); with ten such calls per packet that costs more
  than the parsing.  Inlined, they go.
* ``zeroed_arrays``: several arrays carved out of one zeroed allocation.  On
  first write every page of a fresh array faults; one allocation of several
  megabytes gets transparent huge pages from numpy, twenty small ones do not,
  and their faults cost about as much as decoding the packets.
"""
from __future__ import annotations

import numpy as np

from pcapstate import jit


def inline(function):
    return jit.inline(function, on_first_use=True)


def zeroed_arrays(count: int, layouts: list[tuple[str, tuple[int, ...]]]) -> list[np.ndarray]:
    """Zeroed C-contiguous arrays of shape ``(count, *inner)`` per (dtype, inner) in ``layouts``.

    They are views of one buffer, each starting on a 64-byte boundary; pages
    never written (rows past the ones used) never take memory.
    """
    sizes = [count * np.dtype(dtype).itemsize * int(np.prod(inner, dtype=np.int64)) for dtype, inner in layouts]
    starts = np.concatenate([[0], np.cumsum([-(-size // 64) * 64 for size in sizes])]).tolist()
    memory = np.zeros(starts[-1], np.uint8)
    return [memory[start:start + size].view(dtype).reshape((count, *inner))
            for (dtype, inner), start, size in zip(layouts, starts, sizes)]
