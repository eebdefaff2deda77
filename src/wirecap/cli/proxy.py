"""`wirecap proxy` (aliases `connectcap`, `connectdump`): the recording CONNECT proxy."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from wirecap._version import __version__
from wirecap.cli._parsers import standalone, subcommand
from wirecap.core.capture.handle import PcapHandle
from wirecap.core.capture.spec import CaptureSpec
from wirecap.errors import OptionError, WirecapError
from wirecap.proxy.credentials import CcpasswdFile
from wirecap.proxy.digest import DigestVerifier
from wirecap.proxy.handoff import SpoolSink
from wirecap.proxy.mailer import Mailer, SendmailTransport, SmtpTransport, Transport
from wirecap.proxy.metrics import ProxyMetrics
from wirecap.proxy.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_USER,
    DEFAULT_SIZE_CAP,
    ProxyOptions,
    parse_listen,
)
from wirecap.proxy.ratelimit import FailureLimiter
from wirecap.proxy.resolve import DnsResolver, Resolver, SystemResolver
from wirecap.proxy.server import ProxyServer
from wirecap.proxy.spool import Spool

__all__ = ["build_parser", "connectcap", "connectdump", "options_from_args", "register", "run"]

#: At SIGTERM, in-flight captures are finished and mailed for at most this long.
SHUTDOWN_GRACE_S = 30.0

_DESCRIPTION = """\
An HTTPS CONNECT proxy with RFC 7616 digest authentication that records every
proxied connection into its own pcap file, with the ICMP errors that concern it,
and mails it to the user.

Each CONNECT host:port is resolved to exactly one address (the preferred family
first), the source port is bound, the capture is armed, and the connection is
made once: no retries and no fallback, so the capture shows the path that
failed. The client gets 200 only after the TCP handshake; otherwise 502 or 504
with the reason. Captures land in SPOOL/<user>/ (0600, directories 0700) with a
JSON summary; with a mail command or --smtp they are mailed and removed from the
spool only after the mail was accepted.
"""

_EPILOG = """\
ccpasswd: one 'username:password:email' per line ('#' comments); passwords
shorter than 16 characters are ignored; the file must not be group or world
accessible. It is re-read when it changes and on SIGHUP.

examples:
  wirecap proxy -l 3128 -d /var/spool/wirecap -p /etc/wirecap/ccpasswd /usr/sbin/sendmail -t -i
  curl -p -x http://proxy:3128 --proxy-digest --proxy-user alice:PASSWORD https://example.org/
