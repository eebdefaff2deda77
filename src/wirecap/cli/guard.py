"""`wirecap guard [run|list|unblock|check]` (compat `tcpcap`): SYN watch and nftables blocks."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import math
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from wirecap.cli._parsers import standalone, subcommand
from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.errors import EnforcementError, OptionError, WirecapError
from wirecap.guard import nft
from wirecap.guard._nftables import open_enforcer
from wirecap.guard.addresses import read_host_addresses
from wirecap.guard.detectors import HalfOpenSpec, PortScanSpec, SynRateSpec
from wirecap.guard.enforcer import Enforcer
from wirecap.guard.firewall import Firewall
from wirecap.guard.nft import KernelLimitSpec
from wirecap.guard.options import (
    DEFAULT_STATE_FILE,
    MAX_CONFIG_BYTES,
    GuardOptions,
    apply_config,
    parse_listen,
)
from wirecap.guard.policy import BlockSpec
from wirecap.guard.service import GuardService, load_state, lock_state, save_state
from wirecap.guard.statefile import encode_state
from wirecap.guard.syn import CAPTURE_FILTER, format_address

__all__ = ["build_parser", "load_options", "register", "run", "tcpcap", "tcpcap_defaults"]

#: tcpcap's rule: 3 distinct ports within 60 s, kept as the `tcpcap` alias's default.
TCPCAP_PORT_SCAN = PortScanSpec(ports=3, window_s=60.0)
TCPCAP_METRICS = ":2112"
TCPCAP_INTERFACE = "eth0"

_HELP = "watch inbound SYNs, export metrics, block scanners and floods with nftables"
_DESCRIPTION = f"""\
Watch inbound TCP connection attempts (SYN set, ACK clear; IPv4 and IPv6; any
other flag bits) on an interface, log them, export Prometheus metrics, and block
port scanners and SYN flooders for a while with an nftables set.

actions:
  run      (default) watch and block until SIGINT/SIGTERM
  list     print the blocked addresses with the time they have left
  unblock  ADDR... | --all: lift blocks now
  check    validate the options and config, test nftables and the capture
           filter, print the host's own addresses; exit 0 when all is well

A SYN is inbound when it goes to one of the host's own addresses and does not
come from one; the addresses are read from the kernel and re-read when they
change. Detection policies (several at once):
  --port-scan N/SECONDS  distinct destination ports one source tries within the
                         window (default 15/60, CrowdSec-like; tcpcap: 3/60)
  --syn-rate R[/BURST]   SYNs per second per source beyond a burst (default 50/100)
  --half-open N          unfinished handshakes per source, from conntrack's
                         SYN_RECV entries (off by default)
Blocks are elements of the sets blocked_v4/blocked_v6 in table inet
wirecap_guard, each with its own timeout; a drop rule at the prerouting hook,
priority -300 (before conntrack and every filter chain), drops all traffic from
them. A repeat offender's timeout grows: TIMEOUT x FACTOR^(n-1), capped. Never
blocked: loopback, the host's own addresses, its default gateways and --allow.
nftables is driven through libnftables' JSON API (falling back to `nft -j`);
when nft fails the error is printed, blocks are queued and retried, and the
guard keeps observing. Blocks survive a restart: the sets are re-read, and the
state file ({DEFAULT_STATE_FILE}) puts them back if the table was lost. A
running guard locks its state file: a second guard with the same file is refused.

The capture filter (IPv4 flags via tcp[tcpflags]; IPv6 flags at a fixed offset
when no extension header is present, and every packet with one goes to the
decoder, which walks the chain) misses VLAN-tagged frames on a trunk interface:
capture on the VLAN interface or on `any`.

metrics (--metrics ADDR:PORT, path /metrics):
  wirecap_guard_syn_total{{family}}   inbound SYNs, retransmissions included
  wirecap_guard_connections_total    distinct attempts (retransmissions excluded)
  wirecap_guard_blocks_total{{reason}} blocks (reason port-scan, syn-rate, half-open)
  wirecap_guard_blocked_addresses    addresses blocked now
  wirecap_guard_unblocks_total       blocks ended (timeout, unblock, removed)
  wirecap_guard_capture_drops_total{{where}}  packets the capture lost
  wirecap_guard_kernel_drops_total{{rule}}    packets nft dropped (blocked, syn-limit)
  wirecap_guard_spared_total{{reason}}, wirecap_guard_enforcement_errors_total,
  wirecap_guard_evicted_sources_total
  With --tcpcap-metrics (always for `tcpcap`): tcpcap_processed_conns_total and
  tcpcap_processed_blocks_total.

