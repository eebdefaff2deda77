"""The `wirecap` command: subcommands are registered here; errors become exit codes.

This is a composition root: the only place where defaults, the environment and the
terminal are read. Nothing imports `wirecap.cli`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from wirecap._version import __version__
from wirecap.cli import analyze, convert, merge, proxy, record, worker
from wirecap.errors import WirecapError

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Record network traffic for diagnostics and explain what was recorded.

Every capture goes through libpcap with tcpdump's filter language; files are
pcap or pcapng that open in Wireshark, created 0600.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wirecap",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wirecap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    record.register(commands)
    convert.register(commands)
    proxy.register(commands)
    analyze.register(commands)
    worker.register(commands)
    merge.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except WirecapError as exc:
        print(f"wirecap: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # pragma: no cover - commands install their own handlers
        return 130
    except BrokenPipeError:
        # The reader went away (`wirecap analyze ... | head`): stop quietly, as a
        # program killed by SIGPIPE would, without a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
