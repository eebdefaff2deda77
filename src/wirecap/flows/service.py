"""SHELL: netlink sockets, sysctls, HTTP and files of `wirecap flows`.

Everything here moves bytes between the kernel, the pure cores and the sinks:

- two ctnetlink sockets in the target network namespace: one bound to the
  NEW/UPDATE/DESTROY groups, one for table dumps (a dump reply interleaved
  with events on one socket could not be told apart from a lost event);
- the dump schedule; an ENOBUFS on the event socket (the kernel dropped
  events because we read too slowly) is counted, logged, exported, and
  answered by an immediate dump, which finds vanished flows and the counters;
- one task per sink with its own bounded queue: a record that does not fit is
  dropped and counted there, so a slow or dead sink never stalls the source
  or another sink;
- the Prometheus endpoint.

Sockets are made in the namespace by a short-lived thread that enters it with
setns(2): a netlink socket belongs to the namespace it was created in, and
only that thread changes namespace, not the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest

from wirecap.errors import PermissionDeniedError, SystemSetupError, UsageError
from wirecap.flows import elastic, influx
from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.metrics import FlowAggregates, PipelineMetrics
from wirecap.flows.model import Counters, Event, FlowRecord
from wirecap.flows.netlink import (
    CTNETLINK_GROUPS,
    GROUP_DESTROY,
    GROUP_NEW,
    Conntrack,
    Done,
    Kind,
    NetlinkError,
    Overrun,
    Undecoded,
    decode_datagram,
    encode_dump_request,
)
from wirecap.flows.selfcheck import Facts
from wirecap.flows.table import DEFAULT_MAX_FLOWS, FlowTable

__all__ = [
    "FlowService",
    "NetlinkSockets",
    "apply_sysctls",
    "dump_table",
    "gather_facts",
    "in_netns",
    "netns_inode",
    "open_netlink",
    "snapshot_records",
]

log = logging.getLogger("wirecap.flows")

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
_SYSCTL_DIR = "/proc/sys/net/netfilter"
#: The largest netlink datagram the kernel sends for a dump: one page batch,
#: at most 32 KiB with 8 KiB pages (NLMSG_GOODSIZE); 64 KiB leaves room.
RECV_SIZE = 65536
#: Event datagrams read per wakeup before the loop gets a turn: a steady flood
#: must not starve the sinks and the dump (the reader fires again at once).
MAX_DATAGRAMS_PER_WAKEUP = 512
#: A write that failed is tried this many times in all before its batch is dropped.
MAX_ATTEMPTS = 3
RETRY_DELAYS_S = (0.5, 2.0)
#: On shutdown, sinks get this long to write what they hold.
DRAIN_TIMEOUT_S = 5.0

T = TypeVar("T")


def netns_path(name: str) -> str:
    return name if "/" in name else f"/run/netns/{name}"


def netns_inode(name: str | None) -> int:
    path = netns_path(name) if name else "/proc/self/ns/net"
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        raise UsageError(f"network namespace {name!r} does not exist ({path})") from None


def in_netns(name: str | None, work: Callable[[], T]) -> T:
    """Run ``work`` in network namespace ``name`` (None: here) on a throw-away thread."""
    if not name:
        return work()
    path = netns_path(name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"network namespace {name!r} does not exist ({path})") from None
    result: list[T] = []
    failure: list[BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                if code == errno.EPERM:
                    raise PermissionDeniedError(
                        "entering a network namespace needs CAP_SYS_ADMIN (run as root)"
                    )
                raise SystemSetupError(f"setns {path}: {os.strerror(code)}")
            result.append(work())
        except BaseException as exc:  # carried to the caller's thread
            failure.append(exc)

    try:
        thread = threading.Thread(target=enter, name=f"netns-{name}")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failure:
        raise failure[0]
    return result[0]


@dataclass
class NetlinkSockets:
    events: socket.socket | None
    dumps: socket.socket

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.dumps.close()


def _netlink_socket(buffer_size: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except PermissionError:
        raise PermissionDeniedError("a netfilter netlink socket needs CAP_NET_ADMIN") from None
    try:
        # FORCE ignores net.core.rmem_max (needs CAP_NET_ADMIN); without it the
        # kernel silently caps the size and bursts turn into ENOBUFS.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
    return sock


def open_netlink(
    netns: str | None, buffer_size: int, *, events: bool = True, groups: int = CTNETLINK_GROUPS
) -> NetlinkSockets:
    def make() -> NetlinkSockets:
        event_sock = None
        if events:
            event_sock = _netlink_socket(buffer_size)
            try:
                event_sock.bind((0, groups))
            except PermissionError:
                event_sock.close()
                raise PermissionDeniedError(
                    "subscribing to conntrack events needs CAP_NET_ADMIN (run as root)"
                ) from None
            event_sock.setblocking(False)
        dump_sock = _netlink_socket(buffer_size)
        dump_sock.bind((0, 0))
        return NetlinkSockets(event_sock, dump_sock)

    return in_netns(netns, make)


def _read_sysctl(name: str) -> int | None:
    try:
        return int(Path(_SYSCTL_DIR, name).read_text().strip())
    except (OSError, ValueError):
        return None


def apply_sysctls(netns: str | None) -> list[str]:
    """Set nf_conntrack_acct and nf_conntrack_timestamp to 1 where they are not; say which.

    Both are per namespace and apply to flows created *after* the change, so
    this runs before the first dump.
    """

    def work() -> list[str]:
        changed = []
        for name in ("nf_conntrack_acct", "nf_conntrack_timestamp"):
            if _read_sysctl(name) == 1:
                continue
            try:
                Path(_SYSCTL_DIR, name).write_text("1\n")
            except FileNotFoundError:
                raise SystemSetupError(
                    f"conntrack is not available (no {_SYSCTL_DIR}/{name})"
                ) from None
            except PermissionError:
                raise PermissionDeniedError(
                    f"setting net.netfilter.{name} needs CAP_NET_ADMIN; or use --no-sysctl-manage"
                ) from None
            changed.append(f"net.netfilter.{name}=1")
        return changed

    return in_netns(netns, work)


def _recv_all(sock: socket.socket, limit: int) -> Iterator[bytes]:
    for _ in range(limit):
        try:
            yield sock.recv(RECV_SIZE)
        except BlockingIOError:
            return


def dump_table(netns: str | None, buffer_size: int = 1 << 20) -> list[Conntrack]:
    """One blocking table dump (for `dump` and `check`)."""
    sockets = open_netlink(netns, buffer_size, events=False)
    try:
        sockets.dumps.settimeout(10)
        sockets.dumps.send(encode_dump_request(1))
        entries: list[Conntrack] = []
        while True:
            data = sockets.dumps.recv(RECV_SIZE)
            for message in decode_datagram(data):
                if isinstance(message, Conntrack):
                    entries.append(message)
                elif isinstance(message, Done):
                    return entries
                elif isinstance(message, NetlinkError) and message.errno:
                    raise SystemSetupError(f"conntrack dump: {os.strerror(message.errno)}")
    finally:
        sockets.close()


def _has_cap_net_admin() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return os.geteuid() == 0


def gather_facts(netns: str | None, sysctl_manage: bool) -> Facts:
    def read() -> tuple[bool, int | None, int | None, int | None, int | None]:
        present = Path(_SYSCTL_DIR, "nf_conntrack_max").exists()
        return (
            present,
            _read_sysctl("nf_conntrack_acct"),
            _read_sysctl("nf_conntrack_timestamp"),
            _read_sysctl("nf_conntrack_events"),
            _read_sysctl("nf_conntrack_count"),
        )

    present, acct, stamp, events, count = in_netns(netns, read)
    error = None
    try:
        dump_table(netns)
    except (OSError, SystemSetupError) as exc:
        error = str(exc)
    return Facts(
        netns=netns or "",
        cap_net_admin=_has_cap_net_admin(),
        conntrack_present=present,
        acct=acct,
        timestamp=stamp,
        events=events,
        count=count,
        netlink_error=error,
        sysctl_manage=sysctl_manage,
    )


# -- sinks --------------------------------------------------------------------


@dataclass
class _SinkState:
    spec: SinkSpec
    queue: deque[FlowRecord] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped_full: int = 0
    dropped_failed: int = 0
    sent: int = 0
    task: asyncio.Task[None] | None = None


class _Writer:
    """How one sink type writes a batch; returns the records to try again."""

    async def start(self) -> None:
        return None

    async def write(self, batch: list[FlowRecord]) -> tuple[list[FlowRecord], int, str]:
        """(records to retry, records failed for good, error text)."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _StreamWriter(_Writer):
    def __init__(self, stream: IO[str], *, owned: bool) -> None:
        self.stream = stream
        self.owned = owned

    async def write(self, batch: list[FlowRecord]) -> tuple[list[FlowRecord], int, str]:
        text = "".join(record.json_line() for record in batch)

        def put() -> None:
            self.stream.write(text)
            self.stream.flush()

        # A full pipe must block this sink only, not the event loop.
        await asyncio.to_thread(put)
        return [], 0, ""

    async def close(self) -> None:
        if self.owned:
            self.stream.close()


