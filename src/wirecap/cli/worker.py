"""`wirecap worker` (compat `ddump-worker`): stream live captures over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from wirecap.cli._parsers import standalone, subcommand
from wirecap.errors import OptionError, WirecapError
from wirecap.remote.request import DEFAULT_PORT, MAX_FILTER_LEN, parse_listen
from wirecap.remote.worker import HEARTBEAT_S, UNIX_SOCKET_MODE, WorkerConfig, WorkerServer

__all__ = ["build_parser", "ddump_worker", "register", "run"]

log = logging.getLogger("wirecap.worker")

_HELP = "serve live captures over HTTP for `wirecap merge` (like ddump-worker)"
_DESCRIPTION = f"""\
Serve live packet captures over HTTP. Each GET /capture request opens its own
libpcap capture and streams it, packet batch by packet batch, as a pcap
(application/vnd.tcpdump.pcap) or pcapng (application/x-pcapng) file that never
ends until the client disconnects. `wirecap merge` (alias `ddump`) merges the
streams of many workers by timestamp; curl | tcpdump -r - works too.

endpoints:
  GET /capture   query parameters, all optional:
      filter=BPF        tcpdump filter language, at most {MAX_FILTER_LEN} characters
      interface=IFACE   default: any
      snaplen=N         1..262144 (default 262144)
      linktype=sll2|sll cooked header for interface=any (default sll2, which keeps
                        the interface index; sll for old readers). A named
                        interface streams its own link type.
      format=pcap|pcapng  pcapng adds an Interface Statistics Block every
                        {int(HEARTBEAT_S * 1000)} ms while idle, a heartbeat carrying the
                        worker's clock so a merger need not wait for --max-delay.
      exclude_self=1|0  default 1: the TCP connection carrying this stream is left
                        out of the capture, combined as (FILTER) and not (SELF).
                        Behind a reverse proxy the client-to-proxy leg is another
                        connection: exclude it in FILTER.
    A filter libpcap cannot compile is answered 400 with libpcap's message and
    no body; missing capture privileges 503 with the reason; --max-captures
    reached 503. A client reading slower than the capture loses whole batches,
    never torn records; they are counted in the metrics as they happen (and,
    with format=pcapng, in the dropped count of the next heartbeat).
  GET /healthz   "ok"
  GET /metrics   Prometheus: wirecap_worker_active_captures,
                 wirecap_worker_streamed_bytes_total,
                 wirecap_worker_dropped_records_total,
                 wirecap_worker_requests_total{{status}}

There is no authentication or TLS in the worker, as in ddump: put it behind a
reverse proxy that streams (no buffering, long read timeout), e.g. nginx:

  location /capture {{
      proxy_pass http://127.0.0.1:{DEFAULT_PORT};
      proxy_http_version 1.1;
      proxy_buffering off;        # pass every batch on at once
      proxy_read_timeout 1h;      # a quiet capture is not a dead one
      auth_basic "wirecap";
      auth_basic_user_file /etc/nginx/wirecap.htpasswd;
  }}

Capturing needs CAP_NET_RAW and CAP_NET_ADMIN (usually: run as root).
"""
_EPILOG = f"""\
exit status: 0 after SIGINT/SIGTERM, 2 usage error, 3 cannot listen or missing
privilege.

examples:
  wirecap worker                        # listen on every address, port {DEFAULT_PORT}
  wirecap worker --listen 127.0.0.1:9000 --max-captures 8
  wirecap worker --listen unix:/run/wirecap-worker.sock
  curl -sN 'http://host:{DEFAULT_PORT}/capture?filter=udp+port+53' | tcpdump -nr -
"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        "-listen",
        default=f":{DEFAULT_PORT}",
        metavar="ADDR:PORT|unix:PATH",
        help=f"where to listen: HOST:PORT, :PORT (every address), [V6]:PORT or "
        f"unix:PATH (default :{DEFAULT_PORT}; -listen is ddump-worker's spelling). "
        f"A Unix socket is created mode {UNIX_SOCKET_MODE:04o} whatever the umask (owner "
        "and group may connect) and removed at exit; a path another worker answers "
        "on is refused",
    )
    parser.add_argument(
        "--max-captures",
        type=int,
        default=None,
        metavar="N",
        help="concurrent captures allowed; past it /capture answers 503 (default: no limit)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each stream (client, interface, filter as captured, and its "
        "packet/drop counts when it ends) and each refused request to stderr",
    )


def register(commands: Any) -> None:
    parser = subcommand(commands, "worker", summary=_HELP, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    parser.set_defaults(handler=lambda args: run(options_from_args(args)))


def build_parser(prog: str = "ddump-worker") -> argparse.ArgumentParser:
    parser = standalone(prog, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> WorkerConfig:
    if args.max_captures is not None and args.max_captures < 1:
        raise OptionError(f"--max-captures {args.max_captures} must be at least 1")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    return WorkerConfig(listen=parse_listen(args.listen), max_captures=args.max_captures)


def run(config: WorkerConfig) -> int:
    return asyncio.run(_serve(config))


async def _serve(config: WorkerConfig) -> int:
    server = WorkerServer(config)
    try:
        bound = await server.start()
    except OSError as exc:
        print(f"Failed to open listener '{config.listen}': {exc}", file=sys.stderr)
        return 3
    try:
        print(f"Listening on {', '.join(bound)}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
    finally:
        await server.close()
    return 0


def ddump_worker(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ddump-worker` command (accepts `-listen ADDR`)."""
    try:
        return run(options_from_args(build_parser().parse_args(argv)))
    except WirecapError as exc:
        print(f"ddump-worker: {exc}", file=sys.stderr)
        return exc.exit_code
