"""SHELL: the running guard: capture → classify → engine → nftables, metrics, logs, state.

Everything that touches the outside lives here: the libpcap capture of SYNs, the
host-address watcher, the enforcer calls (in a worker thread, one at a time), the
metrics HTTP server, the state file and the log stream. Decisions are made by the
pure engine; the service executes them and keeps going when nft fails: a failed
block stays queued and is retried at the next reconciliation, the error is reported
on standard error and counted, and observation never stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import BatchOutput
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import Interface, Packet
from wirecap.core.packet import SUPPORTED_LINKTYPES
from wirecap.errors import (
    CaptureError,
    EnforcementError,
    NoSuchInterfaceError,
    OptionError,
    WirecapError,
)
from wirecap.guard._nftables import LibraryEnforcer
from wirecap.guard.addresses import AddressWatcher, HostAddresses, read_host_addresses
from wirecap.guard.conntrack import read_half_open
from wirecap.guard.detectors import Detection
from wirecap.guard.enforcer import Enforcer
from wirecap.guard.engine import GuardEngine, Verdict
from wirecap.guard.firewall import Firewall, plan_restore, remaining_block
from wirecap.guard.logs import LineLimiter, LogFormatter
from wirecap.guard.metrics import GuardMetrics
from wirecap.guard.options import GuardOptions
from wirecap.guard.policy import MAX_ACTIVE_BLOCKS, Block, BlockPolicy, Spared
from wirecap.guard.statefile import (
    GuardState,
    SavedBlock,
    SavedOffender,
    decode_state,
    encode_state,
)
from wirecap.guard.syn import CAPTURE_FILTER, SYN_SNAPLEN, LocalAddresses, classify

__all__ = ["TICK_S", "GuardService", "load_state", "lock_state", "save_state"]

#: Housekeeping period: block expiry, capture drop counters, the state file.
TICK_S = 1.0
#: Error lines about nft per minute; the rest are counted in the metrics only.
MAX_ERROR_LINES_PER_MINUTE = 6

_NS = 1_000_000_000


def load_state(path: Path | None) -> GuardState:
    """The saved state, empty when there is no file; FormatError when it is corrupt."""
    if path is None:
        return GuardState()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return GuardState()
    except OSError as exc:
        raise WirecapError(f"{path}: {exc.strerror}") from None
    return decode_state(data)


def lock_state(path: Path) -> int | None:
    """Hold an exclusive lock on ``PATH.lock``: the file descriptor, or None when another
    process holds it (a running guard using the same state file).

    The lock dies with the process, so a crashed guard never leaves it behind.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def save_state(path: Path, data: bytes) -> None:
    """Write atomically (temp file + rename), 0600 in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


class _SynOutput(BatchOutput):
    """Decodes each batch libpcap dumped into memory; hands packets on with the link type."""

    def __init__(self, on_packets: Callable[[int, list[Packet]], None]) -> None:
        self._decoder = CaptureDecoder()
        self._linktype: int | None = None
        self._on_packets = on_packets
        super().__init__(self._decode, lambda: None)

    def _decode(self, data: bytes) -> None:
        self._decoder.feed(data)
        packets: list[Packet] = []
        for event in self._decoder.events():
            if isinstance(event, Packet):
                packets.append(event)
            elif isinstance(event, Interface):
                if event.linktype not in SUPPORTED_LINKTYPES:
                    raise CaptureError(f"link type {event.linktype} cannot be decoded")
                self._linktype = event.linktype
        if packets and self._linktype is not None:
            self._on_packets(self._linktype, packets)


class GuardService:
    """One running guard. ``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        options: GuardOptions,
        *,
        enforcer_factory: Callable[[], Enforcer],
        registry: CollectorRegistry | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], int] = time.time_ns,
        read_addresses: Callable[[], HostAddresses] = read_host_addresses,
    ) -> None:
        self.options = options
        self._enforcer_factory = enforcer_factory
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GuardMetrics(self.registry, tcpcap=options.tcpcap_metrics)
        self._out = out if out is not None else sys.stdout
        self._err = err if err is not None else sys.stderr
        self._clock = clock
        self._read_addresses = read_addresses
        self._format = LogFormatter(options.log.format)
        self._lines = LineLimiter(options.log.rate, options.log.burst)
        self._error_lines = LineLimiter(MAX_ERROR_LINES_PER_MINUTE / 60, 3)
        self._base_allow = options.allow_list()
        self.policy = BlockPolicy(options.block, self._base_allow)
        self.engine = GuardEngine(
            self.policy,
            port_scan=options.port_scan,
            syn_rate=options.syn_rate,
            half_open=options.half_open,
        )
        self.local = LocalAddresses()
        self._layout = dataclasses.replace(
            options.layout, track_connections=options.half_open is not None
        )
        self._firewall: Firewall | None = None
        self._pending: list[Block] = []
        self._flush_scheduled = False
        self._nft_lock = asyncio.Lock()
        self._table_ready = False
        self._dirty = False
        self._capture: LiveCapture | None = None
        self._last_drops = (0, 0)
        self._last_kernel_drops: dict[str, int] = {}
        self._evicted = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- output --------------------------------------------------------------------------

    def _emit(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _error(self, text: str) -> None:
        if self._error_lines.allow(self._clock()):
            print(f"wirecap guard: {text}", file=self._err, flush=True)

    # -- addresses -----------------------------------------------------------------------

    async def _refresh_addresses(self) -> None:
        # pyroute2's synchronous API runs an event loop of its own: not on this one.
        try:
            host = await asyncio.to_thread(self._read_addresses)
        except Exception as exc:  # pyroute2's errors are not all OSErrors
            # Keep the last known addresses; the next change notification tries again.
            self._error(f"cannot read the host's addresses: {exc}")
            return
        self.local = LocalAddresses(host.local)
        self.policy.allow = self._base_allow.with_dynamic(host.local | host.gateways)

    # -- packets (called by the capture, on the loop) -------------------------------------

    def _on_packets(self, linktype: int, packets: list[Packet]) -> None:
        local, engine = self.local, self.engine
        log_connections = self.options.log.connections
        v4 = v6 = new = 0
        for packet in packets:
            syn = classify(linktype, packet.data, packet.ts_ns, local)
            if syn is None:
                continue
            if syn.version == 4:
                v4 += 1
            else:
                v6 += 1
            seen = engine.observe(syn)
            if seen.new_connection:
                new += 1
                if log_connections and self._lines.allow(syn.ts_ns):
                    self._emit(self._format.connection(syn))
            if seen.detections:
                self._handle(seen.detections, seen.verdicts, syn.ts_ns)
        self.metrics.syns_seen(v4=v4, v6=v6, new=new)

    def _handle(
        self, detections: Sequence[Detection], verdicts: Sequence[Verdict], now_ns: int
    ) -> None:
        for detection in detections:
            self._emit(self._format.detection(detection))
        for verdict in verdicts:
            if isinstance(verdict, Spared):
                self.metrics.spared.labels(verdict.reason.value).inc()
                self._emit(self._format.spared(verdict, now_ns))
                continue
            self.metrics.blocked_one(verdict.reason.value)
            self._emit(self._format.block(verdict, now_ns, dry_run=self.options.dry_run))
            self._dirty = True
            if not self.options.dry_run:
                self._queue(verdict)
        self.metrics.blocked.set(len(self.policy))

    def _queue(self, block: Block) -> None:
        firewall = self._firewall
        if (
            firewall is not None
            and self._table_ready
            and isinstance(firewall.enforcer, LibraryEnforcer)
            and not self._pending
        ):
            # libnftables adds an element in well under a millisecond: do it now, on
            # the loop. Deferred to a task, it would wait until the capture callback has
            # worked through every ring block a flood queued (measured: up to 0.8 s).
            try:
                firewall.add([block])
                return
            except EnforcementError as exc:
                self._enforcement_failed(exc)
        if len(self._pending) < MAX_ACTIVE_BLOCKS:
            self._pending.append(block)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._flush())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- nft -----------------------------------------------------------------------------

    async def _nft(self, call: Callable[[], Any]) -> Any:
        async with self._nft_lock:
            return await asyncio.to_thread(call)

    async def _flush(self) -> None:
        """Send every queued block in one transaction (a flood's blocks batch up here)."""
        self._flush_scheduled = False
        firewall = self._firewall
        if firewall is None or not self._table_ready or not self._pending:
            return  # the next reconciliation sets the table up and retries
        now = self._clock()
        batch = [b for b in (remaining_block(p, now) for p in self._pending) if b is not None]
        self._pending = []
        try:
            await self._nft(lambda: firewall.add(batch))
        except EnforcementError as exc:
            self._pending = batch + self._pending
            self._enforcement_failed(exc)

    def _enforcement_failed(self, exc: EnforcementError) -> None:
        self.metrics.enforcement_errors.inc()
        self._table_ready = False
        self._error(f"{exc}; blocks are queued and retried, observation goes on")

    async def _start_firewall(self, saved: GuardState) -> None:
        """Set up the table and take over (or put back) the blocks of a previous run."""
        now = self._clock()
        for offender in saved.offenders:
            self.policy.restore_offender(offender.address, offender.offences, offender.last_ns)
        if self.options.dry_run:
            return
        try:
            self._firewall = Firewall(await asyncio.to_thread(self._enforcer_factory), self._layout)
        except EnforcementError as exc:
            self._enforcement_failed(exc)
            self._restore(plan_restore(None, saved, now).active)
            return
        await self._reconcile(saved=saved)

    def _restore(self, blocks: Sequence[SavedBlock]) -> None:
        for block in blocks:
            self.policy.restore(block.address, block.until_ns, block.reason, block.offence)
        self.metrics.blocked.set(len(self.policy))

    async def _reconcile(self, saved: GuardState | None = None) -> None:
        """Make the kernel and the guard agree; at start, restore from ``saved``.

        The table missing (lost to a reboot or a flush) is set up again and the
        guard's active blocks are put back. Addresses gone from the sets while the
        guard thinks them blocked were lifted by hand: the guard lets them go.
        """
        if self._firewall is None:
            try:
                self._firewall = Firewall(
                    await asyncio.to_thread(self._enforcer_factory), self._layout
                )
            except EnforcementError as exc:
                self._enforcement_failed(exc)
                return
        firewall = self._firewall
        now = self._clock()
        try:
            kernel = await self._nft(firewall.elements_or_none)
            if saved is not None:
                plan = plan_restore(kernel, saved, now)
                self._restore(plan.active)
                readd = list(plan.readd)
            elif kernel is None:
                readd = [
                    b
                    for b in (remaining_block(b, now) for b in self._active_blocks())
                    if b is not None
                ]
            else:
                readd = []
                self._release_missing(kernel, now)
            if kernel is None or not self._table_ready:
                await self._nft(firewall.setup)
                self._last_kernel_drops = {}
            else:
                self._count_kernel_drops(await self._nft(firewall.drop_counters))
            if readd:
                await self._nft(lambda: firewall.add(readd))
                self._emit(
                    self._format.message(
                        now, f"{len(readd)} blocks put back into nft table {firewall.layout.table}"
                    )
                )
        except EnforcementError as exc:
            self._enforcement_failed(exc)
            return
        if not self._table_ready:
            self._table_ready = True
            self._emit(
                self._format.message(
                    now, f"blocking with nft table inet {firewall.layout.table}", "ready"
                )
            )
        if self._pending:
            await self._flush()

    def _count_kernel_drops(self, counts: dict[str, int]) -> None:
        for rule, packets in counts.items():
            last = self._last_kernel_drops.get(rule, 0)
            # The chain is rewritten at setup, which zeroes its counters.
            grown = packets - last if packets >= last else packets
            if grown:
                self.metrics.kernel_drops.labels(rule).inc(grown)
        self._last_kernel_drops = counts

    def _active_blocks(self) -> list[Block]:
        now = self._clock()
        return [
            Block(
                address,
                max(1, math.ceil((b.until_ns - now) / _NS)),
                b.reason,
                b.offence,
                "put back",
                b.until_ns,
            )
            for address, b in self.policy.active()
        ]

    def _release_missing(self, kernel: list[Any], now: int) -> None:
        present = {element.address for element in kernel}
        queued = {block.address for block in self._pending}
        for address, block in self.policy.active():
            # An element the kernel just timed out is not "lifted": allow for the skew.
            if address in present or address in queued or block.until_ns - now < 2 * _NS:
                continue
            self.policy.release(address)
            self.engine.forget(address)
            self.metrics.unblocks.inc()
            self._dirty = True
            self._emit(self._format.unblock(address, now, "removed from the nft set"))
        self.metrics.blocked.set(len(self.policy))

    # -- housekeeping --------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock()
        for address in self.policy.expire(now):
            self.metrics.unblocks.inc()
            self._dirty = True
            self._emit(self._format.unblock(address, now, "timeout"))
        self.metrics.blocked.set(len(self.policy))
        suppressed = self._lines.take_suppressed()
        if suppressed:
            self._emit(self._format.suppressed(suppressed, now))
        evicted = self.engine.evicted
        if evicted > self._evicted:
            self.metrics.evicted.inc(evicted - self._evicted)
            self._evicted = evicted
        if self._capture is not None:
            with contextlib.suppress(CaptureError):
                stats = self._capture.stats()
                kernel, interface = stats.dropped_by_kernel, stats.dropped_by_interface
                last_kernel, last_interface = self._last_drops
                if kernel > last_kernel:
                    self.metrics.capture_drops.labels("kernel").inc(kernel - last_kernel)
                if interface > last_interface:
                    self.metrics.capture_drops.labels("interface").inc(interface - last_interface)
                self._last_drops = (max(kernel, last_kernel), max(interface, last_interface))
        if self._dirty:
            self._save()

    def _save(self) -> None:
        path = self.options.state_file
        if path is None or self.options.dry_run:
            self._dirty = False
            return
        blocks = [SavedBlock(a, b.until_ns, b.reason, b.offence) for a, b in self.policy.active()]
        offenders = [SavedOffender(a, n, last) for a, n, last in self.policy.offenders()]
        try:
            save_state(path, encode_state(blocks, offenders))
            self._dirty = False
        except OSError as exc:
            self._error(f"cannot write the state file {path}: {exc.strerror}")

    async def _housekeeping(self) -> None:
        next_reconcile = time.monotonic() + self.options.reconcile_s
        half_open = self.options.half_open
        next_half_open = time.monotonic() + (half_open.interval_s if half_open else 0)
        while True:
            await asyncio.sleep(TICK_S)
            self._tick()
            if not self.options.dry_run and time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + self.options.reconcile_s
                await self._reconcile()
            if half_open is not None and time.monotonic() >= next_half_open:
                next_half_open = time.monotonic() + half_open.interval_s
                await self._poll_half_open()

    async def _poll_half_open(self) -> None:
        try:
            counts = await asyncio.to_thread(read_half_open, self.local.packed)
        except OSError as exc:
            self._error(f"cannot read conntrack: {exc}")
            return
        now = self._clock()
        detections, verdicts = self.engine.observe_half_open(counts, now)
        if detections:
            self._handle(detections, verdicts, now)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, ready: Callable[[str], None] | None = None) -> None:
        interface = self.options.interface
        if interface != "any":
            # Before nftables is touched: a typo must not leave a table behind.
            try:
                socket.if_nametoindex(interface)
            except OSError:
                raise NoSuchInterfaceError(f"{interface}: no such network interface") from None
        state_file = None if self.options.dry_run else self.options.state_file
        lock = None
        if state_file is not None:
            lock = lock_state(state_file)
            if lock is None:
                raise OptionError(
                    f"state file {state_file} is in use by another running guard; give each "
                    "guard its own --state-file and --table"
                )
        try:
            await self._run(stop, ready)
        finally:
            if lock is not None:
                os.close(lock)

    def _load_saved(self) -> GuardState:
        """The state file's content; a corrupt file is reported, kept aside and ignored:
        a guard that refused to start would protect nothing."""
        path = self.options.state_file
        try:
            return load_state(path)
        except WirecapError as exc:
            assert path is not None
            if self.options.dry_run:
                self._error(f"ignoring the state file: {exc}")
                return GuardState()
            aside = path.with_name(path.name + ".corrupt")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self._error(f"ignoring the state file: {exc}; kept as {aside}")
            return GuardState()

    async def _run(self, stop: asyncio.Event, ready: Callable[[str], None] | None) -> None:
        await self._refresh_addresses()
        saved = self._load_saved()
        if self.options.dry_run:
            self._restore(plan_restore(None, saved, self._clock()).active)
        await self._start_firewall(saved)
        watcher = AddressWatcher(lambda: self._spawn(self._refresh_addresses()))
        watcher.start()
        spec = CaptureSpec(
            interface=self.options.interface, filter=CAPTURE_FILTER, snaplen=SYN_SNAPLEN
        )
        capture = LiveCapture(spec, _SynOutput(self._on_packets))
        try:
            await capture.start_async()
            self._capture = capture
            if ready is not None:
                ready(f"watching SYNs on {self.options.interface}")
            housekeeping = asyncio.get_running_loop().create_task(self._housekeeping())
            waiter = asyncio.get_running_loop().create_task(stop.wait())
            failed = asyncio.get_running_loop().create_task(capture.wait())
            try:
                done, _ = await asyncio.wait(
                    {housekeeping, waiter, failed}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is not waiter:
                        task.result()  # a capture or housekeeping failure ends the guard
            finally:
                for task in (housekeeping, waiter, failed):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        finally:
            watcher.close()
            if self._capture is not None:
                with contextlib.suppress(CaptureError):
                    await capture.stop()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
            self._tick()
            self._save()
            firewall = self._firewall
            close = getattr(firewall.enforcer, "close", None) if firewall else None
            if close is not None:
                close()
