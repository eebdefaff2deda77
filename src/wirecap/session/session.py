"""SHELL: the capture session: libpcap handles, the key log file, the environment, files.

``with CaptureSession(...) as pcap:`` opens one libpcap handle per interface
(armed, filter set) on an event loop of its own in a background thread, creates
the key log file 0600 in a fresh 0700 directory, and only then sets
``SSLKEYLOGFILE``. Leaving the block puts the environment back first, then sends
the marker packets, waits (bounded) until every handle has written its marker,
stops the captures (each handle closed: nothing is written after the block),
and writes ``packets.pcapng``: all interfaces merged by timestamp, the key log
embedded as a Decryption Secrets Block, the markers left out.

The user's exception always propagates unchanged: a failure while finishing the
capture is then attached to it as a note, not raised in its place.

Everything that decides something (interfaces, filters, markers, the file's
blocks, the environment's old value, which ports are TLS) is in the pure
modules next to this one; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import shutil
import socket
import ssl
import tarfile
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from wirecap.core.capture.devices import CaptureDevice
from wirecap.core.capture.handle import MemoryDumper, PcapHandle, check_filter
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import BatchOutput, write_all
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stats import CaptureStats
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import InterfaceStatistics
from wirecap.errors import (
    BadFilterError,
    CaptureWriteError,
    ExtraMissingError,
    UsageError,
)
from wirecap.session.contents import (
    KEYLOG_NAME,
    PCAPNG_NAME,
    README_NAME,
    SessionFile,
    tarball_readme,
)
from wirecap.session.dissect import find_server_ports
from wirecap.session.environment import (
    KEYLOG_VARIABLE,
    SavedVariable,
    restore_variable,
    set_variable,
)
from wirecap.session.marker import (
    TOKEN_LENGTH,
    MarkerKind,
    MarkerRoute,
    capture_filter,
    contains_marker,
    ethernet_marker_frame,
    marker_payload,
)
from wirecap.session.options import ANY_INTERFACE, SessionOptions, resolve_interfaces

__all__ = [
    "SESSION_BUFFER_TIMEOUT_MS",
    "CaptureSession",
    "CapturedPackets",
    "SessionServices",
    "log_keys",
]

#: TPACKET_V3 block retire timeout of a session's handles. It bounds how long the
#: marker takes to reach us and how long stop() drains, so the exit costs tens of
#: milliseconds; an idle handle wakes up at most 100 times a second for it.
SESSION_BUFFER_TIMEOUT_MS = 10

#: Longest wait for the capture thread to open or close the handles. Opening maps
#: the kernel ring (tens of ms measured); far longer means the system is stuck,
#: and the block must not hang with it.
MAX_THREAD_WAIT_S = 60.0

#: The scapy release the `scapy` extra pins is known to decrypt TLS 1.2 and 1.3
#: from a DSB; 2.5 decrypts nothing (measured), so older ones are refused.
MIN_SCAPY_VERSION = (2, 6)

_P = ParamSpec("_P")
_R = TypeVar("_R")

# ARPHRD_* from linux/if_arp.h, as /sys/class/net/IF/type shows them.
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772

#: scapy's dissector bindings and TLS state are process-global: one reader at a time.
_SCAPY_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a session takes from the process, passed in by the composition root."""

    #: The environment SSLKEYLOGFILE is set in (os.environ).
    environ: MutableMapping[str, str]
    #: The interfaces libpcap offers (core.capture.devices.list_devices).
    devices: Callable[[], Sequence[CaptureDevice]]
    #: Random bytes for the marker token (os.urandom).
    random_bytes: Callable[[int], bytes]
    #: Where the session's 0700 directory is made; None: the system temp dir.
    temp_root: str | None = None


