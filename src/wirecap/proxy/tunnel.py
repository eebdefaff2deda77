"""SHELL: the byte relay between client and origin, as two asyncio Protocols.

Data is forwarded from `data_received` straight into the other transport (no
coroutine per chunk). Back-pressure: when one side's write buffer passes its high
mark, reading from the other side pauses until it drains. Half-close is carried
across (RFC 9293 §3.6: a FIN ends one direction only), and the tunnel ends when
both directions have ended, when either side fails, or when it has been idle.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

__all__ = ["RELAY_HIGH_WATER", "Tunnel", "TunnelEnd"]

#: Bytes queued toward a slow side before reading from the fast side pauses:
#: large enough to keep a fast path busy between loop iterations.
RELAY_HIGH_WATER = 1 << 20


class TunnelEnd(enum.Enum):
    CLIENT_CLOSED = "client closed"
    ORIGIN_CLOSED = "origin closed"
    BOTH_CLOSED = "both sides closed"
    CLIENT_ERROR = "client connection failed"
    ORIGIN_ERROR = "origin connection failed"
    IDLE_TIMEOUT = "idle timeout"
    SHUTDOWN = "proxy shutdown"


class _Side(asyncio.Protocol):
    def __init__(self, tunnel: Tunnel, name: str) -> None:
        self.tunnel = tunnel
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.bytes_in = 0
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=RELAY_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.tunnel.touch()
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.tunnel.touch()
        peer = self.peer
        transport = peer.transport if peer is not None and not peer.lost else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        self.tunnel.side_ended(self.name, error=False)
        return True  # keep the transport: the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.tunnel.side_ended(self.name, error=exc is not None or not self.eof)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.eof:
            self.peer.transport.resume_reading()


class Tunnel:
    """Relay bytes between an accepted client transport and a connected origin socket."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = _Side(self, "client")
        self.origin = _Side(self, "origin")
        self.client.peer, self.origin.peer = self.origin, self.client
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._last_activity = clock()
        self._done: asyncio.Future[TunnelEnd] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._first_end: str | None = None

    @property
    def client_to_origin(self) -> int:
        return self.client.bytes_in

    @property
    def origin_to_client(self) -> int:
        return self.origin.bytes_in

    def touch(self) -> None:
        self._last_activity = self._clock()

    def start(self) -> None:
        self._arm_idle_timer(self.idle_timeout)

    def _arm_idle_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        idle = self._clock() - self._last_activity
        if idle >= self.idle_timeout:
            self.close(TunnelEnd.IDLE_TIMEOUT)
        else:
            self._arm_idle_timer(self.idle_timeout - idle)

    def side_ended(self, name: str, *, error: bool) -> None:
        if self._done.done():
            return
        if error:
            self.close(TunnelEnd.CLIENT_ERROR if name == "client" else TunnelEnd.ORIGIN_ERROR)
            return
        if self._first_end is None:
            self._first_end = name
        if self.client.eof and self.origin.eof:
            first = self._first_end
            self.close(TunnelEnd.CLIENT_CLOSED if first == "client" else TunnelEnd.ORIGIN_CLOSED)

    def close(self, reason: TunnelEnd) -> None:
        """End the tunnel: flush what is queued, then close both sides."""
        if self._timer is not None:
            self._timer.cancel()
        for side in (self.client, self.origin):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        if not self._done.done():
            self._done.set_result(reason)

    async def wait(self) -> TunnelEnd:
        return await asyncio.shield(self._done)
