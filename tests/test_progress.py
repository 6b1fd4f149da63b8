"""The progress line: only on a terminal, only for big inputs, erased at the end."""
from __future__ import annotations

import io

from pcapstate.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_drawn_on_a_terminal_and_erased():
    screen = Terminal()
    progress = Progress(1000, stream=screen, min_bytes=0)
    progress.update(500, 42)
    assert "decoding  50%  42 packets" in screen.getvalue()
    progress.done()
    assert screen.getvalue().endswith("\r\033[K")


def test_silent_when_not_a_terminal_or_small():
    pipe = io.StringIO()
    Progress(10**9, stream=pipe, min_bytes=0).update(1, 1)
    assert pipe.getvalue() == ""
    screen = Terminal()
    small = Progress(100, stream=screen)
    small.update(50, 1)
    small.done()
    assert screen.getvalue() == ""
