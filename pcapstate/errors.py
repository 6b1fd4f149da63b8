"""Errors pcapstate raises on bad input.

Everything derives from :class:`PcapstateError`; the command line prints its
message as one line (``pcapstate: error: …``) and exits with status 2.
"""
from __future__ import annotations


class PcapstateError(Exception):
    """Base of every error caused by the input rather than by a bug."""


class NotACaptureError(PcapstateError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: not a pcap, pcapng or tcpdump text capture")


class UnsupportedLinkTypeError(PcapstateError):
    def __init__(self, path: str, linktype: int, name: str) -> None:
        super().__init__(f"{path}: unsupported link type {linktype} ({name})")
        self.linktype = linktype


class CaptureReadError(PcapstateError):
    """The file could not be opened or read (missing, permission, I/O)."""


class DecoderUnavailableError(PcapstateError):
    """An optional decoder (pyshark/tshark) is not installed."""


class FlowNotFoundError(PcapstateError):
    """A flow id the capture does not have."""

    def __init__(self, path: str, flow: int, count: int) -> None:
        have = "no connections" if count == 0 else f"flows 0 to {count - 1}"
        super().__init__(f"{path}: no flow {flow} (the capture has {have})")
