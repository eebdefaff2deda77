"""`wirecap flows [run|check|dump]` (compat `conntracct run`): conntrack flow accounting."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wirecap.cli._parsers import standalone, subcommand
from wirecap.errors import OptionError, WirecapError
from wirecap.flows.config import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_DUMP_INTERVAL_NS,
    FlowsOptions,
    SinkSpec,
    parse_conntracct_yaml,
    parse_ports_flag,
    parse_rate_curve_flag,
    parse_sink_flag,
    parse_toml,
)
from wirecap.flows.curve import parse_duration
from wirecap.flows.selfcheck import Level, judge

__all__ = ["build_parser", "conntracct", "load_options", "register", "run"]

log = logging.getLogger("wirecap.flows")

_HELP = "per-flow byte/packet accounting from conntrack (like conntracct)"
_DESCRIPTION = """\
Account every conntrack flow: packets and bytes per direction, start and stop
times, both tuples (so NAT is visible), TCP state, zone and mark. Records go to
InfluxDB, Elasticsearch/OpenSearch, stdout or a file; pipeline metrics to
Prometheus.

actions:
  run     (default) follow conntrack until SIGINT/SIGTERM
  check   self-test: privileges, conntrack present, acct/timestamp sysctls,
          events on, hooks active in this namespace; says what is wrong and
          how to fix it. Exit 0 when nothing is an error.
  dump    print one snapshot of the conntrack table as JSON lines and exit

how it works:
  A netlink socket subscribed to conntrack NEW/UPDATE/DESTROY events, plus a
  dump of the table every --dump-interval: the kernel sends counters only in
  DESTROY events and dumps. Each flow gets a `new` record, `update` records
  spaced by an age-based rate curve (default: age 0 every 20s, from 1m every
  1m, from 5m every 5m; an idle flow sends nothing), and a `destroy` record
  with the final counters and start/stop times. Flows alive at start-up are
  taken to be older by the second point's age, so a restart is no storm.
  Lost events (ENOBUFS) are counted, logged, exported and followed by an
  immediate dump; a flow found gone then gets a destroy record with
  "complete": false.

sinks (--sink TYPE[:ADDRESS][,key=value...], repeatable; default stdout):
  stdout                                  JSON lines, one per record
  file:PATH                               JSON lines appended, created 0600
  influxdb:URL,database=DB                InfluxDB 1.x POST /write
  influxdb:URL,org=O,bucket=B,token=T     InfluxDB 2.x POST /api/v2/write
  elasticsearch:URL[,database=PREFIX]     _bulk upserts into PREFIX-HOST-YYYY.MM.DD
  keys: batch_size, flush_interval, queue_size, timeout, source_ports
  (InfluxDB src_port tag), username, password, hostname, name.
  Each sink has its own bounded queue: a slow or dead sink drops (and counts)
  its own records and never delays the others.

metrics (--metrics ADDR:PORT, GET /metrics):
  wirecap_flows_events_total{type}            new/update/destroy events, dump entries
  wirecap_flows_records_total{event}          records emitted
  wirecap_flows_dumps_total, wirecap_flows_dump_duration_seconds
  wirecap_flows_lost_events_total             ENOBUFS overruns (raise --buffer-size)
  wirecap_flows_undecoded_messages_total      netlink messages skipped
  wirecap_flows_tracked, wirecap_flows_vanished_total
  wirecap_flows_sink_queue_depth{sink}, wirecap_flows_sink_sent_records_total{sink},
  wirecap_flows_sink_dropped_records_total{sink,reason},
  wirecap_flows_sink_write_duration_seconds{sink}
  with --flow-metrics: wirecap_flows_bytes_total and wirecap_flows_packets_total
  {proto,dst_port,direction}. A Grafana dashboard for these and for InfluxDB
  is in contrib/grafana/wirecap-flows.json.

configuration:
  --config FILE, else $HOME/.config/wirecap/flows.toml, else
  /etc/wirecap/flows.toml. TOML keys: netns, sysctl_manage, dump_interval,
  buffer_size, metrics, flow_metrics, flow_metrics_ports, update_events,
  max_flows, rate_curve = [{age, rate}, ...], and [sinks.NAME] tables with
  type, address and the sink keys above. A conntracct YAML file (.yml/.yaml:
  sinks, probe.rate_curve, sysctl_manage) is read too. Flags override the file.

