"""SHELL: the interfaces libpcap can capture on (pcap_findalldevs)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from wirecap.core.capture import _libpcap as C
from wirecap.errors import CaptureError

__all__ = ["CaptureDevice", "device_for_address", "list_devices"]

# pcap/pcap.h interface flags.
_PCAP_IF_LOOPBACK = 0x1
_PCAP_IF_UP = 0x2
_PCAP_IF_RUNNING = 0x4


@dataclass(frozen=True, slots=True)
class CaptureDevice:
    name: str
    description: str | None
    loopback: bool
    up: bool
    running: bool
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()


# struct sockaddr_in: family(2) port(2) addr(4); struct sockaddr_in6: family(2)
# port(2) flowinfo(4) addr(16).
_SIN_ADDR, _SIN6_ADDR = 4, 8


def _address(ffi: Any, sa: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if sa == ffi.NULL:
        return None
    raw = ffi.cast("unsigned char *", sa)
    if sa.sa_family == socket.AF_INET:
        return ipaddress.IPv4Address(bytes(ffi.buffer(raw + _SIN_ADDR, 4)))
    if sa.sa_family == socket.AF_INET6:
        return ipaddress.IPv6Address(bytes(ffi.buffer(raw + _SIN6_ADDR, 16)))
    return None


def list_devices() -> list[CaptureDevice]:
    """Every interface libpcap offers, in its order (`any` included on Linux)."""
    lib = C.load()
    ffi = lib.ffi
    errbuf = ffi.new("char[]", C.PCAP_ERRBUF_SIZE)
    head = ffi.new("pcap_if_t **")
    if lib.pcap.pcap_findalldevs(head, errbuf) != 0:
        raise CaptureError(ffi.string(errbuf).decode("utf-8", "replace"))
    devices: list[CaptureDevice] = []
    try:
        node = head[0]
        while node != ffi.NULL:
            description = None
            if node.description != ffi.NULL:
                description = ffi.string(node.description).decode("utf-8", "replace")
            flags = int(node.flags)
            addresses = []
            entry = node.addresses
            while entry != ffi.NULL:
                address = _address(ffi, entry.addr)
                if address is not None:
                    addresses.append(address)
                entry = entry.next
            devices.append(
                CaptureDevice(
                    name=ffi.string(node.name).decode("utf-8", "replace"),
                    description=description,
                    loopback=bool(flags & _PCAP_IF_LOOPBACK),
                    up=bool(flags & _PCAP_IF_UP),
                    running=bool(flags & _PCAP_IF_RUNNING),
                    addresses=tuple(addresses),
                )
            )
            node = node.next
    finally:
        if head[0] != ffi.NULL:
            lib.pcap.pcap_freealldevs(head[0])
    return devices


def device_for_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The interface that holds `address` (the one its packets leave by), if any."""
    for device in list_devices():
        if address in device.addresses:
            return device.name
    return None
