"""SHELL: the interfaces libpcap can capture on (pcap_findalldevs)."""

from __future__ import annotations

from dataclasses import dataclass

from wirecap.core.capture import _libpcap as C
from wirecap.errors import CaptureError

__all__ = ["CaptureDevice", "list_devices"]

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
            devices.append(
                CaptureDevice(
                    name=ffi.string(node.name).decode("utf-8", "replace"),
                    description=description,
                    loopback=bool(flags & _PCAP_IF_LOOPBACK),
                    up=bool(flags & _PCAP_IF_UP),
                    running=bool(flags & _PCAP_IF_RUNNING),
                )
            )
            node = node.next
    finally:
        if head[0] != ffi.NULL:
            lib.pcap.pcap_freealldevs(head[0])
    return devices
