"""What to capture and how: the frozen options a capture is opened with."""

from __future__ import annotations

from dataclasses import dataclass

from wirecap.core.formats.records import DEFAULT_SNAPLEN
from wirecap.errors import OptionError

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_BUFFER_TIMEOUT_MS",
    "MAX_SNAPLEN",
    "CaptureSpec",
]

#: libpcap's own ceiling (MAXIMUM_SNAPLEN in pcap-int.h); larger values are clamped by it.
MAX_SNAPLEN = 262144

#: Kernel ring size. tcpdump's default is 2 MiB; 32 MiB kept up with this machine's
#: loopback flood (≈270 k packets/s) with zero drops, 2 MiB did not always.
DEFAULT_BUFFER_SIZE = 32 * 1024 * 1024

#: TPACKET_V3 block retire timeout. The kernel hands a partly filled block to user space
#: only after this long, so it bounds both the latency of a quiet capture and how long
#: stop() waits to drain. tcpdump uses 1000 ms; 100 ms costs ten wake-ups a second.
DEFAULT_BUFFER_TIMEOUT_MS = 100


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    """A live capture's parameters, validated once at construction."""

    interface: str = "any"
    #: BPF expression in tcpdump's language; empty captures everything.
    filter: str = ""
    snaplen: int = DEFAULT_SNAPLEN
    promiscuous: bool = False
    #: Deliver each packet at once. Costs about 10× the CPU and lost ~1 % at 270 k
    #: packets/s here (TPACKET_V2 wake-ups per packet): for low-rate handles only.
    immediate: bool = False
    buffer_size: int = DEFAULT_BUFFER_SIZE
    buffer_timeout_ms: int = DEFAULT_BUFFER_TIMEOUT_MS
    #: Ask for nanosecond timestamps; falls back to microseconds where unsupported.
    nanosecond: bool = True

    def __post_init__(self) -> None:
        if not self.interface:
            raise OptionError("interface name is empty")
        if not 1 <= self.snaplen <= MAX_SNAPLEN:
            raise OptionError(f"snaplen {self.snaplen} is outside 1..{MAX_SNAPLEN}")
        if self.buffer_size < 65536:
            raise OptionError(f"buffer size {self.buffer_size} is below 64 KiB")
        if not 1 <= self.buffer_timeout_ms <= 10_000:
            raise OptionError(f"buffer timeout {self.buffer_timeout_ms} ms is outside 1..10000")
