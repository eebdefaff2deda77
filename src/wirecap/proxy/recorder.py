"""Per-connection capture: exactly one TCP connection plus the ICMP errors about it.

`connection_filter` is pure: it builds the BPF expression. `ConnectionRecorder` is
the shell that runs it through the core's capture engine into one pcap file.

Why ICMP matters: a PMTUD black hole is the absence of ICMP "fragmentation
needed" (RFC 1191) / "packet too big" (RFC 8201) where one is due, and working
PMTUD is their presence. Those messages come from routers, so a 4-tuple filter
never sees them; they are matched here by the original header they quote
(RFC 792, RFC 4443 §2.4(c): as much of the invoking packet as fits).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wirecap.core.capture.handle import FileDumper, PcapHandle
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import PcapFileOutput
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stats import CaptureStats

__all__ = [
    "DEFAULT_RECORDER_BUFFER",
    "HEADER_SNAPLEN",
    "RECORDER_SNAPLEN",
    "ConnectionRecorder",
    "FourTuple",
    "Recording",
    "connection_filter",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Once a capture reaches its size cap, packets are cut to this many bytes: enough
#: for Ethernet + IPv6 + TCP with options (14 + 40 + 60 = 114), or an ICMPv6 error
#: quoting an IPv6 + TCP header (14 + 40 + 8 + 40 + 20 = 122), so SYN/FIN/RST and
#: ICMP stay readable after the cap.
HEADER_SNAPLEN = 128

#: Whole packets up to 64 KiB: GRO/GSO super-segments on veth and loopback reach it.
RECORDER_SNAPLEN = 65535

#: Kernel ring per connection. The proxy may hold 1,000 captures at once, so each
#: gets 1 MiB (about 15 whole 64 KiB frames) instead of the 32 MiB of a bulk capture.
DEFAULT_RECORDER_BUFFER = 1 << 20

#: Recorders drain every 50 ms: a short linger after close still finds everything.
RECORDER_BUFFER_TIMEOUT_MS = 50

# ICMP (RFC 792) error types that quote the invoking packet.
_ICMP_UNREACHABLE, _ICMP_TIME_EXCEEDED, _ICMP_PARAMETER_PROBLEM = 3, 11, 12
# ICMPv6 (RFC 4443) error types.
_ICMP6_UNREACHABLE, _ICMP6_PACKET_TOO_BIG, _ICMP6_TIME_EXCEEDED = 1, 2, 3
_TCP = 6


@dataclass(frozen=True, slots=True)
class FourTuple:
    """One TCP connection as the proxy sees it: its own (local) end and the origin."""

    local_ip: IPAddress
    local_port: int
    remote_ip: IPAddress
    remote_port: int

    def __post_init__(self) -> None:
        if self.local_ip.version != self.remote_ip.version:
            raise ValueError("local and remote addresses of different families")


def _words(address: IPAddress) -> list[int]:
    packed = address.packed
    return [int.from_bytes(packed[i : i + 4], "big") for i in range(0, len(packed), 4)]


def _match_words(proto: str, offset: int, address: IPAddress) -> str:
    # BPF loads at most 4 bytes: an IPv6 address is compared as four words.
    return " and ".join(
        f"{proto}[{offset + 4 * i}:4] = 0x{word:08x}" for i, word in enumerate(_words(address))
    )


def connection_filter(t: FourTuple) -> str:
    """BPF for the connection's packets both ways and the ICMP errors about them."""
    local, remote = t.local_ip, t.remote_ip
    tcp = (
        f"(tcp and src host {local} and src port {t.local_port}"
        f" and dst host {remote} and dst port {t.remote_port})"
        f" or (tcp and src host {remote} and src port {t.remote_port}"
        f" and dst host {local} and dst port {t.local_port})"
    )
    if local.version == 4:
        # ICMP header 8 bytes, then the quoted IPv4 header (variable length: IHL),
        # then the first 8 bytes of our TCP header (RFC 792): ports at IHL*4 + 8.
        quoted_tcp = "(icmp[8] & 0xf) * 4 + 8"
        icmp = (
            f"(icmp and dst host {local}"
            f" and (icmp[0] = {_ICMP_UNREACHABLE} or icmp[0] = {_ICMP_TIME_EXCEEDED}"
            f" or icmp[0] = {_ICMP_PARAMETER_PROBLEM})"
            f" and icmp[17] = {_TCP}"
            f" and {_match_words('icmp', 20, local)} and {_match_words('icmp', 24, remote)}"
            f" and icmp[{quoted_tcp} : 2] = {t.local_port}"
            f" and icmp[{quoted_tcp} + 2 : 2] = {t.remote_port})"
        )
    else:
        # ICMPv6 header 8 bytes, then the quoted fixed IPv6 header (40 bytes: next
        # header at 6, source at 8, destination at 24), then our TCP ports. The
        # proxy's own segments carry no extension headers, so the offsets hold.
        icmp = (
            f"(icmp6 and dst host {local}"
            f" and (icmp6[0] = {_ICMP6_UNREACHABLE} or icmp6[0] = {_ICMP6_PACKET_TOO_BIG}"
            f" or icmp6[0] = {_ICMP6_TIME_EXCEEDED})"
            f" and icmp6[14] = {_TCP}"
            f" and {_match_words('icmp6', 16, local)} and {_match_words('icmp6', 32, remote)}"
            f" and icmp6[48:2] = {t.local_port} and icmp6[50:2] = {t.remote_port})"
        )
    return f"{tcp} or {icmp}"