Log lines go to standard output, in tcpcap's text format or as JSON lines
(--log-format json): "New Connection: A:P -> B:P" (rate-limited, the rest
summarised), "Port scan detected: ...", "BLOCK IP: ADDR for N s (...)",
"UNBLOCK IP: ...". Errors go to standard error.

compat: `tcpcap` runs `wirecap guard run` with tcpcap's defaults: the interface
from $INTERFACE_NAME (default {TCPCAP_INTERFACE}), $PUBLIC_IP added to the
allow-list, metrics on {TCPCAP_METRICS}, port scan 3/60 and tcpcap's counters.

Needs CAP_NET_RAW and CAP_NET_ADMIN (usually: run as root).
"""
_EPILOG = """\
config file (--config FILE, YAML; flags override it):
  interface: eth0
  metrics: "127.0.0.1:9112"
  allow: [192.0.2.0/24, "2001:db8::/32"]
  port_scan: {ports: 15, window: 60}      # or false
  syn_rate: {rate: 50, burst: 100}        # or false
  half_open: {max: 64, interval: 2}       # off unless set
  block: {timeout: 600, factor: 2, max_timeout: 604800, forget_after: 86400}
  kernel_limit: {rate: 200, burst: 400}   # per-source SYN limit in nft; off unless set
  table: wirecap_guard
  state_file: /var/lib/wirecap/guard.json
  log: {format: text, connections: true, rate: 10, burst: 20}
  nft: {backend: auto, command: nft}

exit status: 0 after SIGINT/SIGTERM (or success), 1 an address given to unblock
was not blocked, 2 usage error, 3 missing privilege or nftables unusable, 4 the
capture failed.

examples:
  wirecap guard -i eth0 --metrics :9112
  wirecap guard -i eth0 --dry-run --log-format json
  wirecap guard -i eth0 --port-scan 15/60 --syn-rate 100/200 --allow 10.0.0.0/8
  wirecap guard list
  wirecap guard unblock 192.0.2.7
  INTERFACE_NAME=eth0 PUBLIC_IP=203.0.113.5 tcpcap
"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "list", "unblock", "check"),
        default="run",
        help="what to do (default run)",
    )
    parser.add_argument("addresses", nargs="*", metavar="ADDR", help="for unblock: addresses")
    parser.add_argument("--all", action="store_true", help="for unblock: lift every block")
    parser.add_argument("--json", action="store_true", help="for list: print JSON")
    parser.add_argument(
        "-i", "--interface", metavar="IFACE", help="interface to watch (default any: all of them)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="YAML config file (see below); flags override it",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics; "
        ":PORT listens on every address (default: off)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="detect and log, but never touch nftables",
    )
    parser.add_argument(
        "--allow",
        action="append",
        metavar="CIDR",
        help="never block this address or network (repeatable)",
    )
    parser.add_argument(
        "--port-scan",
        metavar="N/SECONDS|off",
        help="block a source trying N distinct ports within SECONDS (default 15/60)",
    )
    parser.add_argument(
        "--syn-rate",
        metavar="RATE[/BURST]|off",
        help="block a source sending more than RATE SYNs/s after BURST (default 50/100)",
    )
    parser.add_argument(
        "--half-open",
        metavar="N|off",
        help="block a source with N unfinished handshakes in conntrack (default off)",
    )
    parser.add_argument(
        "--block-time", type=int, metavar="SECONDS", help="timeout of a first block (default 600)"
    )
    parser.add_argument(
        "--escalate",
        type=float,
        metavar="FACTOR",
        help="multiply the timeout by FACTOR for each repeat offence (default 2; 1 turns it off)",
    )
    parser.add_argument(
        "--max-block-time",
        type=int,
        metavar="SECONDS",
        help="cap of an escalated timeout (default 604800, 7 days)",
    )
    parser.add_argument(
        "--kernel-limit",
        metavar="RATE[/BURST]",
        help="also drop each source's SYNs beyond RATE/s in the kernel "
        "(an nft meter), before user space reacts (default off)",
    )
    parser.add_argument(
        "--table",
        metavar="NAME",
        help=f"nft table (family inet) to own (default {nft.DEFAULT_TABLE})",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        type=Path,
        help=f"where blocks are kept across restarts (default {DEFAULT_STATE_FILE})",
    )
    parser.add_argument(
        "--no-state-file",
        action="store_true",
        help="keep no state file (the kernel sets still survive restarts)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (tcpcap's lines, default) or json (JSON lines)",
    )
    parser.add_argument(
        "--no-connection-log", action="store_true", help="do not log each new connection attempt"
    )
    parser.add_argument(
        "--nft-backend",
        choices=("auto", "library", "command"),
        help="libnftables in process, the nft command, or auto (library, else command; default)",
    )
    parser.add_argument("--nft-command", metavar="PATH", help="the nft command (default nft)")
    parser.add_argument(
        "--reconcile",
        type=float,
        metavar="SECONDS",
        help="how often the nft sets are re-read and failed commands retried (default 5)",
    )
    parser.add_argument(
        "--tcpcap-metrics",
        action="store_true",
        default=None,
        help="also export tcpcap_processed_conns_total and tcpcap_processed_blocks_total",
    )


