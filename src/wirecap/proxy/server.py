"""SHELL: the CONNECT proxy's event loop side — sockets, timers, captures, hand-off.

Per client connection: read the head under a deadline (`head`), check the rate
limit and digest auth (`digest`), resolve the target to exactly one address,
bind the source port, arm the capture (`recorder`), connect once, answer 200
only after the handshake (or 502/504 saying why), relay (`tunnel`), keep
capturing for the linger time, then write the summary and hand the capture to
the spool and mailer. Everything that decides is in the pure modules; this file
only moves bytes and waits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from wirecap.analysis import analyze_file
from wirecap.core.capture.devices import device_for_address
from wirecap.errors import WirecapError
from wirecap.proxy.credentials import CcpasswdFile
from wirecap.proxy.digest import Accepted, DigestVerifier, Stale
from wirecap.proxy.head import (
    NEED_DATA,
    ConnectTarget,
    HeadError,
    HeadParser,
    RequestHead,
    build_connect_established,
    connect_target,
    field_value,
    proxy_status,
)
from wirecap.proxy.metrics import ProxyMetrics
from wirecap.proxy.options import ProxyOptions
from wirecap.proxy.ratelimit import FailureLimiter
from wirecap.proxy.recorder import ConnectionRecorder, FourTuple, Recording
from wirecap.proxy.resolve import IPAddress, Resolution, Resolver, route_source
from wirecap.proxy.summary import ConnectionSummary, ConnectOutcome, Endpoint, StopReason
from wirecap.proxy.tunnel import Tunnel, TunnelEnd

__all__ = ["ProxyServer", "SpoolSlot", "SummarySink"]

log = logging.getLogger("wirecap.proxy")

_STOP_REASONS = {
    TunnelEnd.CLIENT_CLOSED: StopReason.CLIENT_CLOSED,
    TunnelEnd.ORIGIN_CLOSED: StopReason.ORIGIN_CLOSED,
    TunnelEnd.BOTH_CLOSED: StopReason.CLIENT_CLOSED,
    TunnelEnd.CLIENT_ERROR: StopReason.CLIENT_RESET,
    TunnelEnd.ORIGIN_ERROR: StopReason.ORIGIN_RESET,
    TunnelEnd.IDLE_TIMEOUT: StopReason.IDLE_TIMEOUT,
    TunnelEnd.SHUTDOWN: StopReason.SHUTDOWN,
}


class SpoolSlot(Protocol):
    """Where one connection's capture goes (a reserved spool entry)."""

    @property
    def connection_id(self) -> int: ...

    @property
    def pcap(self) -> Path: ...

    @property
    def plot(self) -> Path: ...


SlotT = TypeVar("SlotT", bound=SpoolSlot)


class SummarySink(Protocol[SlotT]):
    """Reserves spool slots and takes finished connections (spool + mail queue)."""

    def reserve(self, username: str, host: str, port: int, now_ns: int) -> SlotT: ...

    async def finished(self, slot: SlotT, summary: ConnectionSummary) -> None: ...


@dataclass(frozen=True, slots=True)
class _Connected:
    sock: socket.socket
    connect_ns: int


@dataclass(frozen=True, slots=True)
class _ConnectFailed:
    outcome: ConnectOutcome
    status: int
    proxy_error: str
    detail: str
    connect_ns: int | None


