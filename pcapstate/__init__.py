"""pcapstate: reconstruct TCP handshakes and teardowns from packet captures.

Heavy modules (pandas, matplotlib) are imported only by the functions that
need them, so ``import pcapstate`` and the command line start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from pcapstate.decode import read_capture  # noqa: E402  (light: numpy + dpkt)
from pcapstate.errors import PcapstateError  # noqa: E402

__all__ = ["__version__", "analyze", "read_capture", "PcapstateError"]


def __getattr__(name: str):
    # pcapstate.analyze lives with pandas; import it only when asked for.
    if name in ("analyze", "Analysis"):
        from pcapstate import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'pcapstate' has no attribute {name!r}")
