"""`wirecap convert`: rewrite a capture as pcapng (optionally with TLS keys) or pcap."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wirecap.cli._parsers import subcommand
from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    Packet,
    SectionStart,
)
from wirecap.errors import CaptureWriteError, DecodeError, OptionError

__all__ = ["ConvertOptions", "convert", "register"]

_DESCRIPTION = """\
Read a pcap or pcapng file and write it again as pcapng or pcap.

With --tls-keylog, the key log (NSS format, as written by SSLKEYLOGFILE) is
embedded in a pcapng Decryption Secrets Block at the start of the file, so
Wireshark and tshark decrypt the TLS sessions with no side file. Interface
names, comments and nanosecond timestamps carry over. pcap output needs one
link type for all packets. OUTPUT is written as OUTPUT.part, created 0600, and
renamed when complete.
"""
_EPILOG = """\
examples:
  wirecap convert --tls-keylog keys.log tls.pcap tls.pcapng
  wirecap convert --format pcap merged.pcapng merged.pcap
"""


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    source: Path
    target: Path
    file_format: str
    key_log: bytes | None


def register(commands: Any) -> None:
    parser = subcommand(
        commands,
        "convert",
        summary="rewrite a capture as pcapng (with TLS keys embedded) or pcap",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    parser.add_argument("source", metavar="INPUT", help="pcap or pcapng file")
    parser.add_argument("target", metavar="OUTPUT", help="file to write")
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=("pcapng", "pcap"),
        default="pcapng",
        help="output format (default: pcapng)",
    )
    parser.add_argument(
        "--tls-keylog",
        metavar="FILE",
        help="TLS key log to embed as a Decryption Secrets Block (pcapng only)",
    )
    parser.set_defaults(handler=lambda args: _run(args))


def _run(args: argparse.Namespace) -> int:
    key_log = None
    if args.tls_keylog is not None:
        if args.file_format != "pcapng":
            raise OptionError("--tls-keylog needs pcapng output: pcap has no place for keys")
        try:
            key_log = Path(args.tls_keylog).read_bytes()
        except OSError as exc:
            raise OptionError(f"--tls-keylog {args.tls_keylog}: {exc.strerror}") from exc
    options = ConvertOptions(Path(args.source), Path(args.target), args.file_format, key_log)
    count = convert(options)
    print(f"{count} packets written to {options.target}", file=sys.stderr)
    return 0


def to_pcapng(events: Iterable[Event], key_log: bytes | None) -> Iterator[bytes | Packet]:
    """pcapng blocks for `events`; the key log goes right after the first section header.

    Packets are yielded as values next to their bytes so the caller can count them.
    """
    encoder = PcapngEncoder()
    pending_secrets = key_log
    for event in events:
        if isinstance(event, SectionStart):
            # A pcap file header becomes a pcapng section; its version does not carry.
            yield encoder.section_header(
                comment=event.comment,
                hardware=event.hardware,
                os=event.os,
                user_application=event.user_application or "wirecap convert",
            )
            if pending_secrets is not None:
                # §4.7: secrets should precede the packets they decrypt.
                yield encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, pending_secrets))
                pending_secrets = None
            continue
        if isinstance(event, Packet):
            yield event
        yield encoder.event(event)


def to_pcap(events: Iterable[Event]) -> Iterator[bytes | Packet]:
    """Classic pcap for `events`: one link type for all, nanosecond magic."""
    encoder: PcapEncoder | None = None
    for event in events:
        if isinstance(event, Interface):
            if encoder is None:
                encoder = PcapEncoder(event, nanosecond=True)
                yield encoder.header()
            elif event.linktype != encoder.interface.linktype:
                raise OptionError(
                    f"pcap holds one link type; the input mixes {encoder.interface.linktype} "
                    f"and {event.linktype}: keep pcapng"
                )
        elif isinstance(event, Packet):
            if encoder is None:
                raise OptionError("packet before any interface description")
            yield event
            yield encoder.packet(event)


def convert(options: ConvertOptions) -> int:
    """Convert one file; return the number of packets written."""
    events = read_file(options.source)
    blocks = (
        to_pcapng(events, options.key_log) if options.file_format == "pcapng" else to_pcap(events)
    )
    part = options.target.with_name(options.target.name + ".part")
    count = 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for item in blocks:
                if isinstance(item, Packet):
                    count += 1
                else:
                    out.write(item)
    except OSError as exc:
        raise CaptureWriteError(f"{part}: {exc.strerror}") from exc
    except DecodeError as exc:
        # The whole records before the damage are kept for salvage, never deleted.
        raise type(exc)(f"{exc} ({count} packets before it are in {part})") from exc
    os.replace(part, options.target)
    return count