class _ClientProtocol(asyncio.Protocol):
    """Reads one request head under a deadline, then hands over to the server."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.parser = HeadParser()
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.server.admit(self):
            return
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.server.options.header_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self.reject(HeadError(408, "request head not received in time"))

    def reject(self, error: HeadError, extra: tuple[tuple[str, str], ...] = ()) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(error.response(extra))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.task is not None:
            return  # reading is paused; bytes arriving meanwhile are the tunnel's
        self.parser.feed(data)
        result = self.parser.next_result()
        if result is NEED_DATA:
            return
        if self.deadline is not None:
            self.deadline.cancel()
        if isinstance(result, HeadError):
            self.reject(result)
            return
        assert isinstance(result, RequestHead) and self.transport is not None
        self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(
            self.server.serve(self, result, self.parser.trailing_data)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        self.server.release(self)


class ProxyServer:
    """The running proxy: listeners, per-connection tasks, shutdown."""

    def __init__(
        self,
        options: ProxyOptions,
        *,
        verifier: DigestVerifier,
        credentials: CcpasswdFile,
        limiter: FailureLimiter,
        sink: SummarySink[Any],
        resolver: Resolver,
        metrics: ProxyMetrics,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._verifier = verifier
        self._credentials = credentials
        self._limiter = limiter
        self._sink = sink
        self._resolver = resolver
        self._metrics = metrics
        self._wall_ns = wall_clock_ns
        self._monotonic = monotonic
        self._servers: list[asyncio.Server] = []
        self._clients: set[_ClientProtocol] = set()
        self._per_user: Counter[str] = Counter()
        self._tunnels: set[Tunnel] = set()
        self._finishing: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- listening ---------------------------------------------------------------

    async def start(self) -> list[tuple[str, int]]:
        """Listen on every -l address; return what was bound (for logs and tests)."""
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for listen in self.options.listen:
            server = await loop.create_server(
                lambda: _ClientProtocol(self),
                host=listen.host,
                port=listen.port,
                reuse_address=True,
                backlog=511,
            )
            self._servers.append(server)
            bound.extend((s.getsockname()[0], s.getsockname()[1]) for s in server.sockets)
        return bound

    def admit(self, client: _ClientProtocol) -> bool:
        if self._closing or len(self._clients) >= self.options.max_connections:
            self._metrics.rejected("overloaded")
            client.reject(HeadError(503, "the proxy is at its connection limit"))
            return False
        self._clients.add(client)
        return True

    def release(self, client: _ClientProtocol) -> None:
        self._clients.discard(client)

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, end tunnels, and let captures finish and be handed on."""
        self._closing = True
        for server in self._servers:
            server.close()
        for tunnel in list(self._tunnels):
            tunnel.close(TunnelEnd.SHUTDOWN)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Connection tasks end by starting a finishing task (capture stop, spool,
        # mail queue): wait until neither kind is left, or the time is up.
        while True:
            pending = {c.task for c in self._clients if c.task is not None} | self._finishing
            pending = {task for task in pending if not task.done()}
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            await asyncio.wait(pending, timeout=remaining)
        for server in self._servers:
            await server.wait_closed()

    # -- one connection ------------------------------------------------------------

    async def serve(self, client: _ClientProtocol, head: RequestHead, trailing: bytes) -> None:
        assert client.transport is not None
        peer = client.transport.get_extra_info("peername") or ("?", 0)
        client_ep = Endpoint(str(peer[0]), int(peer[1]))
        try:
            await self._serve(client, head, trailing, client_ep)
        except Exception:  # a bug must not take the proxy down; log it and close
            log.exception("connection from %s failed", client_ep)
            client.reject(HeadError(500, "internal proxy error"))
        finally:
            # After a tunnel the transport belongs to the relay, so the head
            # reader's connection_lost never runs: release the slot here.
            self.release(client)

    async def _serve(
        self, client: _ClientProtocol, head: RequestHead, trailing: bytes, client_ep: Endpoint
    ) -> None:
        now = self._monotonic()
        retry = self._limiter.blocked(client_ep.host, now)
        if retry is not None:
            self._metrics.rejected("rate_limited")
            client.reject(
                HeadError(429, "too many failed logins; try again later"),
                (("Retry-After", str(max(1, math.ceil(retry)))),),
            )
            return
        log.debug("request from %s: %s %s", client_ep, head.method, head.target)
        target = connect_target(head)
        if isinstance(target, HeadError):
            self._metrics.rejected(f"http_{target.status}")
            client.reject(target)
            return
        user = self._authenticate(client, head, target, client_ep)
        if user is None:
            return
        username, auth_info = user
        if self._per_user[username] >= self.options.max_per_user:
            self._metrics.rejected("user_limit")
            client.reject(HeadError(429, f"user {username} has too many open tunnels"))
            return
        self._per_user[username] += 1
        try:
            await self._tunnel(client, target, trailing, client_ep, username, auth_info)
        finally:
            self._per_user[username] -= 1
            if not self._per_user[username]:
                del self._per_user[username]

    def _authenticate(
        self,
        client: _ClientProtocol,
        head: RequestHead,
        target: ConnectTarget,
        client_ep: Endpoint,
    ) -> tuple[str, str] | None:
        outcome = self._credentials.reload_if_changed()
        if outcome.problem:
            log.warning("ccpasswd not reloaded: %s", outcome.problem)
        answers = head.header_values("proxy-authorization")
        stale = False
        if len(answers) == 1:
            result = self._verifier.verify(answers[0], method=head.method, uri=head.target)
            if isinstance(result, Accepted):
                log.debug(
                    "auth ok from %s: user %s, %s", client_ep, result.username, result.algorithm
                )
                return result.username, result.authentication_info
            stale = isinstance(result, Stale)
            if not stale:
                self._limiter.record_failure(client_ep.host, self._monotonic())
                self._metrics.auth_failure()
            # The reason names the check that failed, never the client's secrets.
            log.info(
                "auth %s from %s for %s: %s",
                "stale" if stale else "failed",
                client_ep,
                target.authority,
                result.reason,
            )
        elif len(answers) > 1:
            client.reject(HeadError(400, "more than one Proxy-Authorization field"))
            return None
        else:
            log.debug("challenge to %s for %s (no credentials)", client_ep, target.authority)
        challenges = tuple(("Proxy-Authenticate", c) for c in self._verifier.challenge(stale=stale))
        client.reject(HeadError(407, "proxy authentication required"), challenges)
        return None

    async def _tunnel(
        self,
        client: _ClientProtocol,
        target: ConnectTarget,
        trailing: bytes,
        client_ep: Endpoint,
        username: str,
        auth_info: str,
    ) -> None:
        options = self.options
        start_ns = self._wall_ns()
        slot = self._sink.reserve(username, target.host, target.port, start_ns)
        families = self._families()
        resolution = await self._resolver.resolve(target.host, families)
        summary = _SummaryDraft(
            connection_id=slot.connection_id,
            user=username,
            client=client_ep,
            origin=Endpoint(target.host, target.port),
            start_ns=start_ns,
            capture_limit=options.size_cap,
        )
        if not isinstance(resolution, Resolution):
            dns_failed = _ConnectFailed(
                ConnectOutcome.DNS_FAILURE, 502, "dns_error", resolution.reason, None
            )
            await self._refuse(client, slot, summary, dns_failed)
            return
        summary.addresses = tuple(str(a) for a in resolution.answers)
        destination = resolution.address
        summary.destination = Endpoint(str(destination), target.port)
        source = self._source_for(destination)
        if source is None:
            failed = _ConnectFailed(
                ConnectOutcome.NO_ADDRESS,
                502,
                "destination_ip_unroutable",
                f"no source address for IPv{destination.version}",
                None,
            )
            await self._refuse(client, slot, summary, failed)
            return
        family = socket.AF_INET if destination.version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((str(source), 0))
        except OSError as exc:
            sock.close()
            failed = _ConnectFailed(
                ConnectOutcome.LOCAL_ERROR,
                502,
                "proxy_internal_error",
                f"cannot bind source {source}: {exc.strerror}",
                None,
            )
            await self._refuse(client, slot, summary, failed)
            return
        local_port = int(sock.getsockname()[1])
        summary.source = Endpoint(str(source), local_port)
        interface = options.interface or device_for_address(source) or "any"
        summary.interface = interface
        recorder = ConnectionRecorder(
            interface,
            FourTuple(source, local_port, destination, target.port),
            slot.pcap,
            size_cap=options.size_cap,
        )
        try:
            await recorder.start()  # armed before the SYN leaves
        except WirecapError as exc:
            sock.close()
            failed = _ConnectFailed(
                ConnectOutcome.LOCAL_ERROR,
                500,
                "proxy_internal_error",
                f"capture on {interface} failed: {exc}",
                None,
            )
            await self._refuse(client, slot, summary, failed)
            return
        summary.capture_file = slot.pcap.name
        log.debug("%s: capture armed on %s: %s", slot.connection_id, interface, recorder.filter)
        connected = await self._connect(sock, destination, target.port, client)
        if isinstance(connected, _ConnectFailed):
            sock.close()
            await self._refuse(client, slot, summary, connected, recorder)
            return
        summary.connect_ns = connected.connect_ns
        end = await self._relay(client, connected.sock, trailing, auth_info)
        summary.outcome = ConnectOutcome.ESTABLISHED
        summary.stop_reason = _STOP_REASONS[end[0]]
        summary.bytes_client_to_origin, summary.bytes_origin_to_client = end[1], end[2]
        self._finish_later(slot, summary, recorder)

    def _families(self) -> list[int]:
        if not self.options.sources:
            return [socket.AF_INET, socket.AF_INET6]
        return [socket.AF_INET if a.version == 4 else socket.AF_INET6 for a in self.options.sources]

    def _source_for(self, destination: IPAddress) -> IPAddress | None:
        if not self.options.sources:
            return route_source(destination)
        for address in self.options.sources:
            if address.version == destination.version:
                return address
        return None

    async def _connect(
        self, sock: socket.socket, address: IPAddress, port: int, client: _ClientProtocol
    ) -> _Connected | _ConnectFailed:
        loop = asyncio.get_running_loop()
        started = self._monotonic()
        connect = loop.create_task(loop.sock_connect(sock, (str(address), port)))
        # The client may give up while we wait; then the attempt is abandoned.
        done, _ = await asyncio.wait(
            {connect, client.lost},
            timeout=self.options.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        elapsed = round((self._monotonic() - started) * 1e9)
        if connect not in done:
            connect.cancel()
            if client.lost.done():
                return _ConnectFailed(
                    ConnectOutcome.ABORTED,
                    502,
                    "proxy_internal_error",
                    "client went away while connecting",
                    elapsed,
                )
            return _ConnectFailed(
                ConnectOutcome.TIMEOUT,
                504,
                "connection_timeout",
                f"no answer to SYN within {self.options.connect_timeout:g} s",
                elapsed,
            )
        exc = connect.exception()
        if exc is None:
            return _Connected(sock, elapsed)
        if isinstance(exc, ConnectionRefusedError):
            return _ConnectFailed(
                ConnectOutcome.REFUSED,
                502,
                "connection_refused",
                f"{address} port {port} refused the connection (RST)",
                elapsed,
            )
        if isinstance(exc, OSError) and exc.errno in (
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
            errno.EACCES,
            errno.EPERM,
        ):
            return _ConnectFailed(
                ConnectOutcome.UNREACHABLE,
                502,
                "destination_unavailable",
                f"{address} unreachable: {exc.strerror}",
                elapsed,
            )
        if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
            return _ConnectFailed(
                ConnectOutcome.TIMEOUT,
                504,
                "connection_timeout",
                f"connect to {address} timed out",
                elapsed,
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _ConnectFailed(
            ConnectOutcome.UNREACHABLE,
            502,
            "proxy_internal_error",
            f"connect to {address} failed: {reason}",
            elapsed,
        )

    async def _relay(
        self, client: _ClientProtocol, origin_sock: socket.socket, trailing: bytes, auth_info: str
    ) -> tuple[TunnelEnd, int, int]:
        loop = asyncio.get_running_loop()
        transport = client.transport
        assert transport is not None
        tunnel = Tunnel(self.options.idle_timeout, self._monotonic)
        await loop.create_connection(lambda: tunnel.origin, sock=origin_sock)
        if client.lost.done():
            tunnel.close(TunnelEnd.CLIENT_ERROR)
            return await tunnel.wait(), 0, 0
        # The client connection changes hands: from the head reader to the relay.
        transport.set_protocol(tunnel.client)
        tunnel.client.connection_made(transport)
        transport.write(build_connect_established((("Proxy-Authentication-Info", auth_info),)))
        if trailing:
            tunnel.client.data_received(trailing)
        transport.resume_reading()
        tunnel.start()
        self._tunnels.add(tunnel)
        self._metrics.tunnel_opened()
        try:
            end = await tunnel.wait()
        finally:
            self._tunnels.discard(tunnel)
            self._metrics.tunnel_closed(tunnel.client_to_origin, tunnel.origin_to_client)
        return end, tunnel.client_to_origin, tunnel.origin_to_client

    async def _refuse(
        self,
        client: _ClientProtocol,
        slot: SpoolSlot,
        summary: _SummaryDraft,
        failed: _ConnectFailed,
        recorder: ConnectionRecorder | None = None,
    ) -> None:
        body = field_value(failed.detail)
        status = proxy_status(self.options.proxy_name, failed.proxy_error, body)
        client.reject(HeadError(failed.status, body), (status,))
        summary.outcome = failed.outcome
        summary.detail = failed.detail
        summary.connect_ns = failed.connect_ns
        summary.stop_reason = StopReason.CONNECT_FAILED
        if recorder is None:
            summary.capture_file = None
        self._finish_later(slot, summary, recorder)

    def _finish_later(
        self, slot: SpoolSlot, summary: _SummaryDraft, recorder: ConnectionRecorder | None
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._finish(slot, summary, recorder))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(
        self, slot: SpoolSlot, summary: _SummaryDraft, recorder: ConnectionRecorder | None
    ) -> None:
        recording: Recording | None = None
        if recorder is not None:
            # Late FIN/RST retransmissions and ICMP arrive after the close.
            await asyncio.sleep(0 if self._closing else self.options.linger)
            try:
                recording = await recorder.stop()
            except WirecapError as exc:
                log.error("capture %s failed: %s", slot.pcap, exc)
        if recording is not None:
            summary.verdict, summary.verdict_detail = await self._analyse(slot, recording)
        final = summary.build(self._wall_ns(), recording)
        self._metrics.connection(final.outcome.value, recording)
        log.info(
            "%s user=%s client=%s target=%s outcome=%s bytes=%d/%d duration=%.3fs%s",
            final.connection_id,
            final.user,
            final.client,
            final.origin,
            final.outcome.value,
            final.bytes_client_to_origin,
            final.bytes_origin_to_client,
            (final.stop_ns - final.start_ns) / 1e9,
            " truncated" if final.truncated else "",
        )
        await self._sink.finished(slot, final)

    async def _analyse(
        self, slot: SpoolSlot, recording: Recording
    ) -> tuple[str, str] | tuple[None, None]:
        """The analyzer's verdict on the capture, and its graph next to it in the spool.

        Runs in a worker thread: a large capture takes a moment, and the relay of
        every other tunnel must not wait for it. A failure loses the verdict only.
        """
        try:
            return await asyncio.to_thread(_verdict_and_plot, recording.path, slot.plot)
        except (WirecapError, OSError, ValueError) as exc:
            log.warning("%s: analysis failed: %s", slot.connection_id, exc)
            return None, None


def _verdict_and_plot(pcap: Path, plot: Path) -> tuple[str, str] | tuple[None, None]:
    report = analyze_file(pcap)
    if not report.connections:
        return None, None
    # The capture holds one 4-tuple (plus ICMP quoting it): connection 0 is the tunnel.
    connection = report.connections[0]
    from wirecap.analysis.plot import render_png

    png = render_png(report, connection)
    fd = os.open(plot, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(png)
    return connection.verdict.label, connection.verdict.detail


class _SummaryDraft:
    """The summary while the connection runs: filled in step by step, frozen at the end."""

    def __init__(
        self,
        *,
        connection_id: int,
        user: str,
        client: Endpoint,
        origin: Endpoint,
        start_ns: int,
        capture_limit: int,
    ) -> None:
        self.connection_id = connection_id
        self.user = user
        self.client = client
        self.origin = origin
        self.start_ns = start_ns
        self.capture_limit = capture_limit
        self.addresses: tuple[str, ...] = ()
        self.destination: Endpoint | None = None
        self.source: Endpoint | None = None
        self.interface: str | None = None
        self.outcome = ConnectOutcome.ABORTED
        self.detail = ""
        self.connect_ns: int | None = None
        self.bytes_client_to_origin = 0
        self.bytes_origin_to_client = 0
        self.stop_reason = StopReason.ERROR
        self.capture_file: str | None = None
        self.verdict: str | None = None
        self.verdict_detail: str | None = None

    def build(self, stop_ns: int, recording: Recording | None) -> ConnectionSummary:
        stats = recording.stats if recording is not None else None
        return ConnectionSummary(
            connection_id=self.connection_id,
            user=self.user,
            client=self.client,
            origin=self.origin,
            addresses=self.addresses,
            destination=self.destination,
            source=self.source,
            interface=self.interface,
            outcome=self.outcome,
            detail=self.detail,
            connect_ns=self.connect_ns,
            start_ns=self.start_ns,
            stop_ns=max(stop_ns, self.start_ns),
            bytes_client_to_origin=self.bytes_client_to_origin,
            bytes_origin_to_client=self.bytes_origin_to_client,
            packets_captured=stats.written if stats else 0,
            dropped_by_kernel=stats.dropped_by_kernel if stats else 0,
            dropped_by_interface=stats.dropped_by_interface if stats else 0,
            stop_reason=self.stop_reason,
            truncated=recording.truncated if recording else False,
            capture_limit=self.capture_limit,
            capture_file=self.capture_file if recording is not None else None,
            verdict=self.verdict,
            verdict_detail=self.verdict_detail,
        )
