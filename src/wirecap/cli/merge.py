"""`wirecap merge` (and the `ddump` compat command): merge worker streams and files by time."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wirecap.cli._parsers import standalone, subcommand
from wirecap.errors import OptionError, WirecapError
from wirecap.remote.merge import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_DELAY_MS,
    MergeOptions,
    merge,
)
from wirecap.remote.sources import parse_source

__all__ = ["build_parser", "ddump", "options_from_args", "register"]

_DESCRIPTION = """\
Merge live captures from `wirecap worker` streams and pcap/pcapng files into
one capture ordered by timestamp, written to standard output or -w FILE.

SOURCE is a capture file (merged like mergecap) or a worker URL:

  http[s]://[USER[:PASS]@]HOST[:PORT][/PATH][?filter=BPF]

  unix:SOCKET[?QUERY]     (a worker started with --listen unix:SOCKET)

PORT defaults to 8475 and PATH to /capture; the query string (filter=,
interface=, snaplen=, format=pcapng ...) goes to the worker unchanged.
USER:PASS is sent as HTTP basic auth and never printed. All workers are
connected in parallel.

Ordering: a packet is written once every live stream has shown a later
timestamp (a packet, or a pcapng statistics heartbeat), or once it has waited
--max-delay for a quiet stream. Output is non-decreasing in time unless a
stream delivers packets later than that; such late packets are still written
(never dropped), counted and reported. Equal timestamps: the SOURCE given
first (lower index) comes first, then each source's own order. When every
SOURCE is a file the merge is exact (no delay applies).

Output: pcapng by default, with one interface per worker interface, named
after the worker host (HOST:IFACE; a pcap stream's IFACE is the interface=
it asked for, "any" by default). --format pcap needs one link type across
all sources and a snaplen of at most 262144. Every batch is flushed at once,
so `wirecap merge ... | tcpdump -r -` shows packets without buffering delay;
tcpdump reads pcapng only when all interfaces share one link type (workers
send LINUX_SLL2 by default, so they do).

TLS: --ca FILE trusts only the CAs in FILE; without it the system store is
used, which honours SSL_CERT_FILE and SSL_CERT_DIR. --cert/--key present a
client certificate to workers that require one (mTLS).

Errors: a worker that answers other than 200, sends something that is not
pcap/pcapng, or drops mid-stream is reported on stderr with its URL and the
reason; the others go on. A status line per stream (connected, packets,
bytes, late, error) is printed on stderr at the end.

SIGINT, SIGTERM or a closed standard output end the merge cleanly: buffered
packets are written (unless the output is gone) and the last record is
complete. With -w, FILE is written as FILE.part (0600) and renamed at the end.

Exit status: 0 all streams ended cleanly; 2 usage error; 4 a stream failed
(at the end, or at once with --fail-fast).
"""
_EPILOG = f"""\
defaults: --max-delay {DEFAULT_MAX_DELAY_MS} ms, --connect-timeout {DEFAULT_CONNECT_TIMEOUT_S:g} s

examples:
  wirecap merge 'http://web1?filter=tcp port 443' 'http://web2?filter=tcp port 443' | tcpdump -nr -
  wirecap merge --ca ca.pem -w both.pcapng https://alice:secret@db1 https://db2:9000
  wirecap merge -w merged.pcapng a.pcap b.pcapng
  wirecap merge --idle-timeout 5 'http://web1?format=pcapng' 'unix:/run/wc.sock?format=pcapng'

compat: ddump [-ca FILE] [-cert FILE] [-key FILE] URL...  (Go-style single-dash flags)
"""


def build_parser(prog: str = "wirecap merge") -> argparse.ArgumentParser:
    parser = standalone(prog, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    return parser


def register(commands: Any) -> None:
    parser = subcommand(
        commands,
        "merge",
        summary="merge worker streams and capture files by timestamp",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    _add_arguments(parser)
    parser.set_defaults(handler=lambda args: merge(options_from_args(args)))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", metavar="SOURCE", nargs="+", help="worker URL or capture file")
    parser.add_argument(
        "-w", dest="output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=("pcapng", "pcap"),
        default="pcapng",
        help="output format (default: pcapng)",
    )
    parser.add_argument(
        "--max-delay",
        metavar="MS",
        type=float,
        default=DEFAULT_MAX_DELAY_MS,
        help="longest a packet waits for a quiet stream, in milliseconds "
        f"(default: {DEFAULT_MAX_DELAY_MS})",
    )
    parser.add_argument("--ca", metavar="FILE", help="trust only these CA certificates (PEM)")
    parser.add_argument("--cert", metavar="FILE", help="client certificate for mTLS (PEM)")
    parser.add_argument(
        "--key", metavar="FILE", help="private key of --cert (PEM; default: in --cert)"
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        help="limit on connecting to a worker and getting its response headers "
        f"(default: {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=float,
        help="fail a worker stream that sends nothing at all for this long (default: wait "
        "forever). Workers asked for format=pcapng send a heartbeat every 100 ms, so a few "
        "seconds find a dead worker or path fast; a pcap stream of a quiet filter is silent",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first failed stream instead of going on with the others",
    )


def options_from_args(args: argparse.Namespace) -> MergeOptions:
    if args.max_delay < 0:
        raise OptionError("--max-delay must not be negative")
    if args.connect_timeout <= 0:
        raise OptionError("--connect-timeout must be positive")
    if args.idle_timeout is not None and args.idle_timeout <= 0:
        raise OptionError("--idle-timeout must be positive")
    output = None if args.output in (None, "-") else Path(args.output)
    return MergeOptions(
        sources=tuple(parse_source(text) for text in args.sources),
        output=output,
        file_format=args.file_format,
        max_delay_ms=args.max_delay,
        connect_timeout_s=args.connect_timeout,
        ca_file=Path(args.ca) if args.ca else None,
        cert_file=Path(args.cert) if args.cert else None,
        key_file=Path(args.key) if args.key else None,
        fail_fast=args.fail_fast,
        idle_timeout_s=args.idle_timeout,
    )


#: ddump's Go `flag` flags, which take one dash (Go also accepts two).
_GO_FLAGS = {"-ca": "--ca", "-cert": "--cert", "-key": "--key"}


def translate_ddump_args(argv: Sequence[str]) -> list[str]:
    """Map ddump's `-ca F`, `-cert F`, `-key F` (and `-ca=F`) to our long options."""
    out: list[str] = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in _GO_FLAGS:
            out.append(_GO_FLAGS[name] + eq + value)
        else:
            out.append(arg)
    return out


def ddump(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ddump` compat command."""
    args = translate_ddump_args(sys.argv[1:] if argv is None else argv)
    try:
        return merge(options_from_args(build_parser("ddump").parse_args(args)))
    except WirecapError as exc:
        print(f"ddump: {exc}", file=sys.stderr)
        return exc.exit_code