@dataclass(frozen=True, slots=True)
class Recording:
    """What a finished connection capture produced."""

    path: Path
    stats: CaptureStats
    #: The size cap was reached: later packets hold headers only.
    truncated: bool
    bytes_written: int


class _CappedPcapOutput(PcapFileOutput):
    """A pcap file that calls `on_cap` once when it has grown past `cap_bytes`."""

    def __init__(self, path: Path, cap_bytes: int, on_cap: Callable[[], None]) -> None:
        super().__init__(path)
        self._cap_bytes = cap_bytes
        self._on_cap = on_cap
        self.capped = False
        self.bytes_written = 0

    def open(self, handle: PcapHandle) -> FileDumper:
        dumper = super().open(handle)
        self._file = dumper
        return dumper

    def batch_done(self, packets: int) -> None:
        super().batch_done(packets)
        # Checked per batch, so the file may overshoot the cap by one batch.
        self.bytes_written = self._file.tell()
        if not self.capped and self.bytes_written >= self._cap_bytes:
            self.capped = True
            self._on_cap()

    def close(self) -> None:
        if self._dumper is not None:
            self.bytes_written = self._file.tell()
        super().close()


class ConnectionRecorder:
    """Capture one proxied connection into `path` (0600, written as `path.part`).

    `start()` arms the capture; call it after binding the source port and before
    connecting, so the SYN is in the file.
    """

    def __init__(
        self,
        interface: str,
        four_tuple: FourTuple,
        path: str | os.PathLike[str],
        *,
        size_cap: int,
        buffer_size: int = DEFAULT_RECORDER_BUFFER,
    ) -> None:
        self.filter = connection_filter(four_tuple)
        self.path = Path(path)
        self._output = _CappedPcapOutput(self.path, size_cap, self._truncate)
        self._capture = LiveCapture(
            CaptureSpec(
                interface=interface,
                filter=self.filter,
                snaplen=RECORDER_SNAPLEN,
                buffer_size=buffer_size,
                buffer_timeout_ms=RECORDER_BUFFER_TIMEOUT_MS,
            ),
            self._output,
        )

    async def start(self) -> None:
        """Arm the capture (activation runs in a worker thread, off the event loop)."""
        await self._capture.start_async()

    def _truncate(self) -> None:
        # Same filter, compiled for a short snapshot: the kernel now cuts packets.
        self._capture.set_filter(self.filter, snaplen=HEADER_SNAPLEN)

    def stats(self) -> CaptureStats:
        return self._capture.stats()

    @property
    def truncated(self) -> bool:
        return self._output.capped

    async def stop(self) -> Recording:
        stats = await self._capture.stop()
        return Recording(
            path=self.path,
            stats=stats,
            truncated=self._output.capped,
            bytes_written=self._output.bytes_written,
        )
