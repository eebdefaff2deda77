"""`wirecap record`: tcpdump-like capture to a pcap or pcapng file."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from wirecap.cli._parsers import subcommand
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import (
    BatchOutput,
    CaptureOutput,
    PcapFileOutput,
    PcapngFileOutput,
)
from wirecap.core.capture.spec import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_BUFFER_TIMEOUT_MS,
    CaptureSpec,
)
from wirecap.core.capture.stats import CaptureStats
from wirecap.core.formats.records import DEFAULT_SNAPLEN
from wirecap.errors import OptionError

__all__ = ["RecordOptions", "register", "run"]

#: How often the live progress line on a terminal is redrawn.
PROGRESS_INTERVAL_S = 0.5

_HELP = "capture packets to a pcap or pcapng file, like tcpdump -w"
_DESCRIPTION = """\
Capture packets matching FILTER (tcpdump's filter language, given as trailing
words) on one interface and write them to FILE.

The capture is armed (interface activated, filter set) before anything is
counted. The file is written as FILE.part, created 0600, and renamed to FILE
when the capture ends. On a terminal a progress line shows packets, drops and
elapsed time; a final line reports the packet count (the number of records in
FILE) and libpcap's counters. SIGINT and SIGTERM stop the capture cleanly.

pcap output is written by libpcap itself (nanosecond timestamps where the
kernel gives them); pcapng output adds the interface name and is converted
batch by batch.
"""
_EPILOG = """\
exit status: 0 success, 2 usage error (bad filter, bad option, no such
interface), 3 missing privilege or libpcap, 4 capture or write failure.

examples:
  wirecap record -i eth0 -w syn.pcap 'tcp[tcpflags] & tcp-syn != 0'
  wirecap record -i any -c 1000 --format pcapng -w dns.pcapng udp port 53
  wirecap record -i lo --duration 10 -w - | tshark -r -
"""


@dataclass(frozen=True, slots=True)
class RecordOptions:
    spec: CaptureSpec
    path: str
    file_format: str
    count: int | None
    duration: float | None
    progress: bool


def register(commands: Any) -> None:
    parser = subcommand(commands, "record", summary=_HELP, description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument(
        "-i",
        "--interface",
        default="any",
        metavar="IFACE",
        help="interface to capture on, or 'any' (default: any)",
    )
    parser.add_argument(
        "-w",
        "--write",
        required=True,
        metavar="FILE",
        help="output file; '-' writes to standard output",
    )
    parser.add_argument("-c", "--count", type=int, metavar="COUNT", help="stop after COUNT packets")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    parser.add_argument(
        "-s",
        "--snapshot-length",
        "--snaplen",
        dest="snaplen",
        type=int,
        default=DEFAULT_SNAPLEN,
        metavar="SNAPLEN",
        help=f"bytes kept of each packet (default: {DEFAULT_SNAPLEN}, whole packets)",
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=("pcap", "pcapng"),
        default="pcap",
        help="output file format (default: pcap)",
    )
    parser.add_argument(
        "--immediate",
        action="store_true",
        help="deliver each packet at once (about 10x the CPU; for low-rate captures)",
    )
    parser.add_argument(
        "-B",
        "--buffer-size",
        type=int,
        default=DEFAULT_BUFFER_SIZE // 1024,
        metavar="KiB",
        help=f"kernel capture buffer in KiB (default: {DEFAULT_BUFFER_SIZE // 1024})",
    )
    parser.add_argument(
        "--buffer-timeout",
        type=int,
        default=DEFAULT_BUFFER_TIMEOUT_MS,
        metavar="MS",
        help="how long the kernel holds a partly filled buffer block "
        f"(default: {DEFAULT_BUFFER_TIMEOUT_MS} ms)",
    )
    parser.add_argument(
        "--promiscuous",
        action="store_true",
        help="put the interface in promiscuous mode (default: off)",
    )
    parser.add_argument(
        "--micro",
        action="store_true",
        help="microsecond timestamps (default: nanosecond where available)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line on a terminal")
    parser.add_argument(
        "filter",
        nargs=argparse.REMAINDER,
        metavar="FILTER",
        help="capture filter expression (tcpdump syntax), as trailing words",
    )
    parser.set_defaults(handler=lambda args: run(options_from_args(args)))


def options_from_args(args: argparse.Namespace) -> RecordOptions:
    if args.count is not None and args.count < 1:
        raise OptionError(f"-c {args.count}: the count must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise OptionError(f"--duration {args.duration}: must be positive")
    spec = CaptureSpec(
        interface=args.interface,
        filter=" ".join(args.filter).strip(),
        snaplen=args.snaplen,
        promiscuous=args.promiscuous,
        immediate=args.immediate,
        buffer_size=args.buffer_size * 1024,
        buffer_timeout_ms=args.buffer_timeout,
        nanosecond=not args.micro,
    )
    return RecordOptions(
        spec=spec,
        path=args.write,
        file_format=args.file_format,
        count=args.count,
        duration=args.duration,
        progress=sys.stderr.isatty() and not args.quiet,
    )


def run(options: RecordOptions) -> int:
    stats = asyncio.run(_record(options))
    print(stats.summary(), file=sys.stderr)
    return 0


def _output(options: RecordOptions) -> CaptureOutput:
    if options.path == "-":
        return _stdout_output(options)
    if options.file_format == "pcapng":
        return PcapngFileOutput(options.path, interface_name=options.spec.interface)
    return PcapFileOutput(options.path)


def _stdout_output(options: RecordOptions) -> CaptureOutput:
    stdout = sys.stdout.buffer
    if options.file_format == "pcapng":
        from wirecap.core.formats.convert import PcapToPcapng

        transcoder = PcapToPcapng(interface_name=options.spec.interface)

        def write(data: bytes) -> None:
            stdout.write(transcoder.feed(data))
            stdout.flush()

        def close() -> None:
            stdout.write(transcoder.close())
            stdout.flush()

        return BatchOutput(write, close)

    def write_pcap(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    return BatchOutput(write_pcap, stdout.flush)


async def _record(options: RecordOptions) -> CaptureStats:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    capture = LiveCapture(options.spec, _output(options), count=options.count)
    capture.start()
    where = "standard output" if options.path == "-" else options.path
    print(
        f"wirecap: recording on {options.spec.interface}"
        f"{' (' + options.spec.filter + ')' if options.spec.filter else ''}"
        f" to {where}",
        file=sys.stderr,
    )
    progress = (
        asyncio.create_task(_show_progress(capture, sys.stderr)) if options.progress else None
    )
    waiters = [asyncio.create_task(capture.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=options.duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
        if progress is not None:
            progress.cancel()
            sys.stderr.write("\r\x1b[K")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return await capture.stop()


async def _show_progress(capture: LiveCapture, out: TextIO) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        stats = capture.stats()
        out.write(
            f"\r\x1b[K{stats.written} packets, {stats.dropped_by_kernel} dropped by kernel, "
            f"{time.monotonic() - started:.1f} s"
        )
        out.flush()
