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
  ``wirecap_worker_dropped_records_total``; a record is never torn and other
  clients never wait;
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
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from wirecap.core.capture.handle import check_filter
from wirecap.core.capture.live import DRAIN_MARGIN_S, LiveCapture
from wirecap.core.capture.spec import CaptureSpec
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
#: longest a capture outlives its client when nothing matches.
DISCONNECT_POLL_S = 0.05


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
    parsed = parse_query(request.query.items())
    if isinstance(parsed, RequestError):
        return _error(parsed.status, parsed.message)
    if parsed.filter:
        try:
            check_filter(parsed.filter, parsed.check_linktype, parsed.snaplen)
        except BadFilterError as exc:
            return _error(400, f"bad filter: {exc}")
        except SystemSetupError as exc:
            return _error(503, str(exc))
    if config.max_captures is not None and state["active"] >= config.max_captures:
        return _error(503, f"worker busy: {config.max_captures} captures already running")
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
            return _error(400, f"bad filter: {exc}")
        except UsageError as exc:
            return _error(400, str(exc))
        except SystemSetupError as exc:
            return _error(503, str(exc))
        except CaptureError as exc:
            return _error(503, f"cannot capture: {exc}")
        try:
            return await _stream(request, parsed, capture, output, config, metrics)
        finally:
            with contextlib.suppress(CaptureError):
                await capture.stop()
            metrics.dropped.inc(output.dropped_records)
    finally:
        state["active"] -= 1
        metrics.active.dec()


async def _stream(
    request: web.Request,
    parsed: StreamRequest,
    capture: LiveCapture,
    output: StreamOutput,
    config: WorkerConfig,
    metrics: _Metrics,
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
            stats = capture.stats()
            isb = InterfaceStatistics(
                interface_id=0,
                ts_ns=config.clock() - HEARTBEAT_LAG_NS,
                received=stats.received_by_kernel,
                dropped=stats.dropped_by_kernel + stats.dropped_by_output,
            )
            await write(converter.statistics(isb))

    async def client_gone() -> None:
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
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

    async def start(self) -> list[str]:
        """Bind and serve; return the bound addresses (``host:port`` or ``unix:PATH``)."""
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
        try:
            await site.start()
        except BaseException:
            await self.close()
            raise
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
