"""What a session leaves behind: one pcapng with its TLS keys inside, and the tarball's README.

`SessionFile` merges the per-interface captures by timestamp (the core's k-way
merge), gives each interface its own IDB named after it, puts the TLS key log in
a Decryption Secrets Block before the first packet (draft-ietf-opsawg-pcapng
§4.7: secrets should precede the packets they decrypt, which is what Wireshark
and scapy read first), drops the session's own marker packets, and ends with one
Interface Statistics Block (§4.6) per interface carrying libpcap's counters.

Pure: decoded events and bytes in, pcapng bytes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from wirecap.core.formats.merge import PcapngMergeWriter, merge_packets
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    Packet,
)
from wirecap.session.marker import contains_marker

__all__ = [
    "KEYLOG_NAME",
    "PCAPNG_NAME",
    "README_NAME",
    "USER_APPLICATION",
    "SessionFile",
    "tarball_readme",
]

#: The member names capture-packets used, kept so scripts that unpack its
#: tarballs keep working.
PCAPNG_NAME = "packets.pcapng"
KEYLOG_NAME = "keylog-filename.txt"
README_NAME = "README.txt"
#: The SHB's shb_userappl.
USER_APPLICATION = "wirecap session"


class SessionFile:
    """Writes one session's pcapng from its per-interface captures.

    Args:
        names: the interface name of each source, in source order (the IDB's if_name).
        key_log: the NSS key log written during the block; empty: no DSB.
        token: the session's marker token; packets holding it are left out.
        comment: the SHB's comment.

    After `blocks` is consumed, `packets` is the number of packets written and
    `markers` the number of marker packets left out.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        key_log: bytes,
        token: bytes | None,
        comment: str | None = None,
    ) -> None:
        self.names = tuple(names)
        self.key_log = key_log
        self.token = token
        self.comment = comment
        self.packets = 0
        self.markers = 0

    def blocks(
        self,
        sources: Sequence[Iterable[Event]],
        statistics: Sequence[InterfaceStatistics | None] = (),
    ) -> Iterator[bytes]:
        """The whole file as byte chunks.

        `statistics[i]` is an ISB for interface 0 of source i; it is written at
        the end, with the IDB of an interface that saw no packet, so the file
        lists every interface captured on. Even an empty capture is a valid file.
        """
        if len(sources) != len(self.names):
            raise ValueError(f"{len(sources)} sources for {len(self.names)} interface names")
        writer = PcapngMergeWriter(comment=self.comment, user_application=USER_APPLICATION)
        registered: set[int] = set()
        wrote = False
        if self.key_log:
            wrote = True
            yield writer.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, self.key_log))
        streams = [
            self._packets_of(writer, index, events, registered)
            for index, events in enumerate(sources)
        ]
        for index, packet in merge_packets(streams):
            self.packets += 1
            wrote = True
            yield writer.packet(index, packet)
        for index, stats in enumerate(statistics):
            if stats is not None and index in registered:
                wrote = True
                yield writer.statistics(index, stats)
        if not wrote:
            yield PcapngEncoder().section_header(
                comment=self.comment, user_application=USER_APPLICATION
            )

    def _packets_of(
        self,
        writer: PcapngMergeWriter,
        index: int,
        events: Iterable[Event],
        registered: set[int],
    ) -> Iterator[Packet]:
        token = self.token
        for event in events:
            if isinstance(event, Packet):
                if token is not None and contains_marker(event.data, token):
                    self.markers += 1
                    continue
                yield event
            elif isinstance(event, Interface):
                # A pcap file names no interface; the session knows which one it was.
                writer.add_interface(index, replace(event, name=self.names[index]))
                registered.add(index)
            else:
                # Section starts reset the source's numbering; anything else a
                # per-interface file could hold passes through unchanged.
                writer.event(index, event)


def tarball_readme(*, interfaces: Sequence[str], packets: int, key_log_lines: int) -> str:
    """The README.txt inside a session tarball: what it holds and why it is sensitive."""
    return f"""\
wirecap session capture
=======================

{PCAPNG_NAME}
    {packets} packets captured on: {", ".join(interfaces)}.
    The TLS key log is embedded (pcapng Decryption Secrets Block), so Wireshark
    and tshark show the TLS traffic decrypted with no other file:
        tshark -r {PCAPNG_NAME} -Y http
{KEYLOG_NAME}
    The same TLS secrets ({key_log_lines} lines, NSS key log format) as a plain file,
    for tools that want SSLKEYLOGFILE's format (Wireshark: Preferences > Protocols >
    TLS > (Pre)-Master-Secret log filename).

WARNING: these files hold secrets.
They can contain IP addresses, host names, DNS queries and answers, and every TLS
connection of the captured program in clear text: HTTP requests and responses,
cookies, passwords, API tokens, authorization headers.

- Send them only to people you trust, over a private channel; never attach them
  to a public issue, a repository or an unencrypted mail.
- Delete them as soon as the problem is solved.
- If credentials were used during the capture, rotate them afterwards.
"""
