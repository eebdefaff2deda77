"""Synthetic frames for analysis tests: Ethernet/IPv4/IPv6, TCP with options, ICMP errors.

`Script` writes one TCP connection packet by packet, keeping each side's next sequence
number, so a test reads like the exchange it describes::

    s = Script()
    s.handshake()
    s.data(CLIENT, 100, at_ms=20)
    s.ack(SERVER, at_ms=30)
    report = s.analyze()

Checksums are left zero: nothing here or in tshark (by default) verifies them.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from wirecap.analysis import Report, Side, Thresholds, analyze_packets
from wirecap.analysis.thresholds import DEFAULT_THRESHOLDS
from wirecap.core.formats import Interface, LinkType, Packet, PcapEncoder

CLIENT = Side.CLIENT
SERVER = Side.SERVER

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: A fixed epoch so times in tests are exact.
EPOCH_NS = 1_700_000_000_000_000_000
_ETH_HEADER = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


def mss_option(value: int) -> bytes:
    return struct.pack("!BBH", 2, 4, value)


def wscale_option(shift: int) -> bytes:
    return b"\x01" + struct.pack("!BBB", 3, 3, shift)


def sack_permitted_option() -> bytes:
    return b"\x01\x01\x04\x02"


def timestamps_option(tsval: int = 1, tsecr: int = 0) -> bytes:
    return b"\x01\x01" + struct.pack("!BBII", 8, 10, tsval, tsecr)


def sack_option(blocks: Iterable[tuple[int, int]]) -> bytes:
    edges = b"".join(
        struct.pack("!II", left & 0xFFFFFFFF, right & 0xFFFFFFFF) for left, right in blocks
    )
    return b"\x01\x01" + struct.pack("!BB", 5, 2 + len(edges)) + edges


def _pad(options: bytes) -> bytes:
    return options + b"\x00" * (-len(options) % 4)


def tcp_segment(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
) -> bytes:
    opts = _pad(options)
    offset = (20 + len(opts)) // 4
    header = struct.pack(
        "!HHIIBBHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        offset << 4,
        flags,
        window,
        0,
        0,
    )
    return header + opts + payload


def ip_packet(
    src: str, dst: str, protocol: int, body: bytes, total_length: int | None = None
) -> bytes:
    """An IPv4 (DF set) or IPv6 packet around `body`."""
    source = ipaddress.ip_address(src)
    destination = ipaddress.ip_address(dst)
    if source.version == 4:
        length = 20 + len(body) if total_length is None else total_length
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, length, 0, 0x4000, 64, protocol, 0,
            source.packed, destination.packed,
        )  # fmt: skip
        return header + body
    length = len(body) if total_length is None else total_length
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, length, protocol, 64, source.packed, destination.packed
    )
    return header + body


def ethernet(ip: bytes) -> bytes:
    ethertype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return _ETH_HEADER + struct.pack("!H", ethertype) + ip


def icmp_error(
    reporter: str,
    to: str,
    icmp_type: int,
    code: int,
    quoted_ip: bytes,
    *,
    rest: int = 0,
    quote_bytes: int = 548,
) -> bytes:
    """An ICMP (IPv4 reporter) or ICMPv6 error quoting the start of `quoted_ip`."""
    version = ipaddress.ip_address(reporter).version
    body = struct.pack("!BBHI", icmp_type, code, 0, rest) + quoted_ip[:quote_bytes]
    return ethernet(ip_packet(reporter, to, 1 if version == 4 else 58, body))


class Script:
    """One TCP connection written packet by packet (times in ms from EPOCH_NS)."""

    def __init__(
        self,
        *,
        client: tuple[str, int] = ("10.0.0.1", 40000),
        server: tuple[str, int] = ("10.0.0.2", 80),
        isn: tuple[int, int] = (1000, 5000),
        mss: tuple[int | None, int | None] = (1460, 1460),
        wscale: tuple[int | None, int | None] = (7, 7),
        sack_ok: bool = True,
        packets: list[Packet] | None = None,
        snaplen: int | None = None,
    ) -> None:
        self.addr = {CLIENT: client, SERVER: server}
        self.isn = {CLIENT: isn[0], SERVER: isn[1]}
        #: Next sequence number each side sends.
        self.next = {CLIENT: isn[0], SERVER: isn[1]}
        self.mss = {CLIENT: mss[0], SERVER: mss[1]}
        self.wscale = {CLIENT: wscale[0], SERVER: wscale[1]}
        self.sack_ok = sack_ok
        #: Shared with other scripts to interleave connections in one capture.
        self.packets: list[Packet] = [] if packets is None else packets
        #: Cut recorded frames to this many bytes, as a capture's snaplen does.
        self.snaplen = snaplen

    # -- raw ---------------------------------------------------------------------------

    def ip(
        self,
        side: Side,
        *,
        flags: int,
        seq: int | None = None,
        ack: int | None = None,
        length: int = 0,
        window: int = 1024,
        options: bytes = b"",
    ) -> bytes:
        """The IP packet `side` would send (without recording it)."""
        (src, sport), (dst, dport) = self.addr[side], self.addr[side.peer]
        segment = tcp_segment(
            sport,
            dport,
            self.next[side] if seq is None else seq,
            self.next[side.peer] if ack is None else ack,
            flags,
            window,
            options,
            bytes(length),
        )
        return ip_packet(src, dst, 6, segment)

    def record(self, frame: bytes, at_ms: float) -> Packet:
        data = frame if self.snaplen is None else frame[: self.snaplen]
        packet = Packet(ts_ns=EPOCH_NS + round(at_ms * 1_000_000), data=data, orig_len=len(frame))
        self.packets.append(packet)
        return packet

    def send(
        self,
        side: Side,
        at_ms: float,
        *,
        flags: int = ACK,
        length: int = 0,
        seq: int | None = None,
        ack: int | None = None,
        window: int = 1024,
        options: bytes = b"",
        advance: bool = True,
    ) -> bytes:
        """Record a segment from `side`; returns its IP packet (for ICMP quotes)."""
        ip = self.ip(
            side, flags=flags, seq=seq, ack=ack, length=length, window=window, options=options
        )
        self.record(ethernet(ip), at_ms)
        start = self.next[side] if seq is None else seq
        end = start + length + (1 if flags & (SYN | FIN) else 0)
        if advance and (end - self.next[side]) & 0xFFFFFFFF < 1 << 31:
            self.next[side] = end & 0xFFFFFFFF
        return ip

    # -- the usual segments ------------------------------------------------------------

    def syn_options(self, side: Side) -> bytes:
        options = b""
        if self.mss[side] is not None:
            options += mss_option(self.mss[side] or 0)
        if self.sack_ok:
            options += sack_permitted_option()
        if self.wscale[side] is not None:
            options += wscale_option(self.wscale[side] or 0)
        return options

    def syn(self, at_ms: float = 0.0) -> bytes:
        return self.send(
            CLIENT, at_ms, flags=SYN, seq=self.isn[CLIENT], ack=0, options=self.syn_options(CLIENT),
            window=64240,
        )  # fmt: skip

    def syn_ack(self, at_ms: float) -> bytes:
        return self.send(
            SERVER, at_ms, flags=SYN | ACK, seq=self.isn[SERVER], options=self.syn_options(SERVER),
            window=65160,
        )  # fmt: skip

    def handshake(self, at_ms: float = 0.0, rtt_ms: float = 10.0) -> None:
        self.syn(at_ms)
        self.syn_ack(at_ms + rtt_ms)
        self.ack(CLIENT, at_ms + rtt_ms + 0.05)

    def data(
        self, side: Side, length: int, at_ms: float, *, seq: int | None = None, window: int = 1024
    ) -> bytes:
        return self.send(side, at_ms, flags=ACK | PSH, length=length, seq=seq, window=window)

    def ack(self, side: Side, at_ms: float, *, upto: int | None = None, window: int = 1024,
            options: bytes = b"") -> bytes:  # fmt: skip
        return self.send(side, at_ms, flags=ACK, ack=upto, window=window, options=options)

    def fin(self, side: Side, at_ms: float) -> bytes:
        return self.send(side, at_ms, flags=FIN | ACK)

    def rst(self, side: Side, at_ms: float, *, with_ack: bool = True) -> bytes:
        return self.send(side, at_ms, flags=RST | (ACK if with_ack else 0), window=0)

    def close(self, at_ms: float, first: Side = CLIENT) -> None:
        """FIN, FIN, last ACK."""
        self.fin(first, at_ms)
        self.fin(first.peer, at_ms + 1)
        self.ack(first, at_ms + 2)

    def icmp(
        self,
        reporter: str,
        about_ip: bytes,
        icmp_type: int,
        code: int,
        at_ms: float,
        *,
        rest: int = 0,
        to: Side = CLIENT,
    ) -> None:
        """Record an ICMP error quoting `about_ip`, sent to `to`."""
        self.record(
            icmp_error(reporter, self.addr[to][0], icmp_type, code, about_ip, rest=rest), at_ms
        )

    def rel(self, side: Side) -> int:
        """`side`'s next sequence number, relative as the analysis numbers it (SYN = 0)."""
        return (self.next[side] - self.isn[side]) & 0xFFFFFFFF

    # -- results -----------------------------------------------------------------------

    def analyze(self, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Report:
        return analyze_packets(self.packets, LinkType.ETHERNET, thresholds=thresholds)


def write_pcap(path: str | os.PathLike[str], packets: Sequence[Packet]) -> Path:
    encoder = PcapEncoder(Interface(linktype=LinkType.ETHERNET))
    out = Path(path)
    with open(out, "wb") as file:
        file.write(encoder.header())
        for packet in packets:
            file.write(encoder.packet(packet))
    return out


def bulk_capture(
    path: str | os.PathLike[str], *, connections: int, segments: int, loss_every: int = 0
) -> int:
    """Write a capture of `connections` interleaved downloads of `segments` data segments
    each (one ACK per two, a retransmission every `loss_every`), frames cut to 96 bytes
    as ``tcpdump -s 96`` would. Returns the number of packets written."""
    encoder = PcapEncoder(Interface(linktype=LinkType.ETHERNET, snaplen=96))
    scripts = [
        Script(client=(f"10.1.{i // 250}.{i % 250 + 1}", 40000 + i), isn=(i * 7919, i * 104729),
               snaplen=96)
        for i in range(connections)
    ]  # fmt: skip
    written = 0
    with open(path, "wb") as file:
        file.write(encoder.header())
        for s in scripts:
            s.handshake(at_ms=0)
            s.data(CLIENT, 120, at_ms=11)
        for step in range(segments):
            at = 12 + step * 0.01
            for s in scripts:
                if loss_every and step % loss_every == loss_every - 1:
                    s.data(SERVER, 1448, at_ms=at, seq=(s.next[SERVER] - 1448 * 3) & 0xFFFFFFFF)
                else:
                    s.data(SERVER, 1448, at_ms=at)
                if step % 2:
                    s.ack(CLIENT, at_ms=at + 0.001)
            if len(scripts[0].packets) > 10000 or step == segments - 1:
                batch = [p for s in scripts for p in s.packets]
                batch.sort(key=lambda p: p.ts_ns)
                for packet in batch:
                    file.write(encoder.packet(packet))
                written += len(batch)
                for s in scripts:
                    s.packets.clear()
        end = 13 + segments * 0.01
        for s in scripts:
            s.close(end)
            for packet in s.packets:
                file.write(encoder.packet(packet))
            written += len(s.packets)
    return written