def _open_record_file(path: str) -> IO[str]:
    """Append to PATH, created 0600 in a 0700 directory (records name hosts and ports)."""
    target = Path(path)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot open record file {path}: {exc.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


class _HttpWriter(_Writer):
    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.base = spec.address.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        auth = None
        if self.spec.username and self.spec.password:
            auth = aiohttp.BasicAuth(self.spec.username, self.spec.password)
        self.session = aiohttp.ClientSession(
            auth=auth, timeout=aiohttp.ClientTimeout(total=self.spec.timeout_ns / 1e9 or None)
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class _InfluxWriter(_HttpWriter):
    database_checked = False

    async def start(self) -> None:
        await super().start()
        self.path = influx.write_path(
            database=self.spec.database,
            org=self.spec.org,
            bucket=self.spec.bucket,
            v2=self.spec.influx_v2,
        )
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.spec.token:
            self.headers["Authorization"] = f"Token {self.spec.token}"

    async def _create_database(self) -> None:
        # As conntracct did at start: CREATE DATABASE is idempotent in InfluxDB 1.x.
        # Refused (no admin rights) is fine when the database exists; say it once.
        assert self.session is not None
        self.database_checked = True
        query = f'CREATE DATABASE "{self.spec.database.replace(chr(34), "")}"'
        async with self.session.post(self.base + "/query", data={"q": query}) as response:
            if response.status != 200:
                log.warning("sink %s: %s answered HTTP %d", self.spec.name, query, response.status)

    async def write(self, batch: list[FlowRecord]) -> tuple[list[FlowRecord], int, str]:
        assert self.session is not None
        if not self.spec.influx_v2 and not self.database_checked:
            await self._create_database()
        body = influx.encode_lines(batch, source_ports=self.spec.source_ports)
        async with self.session.post(
            self.base + self.path, data=body, headers=self.headers
        ) as response:
            text = (await response.text())[:300]
            if response.status == 204 or response.status == 200:
                return [], 0, ""
            if response.status in elastic.RETRY_STATUSES or response.status >= 500:
                return batch, 0, f"HTTP {response.status}: {text}"
            return [], len(batch), f"HTTP {response.status}: {text}"


class _ElasticWriter(_HttpWriter):
    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.hostname = spec.hostname or socket.gethostname()
        self.prefix = spec.database or "wirecap-flows"
        self.template_ready = False

    async def _template(self) -> None:
        assert self.session is not None
        url = f"{self.base}/_index_template/{self.prefix.lower()}"
        async with self.session.put(url, json=elastic.index_template(self.prefix)) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info,
                    (),
                    status=response.status,
                    message=(await response.text())[:300],
                )
        self.template_ready = True

    async def write(self, batch: list[FlowRecord]) -> tuple[list[FlowRecord], int, str]:
        assert self.session is not None
        if not self.template_ready:
            await self._template()
        body = elastic.bulk_body(batch, self.prefix, self.hostname)
        async with self.session.post(
            f"{self.base}/_bulk", data=body, headers={"Content-Type": "application/x-ndjson"}
        ) as r:
            outcome = elastic.decode_bulk_response(r.status, await r.read(), len(batch))
        retry = [batch[i] for i in outcome.retry]
        return retry, outcome.failed, "; ".join(outcome.errors[:3])


def _writer(spec: SinkSpec, stdout: IO[str]) -> _Writer:
    if spec.type == "stdout":
        return _StreamWriter(stdout, owned=False)
    if spec.type == "file":
        return _StreamWriter(_open_record_file(spec.address), owned=True)
    if spec.type == "influxdb":
        return _InfluxWriter(spec)
    return _ElasticWriter(spec)


# -- the service ----------------------------------------------------------------


def _length_of(queue: deque[FlowRecord]) -> Callable[[], float]:
    return lambda: float(len(queue))


class FlowService:
    """Source → flow table → sinks, for one network namespace."""

    def __init__(
        self,
        options: FlowsOptions,
        *,
        registry: CollectorRegistry | None = None,
        stdout: IO[str] | None = None,
        on_record: Callable[[FlowRecord], None] | None = None,
    ) -> None:
        self.options = options
        self.registry = registry or CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.aggregates = None
        if options.flow_metrics:
            ports = frozenset(options.flow_metrics_ports)
            self.aggregates = FlowAggregates(self.registry, ports=ports)
        self.stdout = stdout or sys.stdout
        self.on_record = on_record
        self.lost_events = 0
        self.undecoded = 0
        self.dumps = 0
        #: Event messages (NEW/UPDATE/DESTROY) read, and dump entries read.
        self.events = 0
        self.dump_entries = 0
        self.sinks = [_SinkState(spec) for spec in options.sinks]
        self._sockets: NetlinkSockets | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dump_now = asyncio.Event()
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.metrics_address: tuple[str, int] | None = None
        self._writers: dict[str, _Writer] = {}
        self.table: FlowTable | None = None
        # Labelled children looked up once: labels() costs more than the event itself.
        self._event_counter = {kind: self.metrics.events.labels(kind.value) for kind in Kind}
        self._record_counter = {event: self.metrics.records.labels(event.value) for event in Event}

    # lifecycle

    async def start(self) -> None:
        """Sysctls, then the event socket (so no event is missed), sinks, the first dump.

        The sysctls come first because they only apply to flows created after
        them; the first dump then finds the flows alive at start-up.
        """
        options = self.options
        if options.sysctl_manage:
            for applied in apply_sysctls(options.netns):
                log.warning("applied sysctl %s", applied)
        inode = netns_inode(options.netns)
        groups = CTNETLINK_GROUPS if options.update_events else GROUP_NEW | GROUP_DESTROY
        self._sockets = open_netlink(options.netns, options.buffer_size, groups=groups)
        self.table = FlowTable(
            curve=options.curve,
            netns=inode,
            started_ns=time.time_ns(),
            netns_name=options.netns or "",
            max_flows=options.max_flows or DEFAULT_MAX_FLOWS,
        )
        try:
            await self.start_sinks()
        except BaseException:
            await self.close()
            raise
        loop = asyncio.get_running_loop()
        assert self._sockets.events is not None
        loop.add_reader(self._sockets.events.fileno(), self._on_events)
        self._tasks.append(asyncio.create_task(self._dump_loop()))

    async def start_sinks(self) -> None:
        """Sinks and the metrics endpoint alone (`publish` feeds them; used by tests)."""
        for state in self.sinks:
            self.metrics.add_sink(state.spec.name)
            # Read at scrape time: no gauge update per record on the hot path.
            self.metrics.queue_depth.labels(state.spec.name).set_function(_length_of(state.queue))
            writer = _writer(state.spec, self.stdout)
            await writer.start()
            self._writers[state.spec.name] = writer
            state.task = asyncio.create_task(self._sink_loop(state, writer))
        if self.options.metrics:
            await self._start_metrics(self.options.metrics)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sockets is not None and self._sockets.events is not None:
            loop.remove_reader(self._sockets.events.fileno())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Let every sink write what it holds, within a bound.
        deadline = loop.time() + DRAIN_TIMEOUT_S
        for state in self.sinks:
            while state.queue and loop.time() < deadline:
                state.wake.set()
                await asyncio.sleep(0.05)
            if state.task is not None:
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task
        for writer in self._writers.values():
            await writer.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._sockets is not None:
            self._sockets.close()

    async def _start_metrics(self, address: str) -> None:
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        if not port_text.isdigit() or int(port_text) > 65535:
            raise UsageError(f"--metrics {address!r}: expected ADDR:PORT, e.g. 127.0.0.1:9469")
        port = int(port_text)

        async def metrics(_: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(self.registry))
            response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return response

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise SystemSetupError(
                f"cannot listen on {address} for metrics: {exc.strerror}"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (host, port)
        self.metrics_address = (bound[0], bound[1])

    # source

    def _on_events(self) -> None:
        assert self._sockets is not None and self._sockets.events is not None
        now = time.time_ns()
        try:
            for data in _recv_all(self._sockets.events, MAX_DATAGRAMS_PER_WAKEUP):
                self.feed(data, now)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                # Raising here would only be logged by the loop, once per wakeup.
                log.error("conntrack event socket: %s", exc)
                return
            self.lost_events += 1
            self.metrics.lost.inc()
            log.warning(
                "netlink receive buffer overrun (ENOBUFS): conntrack events were lost; "
                "dumping the table now (raise --buffer-size to avoid this)"
            )
            self._dump_now.set()

    def feed(self, data: bytes, now: int) -> None:
        """One event datagram: decoded, applied to the table, records fanned out.

        A message that does not decode is counted and skipped, never raised.
        """
        assert self.table is not None
        for message in decode_datagram(data):
            if isinstance(message, Conntrack):
                self.events += 1
                self._event_counter[message.kind].inc()
                records = self.table.apply(message, now)
                if records:
                    self._emit(records)
            elif isinstance(message, Undecoded):
                self.undecoded += 1
                self.metrics.undecoded.inc()
                log.debug("skipped a netlink message: %s", message.reason)
            elif isinstance(message, Overrun):
                self.lost_events += 1
                self.metrics.lost.inc()
                self._dump_now.set()

    async def _dump_loop(self) -> None:
        interval = min(self.options.dump_interval_ns, self.options.curve.shortest_ns) / 1e9
        while True:
            try:
                await self._dump_once()
            except OSError as exc:
                assert self.table is not None
                self.table.abort_dump()
                if exc.errno == errno.ENOBUFS:
                    self.lost_events += 1
                    self.metrics.lost.inc()
                    log.warning("table dump overran its buffer; dumping again")
                    await asyncio.sleep(0.1)  # not a hot loop if it keeps happening
                    continue
                log.error("conntrack dump failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dump_now.wait(), interval)
            self._dump_now.clear()

    async def _dump_once(self) -> None:
        assert self._sockets is not None and self.table is not None
        loop = asyncio.get_running_loop()
        sock = self._sockets.dumps
        sock.setblocking(False)
        self._seq += 1
        started = time.time_ns()
        clock = time.perf_counter()
        self.table.begin_dump(started)
        await loop.sock_sendall(sock, encode_dump_request(self._seq))
        while True:
            data = await loop.sock_recv(sock, RECV_SIZE)
            now = time.time_ns()
            finished = False
            for message in decode_datagram(data):
                if isinstance(message, Conntrack):
                    self.dump_entries += 1
                    self._event_counter[Kind.DUMP].inc()
                    records = self.table.apply(message, now)
                    if records:
                        self._emit(records)
                elif isinstance(message, Done):
                    finished = message.seq == self._seq
                elif isinstance(message, NetlinkError) and message.errno:
                    raise OSError(message.errno, os.strerror(message.errno))
                elif isinstance(message, Undecoded):
                    self.undecoded += 1
                    self.metrics.undecoded.inc()
            if finished:
                break
        before = self.table.stats.vanished
        self._emit(self.table.end_dump(time.time_ns()))
        self.metrics.vanished.inc(self.table.stats.vanished - before)
        self.metrics.tracked.set(len(self.table))
        self.metrics.dumps.inc()
        self.metrics.dump_seconds.observe(time.perf_counter() - clock)
        self.dumps += 1

    # fan-out

    def publish(self, records: list[FlowRecord]) -> None:
        """Hand records to every sink's queue; never blocks, drops what does not fit."""
        self._emit(records)

    def _emit(self, records: list[FlowRecord]) -> None:
        for record in records:
            self._record_counter[record.event].inc()
            if self.aggregates is not None:
                self.aggregates.observe(record)
            if self.on_record is not None:
                self.on_record(record)
            for state in self.sinks:
                if len(state.queue) >= state.spec.queue_size:
                    state.dropped_full += 1
                    self.metrics.dropped.labels(state.spec.name, "queue_full").inc()
                    continue
                state.queue.append(record)
                state.wake.set()

    async def _sink_loop(self, state: _SinkState, writer: _Writer) -> None:
        spec = state.spec
        name = spec.name
        while True:
            while not state.queue:
                state.wake.clear()
                await state.wake.wait()
            if len(state.queue) < spec.batch_size and spec.flush_interval_ns:
                # Wait for a full batch, at most one flush interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full(state), spec.flush_interval_ns / 1e9)
            count = min(spec.batch_size, len(state.queue))
            batch = [state.queue.popleft() for _ in range(count)]
            attempt = 0
            while batch:
                attempt += 1
                started = time.perf_counter()
                try:
                    retry, failed, error = await writer.write(batch)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    retry, failed, error = batch, 0, f"{type(exc).__name__}: {exc}"
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)
                written = len(batch) - len(retry) - failed
                state.sent += written
                self.metrics.sent.labels(name).inc(written)
                if failed:
                    state.dropped_failed += failed
                    self.metrics.dropped.labels(name, "write_failed").inc(failed)
                    log.warning("sink %s: %d records refused: %s", name, failed, error)
                if retry and attempt >= MAX_ATTEMPTS:
                    state.dropped_failed += len(retry)
                    self.metrics.dropped.labels(name, "write_failed").inc(len(retry))
                    log.warning(
                        "sink %s: %d records dropped after %d attempts: %s",
                        name,
                        len(retry),
                        attempt,
                        error,
                    )
                    retry = []
                batch = retry
                if batch:
                    await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1])

    @staticmethod
    async def _full(state: _SinkState) -> None:
        while len(state.queue) < state.spec.batch_size:
            state.wake.clear()
            await state.wake.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "dump_entries": self.dump_entries,
            "lost_events": self.lost_events,
            "undecoded": self.undecoded,
            "dumps": self.dumps,
            "tracked": len(self.table) if self.table else 0,
            "sinks": {
                s.spec.name: {
                    "sent": s.sent,
                    "queued": len(s.queue),
                    "dropped_queue_full": s.dropped_full,
                    "dropped_write_failed": s.dropped_failed,
                }
                for s in self.sinks
            },
        }


def snapshot_records(
    entries: list[Conntrack], netns: int, netns_name: str, now_ns: int
) -> list[FlowRecord]:
    """`dump`: one record per table entry, as they stand."""
    return [
        FlowRecord(
            event=Event.UPDATE,
            flow_id=ct.id,
            time_ns=now_ns,
            start_ns=ct.start_ns,
            stop_ns=None,
            orig=ct.orig,
            reply=ct.reply,
            tcp_state=ct.tcp_state,
            zone=ct.zone,
            mark=ct.mark or 0,
            counters_orig=ct.counters_orig or Counters(),
            counters_reply=ct.counters_reply or Counters(),
            netns=netns,
            netns_name=netns_name,
        )
        for ct in entries
    ]
