"""The values every codec, capture and merge in wirecap speaks: frozen, typed, no I/O.

Timestamps are integer nanoseconds since the Unix epoch everywhere; a float
cannot hold a nanosecond timestamp of this century exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

__all__ = [
    "DEFAULT_SNAPLEN",
    "SECRETS_TLS_KEY_LOG",
    "DecryptionSecrets",
    "Event",
    "Interface",
    "InterfaceStatistics",
    "NameRecord",
    "NameResolution",
    "Packet",
    "SectionStart",
]

#: tcpdump's default since 4.99 and libpcap's MAXIMUM_SNAPLEN: every packet whole.
DEFAULT_SNAPLEN = 262144

#: pcapng DSB secrets type for an NSS key log (draft-ietf-opsawg-pcapng §4.7): "TLSK".
SECRETS_TLS_KEY_LOG = 0x544C534B


@dataclass(frozen=True, slots=True)
class Interface:
    """One capture interface: what a pcap file header or a pcapng IDB describes."""

    linktype: int
    snaplen: int = DEFAULT_SNAPLEN
    name: str | None = None
    description: str | None = None
    #: Timestamp unit of the source, in nanoseconds per tick (1000 = microsecond files).
    #: Informational: Packet.ts_ns is always nanoseconds.
    ts_unit_ns: int = 1


class Packet(NamedTuple):
    """One captured packet: what a pcap record or a pcapng EPB/SPB holds.

    A NamedTuple rather than a frozen dataclass, as immutable and typed: a file
    of a million packets builds a million of them, and a tuple is made in
    under half the time (frozen dataclasses set each field through
    object.__setattr__).
    """

    ts_ns: int
    data: bytes
    #: Length on the wire; larger than len(data) when the snaplen cut the packet.
    orig_len: int
    #: Index into the interfaces of the file or stream the packet came from.
    interface_id: int = 0
    comment: str | None = None

    @property
    def caplen(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class DecryptionSecrets:
    """A pcapng Decryption Secrets Block: e.g. a TLS key log Wireshark decrypts with."""

    secrets_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class InterfaceStatistics:
    """A pcapng Interface Statistics Block (draft-ietf-opsawg-pcapng §4.6).

    Also used as a heartbeat by live streams: its timestamp carries the sender's clock.
    """

    interface_id: int
    ts_ns: int
    received: int | None = None
    dropped: int | None = None


@dataclass(frozen=True, slots=True)
class SectionStart:
    """A capture (pcap file header) or a pcapng section (SHB, §4.1) begins.

    Interface ids in the packets that follow count from 0 again: in pcapng they
    index the IDBs of this section only (draft-ietf-opsawg-pcapng §4.2).
    """

    format: Literal["pcap", "pcapng"]
    big_endian: bool
    #: (major, minor): 2.4 for pcap, 1.0 for pcapng.
    version: tuple[int, int]
    comment: str | None = None
    hardware: str | None = None
    os: str | None = None
    user_application: str | None = None


@dataclass(frozen=True, slots=True)
class NameRecord:
    """One record of a pcapng Name Resolution Block (draft-ietf-opsawg-pcapng §4.5)."""

    #: nrb_record_ipv4 = 1, nrb_record_ipv6 = 2, nrb_record_eui48 = 3, nrb_record_eui64 = 4.
    record_type: int
    #: The raw address: 4, 16, 6 or 8 bytes.
    address: bytes
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NameResolution:
    """A pcapng Name Resolution Block: addresses the capturing host had names for."""

    records: tuple[NameRecord, ...]


#: Everything a capture decoder emits, in file order.
Event: TypeAlias = (
    SectionStart | Interface | Packet | DecryptionSecrets | InterfaceStatistics | NameResolution
)
