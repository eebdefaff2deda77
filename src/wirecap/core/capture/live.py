"""SHELL: a live capture driven by the asyncio event loop.

libpcap 1.10's blocking `pcap_dispatch` never returns on an idle interface with
TPACKET_V3 (the kernel retires only non-empty blocks, so the read timeout never
fires), so the handle is non-blocking and its selectable fd is watched by the loop.
One process can run hundreds of these side by side.
"""

from __future__ import annotations

import asyncio
import time

from wirecap.core.capture.handle import FileDumper, MemoryDumper, PcapHandle
from wirecap.core.capture.outputs import CaptureOutput
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stats import CaptureStats
from wirecap.errors import CaptureError, OptionError

__all__ = ["DRAIN_MARGIN_S", "MAX_DISPATCH_ROUNDS", "LiveCapture"]

#: Extra wait on top of the block timeout when draining at stop: the kernel's timer
#: that retires a partly filled block is not exact.
DRAIN_MARGIN_S = 0.05

#: Ring blocks handled per wake-up before yielding to the event loop, so one busy
#: capture cannot starve the others (or the signal handlers) sharing the loop.
MAX_DISPATCH_ROUNDS = 16


class LiveCapture:
    """Capture packets matching `spec` into `output`, optionally stopping after `count`.

    ``start()`` returns once the handle is activated with its filter set (*armed*):
    traffic that starts after it is in the output. ``stop()`` drains what the kernel
    still holds, closes the handle and the output, and returns the final stats.
    """

    def __init__(
        self,
        spec: CaptureSpec,
        output: CaptureOutput,
        *,
        count: int | None = None,
        linktype: int | None = None,
    ) -> None:
        if count is not None and count < 1:
            raise OptionError(f"packet count {count} must be at least 1")
        self.spec = spec
        self._output = output
        self._count = count
        self._linktype = linktype
        self._handle: PcapHandle | None = None
        self._dumper: FileDumper | MemoryDumper | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        self._written = 0
        self._final: CaptureStats | None = None
        self.started_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open, activate, filter and watch the handle. Must run inside the event loop.

        Activation maps the kernel ring, which can take tens of milliseconds
        (the kernel waits for an RCU grace period); a server with many captures
        should use `start_async`, which does that off the event loop.
        """
        self._check_startable()
        self._attach(PcapHandle(self.spec, linktype=self._linktype))

    async def start_async(self) -> None:
        """`start`, with the slow open and activation done in a worker thread."""
        self._check_startable()
        handle = await asyncio.to_thread(PcapHandle, self.spec, linktype=self._linktype)
        self._attach(handle)

    def _check_startable(self) -> None:
        if self._handle is not None or self._final is not None:
            raise CaptureError("capture already started")

    def _attach(self, handle: PcapHandle) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        try:
            self._dumper = self._output.open(handle)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        self._loop.add_reader(handle.fd, self._on_readable)
        self.started_at = time.monotonic()

    @property
    def linktype(self) -> int:
        return self._require_handle().linktype

    @property
    def nanosecond(self) -> bool:
        return bool(self._require_handle().nanosecond)

    def set_filter(self, expression: str, *, snaplen: int | None = None) -> None:
        """Swap the filter of the running capture (see PcapHandle.set_filter)."""
        self._require_handle().set_filter(expression, snaplen=snaplen)

    async def wait(self) -> None:
        """Return when the packet count is reached; raise if the capture failed."""
        if self._done is None:
            raise CaptureError("capture not started")
        await asyncio.shield(self._done)

    async def stop(self, *, drain: bool = True) -> CaptureStats:
        """Drain, close everything, return the final stats. Idempotent.

        Args:
            drain: wait up to the buffer timeout for a partly filled ring block
                to be handed over. A caller that already knows everything it
                needs was delivered (it saw a marker packet sent last) passes
                False and saves that wait; what the ring holds is still read.
        """
        if self._final is not None:
            return self._final
        handle = self._handle
        if handle is None:
            raise CaptureError("capture not started")
        try:
            if (
                drain
                and self._done is not None
                and not self._done.done()
                and not handle.closed
                and handle.stats().received > 0
            ):
                # Packets in a partly filled ring block reach user space only when the
                # kernel retires the block after the buffer timeout: wait that long.
                # (A socket that never accepted a packet has nothing to drain.)
                await asyncio.wait(
                    [self._done], timeout=self.spec.buffer_timeout_ms / 1000 + DRAIN_MARGIN_S
                )
            if not handle.closed:
                self._dispatch()
        finally:
            try:
                self._final = await self._close()
            finally:
                # Taking the failure out marks it retrieved, also when closing
                # raised first (a full disk fails the flush at close again).
                failure = self._done.exception() if self._done is not None else None
        if failure is not None:
            raise failure
        return self._final

    def stats(self) -> CaptureStats:
        """Counters so far (or final ones after stop)."""
        if self._final is not None:
            return self._final
        handle = self._require_handle()
        raw = handle.stats()
        return CaptureStats(
            written=self._written,
            received_by_kernel=raw.received,
            dropped_by_kernel=raw.dropped,
            dropped_by_interface=raw.if_dropped,
            dropped_by_output=self._output.dropped_records,
        )

    # -- internals -------------------------------------------------------------------

    def _require_handle(self) -> PcapHandle:
        if self._handle is None:
            raise CaptureError("capture not started")
        return self._handle

    def dispatch_now(self) -> None:
        """Hand whatever libpcap holds to the output now, without waiting to be woken.

        For a caller about to promise something about what was captured up
        to now (a stream's heartbeat): packets already in the ring are in
        the output when this returns. Failures go where the event-driven
        dispatch sends them (`wait()` / `stop()`).
        """
        self._on_readable()

    def _on_readable(self) -> None:
        try:
            self._dispatch()
        except Exception as exc:  # reported through wait()/stop(), never lost
            self._finish(exc)

    def _dispatch(self) -> None:
        handle, dumper = self._handle, self._dumper
        if handle is None or dumper is None or handle.closed:
            return
        if self._done is not None and self._done.done():
            return
        for _ in range(MAX_DISPATCH_ROUNDS):
            remaining = -1 if self._count is None else self._count - self._written
            n = handle.dispatch(dumper, remaining)
            if n <= 0:
                break
            self._written += n
            self._output.batch_done(n)
            if self._count is not None and self._written >= self._count:
                self._finish(None)
                break

    def _finish(self, exc: BaseException | None) -> None:
        if self._handle is not None and self._loop is not None and not self._handle.closed:
            self._loop.remove_reader(self._handle.fd)
        if self._done is not None and not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)

    async def _close(self) -> CaptureStats:
        handle = self._require_handle()
        try:
            stats = self.stats()
        except CaptureError:
            stats = CaptureStats(self._written, 0, 0, 0)
        self._finish(None)
        try:
            self._output.close()
        finally:
            # Closing a packet socket waits for the kernel (tens of ms): not on the loop.
            await asyncio.to_thread(handle.close)
        return stats
