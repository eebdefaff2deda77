"""Marker packets: how a session knows each capture has caught up before it stops.

At exit the session sends one small packet that every capture handle will see
and waits until each has written it. Packets reach a packet socket in the
order the kernel handles them, so once the marker is in the file, so is
everything the block's code sent or received before it: with no blind sleep,
and also for pooled keep-alive connections that never close.

- On ``lo`` and on ``any`` the marker is a UDP datagram from a loopback socket
  to itself (so nothing answers, not even ICMP port-unreachable).
- On an Ethernet interface it is one frame of the IEEE 802 "Local Experimental"
  EtherType 0x88B5 (IEEE Std 802-2014 §9.2.2), addressed from and to the
  interface's own MAC address: a switch never forwards a frame back out of the
  port it came in on, and no protocol stack answers that EtherType.
- Other link types get no marker; their capture is drained as libpcap allows.

Marker packets match the capture filter by an ``or`` clause and are removed
when the session's file is written, so the user never sees them. Each carries a
random token, so no other packet is taken for one.

Pure: tokens, addresses and ports are passed in; no socket is opened here.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "ETHERTYPE_LOCAL_EXPERIMENTAL",
    "MARKER_PREFIX",
    "TOKEN_LENGTH",
    "MarkerKind",
    "MarkerRoute",
    "capture_filter",
    "contains_marker",
    "ethernet_marker_frame",
    "marker_payload",
]

#: IEEE Std 802 Local Experimental EtherType 1: reserved for local use, never
#: assigned to a protocol.
ETHERTYPE_LOCAL_EXPERIMENTAL = 0x88B5

#: 16 random bytes: a false match in other traffic has probability 2^-128 per offset.
TOKEN_LENGTH = 16

#: Readable in a hex dump, for anyone who finds a marker in another capture.
MARKER_PREFIX = b"wirecap session marker "

#: Ethernet's minimum frame without FCS (IEEE 802.3 §3.2.8): shorter frames are padded.
_MIN_ETHERNET_FRAME = 60


class MarkerKind(enum.Enum):
    """How a marker reaches one capture handle."""

    #: A UDP datagram over the loopback interface (for ``lo`` and ``any``).
    LOOPBACK_UDP = "loopback-udp"
    #: One Ethernet frame sent on the interface itself.
    ETHERNET = "ethernet"
    #: The interface's link type has no marker; stop drains without one.
    NONE = "none"


@dataclass(frozen=True, slots=True)
class MarkerRoute:
    """The marker of one capture handle: how it is sent and which filter clause lets it in."""

    kind: MarkerKind
    #: UDP port the loopback marker socket is bound to (source and destination).
    udp_port: int = 0

    def filter_clause(self) -> str | None:
        if self.kind is MarkerKind.LOOPBACK_UDP:
            port = self.udp_port
            return f"udp and src host 127.0.0.1 and src port {port} and dst port {port}"
        if self.kind is MarkerKind.ETHERNET:
            return f"ether proto 0x{ETHERTYPE_LOCAL_EXPERIMENTAL:04x}"
        return None


def marker_payload(token: bytes) -> bytes:
    """The bytes a marker carries: a readable prefix and the session's random token."""
    if len(token) != TOKEN_LENGTH:
        raise ValueError(f"marker token must be {TOKEN_LENGTH} bytes, not {len(token)}")
    return MARKER_PREFIX + token


def contains_marker(data: bytes | bytearray, token: bytes) -> bool:
    """Whether captured bytes (one frame, or a batch of records) hold this session's marker."""
    return marker_payload(token) in data


def capture_filter(user_filter: str, route: MarkerRoute) -> str:
    """The BPF expression a handle is opened with: the user's, widened to let the marker in.

    With no user filter everything is captured, the marker included.
    """
    clause = route.filter_clause()
    if not user_filter.strip() or clause is None:
        return user_filter
    return f"({user_filter}) or ({clause})"


def ethernet_marker_frame(mac: bytes, token: bytes) -> bytes:
    """The Ethernet marker: from and to `mac`, EtherType 0x88B5, padded to 60 bytes."""
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, not {len(mac)}")
    frame = mac + mac + struct.pack("!H", ETHERTYPE_LOCAL_EXPERIMENTAL) + marker_payload(token)
    return frame.ljust(_MIN_ETHERNET_FRAME, b"\0")
