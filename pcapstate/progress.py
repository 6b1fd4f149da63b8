"""A one-line progress indicator on stderr, for captures that take a while.

Shown only when stderr is a terminal (never in pipes, logs or CI) and only for
inputs large enough to be worth it; redrawn at most ten times a second and
erased when the work is done, so it never mixes with the output.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

MIN_BYTES = 16 * 1024 * 1024  # smaller captures finish before a bar is worth drawing
_INTERVAL = 0.1


class Progress:
    def __init__(self, total_bytes: int, label: str = "decoding", stream: TextIO | None = None,
                 min_bytes: int = MIN_BYTES) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(int(total_bytes), 1)
        self.label = label
        self.enabled = total_bytes >= min_bytes and _is_terminal(self.stream)
        self._last = 0.0
        self._drawn = False

    def update(self, done_bytes: int, packets: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < _INTERVAL:
            return
        self._last = now
        percent = min(100, 100 * done_bytes // self.total)
        self.stream.write(f"\r{self.label} {percent:3d}%  {packets:,} packets")
        self.stream.flush()
        self._drawn = True

    def status(self, message: str) -> None:
        """Replace the line with a message (a stage without a measurable amount)."""
        if self.enabled:
            self.stream.write("\r\033[K" + message)
            self.stream.flush()
            self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
