"""`wirecap session -- CMD ARGS...`: run a command under capture and keep a tarball of it."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from wirecap.cli._parsers import subcommand
from wirecap.core.capture.devices import list_devices
from wirecap.errors import OptionError
from wirecap.session import CapturedPackets, CaptureSession, SessionOptions, SessionServices
from wirecap.session.options import DEFAULT_WAIT_BEFORE_TERMINATE_S

__all__ = ["SessionCommand", "register", "run"]

_DESCRIPTION = """\
Run CMD with ARGS under a packet capture and write a tarball of what it did
on the network: packets.pcapng, its TLS key log, and a README.

The capture is armed before CMD starts. CMD runs without a shell, with
SSLKEYLOGFILE in its environment naming the session's key log (created 0600
in a private 0700 directory), so programs that honour it (Python's ssl,
urllib3, requests, httpx, curl, Firefox, Chromium) log their TLS secrets. The
secrets are embedded in the pcapng as a Decryption Secrets Block: Wireshark
and tshark show the TLS traffic decrypted with no other file.

When CMD ends, a marker packet per interface tells when every packet is
written (waiting at most --wait-before-terminate seconds), the capture stops,
the tarball is written 0600, and the capture directory is removed. SIGINT and
SIGTERM are passed on to CMD; the tarball is still written.

The tarball holds secrets (cookies, passwords, tokens in clear text): hand it
only to people you trust, over a private channel, and delete it when done.
"""
_EPILOG = """\
exit status: CMD's own status (128+N when a signal N ended it); 2 usage error
(bad filter, no such interface, CMD not found), 3 missing privilege, 4 capture
or write failure.

examples:
  wirecap session -- curl -s https://example.org/
  wirecap session -i lo -w api.tar.gz -- python3 client.py --retries 0
  wirecap session -f 'port 443 or port 53' --no-gzip -w trace.tar -- ./sync.sh
"""


@dataclass(frozen=True, slots=True)
class SessionCommand:
    """A parsed `wirecap session` invocation."""

    options: SessionOptions
    command: tuple[str, ...]
    tarball: Path
    gzip: bool


def register(commands: Any) -> None:
    parser = subcommand(
        commands,
        "session",
        summary="run a command under capture; write a tarball with its packets and TLS keys",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    parser.add_argument(
        "-i",
        "--interface",
        dest="interfaces",
        action="append",
        metavar="IFACE",
        help="capture on IFACE; repeat for several, merged into one file (default: any)",
    )
    parser.add_argument(
        "-f",
        "--filter",
        default="",
        metavar="BPF",
        help="capture only packets matching this filter (tcpdump's language)",
    )
    parser.add_argument(
        "-w",
        "--write",
        dest="tarball",
        metavar="FILE",
        help="tarball to write (default: wirecap-session-DATE-TIME.tar.gz here)",
    )
    parser.add_argument(
        "--no-gzip", action="store_true", help="write a plain tar instead of tar.gz"
    )
    parser.add_argument(
        "--wait-before-terminate",
        type=float,
        default=DEFAULT_WAIT_BEFORE_TERMINATE_S,
        metavar="SECONDS",
        help="longest wait for the markers after CMD ends (default: %(default)s)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="stop the capture as soon as CMD ends, without markers",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run"
    )
    parser.set_defaults(handler=lambda args: run(command_from_args(args)))


def command_from_args(args: argparse.Namespace) -> SessionCommand:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise OptionError("no command given: wirecap session [OPTIONS] -- CMD ARGS...")
    gzip = not args.no_gzip
    if args.tarball is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        tarball = Path(f"wirecap-session-{stamp}.tar" + (".gz" if gzip else ""))
    else:
        tarball = Path(args.tarball)
    options = SessionOptions.build(
        interfaces=args.interfaces,
        filter=args.filter,
        wait_for_packets=not args.no_wait,
        wait_before_terminate=args.wait_before_terminate,
    )
    return SessionCommand(options, tuple(command), tarball, gzip)


def run(spec: SessionCommand) -> int:
    if shutil.which(spec.command[0]) is None:
        raise OptionError(f"command not found: {spec.command[0]}")
    services = SessionServices(environ=os.environ, devices=list_devices, random_bytes=os.urandom)
    session = CaptureSession(spec.options, services)
    runner = _CommandRunner(spec.command)
    # Installed before anything starts: a signal that comes before CMD exists
    # is kept for it, and one that comes while the tarball is written cannot
    # cut the tarball short.
    previous = {sig: signal.signal(sig, runner.on_signal) for sig in _FORWARDED}
    try:
        with session as pcap:
            status = runner.run()
        try:
            path = pcap.tarball(spec.tarball, gzip=spec.gzip)
            _report(pcap, path, waited=spec.options.wait_for_packets)
        finally:
            pcap.delete()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class _CommandRunner:
    """Runs CMD without a shell and passes SIGINT/SIGTERM on to it."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # A terminal's Ctrl-C reaches CMD's process group too; sending it again is
        # harmless, and a SIGTERM sent to wirecap alone must reach CMD.
        if self.child is None:
            self.pending.append(signum)
        elif self.child.returncode is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        """CMD's exit status (128+N when signal N ended it)."""
        if self.pending:
            return 128 + self.pending[0]
        self.child = subprocess.Popen(self.argv)
        for signum in self.pending:
            self.child.send_signal(signum)
        returncode = self.child.wait()
        return 128 - returncode if returncode < 0 else returncode


def _report(pcap: CapturedPackets, path: str, *, waited: bool) -> None:
    kernel = sum(stats.dropped_by_kernel for stats in pcap.stats.values())
    interface = sum(stats.dropped_by_interface for stats in pcap.stats.values())
    print(
        f"wirecap: {pcap.packet_count} packets on {', '.join(pcap.interfaces)}; "
        f"{kernel} dropped by kernel, {interface} dropped by interface",
        file=sys.stderr,
    )
    if waited and not pcap.caught_up:
        print("wirecap: not every marker came back: the end may be missing", file=sys.stderr)
    print(f"wirecap: wrote {path} (it holds TLS secrets: share it with care)", file=sys.stderr)