Needs CAP_NET_ADMIN (and CAP_SYS_ADMIN for --netns): usually run as root.
"""
_EPILOG = """\
exit status: 0 done, 2 usage or configuration error, 3 missing privilege or
conntrack; check: 1 when a check failed.

examples:
  wirecap flows check
  wirecap flows dump --netns blue
  wirecap flows --sink influxdb:http://127.0.0.1:8086,database=flows --metrics :9469
  wirecap flows --rate-curve 0:5s,1m:30s --sink file:/var/log/flows.jsonl
  conntracct run -c /etc/conntracct/conntracct.yml
"""

SEARCH_PATH = ("~/.config/wirecap/flows.toml", "/etc/wirecap/flows.toml")
CONNTRACCT_SEARCH_PATH = ("~/.config/conntracct.yml", "/etc/conntracct/conntracct.yml")


def _add_arguments(parser: argparse.ArgumentParser, *, actions: bool = True) -> None:
    if actions:
        parser.add_argument(
            "action",
            nargs="?",
            choices=("run", "check", "dump"),
            default="run",
            help="what to do (default run)",
        )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="TOML file (or conntracct YAML); default: the search path above",
    )
    parser.add_argument(
        "--netns",
        metavar="NAME",
        help="account flows of this network namespace (ip netns name or path)",
    )
    parser.add_argument(
        "--sysctl-manage",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set nf_conntrack_acct and nf_conntrack_timestamp to 1 at start (default on)",
    )
    parser.add_argument(
        "--dump-interval",
        metavar="DURATION",
        help=f"read counters this often (default "
        f"{DEFAULT_DUMP_INTERVAL_NS // 10**9}s, never above the curve's "
        "shortest rate)",
    )
    parser.add_argument(
        "--rate-curve",
        metavar="AGE:RATE,...",
        help="update spacing by flow age (default 0:20s,1m:1m,5m:5m)",
    )
    parser.add_argument(
        "--buffer-size",
        metavar="BYTES",
        type=int,
        help=f"netlink receive buffer (default {DEFAULT_BUFFER_SIZE})",
    )
    parser.add_argument(
        "--sink",
        action="append",
        metavar="SPEC",
        default=[],
        help="add a sink (see above); repeatable",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics on http://ADDR:PORT/metrics",
    )
    parser.add_argument(
        "--flow-metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also export bytes/packets by (proto, dst port) on --metrics",
    )
    parser.add_argument(
        "--flow-metrics-ports",
        metavar="PORT,...",
        help="ports above 1023 that keep their own dst_port label in "
        '--flow-metrics (others are folded into "other"; at most 256 '
        "(proto, port) pairs in all)",
    )
    parser.add_argument(
        "--update-events",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="subscribe to UPDATE events (TCP state, mark changes; default on). "
        "They carry no counters and are most of a busy host's events: "
        "--no-update-events has the kernel not send them",
    )
    parser.add_argument(
        "--max-flows", type=int, metavar="N", help="flows tracked at most (default 262144)"
    )
    parser.add_argument(
        "-d",
        "--debug",
        "-v",
        "--verbose",
        dest="debug",
        action="store_true",
        help="log more to stderr",
    )


def register(commands: Any) -> None:
    parser = subcommand(commands, "flows", summary=_HELP, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    parser.set_defaults(handler=lambda args: run(args.action, load_options(args)))


def build_parser(prog: str = "conntracct") -> argparse.ArgumentParser:
    parser = standalone(prog, description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument(
        "action", nargs="?", choices=("run", "check", "dump", "version"), default="run"
    )
    _add_arguments(parser, actions=False)
    return parser


def _parse_file(path: Path) -> FlowsOptions:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"cannot read configuration {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise OptionError(f"configuration {path} is not UTF-8") from None
    if path.suffix.lower() in (".yml", ".yaml"):
        return parse_conntracct_yaml(text)
    return parse_toml(text)


def load_options(args: argparse.Namespace, *, search: Sequence[str] = SEARCH_PATH) -> FlowsOptions:
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = FlowsOptions()
    if args.config:
        options = _parse_file(Path(args.config))
    else:
        for candidate in search:
            path = Path(os.path.expanduser(candidate))
            if path.is_file():
                options = _parse_file(path)
                break
    changes: dict[str, Any] = {}
    if args.netns:
        changes["netns"] = args.netns
    if args.sysctl_manage is not None:
        changes["sysctl_manage"] = args.sysctl_manage
    if args.dump_interval:
        changes["dump_interval_ns"] = parse_duration(args.dump_interval, what="--dump-interval")
        if changes["dump_interval_ns"] <= 0:
            raise OptionError("--dump-interval must be above zero")
    if args.rate_curve:
        changes["curve"] = parse_rate_curve_flag(args.rate_curve)
    if args.buffer_size is not None:
        if not 65536 <= args.buffer_size <= 1 << 30:
            raise OptionError("--buffer-size must be within 65536..1073741824")
        changes["buffer_size"] = args.buffer_size
    if args.metrics:
        changes["metrics"] = args.metrics
    if args.flow_metrics is not None:
        changes["flow_metrics"] = args.flow_metrics
    if args.flow_metrics_ports:
        changes["flow_metrics_ports"] = parse_ports_flag(args.flow_metrics_ports)
    if args.update_events is not None:
        changes["update_events"] = args.update_events
    if args.max_flows is not None:
        if args.max_flows < 1:
            raise OptionError("--max-flows must be at least 1")
        changes["max_flows"] = args.max_flows
    if args.sink:
        changes["sinks"] = tuple(parse_sink_flag(spec, i) for i, spec in enumerate(args.sink))
    options = options.merged(**changes)
    if not options.sinks:
        options = options.merged(
            sinks=(SinkSpec(name="stdout", type="stdout", batch_size=1, flush_interval_ns=0),)
        )
    names = [sink.name for sink in options.sinks]
    if len(set(names)) != len(names):
        raise OptionError(f"sink names must differ: {', '.join(names)}")
    return options


def run(action: str, options: FlowsOptions) -> int:
    if action == "check":
        return _check(options)
    if action == "dump":
        return _dump(options)
    for key in options.ignored:
        log.info("configuration key %s is not used by wirecap flows", key)
    return asyncio.run(_serve(options))


def _check(options: FlowsOptions) -> int:
    from wirecap.flows.service import gather_facts

    findings = judge(gather_facts(options.netns, options.sysctl_manage))
    for finding in findings:
        print(f"{finding.level.value:7} {finding.message}")
        if finding.fix and finding.level is not Level.OK:
            print(f"        fix: {finding.fix}")
    return 1 if any(f.level is Level.FAIL for f in findings) else 0


def _dump(options: FlowsOptions) -> int:
    from wirecap.flows.service import dump_table, netns_inode, snapshot_records

    entries = dump_table(options.netns, options.buffer_size)
    records = snapshot_records(
        entries, netns_inode(options.netns), options.netns or "", time.time_ns()
    )
    out = sys.stdout
    for record in records:
        payload = record.as_json()
        payload["event"] = "snapshot"
        out.write(json.dumps(payload, separators=(",", ":")) + "\n")
    out.flush()
    bare = sum(1 for entry in entries if entry.counters_orig is None)
    if bare:
        print(
            f"note: {bare} of {len(entries)} flows carry no counters: nf_conntrack_acct was "
            "off when they began",
            file=sys.stderr,
        )
    return 0


async def _serve(options: FlowsOptions) -> int:
    from wirecap.flows.service import FlowService

    service = FlowService(options)
    await service.start()
    try:
        where = f"network namespace {options.netns}" if options.netns else "this namespace"
        sinks = ", ".join(f"{s.name} ({s.type})" for s in options.sinks)
        metrics = (
            f"; metrics on http://{service.metrics_address[0]}:{service.metrics_address[1]}/metrics"
            if service.metrics_address
            else ""
        )
        print(
            f"following conntrack in {where}; sinks: {sinks}{metrics}", file=sys.stderr, flush=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await service.close()
        print(f"stopped: {json.dumps(service.stats())}", file=sys.stderr, flush=True)
    return 0


def conntracct(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `conntracct` command (conntracct's `run`, `-c FILE`, `-d`)."""
    args = build_parser().parse_args(argv)
    if args.action == "version":
        from wirecap._version import __version__

        print(f"conntracct (wirecap flows) version {__version__}")
        return 0
    try:
        return run(args.action, load_options(args, search=CONNTRACCT_SEARCH_PATH))
    except WirecapError as exc:
        print(f"conntracct: {exc}", file=sys.stderr)
        return exc.exit_code
