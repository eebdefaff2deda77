"""pcap and pcapng: codecs, an incremental decoder, conversion and timestamp merges.

Everything here is pure (bytes and values in, bytes and values out) except
`read_file` / `read_packets`, the one shell that opens files. Timestamps are
integer nanoseconds throughout.
"""

from __future__ import annotations

from wirecap.core.formats.convert import PcapToPcapng, pcap_to_pcapng
from wirecap.core.formats.decoder import NEED_DATA, CaptureDecoder, NeedData
from wirecap.core.formats.linktype import LinkType
from wirecap.core.formats.merge import (
    DEFAULT_MAX_BUFFERED,
    LiveMerger,
    PcapngMergeWriter,
    PushResult,
    merge_packets,
    merge_to_pcapng,
)
from wirecap.core.formats.pcap import MAX_CAPLEN, PcapEncoder
from wirecap.core.formats.pcapng import MAX_BLOCK_LEN, MAX_INTERFACES, PcapngEncoder
from wirecap.core.formats.reader import read_file, read_packets
from wirecap.core.formats.records import (
    DEFAULT_SNAPLEN,
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameRecord,
    NameResolution,
    Packet,
    SectionStart,
)

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_SNAPLEN",
    "MAX_BLOCK_LEN",
    "MAX_CAPLEN",
    "MAX_INTERFACES",
    "NEED_DATA",
    "SECRETS_TLS_KEY_LOG",
    "CaptureDecoder",
    "DecryptionSecrets",
    "Event",
    "Interface",
    "InterfaceStatistics",
    "LinkType",
    "LiveMerger",
    "NameRecord",
    "NameResolution",
    "NeedData",
    "Packet",
    "PcapEncoder",
    "PcapToPcapng",
    "PcapngEncoder",
    "PcapngMergeWriter",
    "PushResult",
    "SectionStart",
    "merge_packets",
    "merge_to_pcapng",
    "pcap_to_pcapng",
    "read_file",
    "read_packets",
]
