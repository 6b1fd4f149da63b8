"""pcapstate: reconstruct TCP handshakes and teardowns from packet captures.

Heavy modules (pandas, matplotlib) are imported only by the functions that
need them, so ``import pcapstate`` and the command line start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from pcapstate.errors import PcapstateError  # noqa: E402

__all__ = ["__version__", "analyze", "read_capture", "PcapstateError"]


def __getattr__(name: str):
    # Imported when first asked for: pcapstate.analyze lives with pandas, and the
    # command line decides whether to compile before the decoder is imported.
    if name in ("analyze", "Analysis"):
        from pcapstate import analysis

        return getattr(analysis, name)
    if name == "read_capture":
        from pcapstate.decode import read_capture

        return read_capture
    raise AttributeError(f"module 'pcapstate' has no attribute {name!r}")
