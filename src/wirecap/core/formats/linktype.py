"""Link-layer header types, as numbered by tcpdump.org's LINKTYPE_* registry.

The same numbers appear in the pcap file header and in the pcapng Interface
Description Block (draft-ietf-opsawg-pcaplinktype).
"""

from __future__ import annotations

import enum

__all__ = ["LinkType"]


class LinkType(enum.IntEnum):
    NULL = 0  # BSD loopback: 4-byte address family in host byte order
    ETHERNET = 1  # EN10MB
    RAW = 101  # raw IPv4/IPv6, version nibble tells which
    LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
    LINUX_SLL = 113  # Linux "cooked" capture v1 (16-byte header)
    LINUX_SLL2 = 276  # Linux "cooked" capture v2 (20-byte header, carries ifindex)