def log_keys(context: ssl.SSLContext, keylog_filepath: str | os.PathLike[str]) -> ssl.SSLContext:
    """Make an existing SSLContext append its TLS secrets to `keylog_filepath`.

    Contexts created inside the block by `ssl.create_default_context()` (and by
    urllib3, requests and httpx) pick up SSLKEYLOGFILE by themselves; a context
    made earlier, or built with `ssl.SSLContext(...)` directly, needs this.
    Connections the context opened before the call are not logged.
    """
    context.keylog_filename = os.fspath(keylog_filepath)
    return context


class CapturedPackets:
    """What a session recorded: the pcapng file, the key log, and ways to hand them on.

    The files exist once the block has ended; until then `tarball()` and
    `packets()` raise UsageError.
    """

    def __init__(self, directory: Path, interfaces: tuple[str, ...]) -> None:
        self._directory = directory
        self._pcap = directory / PCAPNG_NAME
        self._keylog = directory / KEYLOG_NAME
        #: The interfaces captured on, as resolved (each has one IDB in the file, named
        #: after it, written before that interface's first packet).
        self.interfaces = interfaces
        #: libpcap's counters per interface, once the block has ended.
        self.stats: dict[str, CaptureStats] = {}
        #: Packets written to the file (markers excluded), once the block has ended.
        self.packet_count = 0
        #: Whether every handle with a marker saw it before the wait ran out.
        self.caught_up = False
        self._capturing = True
        self._deleted = False
        self._packets: list[Any] | None = None
        self._tarballs: list[Path] = []

    def __repr__(self) -> str:
        state = "capturing" if self._capturing else "deleted" if self._deleted else "finished"
        return f"<CapturedPackets {self.pcap_filepath} {state}>"

    @property
    def directory(self) -> str:
        """The session's own 0700 directory; `delete()` removes it."""
        return str(self._directory)

    @property
    def pcap_filepath(self) -> str:
        """The pcapng file (written when the block ends), TLS keys embedded."""
        return str(self._pcap)

    @property
    def keylog_filepath(self) -> str:
        """The TLS key log (NSS format) SSLKEYLOGFILE points at during the block."""
        return str(self._keylog)

    def log_keys(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Make an SSLContext created before the block log its secrets here (see `log_keys`)."""
        return log_keys(context, self._keylog)

    def tarball(self, path: str | os.PathLike[str] | None = None, *, gzip: bool = True) -> str:
        """Write a tar (gzip-compressed by default) of the pcapng, the key log and a README.

        Without `path`, a new file is made 0600 in the system temp dir, outside the
        session directory, so it survives `delete()` and can be handed on. An
        existing `path` is replaced. Returns the tarball's path.
        """
        self._require_finished("tarball()")
        suffix = ".tar.gz" if gzip else ".tar"
        if path is None:
            fd, name = tempfile.mkstemp(prefix="wirecap-session-", suffix=suffix)
            os.close(fd)
            target = Path(name)
            self._tarballs.append(target)
        else:
            target = Path(path)
        part = target.with_name(target.name + ".part")
        readme = tarball_readme(
            interfaces=self.interfaces,
            packets=self.packet_count,
            key_log_lines=_count_lines(self._keylog),
        ).encode()
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with (
                os.fdopen(fd, "wb") as raw,
                tarfile.open(fileobj=raw, mode="w:gz" if gzip else "w") as tar,
            ):
                for member in (self._pcap, self._keylog):
                    tar.add(member, arcname=member.name, filter=_private_member)
                info = _private_member(tarfile.TarInfo(README_NAME))
                info.size = len(readme)
                info.mtime = int(time.time())
                tar.addfile(info, _BytesReader(readme))
            os.replace(part, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            raise CaptureWriteError(f"{target}: {exc.strerror or exc}") from exc
        return str(target)

    def packets(self, *, layers: type[Any] | Iterable[type[Any]] | None = None) -> list[Any]:
        """The captured packets as scapy packets, TLS 1.2 and 1.3 decrypted with the key log.

        TLS and HTTP are dissected on whatever port they used (found from the
        ClientHellos and request lines in the capture), not only 443 and 80.
        `layers`: keep only packets that have one of these scapy layers.

        Raises:
            ExtraMissingError: scapy (the `wirecap[scapy]` extra) is not installed,
                or is too old to decrypt.
        """
        self._require_finished("packets()")
        if self._packets is None:
            self._packets = _read_with_scapy(self._pcap)
        if layers is None:
            return list(self._packets)
        wanted = (layers,) if isinstance(layers, type) else tuple(layers)
        return [packet for packet in self._packets if any(packet.haslayer(x) for x in wanted)]

    def delete(self, *, tarballs: bool = False) -> None:
        """Remove the session directory: the pcapng, the key log, everything in it.

        Tarballs made with a default path live outside it (they are meant to be
        handed on) and stay, unless `tarballs` is true. Idempotent.
        """
        if self._capturing:
            raise UsageError("delete() inside the capture block: leave the block first")
        shutil.rmtree(self._directory, ignore_errors=True)
        if tarballs:
            for path in self._tarballs:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self._tarballs.clear()
        self._packets = None
        self._deleted = True

    def _require_finished(self, what: str) -> None:
        if self._capturing:
            raise UsageError(f"{what} while still capturing: call it after the block")
        if self._deleted:
            raise UsageError(f"{what} after delete(): the capture is gone")


class _BytesReader:
    """The minimal file object tarfile.addfile reads a member's data from."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


def _private_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Members unpack 0600 and owned by whoever unpacks them: they hold secrets.
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


# -- the capture handles ---------------------------------------------------------------


class _MarkedPcapOutput(BatchOutput):
    """Classic pcap into a 0600 file, batch by batch, noting when the marker passes.

    libpcap dumps each batch into memory (no Python per packet); the batch is
    written to the file and searched for the marker, which costs one memmem per
    batch.
    """

    def __init__(self, path: Path, token: bytes) -> None:
        self.path = path
        self._token = token
        self._fd: int | None = None
        #: Set on the capture thread's loop (an Event binds to the loop that first waits).
        self.marker_seen = asyncio.Event()
        super().__init__(self._on_batch, self._on_close)

    def open(self, handle: PcapHandle) -> MemoryDumper:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return super().open(handle)

    def _on_batch(self, data: bytes) -> None:
        assert self._fd is not None
        write_all(self._fd, data, self.path)
        if not self.marker_seen.is_set() and contains_marker(data, self._token):
            self.marker_seen.set()

    def _on_close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(slots=True)
class _Handle:
    name: str
    route: MarkerRoute
    output: _MarkedPcapOutput
    capture: LiveCapture


class _LoopThread:
    """An asyncio event loop running in a daemon thread of its own.

    The block's code runs in the caller's thread (or on the caller's loop, which
    it may block); the captures must keep reading meanwhile, so they get a loop
    nothing else runs on.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="wirecap-session", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _R]) -> _R:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=MAX_THREAD_WAIT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=MAX_THREAD_WAIT_S)
        if not self._thread.is_alive():
            self.loop.close()


def _sysfs(name: str, field: str) -> str | None:
    try:
        return (Path("/sys/class/net") / name / field).read_text().strip()
    except (OSError, ValueError):
        return None


def _route(name: str, device: CaptureDevice | None, udp_port: int) -> MarkerRoute:
    """How the marker reaches a handle on interface `name`."""
    arp_type = _sysfs(name, "type")
    if name == ANY_INTERFACE or (device is not None and device.loopback):
        return MarkerRoute(MarkerKind.LOOPBACK_UDP, udp_port)
    if arp_type == str(_ARPHRD_LOOPBACK):
        return MarkerRoute(MarkerKind.LOOPBACK_UDP, udp_port)
    if arp_type == str(_ARPHRD_ETHER) and _sysfs(name, "address"):
        return MarkerRoute(MarkerKind.ETHERNET)
    return MarkerRoute(MarkerKind.NONE)


class _Run:
    """One capture from `__enter__` to `__exit__`."""

    def __init__(self, options: SessionOptions, services: SessionServices) -> None:
        self.options = options
        self.services = services
        self.token = services.random_bytes(TOKEN_LENGTH)
        self.directory = Path(tempfile.mkdtemp(prefix="wirecap-session-", dir=services.temp_root))
        self.handles: list[_Handle] = []
        self.saved: SavedVariable | None = None
        self.thread: _LoopThread | None = None
        self.marker_socket: socket.socket | None = None
        self.result: CapturedPackets | None = None

    # -- enter ---------------------------------------------------------------------

    def start(self) -> CapturedPackets:
        try:
            return self._start()
        except BaseException:
            self._abort()
            raise

    def _start(self) -> CapturedPackets:
        options = self.options
        devices = {device.name: device for device in self.services.devices()}
        names = resolve_interfaces(options.interfaces, list(devices))
        if options.filter.strip():
            try:
                check_filter(options.filter)
            except BadFilterError as exc:
                raise BadFilterError(f"bad filter {options.filter!r}: {exc}") from exc
        # The key log exists, 0600 in our 0700 directory, before SSLKEYLOGFILE
        # names it: left to OpenSSL it would be created 0644 under the usual umask.
        result = CapturedPackets(self.directory, names)
        fd = os.open(
            result.keylog_filepath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        os.close(fd)
        marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.marker_socket = marker
        marker.bind(("127.0.0.1", 0))
        udp_port = int(marker.getsockname()[1])
        for index, name in enumerate(names):
            route = _route(name, devices.get(name), udp_port)
            spec = CaptureSpec(
                interface=name,
                filter=capture_filter(options.filter, route),
                snaplen=options.snaplen,
                buffer_timeout_ms=SESSION_BUFFER_TIMEOUT_MS,
            )
            output = _MarkedPcapOutput(self.directory / f"interface-{index}.pcap", self.token)
            self.handles.append(_Handle(name, route, output, LiveCapture(spec, output)))
        self.thread = _LoopThread()
        self.thread.run(self._open_all())
        # Only now, with every handle armed, does the block get its key log.
        self.saved = set_variable(self.services.environ, KEYLOG_VARIABLE, result.keylog_filepath)
        self.result = result
        return result

    async def _open_all(self) -> None:
        outcomes = await asyncio.gather(
            *(handle.capture.start_async() for handle in self.handles), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            await self._stop_all()
            raise failures[0]

    def _abort(self) -> None:
        """Undo a start that failed: nothing may be left running or lying around."""
        try:
            if self.thread is not None:
                with contextlib.suppress(Exception):
                    self.thread.run(self._stop_all())
                self.thread.close()
        finally:
            if self.marker_socket is not None:
                self.marker_socket.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- exit ----------------------------------------------------------------------

    def finish(self, body_error: BaseException | None) -> None:
        """End the capture and write the file; see the module docstring for the order."""
        result = self.result
        assert result is not None and self.thread is not None
        try:
            if self.saved is not None:
                restore_variable(self.services.environ, self.saved)
                self.saved = None
        finally:
            try:
                stats = self.thread.run(self._stop(self.options.wait_for_packets))
                self._write(result, stats)
            except Exception as exc:
                if body_error is None:
                    raise
                # The block's own exception is what the user must see.
                body_error.add_note(f"wirecap: the capture could not be finished: {exc!r}")
            finally:
                self.thread.close()
                if self.marker_socket is not None:
                    self.marker_socket.close()
                result._capturing = False

    async def _stop(self, wait: bool) -> list[CaptureStats | BaseException]:
        result = self.result
        assert result is not None
        if wait:
            result.caught_up = await self._catch_up(self.options.wait_before_terminate)
        return await self._stop_all()

    async def _stop_all(self) -> list[CaptureStats | BaseException]:
        started = [handle for handle in self.handles if handle.capture.started_at is not None]
        # A handle whose marker came back has handed over everything sent before
        # it: no need to wait for the kernel to retire a partly filled block.
        outcomes = await asyncio.gather(
            *(
                handle.capture.stop(drain=not handle.output.marker_seen.is_set())
                for handle in started
            ),
            return_exceptions=True,
        )
        return list(outcomes)

    async def _catch_up(self, timeout: float) -> bool:
        """Send each handle its marker; wait until all are written or `timeout` passes."""
        waiting: list[Awaitable[Any]] = []
        sent_loopback = False
        for handle in self.handles:
            if handle.route.kind is MarkerKind.NONE:
                continue
            try:
                if handle.route.kind is MarkerKind.LOOPBACK_UDP:
                    if not sent_loopback:
                        self._send_loopback_marker()
                        sent_loopback = True
                else:
                    _send_ethernet_marker(handle.name, self.token)
            except OSError:
                # An interface that is down cannot carry the marker; its capture is
                # drained by stop() as far as libpcap allows.
                continue
            waiting.append(handle.output.marker_seen.wait())
        if not waiting:
            return False
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), timeout)
        except TimeoutError:
            return False
        return True

    def _send_loopback_marker(self) -> None:
        sock = self.marker_socket
        assert sock is not None
        sock.sendto(marker_payload(self.token), sock.getsockname())

    def _write(self, result: CapturedPackets, outcomes: list[CaptureStats | BaseException]) -> None:
        """packets.pcapng from the per-interface files, then the files are removed."""
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        now_ns = time.time_ns()
        statistics: list[InterfaceStatistics | None] = []
        for handle, outcome in zip(self.handles, outcomes, strict=False):
            if isinstance(outcome, CaptureStats):
                result.stats[handle.name] = outcome
                statistics.append(
                    InterfaceStatistics(
                        0, now_ns, outcome.received_by_kernel, outcome.dropped_by_kernel
                    )
                )
            else:
                statistics.append(None)
        target = Path(result.pcap_filepath)
        part = target.with_name(target.name + ".part")
        contents = SessionFile(
            [handle.name for handle in self.handles], key_log=b"", token=self.token
        )
        try:
            contents.key_log = Path(result.keylog_filepath).read_bytes()
            sources = [read_file(handle.output.path) for handle in self.handles]
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in contents.blocks(sources, statistics):
                    out.write(chunk)
            os.replace(part, target)
        except OSError as exc:
            # Also when the session directory was removed under the block.
            raise CaptureWriteError(f"{exc.filename or target}: {exc.strerror or exc}") from exc
        for handle in self.handles:
            handle.output.path.unlink(missing_ok=True)
        result.packet_count = contents.packets
        if failures:
            raise failures[0]


def _send_ethernet_marker(name: str, token: bytes) -> None:
    mac = bytes.fromhex((_sysfs(name, "address") or "").replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((name, 0))
        sock.send(ethernet_marker_frame(mac, token))


# -- scapy -----------------------------------------------------------------------------


def _read_with_scapy(path: Path) -> list[Any]:
    """Dissect the session's pcapng with scapy, decrypting TLS with its embedded DSB."""
    try:
        import scapy
        from scapy.config import conf
        from scapy.main import load_layer
    except ImportError as exc:
        raise ExtraMissingError("packets() needs scapy: pip install 'wirecap[scapy]'") from exc
    version = tuple(int(part) for part in scapy.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_SCAPY_VERSION:
        raise ExtraMissingError(
            f"scapy {scapy.__version__} cannot decrypt TLS from a key log; "
            "install the pinned one: pip install 'wirecap[scapy]'"
        )
    ports = find_server_ports(read_file(path))
    with _SCAPY_LOCK:
        for layer in ("inet", "inet6", "dns", "http", "tls"):
            load_layer(layer)
        if not conf.crypto_valid:
            raise ExtraMissingError(
                "packets() needs the cryptography package to decrypt TLS: "
                "pip install 'wirecap[scapy]'"
            )
        from scapy.layers.http import HTTP
        from scapy.layers.inet import TCP
        from scapy.layers.tls.record import TLS
        from scapy.layers.tls.session import _tls_sessions
        from scapy.packet import bind_bottom_up, split_bottom_up
        from scapy.sendrecv import sniff
        from scapy.sessions import TCPSession

        bindings: list[tuple[type[Any], dict[str, int]]] = []
        for layer_class, found, default in (
            (TLS, ports.tls, {443}),
            (HTTP, ports.http, {80, 8080}),
        ):
            for port in sorted(found - default):
                bindings += [(layer_class, {"sport": port}), (layer_class, {"dport": port})]
        # conf.tls_sessions exists once the TLS layer is loaded (untyped in scapy).
        saved_sessions = getattr(conf, "tls_sessions")  # noqa: B009
        # A fresh TLS session table: sessions from another capture in this process
        # (same addresses and ports) must not lend this one their keys.
        setattr(conf, "tls_sessions", _tls_sessions())  # type: ignore[no-untyped-call]  # noqa: B010
        for layer_class, fields in bindings:
            bind_bottom_up(TCP, layer_class, **fields)
        try:
            return list(sniff(offline=str(path), session=TCPSession, quiet=True))
        finally:
            for layer_class, fields in bindings:
                split_bottom_up(TCP, layer_class, **fields)
            setattr(conf, "tls_sessions", saved_sessions)  # noqa: B010


# -- the public object -----------------------------------------------------------------


class CaptureSession:
    """What `capture_packets()` returns: a context manager, async context manager, decorator.

    Each ``with`` / ``async with`` block, and each call of a decorated function, is
    one capture; the block gets a `CapturedPackets`. A decorated function's
    capture is `last` after the call. Nested blocks on one object are allowed
    (innermost first); blocks running concurrently need one object each.
    """

    def __init__(self, options: SessionOptions, services: SessionServices) -> None:
        self.options = options
        self.services = services
        self._active: list[_Run] = []
        self._last: CapturedPackets | None = None

    @property
    def last(self) -> CapturedPackets:
        """The capture of the block or call that ended last."""
        if self._last is None:
            raise UsageError("no capture has finished yet")
        return self._last

    def __enter__(self) -> CapturedPackets:
        run = _Run(self.options, self.services)
        result = run.start()
        self._active.append(run)
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(self._active.pop(), exc)

    async def __aenter__(self) -> CapturedPackets:
        # Opening handles and files blocks; the caller's loop keeps running meanwhile.
        run = _Run(self.options, self.services)
        result = await asyncio.to_thread(run.start)
        self._active.append(run)
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run = self._active.pop()
        try:
            await asyncio.to_thread(run.finish, exc)
        finally:
            self._last = run.result

    def _finish(self, run: _Run, exc: BaseException | None) -> None:
        try:
            run.finish(exc)
        finally:
            self._last = run.result

    def __call__(self, function: Callable[_P, _R]) -> Callable[_P, _R]:
        """Run every call of `function` (plain or async) under a capture of its own.

        Calls may overlap (threads, tasks): each has its own capture; `last` is
        the one that ended last.
        """
        if inspect.iscoroutinefunction(function):
            coroutine_function: Callable[_P, Awaitable[Any]] = function

            @functools.wraps(function)
            async def run_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                run = _Run(self.options, self.services)
                await asyncio.to_thread(run.start)
                try:
                    value = await coroutine_function(*args, **kwargs)
                except BaseException as exc:
                    await asyncio.to_thread(self._finish, run, exc)
                    raise
                await asyncio.to_thread(self._finish, run, None)
                return value

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run_sync(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            run = _Run(self.options, self.services)
            run.start()
            try:
                value = function(*args, **kwargs)
            except BaseException as exc:
                self._finish(run, exc)
                raise
            self._finish(run, None)
            return value

        return run_sync
