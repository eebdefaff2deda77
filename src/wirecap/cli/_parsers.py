"""Argument parsers with man-page style help, shared by every command and compat alias."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["standalone", "subcommand"]


def subcommand(
    commands: Any, name: str, *, summary: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """`wirecap NAME`: a subparser whose help keeps the text's own line breaks."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def standalone(prog: str, *, description: str, epilog: str) -> argparse.ArgumentParser:
    """A compat command of its own (connectcap, ddump, ddump-worker) with the same help."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
