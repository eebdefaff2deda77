"""The `wirecap` command: subcommands are registered here; errors become exit codes.

This is a composition root: the only place where defaults, the environment and the
terminal are read. Nothing imports `wirecap.cli`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from wirecap._version import __version__
from wirecap.errors import WirecapError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Every subcommand and the module whose `register(commands)` adds it, in the
#: order `wirecap --help` lists them. A command's module, and what it pulls in
#: (aiohttp, matplotlib, the capture engine), is imported only when that
#: command runs or the whole list is shown: `wirecap merge` of two files must
#: not spend half a second importing the proxy. A new command is one line here.
COMMANDS: dict[str, str] = {
    "record": "wirecap.cli.record",
    "convert": "wirecap.cli.convert",
    "proxy": "wirecap.cli.proxy",
    "analyze": "wirecap.cli.analyze",
    "worker": "wirecap.cli.worker",
    "merge": "wirecap.cli.merge",
    "session": "wirecap.cli.session",
    "flows": "wirecap.cli.flows",
    "guard": "wirecap.cli.guard",
}

_DESCRIPTION = """\
Record network traffic for diagnostics and explain what was recorded.

Every capture goes through libpcap with tcpdump's filter language; files are
pcap or pcapng that open in Wireshark, created 0600.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `wirecap` parser with every subcommand, or with just `only`."""
    parser = argparse.ArgumentParser(
        prog="wirecap",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wirecap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    # `wirecap COMMAND ...`: only COMMAND's module is needed to parse and run it.
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
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