def register(commands: Any) -> None:
    parser = subcommand(commands, "guard", summary=_HELP, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    parser.set_defaults(handler=lambda args: run(args, load_options(args)))


def build_parser(prog: str = "tcpcap") -> argparse.ArgumentParser:
    parser = standalone(prog, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    return parser


# -- options ---------------------------------------------------------------------------


def _off(text: str) -> bool:
    return text.strip().lower() in ("off", "no", "none", "0")


def _pair(text: str, flag: str) -> tuple[float, float | None]:
    first, sep, second = text.partition("/")
    try:
        numbers = float(first), (float(second) if sep else None)
    except ValueError:
        numbers = (math.nan, None)
    if not all(math.isfinite(n) and n >= 0 for n in numbers if n is not None):
        raise OptionError(f"{flag} {text!r}: expected NUMBER or NUMBER/NUMBER")
    return numbers


def load_options(args: argparse.Namespace, *, base: GuardOptions | None = None) -> GuardOptions:
    """Defaults (or ``base``), then the config file, then the flags given."""
    options = base if base is not None else GuardOptions()
    if args.config is not None:
        options = apply_config(options, _read_config(args.config))
    changes: dict[str, Any] = {}
    if args.interface is not None:
        changes["interface"] = args.interface
    if args.metrics is not None:
        changes["metrics"] = None if _off(args.metrics) else parse_listen(args.metrics)
    if args.dry_run:
        changes["dry_run"] = True
    if args.allow:
        for entry in args.allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise OptionError(f"--allow {entry!r}: {exc}") from None
        changes["allow"] = (*options.allow, *args.allow)
    if args.port_scan is not None:
        if _off(args.port_scan):
            changes["port_scan"] = None
        else:
            ports, window = _pair(args.port_scan, "--port-scan")
            changes["port_scan"] = PortScanSpec(int(ports), window if window else 60.0)
    if args.syn_rate is not None:
        if _off(args.syn_rate):
            changes["syn_rate"] = None
        else:
            rate, burst = _pair(args.syn_rate, "--syn-rate")
            changes["syn_rate"] = SynRateSpec(rate, int(burst) if burst else int(2 * rate) or 1)
    if args.half_open is not None:
        if _off(args.half_open):
            changes["half_open"] = None
        else:
            count, _ = _pair(args.half_open, "--half-open")
            current = options.half_open or HalfOpenSpec()
            changes["half_open"] = dataclasses.replace(current, max_half_open=int(count))
    block: dict[str, Any] = {}
    if args.block_time is not None:
        block["timeout_s"] = args.block_time
        block["forget_after_s"] = max(options.block.forget_after_s, args.block_time)
    if args.escalate is not None:
        block["factor"] = args.escalate
    if args.max_block_time is not None:
        block["max_timeout_s"] = args.max_block_time
    if block:
        changes["block"] = BlockSpec(**{**_fields(options.block), **block})
    layout = options.layout
    if args.kernel_limit is not None:
        if _off(args.kernel_limit):
            layout = dataclasses.replace(layout, kernel_limit=None)
        else:
            rate, burst = _pair(args.kernel_limit, "--kernel-limit")
            limit = KernelLimitSpec(int(rate), int(burst) if burst else int(2 * rate))
            layout = dataclasses.replace(layout, kernel_limit=limit)
    if args.table is not None:
        layout = dataclasses.replace(layout, table=args.table)
    changes["layout"] = layout
    if args.no_state_file:
        changes["state_file"] = None
    elif args.state_file is not None:
        changes["state_file"] = args.state_file
    log: dict[str, Any] = {}
    if args.log_format is not None:
        log["format"] = args.log_format
    if args.no_connection_log:
        log["connections"] = False
    if log:
        changes["log"] = dataclasses.replace(options.log, **log)
    if args.nft_backend is not None:
        changes["backend"] = args.nft_backend
    if args.nft_command is not None:
        changes["nft_command"] = args.nft_command
    if args.reconcile is not None:
        changes["reconcile_s"] = args.reconcile
    if args.tcpcap_metrics:
        changes["tcpcap_metrics"] = True
    return dataclasses.replace(options, **changes)


def _fields(spec: BlockSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _read_config(path: Path) -> Any:
    import yaml

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise OptionError(f"--config {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise OptionError(f"--config {path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise OptionError(f"--config {path}: not YAML: {exc}") from None


# -- actions ---------------------------------------------------------------------------


def run(args: argparse.Namespace, options: GuardOptions) -> int:
    action = args.action
    if action != "unblock" and (args.addresses or args.all):
        raise OptionError("addresses and --all go with the unblock action only")
    if action == "run":
        return asyncio.run(_serve(options))
    if action == "check":
        return _check(options)
    firewall = Firewall(_enforcer(options), options.layout)
    if action == "list":
        return _list(firewall, options, as_json=args.json)
    return _unblock(firewall, options, args.addresses, every=args.all)


def _enforcer(options: GuardOptions) -> Enforcer:
    return open_enforcer(options.backend, options.nft_command)


async def _serve(options: GuardOptions) -> int:
    registry = CollectorRegistry()
    service = GuardService(options, enforcer_factory=lambda: _enforcer(options), registry=registry)
    server = None
    if options.metrics is not None:
        host = options.metrics.host or "::"
        try:
            server, _ = start_http_server(options.metrics.port, host, registry)
        except OSError as exc:
            if options.metrics.host:
                print(
                    f"wirecap guard: cannot listen on {options.metrics}: {exc.strerror}",
                    file=sys.stderr,
                )
                return 3
            server, _ = start_http_server(options.metrics.port, "0.0.0.0", registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def ready(text: str) -> None:
        where = f"; metrics on {options.metrics}" if options.metrics else ""
        dry = " (dry run: nothing is blocked)" if options.dry_run else ""
        print(f"wirecap guard: {text}{where}{dry}", file=sys.stderr, flush=True)

    try:
        await service.run(stop, ready=ready)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0


def _check(options: GuardOptions) -> int:
    problems = 0
    print(f"interface: {options.interface}")
    for linktype in (LinkType.ETHERNET, LinkType.LINUX_SLL2, LinkType.RAW):
        check_filter(CAPTURE_FILTER, linktype)
    print(f"capture filter: ok ({CAPTURE_FILTER})")
    host = read_host_addresses()
    print("own addresses: " + ", ".join(sorted(format_address(a) for a in host.local)))
    print("gateways: " + (", ".join(sorted(format_address(a) for a in host.gateways)) or "none"))
    allow = ", ".join(str(n) for n in options.allow_list().networks)
    print(f"allow-list: {allow} (plus own addresses and gateways)")
    scan = options.port_scan
    print(f"port scan: {f'{scan.ports} ports in {scan.window_s:g} s' if scan else 'off'}")
    rate = options.syn_rate
    print(f"syn rate: {f'{rate.rate:g}/s, burst {rate.burst}' if rate else 'off'}")
    half = options.half_open
    print(f"half-open: {half.max_half_open if half else 'off'}")
    b = options.block
    print(f"blocks: {b.timeout_s} s, x{b.factor:g} per repeat, at most {b.max_timeout_s} s")
    if options.dry_run:
        print("nftables: not used (dry run)")
        return 0
    try:
        firewall = Firewall(_enforcer(options), options.layout)
        kernel = firewall.elements_or_none()
        table = options.layout.table
        state = "absent (created by run)" if kernel is None else f"{len(kernel)} blocked"
        print(f"nftables: ok ({type(firewall.enforcer).__name__}); table inet {table}: {state}")
    except EnforcementError as exc:
        print(f"nftables: FAILED: {exc}")
        problems += 1
    return 3 if problems else 0


def _list(firewall: Firewall, options: GuardOptions, *, as_json: bool) -> int:
    kernel = firewall.elements_or_none()
    elements = kernel or []
    rows = []
    for element in sorted(elements, key=lambda e: (len(e.address), e.address)):
        known = nft.parse_comment(element.comment)
        rows.append(
            {
                "address": format_address(element.address),
                "expires": element.expires_s,
                "timeout": element.timeout_s,
                "reason": known[0].value if known else None,
                "offence": known[1] if known else None,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    if kernel is None:
        print(f"table inet {options.layout.table} does not exist: nothing is blocked")
        return 0
    print(f"{'ADDRESS':<40} {'LEFT':>8} {'TIMEOUT':>8}  REASON")
    for row in rows:
        left = "-" if row["expires"] is None else f"{row['expires']}s"
        timeout = "never" if row["timeout"] is None else f"{row['timeout']}s"
        reason = f"{row['reason']} #{row['offence']}" if row["reason"] else "-"
        print(f"{row['address']:<40} {left:>8} {timeout:>8}  {reason}")
    return 0


def _unblock(
    firewall: Firewall, options: GuardOptions, addresses: Sequence[str], *, every: bool
) -> int:
    if every == bool(addresses):
        raise OptionError("unblock takes addresses or --all, not both or neither")
    packed = []
    for text in addresses:
        try:
            packed.append(ipaddress.ip_address(text).packed)
        except ValueError:
            raise OptionError(f"unblock: {text!r} is not an IPv4 or IPv6 address") from None
    if firewall.elements_or_none() is None:
        print(f"table inet {options.layout.table} does not exist: nothing is blocked")
        removed: list[bytes] = []
    else:
        removed = firewall.flush() if every else firewall.remove(packed)
    for address in removed:
        print(f"unblocked {format_address(address)}")
    _forget_in_state(options, set(removed) if not every else None)
    missing = [a for a in packed if a not in removed]
    for address in missing:
        print(f"not blocked: {format_address(address)}", file=sys.stderr)
    return 1 if missing else 0


def _forget_in_state(options: GuardOptions, addresses: set[bytes] | None) -> None:
    """Drop lifted blocks from the state file, so a restart does not put them back.

    A running guard holds the file's lock and notices the missing elements at its
    next reconciliation; it writes the file itself. This covers a guard that is
    not running.
    """
    path = options.state_file
    if path is None or not path.exists():
        return
    lock = lock_state(path)
    if lock is None:
        print(f"a running guard keeps {path} itself; it notices within {options.reconcile_s:g} s")
        return
    try:
        state = load_state(path)
        kept = [b for b in state.blocks if addresses is not None and b.address not in addresses]
        save_state(path, encode_state(kept, state.offenders))
    finally:
        os.close(lock)


def tcpcap_defaults(environ: Mapping[str, str]) -> GuardOptions:
    """tcpcap's defaults: $INTERFACE_NAME, $PUBLIC_IP allow-listed, :2112, 3 ports in 60 s."""
    base = GuardOptions(
        interface=environ.get("INTERFACE_NAME") or TCPCAP_INTERFACE,
        metrics=parse_listen(TCPCAP_METRICS),
        port_scan=TCPCAP_PORT_SCAN,
        tcpcap_metrics=True,
    )
    public_ip = environ.get("PUBLIC_IP")
    if public_ip:
        try:
            ipaddress.ip_address(public_ip)
        except ValueError:
            raise OptionError(f"PUBLIC_IP {public_ip!r} is not an IP address") from None
        base = dataclasses.replace(base, extra_allowed=(public_ip,))
    return base


def tcpcap(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tcpcap` command: tcpcap's environment and defaults."""
    args = build_parser().parse_args(argv)
    try:
        return run(args, load_options(args, base=tcpcap_defaults(os.environ)))
    except WirecapError as exc:
        print(f"tcpcap: {exc}", file=sys.stderr)
        return exc.exit_code
