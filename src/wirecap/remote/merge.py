"""The `wirecap merge` shell: streams from workers and files in, one ordered capture out.

The ordering is the core's (`LiveMerger` for live streams, `merge_packets`
when every source is a file); this module owns the sockets, files, clock,
signals and stderr. Each stream is decoded by its own `CaptureDecoder`, so a
worker sending garbage breaks only its own stream: it is reported with its URL
and reason, finished in the merger, and the others go on.

Output records are always written whole: packets are written only between
awaits, and a signal only sets an event the main loop checks, so SIGINT,
SIGTERM and a closed stdout all leave a capture whose last record is complete.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mmap
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.merge import LiveMerger, PcapngMergeWriter, merge_packets
from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAGIC_MICROSECONDS,
    MAGIC_NANOSECONDS,
    PcapEncoder,
    decode_file_header,
)
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.record_merge import (
    MAX_SOURCES,
    NATIVE,
    PcapFile,
    PcapngFile,
    RecordMerge,
    SourceFailed,
    pcapng_copyable,
)
from wirecap.core.formats.records import (
    DEFAULT_SNAPLEN,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameResolution,
    Packet,
    SectionStart,
)
from wirecap.errors import (
    CaptureError,
    CaptureWriteError,
    DecodeError,
    OptionError,
    TruncatedError,
)
from wirecap.remote.sources import FileSource, Source, UrlSource

if TYPE_CHECKING:
    # Imported where streams are opened: a merge of files never needs aiohttp,
    # and importing it costs a sixth of a second at every start.
    import aiohttp

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_DELAY_MS",
    "MergeOptions",
    "StreamStatus",
    "build_ssl_context",
    "merge",
]

#: How long a packet waits for a quiet stream before it is released anyway. A
#: trade-off: longer gives ordered output across streams whose packets arrive
#: further apart in time; shorter gives lower latency (e.g. behind `| tcpdump`).
DEFAULT_MAX_DELAY_MS = 200
#: Connecting and getting the response headers of one worker.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Bytes read from a capture file per step (same order as the reader's chunk).
FILE_CHUNK_SIZE = 1 << 20
#: Largest snaplen a pcap output may announce: libpcap's MAXIMUM_SNAPLEN;
#: readers such as tcpdump refuse files announcing more.
MAX_PCAP_SNAPLEN = DEFAULT_SNAPLEN
#: Packets merged from files between two writes (and two looks at signals).
_FILE_BATCH = 4096

Format = Literal["pcap", "pcapng"]
#: A pcapng file starts with its SHB's block type (a byte-order palindrome).
_PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
#: The four pcap magics as they appear on disk (µs/ns × either byte order).
_PCAP_MAGICS = frozenset(
    magic.to_bytes(4, order)
    for magic in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS)
    for order in ("little", "big")
)


@dataclass(frozen=True, slots=True)
class MergeOptions:
    """Everything `merge` needs, parsed once by the CLI."""

    sources: tuple[Source, ...]
    #: None: standard output.
    output: Path | None = None
    file_format: Format = "pcapng"
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    fail_fast: bool = False
    #: A stream silent this long (no byte, not even a heartbeat) has failed;
    #: None: wait forever (a pcap stream of a quiet filter may be silent for hours).
    idle_timeout_s: float | None = None


@dataclass(slots=True)
class StreamStatus:
    """Counters of one source, reported on stderr."""

    display: str
    connected: bool = False
    packets: int = 0
    bytes: int = 0
    late: int = 0
    error: str | None = None
    done: bool = False
    #: Still running when the merge was told to stop (signal, closed output).
    stopped: bool = False

    def line(self, index: int) -> str:
        state = "connected" if self.connected else "not connected"
        if self.error is not None:
            state = f"error: {self.error}"
        elif self.done:
            state = "ended"
        elif self.stopped:
            state = "stopped (the merge ended first)"
        return (
            f"[{index}] {self.display}: {state}; {self.packets} packets, "
            f"{self.bytes} bytes, {self.late} late"
        )


class _StreamFailed(Exception):
    """A stream-level failure; its message is the reason shown next to the URL."""


class _OutputClosed(Exception):
    """The reader of the output went away (EPIPE)."""


def build_ssl_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """Client TLS context: `ca_file` only when given (really used: ddump's -ca was not),
    else the system store, which honours SSL_CERT_FILE / SSL_CERT_DIR; plus a client
    certificate for mTLS."""
    if key_file is not None and cert_file is None:
        raise OptionError("--key needs --cert")
    if ca_file is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks hostnames
        try:
            context.load_verify_locations(cafile=os.fspath(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise OptionError(f"--ca {ca_file}: cannot load CA certificates: {exc}") from None
    else:
        context = ssl.create_default_context()
    if cert_file is not None:
        try:
            context.load_cert_chain(
                os.fspath(cert_file), os.fspath(key_file) if key_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise OptionError(
                f"--cert {cert_file} / --key {key_file}: cannot load client certificate: {exc}"
            ) from None
    return context


class _Output:
    """Encodes released packets as pcapng (one IDB per source interface) or pcap."""

    def __init__(
        self,
        file_format: Format,
        labels: Sequence[str],
        stream: BinaryIO,
        interface_names: Sequence[str | None] | None = None,
    ) -> None:
        self.file_format = file_format
        self.labels = tuple(labels)
        #: Per source: the interface to name when its stream does not (pcap has
        #: no interface names; a worker's pcap stream is of `interface=` or any).
        self.interface_names = (
            tuple(interface_names) if interface_names is not None else (None,) * len(labels)
        )
        self.stream = stream
        self._pcapng = PcapngMergeWriter(labels=labels)
        self._interfaces: dict[tuple[int, int], Interface] = {}
        self._counts: dict[int, int] = {}
        self._pcap: PcapEncoder | None = None
        self._pending: list[bytes | bytearray] = []
        self._wrote_any = False

    def event(self, source: int, event: Event) -> None:
        """A non-packet event of `source`; raises _StreamFailed if pcap cannot hold it."""
        if isinstance(event, SectionStart):
            self._counts[source] = 0
            self._pcapng.start_section(source)
        elif isinstance(event, Interface):
            local = self._counts.get(source, 0)
            self._counts[source] = local + 1
            if self.file_format == "pcap":
                self._check_pcap(event)
            self._interfaces[(source, local)] = event
            name = self.labels[source]
            interface = event.name or self.interface_names[source]
            if interface:
                name = f"{name}:{interface}"
            self._pcapng.add_interface(source, replace(event, name=name))
        elif isinstance(event, DecryptionSecrets | NameResolution) and self.file_format == "pcapng":
            self._pending.append(self._pcapng.event(source, event))
        # InterfaceStatistics are heartbeats here (the caller advances the merger);
        # pcap has no place for secrets or names.

    def _check_pcap(self, interface: Interface) -> None:
        first = self._pcap.interface if self._pcap is not None else None
        if first is None and self._interfaces:
            first = next(iter(self._interfaces.values()))
        problem = _pcap_output_problem(interface, first)
        if problem is not None:
            raise _StreamFailed(problem)

    def packet(self, source: int, packet: Packet) -> None:
        if self.file_format == "pcapng":
            self._pending.append(self._pcapng.packet(source, packet))
            return
        if self._pcap is None:
            interface = self._interfaces.get((source, packet.interface_id))
            if interface is None:
                raise _StreamFailed(f"packet on undeclared interface {packet.interface_id}")
            self._pcap = PcapEncoder(
                Interface(linktype=interface.linktype, snaplen=MAX_PCAP_SNAPLEN)
            )
            self._pending.append(self._pcap.header())
        self._pending.append(self._pcap.packet(packet))

    def write(self, data: bytes | bytearray) -> None:
        """Write bytes already encoded for this output, now."""
        self._pending.append(data)
        self.flush()

    def flush(self) -> None:
        """Write what is pending and push it to the reader now (no buffering delay)."""
        if not self._pending:
            return
        # One chunk (the file merge writes one per round) is written as it is.
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._wrote_any = True
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            raise _OutputClosed from None
        except OSError as exc:
            raise CaptureWriteError(f"cannot write the merged capture: {exc}") from None

    def finish(self) -> None:
        """At the end: a pcap output with no packet still gets its file header."""
        if self.file_format == "pcap" and self._pcap is None and self._interfaces:
            first = next(iter(self._interfaces.values()))
            self._pcap = PcapEncoder(Interface(linktype=first.linktype, snaplen=MAX_PCAP_SNAPLEN))
            self._pending.append(self._pcap.header())
        if self.file_format == "pcapng" and not self._wrote_any and not self._pending:
            # No packet at all: still a valid (empty) capture, not a 0-byte file.
            self._pending.append(PcapngEncoder().section_header(user_application="wirecap"))
        self.flush()


def _pcap_output_problem(interface: Interface, first: Interface | None) -> str | None:
    """Why a pcap output cannot hold `interface`'s packets beside `first`'s, if it cannot."""
    if interface.snaplen > MAX_PCAP_SNAPLEN:
        return (
            f"snaplen {interface.snaplen} is above {MAX_PCAP_SNAPLEN}, which pcap output "
            "cannot announce; use --format pcapng"
        )
    if first is not None and first.linktype != interface.linktype:
        return (
            f"link type {interface.linktype} differs from {first.linktype} of the other "
            "sources; pcap output needs one link type: use --format pcapng"
        )
    return None


class _Merge:
    """One run: a task per stream feeding a LiveMerger, a loop releasing and writing."""

    def __init__(
        self,
        options: MergeOptions,
        output: _Output,
        log: Callable[[str], None],
        clock: Callable[[], int],
    ) -> None:
        self.options = options
        self.output = output
        self.log = log
        self.clock = clock
        self.status = [StreamStatus(display=s.display) for s in options.sources]
        self.merger = LiveMerger(max_delay_ns=int(options.max_delay_ms * 1_000_000))
        for _ in options.sources:
            self.merger.add_source()
        self.stop = asyncio.Event()
        self.fatal: str | None = None
        self.output_closed = False

    # -- per stream ------------------------------------------------------------

    async def stream(
        self, index: int, source: Source, session: aiohttp.ClientSession | None
    ) -> None:
        import aiohttp

        status = self.status[index]
        try:
            if isinstance(source, FileSource):
                await self._file(index, source)
            elif source.socket_path is not None:
                connector = aiohttp.UnixConnector(path=source.socket_path)
                async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as own:
                    await self._url(index, source, own)
            else:
                assert session is not None
                await self._url(index, source, session)
        except asyncio.CancelledError:
            raise
        except _OutputClosed:
            self.output_closed = True
            self.stop.set()
        except _StreamFailed as exc:
            self._failed(index, str(exc))
        except DecodeError as exc:
            self._failed(index, f"not a valid pcap/pcapng stream: {exc}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._failed(index, _describe(exc))
        except Exception as exc:  # a bug must not take the other streams down
            self._failed(index, f"internal error: {exc!r}")
        else:
            status.done = True
            self._end(index)

    async def _url(self, index: int, source: UrlSource, session: aiohttp.ClientSession) -> None:
        import aiohttp

        status = self.status[index]
        headers = {}
        if source.username is not None or source.password is not None:
            # RFC 7617 §2: base64 of user-id ":" password, UTF-8 (§2.1).
            token = f"{source.username or ''}:{source.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        try:
            async with asyncio.timeout(self.options.connect_timeout_s):
                response = await session.get(source.url, headers=headers)
        except TimeoutError:
            raise _StreamFailed(
                f"no response within {self.options.connect_timeout_s:g} s (connect timeout)"
            ) from None
        async with response:
            if response.status != 200:
                body = (await _read_some(response)).decode("utf-8", "replace").strip()
                reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
                raise _StreamFailed(f"{reason}: {body[:200]}" if body else reason)
            status.connected = True
            content_type = response.headers.get("Content-Type", "none")
            self.log(f"[{index}] {source.display}: connected ({content_type})")
            decoder = CaptureDecoder()
            idle = self.options.idle_timeout_s
            try:
                while True:
                    try:
                        async with asyncio.timeout(idle):
                            chunk = await response.content.readany()
                    except TimeoutError:
                        raise _StreamFailed(
                            f"nothing received for {idle:g} s (--idle-timeout)"
                        ) from None
                    if not chunk:
                        break
                    self._feed(index, decoder, chunk)
            except aiohttp.ClientPayloadError as exc:
                # aiohttp words this as a transfer-encoding error "400"; what
                # happened is that the worker or the path went away.
                raise _StreamFailed(
                    "stream dropped: the connection closed before the end of the stream"
                ) from exc
            self._close(index, decoder)

    async def _file(self, index: int, source: FileSource) -> None:
        decoder = CaptureDecoder()
        try:
            with open(source.path, "rb") as file:
                self.status[index].connected = True
                while chunk := file.read(FILE_CHUNK_SIZE):
                    self._feed(index, decoder, chunk)
                    await asyncio.sleep(0)  # let the other streams and signals in
        except OSError as exc:
            raise _StreamFailed(f"cannot read: {exc.strerror or exc}") from None
        self._close(index, decoder)

    def _feed(self, index: int, decoder: CaptureDecoder, chunk: bytes) -> None:
        decoder.feed(chunk)
        now = self.clock()
        self._events(index, decoder, now)
        self.release(now)

    def _close(self, index: int, decoder: CaptureDecoder) -> None:
        try:
            decoder.close()
        except DecodeError as exc:
            if decoder.offset == 0:
                raise _StreamFailed("empty body: no pcap or pcapng header") from None
            raise _StreamFailed(f"stream ended mid-record: {exc}") from None
        self._events(index, decoder, self.clock())

    def _events(self, index: int, decoder: CaptureDecoder, now: int) -> None:
        """Everything the decoder has ready: packets to the merger a run at a time,
        any other event (a new interface, a heartbeat) after the packets before it."""
        packets: list[Packet] = []
        for event in decoder.events():
            if isinstance(event, Packet):
                packets.append(event)
                continue
            if packets:
                self._packets(index, packets, now)
                packets = []
            if isinstance(event, InterfaceStatistics):
                self.merger.advance(index, event.ts_ns)
            else:
                self.output.event(index, event)
        if packets:
            self._packets(index, packets, now)

    def _packets(self, index: int, packets: list[Packet], now: int) -> None:
        status = self.status[index]
        status.packets += len(packets)
        status.bytes += sum(len(p.data) for p in packets)
        # Packet.data is an immutable bytes copy made by the decoder: nothing
        # released here shares a buffer the stream goes on to reuse.
        for packet in self.merger.push_many(index, packets, now_ns=now):
            status.late += 1
            self.output.packet(index, packet)  # late: written anyway, out of order

    def _failed(self, index: int, reason: str) -> None:
        status = self.status[index]
        status.error = reason
        self.log(f"[{index}] {status.display}: error: {reason}")
        self._end(index)
        if self.options.fail_fast and self.fatal is None:
            self.fatal = f"{status.display}: {reason}"
            self.stop.set()

    def _end(self, index: int) -> None:
        with contextlib.suppress(ValueError):  # already finished
            self.merger.finish(index)
        try:
            self.release(self.clock())
        except _OutputClosed:
            self.output_closed = True
            self.stop.set()

    # -- output ----------------------------------------------------------------

    def release(self, now: int) -> None:
        for index, packet in self.merger.pop_ready(now_ns=now):
            self._write(index, packet)
        self.output.flush()

    def _write(self, index: int, packet: Packet) -> None:
        try:
            self.output.packet(index, packet)
        except _StreamFailed as exc:  # pcap output and a packet it cannot hold
            if self.status[index].error is None:
                self._failed(index, str(exc))

    def drain(self) -> None:
        for index, packet in self.merger.drain():
            self._write(index, packet)
        self.output.finish()

    # -- the run ---------------------------------------------------------------

    async def run(self, ssl_context: ssl.SSLContext | None) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.stop.set)
                installed.append(signum)
        # Ticks release packets held for a quiet stream once max-delay has passed.
        tick = max(self.options.max_delay_ms / 4000, 0.005)
        needs_http = any(isinstance(s, UrlSource) for s in self.options.sources)
        connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context if ssl_context else True)
        session = (
            aiohttp.ClientSession(connector=connector, auto_decompress=False)
            if needs_http
            else None
        )
        try:
            tasks: list[asyncio.Task[object]] = [
                asyncio.create_task(self.stream(i, s, session))
                for i, s in enumerate(self.options.sources)
            ]
            stopper: asyncio.Task[object] = asyncio.create_task(self.stop.wait())
            pending: set[asyncio.Task[object]] = set(tasks)
            while pending and not self.stop.is_set():
                _done, pending = await asyncio.wait(
                    pending | {stopper}, timeout=tick, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                try:
                    self.release(self.clock())
                except _OutputClosed:
                    self.output_closed = True
                    break
            for status in self.status:
                status.stopped = not status.done and status.error is None
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        finally:
            if session is not None:
                await session.close()
            else:
                await connector.close()
            for signum in installed:
                loop.remove_signal_handler(signum)
        if not self.output_closed:
            try:
                self.drain()
            except _OutputClosed:
                self.output_closed = True


async def _read_some(response: aiohttp.ClientResponse) -> bytes:
    """Up to 4 KiB of an error body, for the message; never waits long for it."""
    import aiohttp

    try:
        async with asyncio.timeout(1.0):
            return await response.content.read(4096)
    except (TimeoutError, aiohttp.ClientError):
        return b""


def _describe(exc: BaseException) -> str:
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:  # not loaded: a file merge, so not an HTTP error
        return _plain(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.strerror or exc}"
    return _plain(exc)


def _plain(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _merge_files(merge: _Merge, sources: Sequence[FileSource]) -> None:
    """Every source is a file: the exact k-way merge (no delay, no buffer bound)."""
    output = merge.output

    def packets_of(index: int, path: os.PathLike[str]) -> Iterator[Packet]:
        try:
            for event in read_file(path):
                if isinstance(event, Packet):
                    merge.status[index].packets += 1
                    merge.status[index].bytes += len(event.data)
                    yield event
                else:
                    output.event(index, event)
        except (OSError, DecodeError, _StreamFailed) as exc:
            merge._failed(index, str(exc) if not isinstance(exc, OSError) else _describe(exc))
        else:
            merge.status[index].done = True

    for status in merge.status:
        status.connected = True
    streams = [packets_of(i, Path(s.path)) for i, s in enumerate(sources)]
    for count, (index, packet) in enumerate(merge_packets(streams), 1):
        merge._write(index, packet)
        if count % _FILE_BATCH == 0:
            output.flush()
            if merge.stop.is_set():
                return
    output.finish()


def _map(path: Path, stack: contextlib.ExitStack) -> mmap.mmap:
    """The whole file, mapped read-only (closed with `stack`)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < FILE_HEADER_LEN:
            raise TruncatedError(f"{path}: capture ended inside the file header ({size} bytes)")
        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    stack.callback(_close_quietly, buffer)
    return buffer


def _copyable(opened: mmap.mmap | Exception, file_format: Format) -> bool:
    """Whether `RecordMerge` takes this file (one that failed to open fails in it too).

    pcap files always; pcapng files for pcapng output when `pcapng_copyable`
    says so (one little-endian section of blocks it can copy or pass on).
    """
    if isinstance(opened, Exception) or opened[:4] in _PCAP_MAGICS:
        return True
    return opened[:4] == _PCAPNG_MAGIC and file_format == "pcapng" and pcapng_copyable(opened)


def _merge_by_copy(merge: _Merge, sources: Sequence[FileSource]) -> bool:
    """The k-way merge copying record bytes (`RecordMerge`), when it can take every file.

    Same order, counts and per-file errors as `_merge_files`, many times
    faster: records are not decoded into packets and encoded again. Returns
    False, having written and reported nothing, when a file is one it cannot
    take: the caller runs the decoding merge instead. Each file is opened and
    mapped once, for the check and the merge.
    """
    if not NATIVE or len(sources) > MAX_SOURCES:
        return False
    output = merge.output
    files: list[PcapFile | PcapngFile] = []
    indexes: list[int] = []
    first: Interface | None = None
    with contextlib.ExitStack() as stack:
        opened: list[mmap.mmap | Exception] = []
        for source in sources:
            try:
                opened.append(_map(Path(source.path), stack))
            except (OSError, DecodeError) as exc:
                opened.append(exc)
        if not all(_copyable(item, output.file_format) for item in opened):
            return False
        for index, (source, buffer) in enumerate(zip(sources, opened, strict=True)):
            merge.status[index].connected = True
            path = Path(source.path)
            try:
                if isinstance(buffer, Exception):
                    raise buffer
                if buffer[:4] == _PCAPNG_MAGIC:
                    files.append(PcapngFile(buffer))
                    indexes.append(index)
                    continue
                header = decode_file_header(buffer[:FILE_HEADER_LEN])
            except OSError as exc:
                merge._failed(index, _describe(exc))
                continue
            except DecodeError as exc:
                merge._failed(index, str(exc) if str(path) in str(exc) else f"{path}: {exc}")
                continue
            if output.file_format == "pcap":
                problem = _pcap_output_problem(header.interface(), first)
                if problem is not None:
                    merge._failed(index, problem)
                    continue
                first = first or header.interface()
            files.append(PcapFile(buffer, header))
            indexes.append(index)
        if not files:
            output.finish()
            return True

        def rename(source: int, interface: Interface) -> Interface:
            # As the decoding merge names them: LABEL[:IFACE], the label in front
            # of the description.
            label = output.labels[indexes[source]]
            name = f"{label}:{interface.name}" if interface.name else label
            text = label if interface.description is None else f"{label}: {interface.description}"
            return replace(interface, name=name, description=text)

        records = RecordMerge(
            files, output=output.file_format, rename=rename, snaplen=MAX_PCAP_SNAPLEN
        )
        stopped = False
        for item in records:
            if isinstance(item, SourceFailed):
                index = indexes[item.source]
                merge._failed(index, f"{sources[index].path}: {item.error}")
                continue
            output.write(item)
            if merge.stop.is_set():
                stopped = True
                break
        for index, stats in zip(indexes, records.stats, strict=True):
            status = merge.status[index]
            status.packets, status.bytes = stats.packets, stats.bytes
            status.done = status.error is None and not stopped
        del records  # its views of the mmaps must go before the mmaps close
    return True


def _close_quietly(buffer: mmap.mmap) -> None:
    # A view still exported (only after an error) keeps the map until it is collected.
    with contextlib.suppress(BufferError):
        buffer.close()


def merge(
    options: MergeOptions,
    *,
    stdout: BinaryIO | None = None,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> int:
    """Run a merge to completion (or a signal); returns the exit status.

    0 when every stream ended cleanly (or the reader of the output went away),
    4 when any stream failed (each was reported on stderr as it happened).
    Raises CaptureError at once for a failure under `fail_fast`, OptionError
    for unusable TLS files, CaptureWriteError when the output cannot be written.
    """
    if not options.sources:
        raise OptionError("no SOURCE given: name worker URLs or capture files")
    if options.max_delay_ms < 0:
        raise OptionError("--max-delay must not be negative")
    if options.connect_timeout_s <= 0:
        raise OptionError("--connect-timeout must be positive")
    if options.idle_timeout_s is not None and options.idle_timeout_s <= 0:
        raise OptionError("--idle-timeout must be positive")
    emit = log if log is not None else _stderr_line
    needs_tls = any(isinstance(s, UrlSource) and s.scheme == "https" for s in options.sources)
    ssl_context = (
        build_ssl_context(options.ca_file, options.cert_file, options.key_file)
        if needs_tls or options.ca_file or options.cert_file
        else None
    )
    labels = _labels(options.sources)
    part: Path | None = None
    if options.output is not None:
        part = options.output.with_name(options.output.name + ".part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise CaptureWriteError(f"cannot create {part}: {exc.strerror}") from None
        stream: BinaryIO = os.fdopen(fd, "wb")
    else:
        stream = stdout if stdout is not None else sys.stdout.buffer
    interface_names = [s.interface if isinstance(s, UrlSource) else None for s in options.sources]
    output = _Output(options.file_format, labels, stream, interface_names)
    run = _Merge(options, output, emit, clock)
    try:
        if all(isinstance(s, FileSource) for s in options.sources):
            files = [s for s in options.sources if isinstance(s, FileSource)]
            previous = {
                signum: signal.signal(signum, lambda _n, _f: run.stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                if not _merge_by_copy(run, files):
                    _merge_files(run, files)
            except _OutputClosed:
                run.output_closed = True
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        else:
            asyncio.run(run.run(ssl_context))
    finally:
        if part is not None:
            stream.close()
            assert options.output is not None
            os.replace(part, options.output)
    if run.output_closed and stdout is None and options.output is None:
        # Keep the interpreter from failing on its own final flush of stdout.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for index, status in enumerate(run.status):
        emit(status.line(index))
    late = sum(s.late for s in run.status)
    if late:
        emit(
            f"{late} packets arrived later than --max-delay {options.max_delay_ms:g} ms "
            "and were written out of order"
        )
    if run.fatal is not None:
        raise CaptureError(f"stream failed (--fail-fast): {run.fatal}")
    if any(s.error is not None for s in run.status):
        return CaptureError.exit_code
    return 0


def _labels(sources: Sequence[Source]) -> list[str]:
    labels = [s.label for s in sources]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    # Two sources on one host keep apart by their index.
    return [label if seen[label] == 1 else f"{label}#{i}" for i, label in enumerate(labels)]


def _stderr_line(text: str) -> None:
    print(f"wirecap merge: {text}", file=sys.stderr, flush=True)
