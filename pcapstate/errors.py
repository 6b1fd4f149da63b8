"""Errors pcapstate raises on bad input.

Everything derives from :class:`PcapstateError`; the command line prints its
message as one line (``pcapstate: error: …``) and exits with status 2.
"""
from __future__ import annotations


class PcapstateError(Exception):
    """Base of every error caused by the input rather than by a bug."""

    def __reduce__(self):
        # Rebuilt from its message as it is, not by calling __init__ again (subclasses make the message from
        # their own arguments, and a Dask worker's error is pickled on its way to the client).
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls, args: tuple, state: dict) -> PcapstateError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


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
