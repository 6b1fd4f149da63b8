"""pcapstate: reconstruct TCP handshakes and teardowns from packet captures.

Heavy modules (pandas, matplotlib) are imported only by the functions that
need them, so ``import pcapstate`` and the command line start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from pcapstate.decode import read_capture  # noqa: E402  (light: numpy + dpkt)
from pcapstate.errors import PcapstateError  # noqa: E402

__all__ = ["__version__", "read_capture", "PcapstateError"]
