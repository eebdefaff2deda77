"""`wirecap analyze`: read captures and say what went wrong in each TCP connection."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wirecap.analysis import Report, analyze_file, render_text, to_json
from wirecap.cli._parsers import subcommand
from wirecap.errors import OptionError

__all__ = ["AnalyzeOptions", "register", "run"]

_DESCRIPTION = """\
Read pcap or pcapng files and, for every TCP connection, name what went wrong —
with the evidence (packet numbers and times, as Wireshark numbers them) and the
vantage point the conclusion needs (a capture at the sender or at the receiver
of the data).

Connections are numbered from 0 in order of their first packet, as tshark's
tcp.stream. Verdicts: completed normally, refused, no answer to SYN, ICMP
unreachable, reset by server/client, PMTUD black hole suspected (sender's or
receiver's view), PMTUD working, heavy loss, zero-window stall, slow handshake,
truncated capture, unknown. Sizes are reasoned from the MSS, not frame lengths:
Linux captures hold GSO/GRO super-segments larger than the MTU.
"""
_EPILOG = """\
--json prints one report object per file (an array when several files are
given), following the schema in src/wirecap/analysis/report.schema.json.

examples:
  wirecap analyze download.pcap
  wirecap analyze --connection 3 --plot conn3.png big.pcapng
  wirecap analyze --json --plot-dir plots/ *.pcap
"""


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    files: tuple[Path, ...]
    json: bool
    plot: Path | None
    plot_dir: Path | None
    connection: int | None


def register(commands: Any) -> None:
    parser = subcommand(
        commands,
        "analyze",
        summary="name what went wrong in each TCP connection of a capture",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="pcap or pcapng")
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="time-sequence graph; with several connections OUT-<N>.png each",
    )
    where.add_argument(
        "--plot-dir", type=Path, metavar="DIR", help="one graph per connection: DIR/<file>-<N>.png"
    )
    parser.add_argument(
        "--connection", type=int, metavar="N", help="only connection N (tcp.stream number)"
    )
    parser.set_defaults(handler=lambda args: run(options_from_args(args)))


def options_from_args(args: argparse.Namespace) -> AnalyzeOptions:
    if args.connection is not None and args.connection < 0:
        raise OptionError(f"--connection {args.connection}: numbers start at 0")
    return AnalyzeOptions(
        files=tuple(args.files),
        json=args.json,
        plot=args.plot,
        plot_dir=args.plot_dir,
        connection=args.connection,
    )


def _select(report: Report, path: Path, connection: int | None) -> Report:
    if connection is None:
        return report
    chosen = tuple(c for c in report.connections if c.index == connection)
    if not chosen:
        raise OptionError(f"{path}: no connection {connection} (it has {len(report.connections)})")
    return replace(report, connections=chosen)


def _plot_paths(options: AnalyzeOptions, file_index: int, path: Path, report: Report) -> list[Path]:
    indexes = [c.index for c in report.connections]
    if options.plot_dir is not None:
        options.plot_dir.mkdir(parents=True, exist_ok=True)
        return [options.plot_dir / f"{path.stem}-{n}.png" for n in indexes]
    assert options.plot is not None
    out = options.plot
    if len(options.files) == 1 and len(indexes) == 1:
        return [out]
    prefix = f"{out.stem}-{file_index}" if len(options.files) > 1 else out.stem
    return [out.with_name(f"{prefix}-{n}{out.suffix or '.png'}") for n in indexes]


def run(options: AnalyzeOptions) -> int:
    reports = []
    for index, path in enumerate(options.files):
        if not path.is_file():
            raise OptionError(f"{path}: no such file")
        report = _select(analyze_file(path), path, options.connection)
        reports.append(report)
        if options.plot is not None or options.plot_dir is not None:
            from wirecap.analysis.plot import plot_connection

            targets = _plot_paths(options, index, path, report)
            for connection, target in zip(report.connections, targets, strict=True):
                plot_connection(report, connection, target)
                print(f"wirecap: connection {connection.index}: plot {target}", file=sys.stderr)
        if not options.json:
            if len(options.files) > 1:
                print(f"== {path}")
            print(render_text(report))
    if options.json:
        documents = [to_json(r) for r in reports]
        json.dump(documents[0] if len(documents) == 1 else documents, sys.stdout, indent=1)
        print()
    return 0
