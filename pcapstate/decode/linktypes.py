"""The link types pcapstate decodes, and the names of common ones, without importing dpkt.

dpkt (:mod:`pcapstate.decode.layers`) is needed only for records the compiled
decoder leaves to it; checking a file's link type should not load it (about
30 ms of every run's start-up).
"""
from __future__ import annotations

LINKTYPE_NAMES = {
    0: "NULL",
    1: "ETHERNET",
    101: "RAW",
    108: "LOOP",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
    # common ones we do not decode, for a readable error
    105: "IEEE802_11",
    127: "IEEE802_11_RADIOTAP",
    147: "USER0",
    9: "PPP",
    50: "PPP_HDLC",
    192: "PPI",
    195: "IEEE802_15_4",
    220: "USB_LINUX_MMAPPED",
}
SUPPORTED_LINKTYPES = frozenset({0, 1, 101, 108, 113, 228, 229, 276})


def linktype_name(linktype: int) -> str:
    return LINKTYPE_NAMES.get(linktype, "unknown")
