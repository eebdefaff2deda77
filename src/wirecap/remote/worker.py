"""SHELL: the capture worker (``wirecap worker``, compat ``ddump-worker``).

An aiohttp application serving:

``GET /capture?filter=BPF&...``
    a live capture as ``application/vnd.tcpdump.pcap`` (or ``application/x-pcapng``
    with ``format=pcapng``); the query is parsed by `wirecap.remote.request`.
``GET /healthz``
    ``ok``.
``GET /metrics``
    Prometheus exposition of the app's own registry.

What it fixes in ddump-worker (reference/ddump-and-capture-packets.md §1.2):

- a bad filter is compiled *before* the response starts: **400** with libpcap's
  message, no body; missing capture privileges **503** with the reason;
- headers and the file header are written as soon as the capture is armed,
  then every dispatch batch is written at once (no 1 s ticker, no data race);
- libpcap never sees the socket: batches go to memory (`StreamOutput`) and are
  written with ``await response.write()``, which is the back-pressure. A client
  slower than the capture loses whole batches, counted in
  ``wirecap_worker_dropped_records_total`` while the stream runs; a record is
  never torn and other clients never wait;
- a client that goes away stops its capture at once, even when nothing matches
  (the connection is watched, not only the next write);
- ``interface=`` works; the own stream is excluded as ``(USER) and not (SELF)``.

In pcapng mode an Interface Statistics Block goes out every `HEARTBEAT_S` while
no packets flow. Its timestamp is the worker's clock minus `HEARTBEAT_LAG_NS`
(the longest a captured packet can still sit in the kernel ring), so a merger may
treat it as a watermark: no later packet of this stream is older than it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from wirecap.core.capture.handle import check_filter
from wirecap.core.capture.live import DRAIN_MARGIN_S, LiveCapture
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stats import CaptureStats
from wirecap.core.capture.stream import DEFAULT_MAX_BUFFERED_BYTES, StreamOutput
from wirecap.core.formats.convert import PcapToPcapng
from wirecap.core.formats.records import InterfaceStatistics
from wirecap.errors import (
    BadFilterError,
    CaptureError,
    SystemSetupError,
    UsageError,
)
from wirecap.remote.request import (
    Endpoint,
    ListenAddress,
    RequestError,
    StreamRequest,
    capture_filter,
    parse_query,
)

__all__ = [
    "DISCONNECT_POLL_S",
    "HEARTBEAT_LAG_NS",
    "HEARTBEAT_S",
    "UNIX_SOCKET_MODE",
    "WORKER_BUFFER_TIMEOUT_MS",
    "WorkerConfig",
    "WorkerServer",
    "build_app",
]

log = logging.getLogger(__name__)

#: Kernel block retire timeout of worker captures: bounds the latency of a quiet
#: stream (ddump's gopacket used 10 ms; 20 ms is 50 wake-ups/s per idle stream).
WORKER_BUFFER_TIMEOUT_MS = 20

#: Interval of the pcapng heartbeat ISB while no packets flow (issue 5: 100 ms).
HEARTBEAT_S = 0.1

#: How far behind the clock a heartbeat's timestamp is: a packet may wait up to
#: the block timeout in the ring, plus the kernel timer's slack.
HEARTBEAT_LAG_NS = int((WORKER_BUFFER_TIMEOUT_MS / 1000 + DRAIN_MARGIN_S) * 1e9)

#: How often an idle stream checks that its client is still connected: the
#: longest a capture outlives its client when nothing matches (and how often its
#: dropped records are added to the metric).
DISCONNECT_POLL_S = 0.05

#: Mode of a ``unix:PATH`` socket, whatever the umask: connecting needs write
#: permission, and a connection can capture every packet of the host, so only the
#: owner and the group (e.g. a reverse proxy's, via a setgid directory) may.
UNIX_SOCKET_MODE = 0o660


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Options of one worker process, parsed once by the CLI."""

    listen: ListenAddress = field(default_factory=ListenAddress)
    #: Concurrent captures allowed; past it /capture answers 503. None: no limit.
    max_captures: int | None = None
    #: Per-stream byte budget for a slow client before whole batches are dropped.
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    buffer_timeout_ms: int = WORKER_BUFFER_TIMEOUT_MS
    #: Wall clock for heartbeats, in nanoseconds (injected for tests).
    clock: Callable[[], int] = time.time_ns


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.active = Gauge(
            "wirecap_worker_active_captures", "Captures streaming now", registry=registry
        )
        self.bytes = Counter(
            "wirecap_worker_streamed_bytes", "Bytes of capture sent to clients", registry=registry
        )
        self.dropped = Counter(
            "wirecap_worker_dropped_records",
            "Records dropped because a client read slower than the capture",
            registry=registry,
        )
        self.requests = Counter(
            "wirecap_worker_requests",
            "HTTP requests answered, by status",
            ["status"],
            registry=registry,
        )