"""


def _source(family: int) -> Any:
    class Source(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            try:
                address = ipaddress.ip_address(values)
            except ValueError:
                parser.error(f"{option} {values}: not an IP address")
            if (address.version == 4) != (family == socket.AF_INET):
                parser.error(f"{option} {values}: wrong address family")
            sources = list(getattr(namespace, "sources", None) or [])
            sources.append(address)
            namespace.sources = sources

    return Source


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def build_parser(prog: str = "wirecap proxy") -> argparse.ArgumentParser:
    parser = standalone(prog, description=_DESCRIPTION, epilog=_EPILOG)
    _add_arguments(parser)
    return parser


def register(commands: Any) -> None:
    parser = subcommand(
        commands,
        "proxy",
        summary="CONNECT proxy recording each proxied connection (alias: connectcap)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    _add_arguments(parser)
    parser.set_defaults(handler=lambda args: run(options_from_args(args)))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-v", "--version", action="version", version=f"wirecap {__version__}")
    add(
        "-l",
        "--listen",
        action="append",
        required=True,
        metavar="[ADDR:]PORT",
        help="listen address; repeatable (a bare port listens on all addresses)",
    )
    add(
        "-4",
        "--source-ipv4",
        dest="sources",
        action=_source(socket.AF_INET),
        metavar="ADDR",
        help="source address for IPv4 connections (the first of -4/-6 is preferred)",
    )
    add(
        "-6",
        "--source-ipv6",
        dest="sources",
        action=_source(socket.AF_INET6),
        metavar="ADDR",
        help="source address for IPv6 connections; without -4 and -6 the routing table "
        "picks the source per connection and IPv4 is preferred",
    )
    add(
        "-i",
        "--interface",
        metavar="IFACE",
        help="capture interface (default: the one holding the source address)",
    )
    add("-d", "--directory", default=".", metavar="SPOOL", help="spool directory (default: .)")
    add(
        "-p",
        "--passwd",
        default="ccpasswd",
        metavar="CCPASSWD",
        help="user file (default: ccpasswd)",
    )
    add("-r", "--realm", default="connectcap", help="digest realm (default: connectcap)")
    add(
        "-s",
        "--size",
        type=int,
        default=DEFAULT_SIZE_CAP,
        metavar="BYTES",
        help=f"bytes per capture before packets are cut to their headers "
        f"(default: {DEFAULT_SIZE_CAP})",
    )
    add("--verbose", action="store_true", help="log every request and auth decision")
    add(
        "--digest-algorithms",
        default="SHA-256,MD5",
        metavar="LIST",
        help="challenges offered, in order (default: SHA-256,MD5; also SHA-512-256 "
        "and the -sess variants). curl answers only the first",
    )
    add(
        "--userhash",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="advertise userhash=true (answers with and without are accepted)",
    )
    add("--mail-from", metavar="ADDR", help="From: of mails (default: wirecap@HOSTNAME)")
    add("--smtp", type=_host_port, metavar="HOST:PORT", help="mail through this SMTP server")
    add("--keep", action="store_true", help="keep captures in the spool after mailing")
    add("--resolver", metavar="ADDR[:PORT]", help="DNS server to use instead of the system's")
    add(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"client connections at once (default: {DEFAULT_MAX_CONNECTIONS})",
    )
    add(
        "--max-per-user",
        type=int,
        default=DEFAULT_MAX_PER_USER,
        metavar="N",
        help=f"tunnels per user at once (default: {DEFAULT_MAX_PER_USER})",
    )
    add(
        "--auth-failures-per-minute",
        type=int,
        default=10,
        metavar="N",
        help="failed logins per client address before 429 (default: 10)",
    )
    add(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help=f"time to send the request head (default: {DEFAULT_HEADER_TIMEOUT:g})",
    )
    add(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="S",
        help=f"TCP handshake to the origin before 504 (default: {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    add(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="S",
        help=f"close tunnels idle this long (default: {DEFAULT_IDLE_TIMEOUT:g})",
    )
    add("--metrics", type=_host_port, metavar="ADDR:PORT", help="serve Prometheus metrics here")
    add(
        "mail_command",
        nargs=argparse.REMAINDER,
        metavar="MAIL-COMMAND",
        help="command mails are piped to, e.g. /usr/sbin/sendmail -t -i (absolute path)",
    )


def options_from_args(args: argparse.Namespace) -> ProxyOptions:
    hostname = socket.gethostname()
    resolver = args.resolver
    return ProxyOptions(
        listen=tuple(parse_listen(text) for text in args.listen),
        sources=tuple(args.sources or ()),
        interface=args.interface,
        spool=Path(args.directory),
        passwd=Path(args.passwd),
        realm=args.realm,
        size_cap=args.size,
        mail_command=tuple(args.mail_command),
        smtp=args.smtp,
        mail_from=args.mail_from or f"wirecap@{hostname}",
        digest_algorithms=tuple(a.strip() for a in args.digest_algorithms.split(",") if a.strip()),
        userhash=args.userhash,
        resolver=resolver,
        max_connections=args.max_connections,
        max_per_user=args.max_per_user,
        auth_failures_per_minute=args.auth_failures_per_minute,
        header_timeout=args.header_timeout,
        connect_timeout=args.connect_timeout,
        idle_timeout=args.idle_timeout,
        keep=args.keep,
        metrics=args.metrics,
        verbose=args.verbose,
        proxy_name=hostname,
    )


def _resolver(options: ProxyOptions) -> Resolver:
    if options.resolver is None:
        return SystemResolver()
    text = options.resolver
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise OptionError(f"--resolver {text}: give the DNS server's IP address") from None
    return DnsResolver(host, port)


def _check_capture_privilege() -> None:
    # Fail at start with a clear reason rather than with a 500 on every CONNECT.
    PcapHandle(CaptureSpec(interface="lo", filter="tcp port 1", buffer_size=65536)).close()


def _transport(options: ProxyOptions) -> Transport | None:
    if options.smtp is not None:
        return SmtpTransport(options.smtp[0], options.smtp[1])
    if options.mail_command:
        return SendmailTransport(options.mail_command)
    return None


def run(options: ProxyOptions) -> int:
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    os.umask(0o077)  # whatever the caller's umask, captures are private
    return asyncio.run(_serve(options))


async def _serve(options: ProxyOptions) -> int:
    log = logging.getLogger("wirecap.proxy")
    _check_capture_privilege()
    credentials = CcpasswdFile(options.passwd)
    for warning in credentials.warnings:
        log.warning("%s: %s", options.passwd, warning)
    log.info("read %d users from %s", sum(1 for _ in credentials.accounts()), options.passwd)
    verifier = DigestVerifier(
        options.realm,
        credentials,
        secret=os.urandom(32),
        clock=time.time,
        random_bytes=os.urandom,
        algorithms=options.digest_algorithms,
        userhash=options.userhash,
    )
    spool = Spool(options.spool)
    for path in spool.recovered.incomplete:
        log.warning("left in the spool from an earlier run (kept): %s", path)
    for path, why in spool.recovered.unreadable:
        log.warning("unusable spool entry (kept): %s: %s", path, why)
    transport = _transport(options)
    mailer = None
    if transport is not None:

        def recipient(user: str | None) -> str | None:
            account = credentials.lookup(user) if user else None
            return account.email if account else None

        mailer = Mailer(
            spool,
            transport,
            sender=options.mail_from,
            recipient_for=recipient,
            proxy_host=options.proxy_name,
            message_id_domain=options.proxy_name,
            keep=options.keep,
            on_delivery=lambda d: log.info(
                "mail %s: %s (attempt %d)%s",
                d.capture.entry.stem,
                d.status,
                d.attempt,
                f": {d.error}" if d.error else "",
            ),
        )
        queued = mailer.requeue_pending()
        if queued:
            log.info("%d captures from an earlier run queued for mail", queued)
        mailer.start()
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    if options.metrics is not None:
        start_http_server(options.metrics[1], addr=options.metrics[0], registry=registry)
    server = ProxyServer(
        options,
        verifier=verifier,
        credentials=credentials,
        limiter=FailureLimiter(options.auth_failures_per_minute),
        sink=SpoolSink(spool, mailer),
        resolver=_resolver(options),
        metrics=metrics,
    )
    bound = await server.start()
    for host, port in bound:
        log.info("listening on %s port %d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        outcome = credentials.reload()
        log.info("SIGHUP: %s", "ccpasswd reloaded" if outcome.reloaded else outcome.problem)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    log.info("shutting down: finishing captures (at most %g s)", SHUTDOWN_GRACE_S)
    await server.shutdown(SHUTDOWN_GRACE_S / 2)
    if mailer is not None:
        result = await mailer.drain(SHUTDOWN_GRACE_S / 2)
        log.info("mail at shutdown: %s", result)
    return 0


def compat_main(prog: str) -> int:
    """Entry point of the `connectcap` / `connectdump` commands."""
    try:
        return run(options_from_args(build_parser(prog).parse_args()))
    except WirecapError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code


def connectcap() -> int:
    return compat_main("connectcap")


def connectdump() -> int:
    return compat_main("connectdump")