_METRICS_KEY = web.AppKey("wirecap_worker_metrics", _Metrics)
_CONFIG_KEY = web.AppKey("wirecap_worker_config", WorkerConfig)
_STATE_KEY = web.AppKey("wirecap_worker_state", dict)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


def build_app(config: WorkerConfig, registry: CollectorRegistry | None = None) -> web.Application:
    """The worker's application; its metrics live in `registry` (a fresh one by default)."""
    metrics = _Metrics(registry if registry is not None else CollectorRegistry())

    @web.middleware
    async def count_status(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(status=str(exc.status)).inc()
            raise
        metrics.requests.labels(status=str(response.status)).inc()
        return response

    app = web.Application(middlewares=[count_status])
    app[_METRICS_KEY] = metrics
    app[_CONFIG_KEY] = config
    app[_STATE_KEY] = {"active": 0}
    app.router.add_get("/capture", _capture)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _own_stream(request: web.Request) -> tuple[Endpoint, Endpoint] | None:
    transport = request.transport
    if transport is None:
        return None
    local = Endpoint.from_sockaddr(transport.get_extra_info("sockname"))
    peer = Endpoint.from_sockaddr(transport.get_extra_info("peername"))
    if local is None or peer is None:
        return None  # Unix socket: its bytes are never on a network interface
    return local, peer


async def _capture(request: web.Request) -> web.StreamResponse:
    config = request.app[_CONFIG_KEY]
    metrics = request.app[_METRICS_KEY]
    state = request.app[_STATE_KEY]
    peer = _peer_name(request)

    def refuse(status: int, message: str) -> web.Response:
        log.info("%s: %d %s", peer, status, message)
        return _error(status, message)

    parsed = parse_query(request.query.items())
    if isinstance(parsed, RequestError):
        return refuse(parsed.status, parsed.message)
    if parsed.filter:
        try:
            check_filter(parsed.filter, parsed.check_linktype, parsed.snaplen)
        except BadFilterError as exc:
            return refuse(400, str(exc))  # "bad filter 'EXPR': libpcap's reason"
        except SystemSetupError as exc:
            return refuse(503, str(exc))
    if config.max_captures is not None and state["active"] >= config.max_captures:
        return refuse(503, f"worker busy: {config.max_captures} captures already running")
    own = _own_stream(request) if parsed.exclude_self else None
    spec = CaptureSpec(
        interface=parsed.interface,
        filter=capture_filter(parsed.filter, own),
        snaplen=parsed.snaplen,
        buffer_timeout_ms=config.buffer_timeout_ms,
    )
    output = StreamOutput(config.max_buffered_bytes)
    capture = LiveCapture(spec, output, linktype=parsed.dlt)
    state["active"] += 1
    metrics.active.inc()
    try:
        try:
            await capture.start_async()
        except BadFilterError as exc:
            return refuse(400, f"bad filter: {exc}")
        except UsageError as exc:
            return refuse(400, str(exc))
        except SystemSetupError as exc:
            return refuse(503, str(exc))
        except CaptureError as exc:
            return refuse(503, f"cannot capture: {exc}")
        drops = _DropReporter(output, metrics.dropped)
        log.info("%s: capture %s", peer, _describe(parsed, spec.filter))
        stats: CaptureStats | None = None
        try:
            return await _stream(request, parsed, capture, output, config, metrics, drops)
        finally:
            with contextlib.suppress(CaptureError):
                stats = await capture.stop()
            drops.sync()
            log.info(
                "%s: stream ended: %d bytes sent; %s",
                peer,
                output.bytes_sent,
                stats.summary() if stats is not None else "no statistics",
            )
    finally:
        state["active"] -= 1
        metrics.active.dec()


def _peer_name(request: web.Request) -> str:
    """The client as logs name it: ``HOST:PORT``, or ``unix`` on a Unix socket."""
    own = _own_stream(request)
    if own is None:
        return "unix"
    peer = own[1]
    return f"[{peer.host}]:{peer.port}" if ":" in peer.host else f"{peer.host}:{peer.port}"


def _describe(parsed: StreamRequest, expression: str) -> str:
    link = f"{parsed.linktype}, " if parsed.dlt is not None else ""
    return (
        f"on {parsed.interface} as {parsed.format} ({link}snaplen {parsed.snaplen}), "
        f"filter {expression!r}"
    )


class _DropReporter:
    """Moves a stream's dropped-record count into the metric while the stream runs.

    Streams last as long as their client wants (hours, behind a merger), so
    counting drops only when a stream ends would hide a slow client from every
    scrape until it leaves.
    """

    def __init__(self, output: StreamOutput, counter: Counter) -> None:
        self._output = output
        self._counter = counter
        self._reported = 0

    def sync(self) -> None:
        new = self._output.dropped_records - self._reported
        if new > 0:
            self._counter.inc(new)
            self._reported += new


async def _stream(
    request: web.Request,
    parsed: StreamRequest,
    capture: LiveCapture,
    output: StreamOutput,
    config: WorkerConfig,
    metrics: _Metrics,
    drops: _DropReporter,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": parsed.content_type})
    # No Content-Length: chunked. No compression: it would buffer.
    await response.prepare(request)
    lock = asyncio.Lock()
    last_write = time.monotonic()

    async def write(data: bytes) -> None:
        nonlocal last_write
        async with lock:
            await response.write(data)
        last_write = time.monotonic()
        metrics.bytes.inc(len(data))

    converter = PcapToPcapng(interface_name=parsed.interface) if parsed.format == "pcapng" else None

    async def write_batch(chunk: bytes) -> None:
        if converter is None:
            await write(chunk)
            return
        data = converter.feed(chunk)
        if data:
            await write(data)

    async def heartbeat() -> None:
        assert converter is not None
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if output.bytes_sent == 0 or time.monotonic() - last_write < HEARTBEAT_S * 0.9:
                continue  # the IDB is not out yet, or packets are flowing
            # The promise ("nothing older will follow") is about this moment:
            # take the time first, then push out what the ring already holds.
            # If that was anything, packets are on their way and the beat waits
            # (an event loop that stalled must not let a beat overtake them).
            promised = config.clock() - HEARTBEAT_LAG_NS
            capture.dispatch_now()
            if output.buffered_bytes:
                continue
            stats = capture.stats()
            isb = InterfaceStatistics(
                interface_id=0,
                ts_ns=promised,
                received=stats.received_by_kernel,
                dropped=stats.dropped_by_kernel + stats.dropped_by_output,
            )
            await write(converter.statistics(isb))

    async def client_gone() -> None:
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            drops.sync()  # a stalled client's drops show up while it stalls
            await asyncio.sleep(DISCONNECT_POLL_S)

    tasks = [
        asyncio.ensure_future(output.pump(write_batch)),
        asyncio.ensure_future(client_gone()),
        asyncio.ensure_future(capture.wait()),
    ]
    if converter is not None:
        tasks.append(asyncio.ensure_future(heartbeat()))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ConnectionError):
            log.warning("capture stream ended: %s", result)
    if request.transport is not None and not request.transport.is_closing():
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


class WorkerServer:
    """The worker listening on its address; `start()` then `close()`."""

    def __init__(self, config: WorkerConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.app = build_app(config, registry)
        self._runner: web.AppRunner | None = None
        #: (device, inode) of the Unix socket this server bound, removed at close.
        self._socket_file: tuple[int, int] | None = None

    async def start(self) -> list[str]:
        """Bind and serve; return the bound addresses (``host:port`` or ``unix:PATH``)."""
        if self.config.listen.path is not None:
            _refuse_live_socket(self.config.listen.path)
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        self._runner = runner
        listen = self.config.listen
        site: web.BaseSite
        if listen.path is not None:
            site = web.UnixSite(runner, listen.path)
        else:
            site = web.TCPSite(runner, listen.host, listen.port)
        # A socket file takes its mode from the umask at bind(): set the umask for
        # the bind, so there is no moment at which others could connect (a chmod
        # afterwards would leave one). Restored as soon as the socket is bound.
        umask = os.umask(0o777 & ~UNIX_SOCKET_MODE) if listen.path is not None else None
        try:
            await site.start()
        except BaseException:
            await self.close()
            raise
        finally:
            if umask is not None:
                os.umask(umask)
        if listen.path is not None:
            st = os.stat(listen.path)
            self._socket_file = (st.st_dev, st.st_ino)
        bound: list[str] = []
        for name in runner.addresses:
            if isinstance(name, tuple):
                host = name[0]
                bound.append(f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}")
            else:
                bound.append(f"unix:{name}")
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        path, ours = self.config.listen.path, self._socket_file
        if path is not None and ours is not None:
            self._socket_file = None
            # Only the socket this server made: another worker may have taken the path.
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == ours:
                    os.unlink(path)


def _refuse_live_socket(path: str) -> None:
    """Raise if a server answers on the Unix socket `path`.

    asyncio replaces any socket file it finds at the path, so without this a
    second worker started on the same path would silently take it from the first.
    A socket nobody answers on is a leftover of a worker that was killed: fine.
    """
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket: the bind fails with its own error
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)  # a full backlog would otherwise block the loop
        try:
            probe.connect(path)
        except OSError:
            return
    raise OSError(errno.EADDRINUSE, f"a server is already listening on {path}")
