"""SHELL: where a live capture's packets go, one batch per pcap_dispatch.

- `PcapFileOutput`: libpcap's pcap_dump writes the file directly (the fast path).
- `BatchOutput`: each batch is dumped into memory as classic-pcap bytes and handed
  to a Python callable: for pcapng files and sockets.
- `PacketOutput`: the same batches decoded into `Packet` values, for consumers
  that must look at each packet.

Files holding traffic are created 0600, written as ``NAME.part`` and renamed to
``NAME`` when complete, so a reader never mistakes a partial file for a whole one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from wirecap.core.capture.handle import FileDumper, MemoryDumper, PcapHandle
from wirecap.core.formats.convert import PcapToPcapng
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import Packet
from wirecap.errors import CaptureWriteError

__all__ = [
    "BatchOutput",
    "CaptureOutput",
    "PacketOutput",
    "PcapFileOutput",
    "PcapngFileOutput",
    "part_path",
    "write_all",
]


def part_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name a capture file has while it is being written."""
    p = Path(path)
    return p.with_name(p.name + ".part")


def write_all(fd: int, data: bytes, path: str | os.PathLike[str]) -> None:
    """Write all of `data` to `fd` (os.write may take less), naming `path` on failure.

    Raises:
        CaptureWriteError: the write failed (a full disk, an I/O error).
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            raise CaptureWriteError(f"{os.fspath(path)}: write failed: {exc.strerror}") from exc
        view = view[written:]


class CaptureOutput(Protocol):
    """Receives a capture's packets; `dumper` is what pcap_dispatch writes into."""

    #: Records the output discarded (a consumer too slow); 0 for files.
    dropped_records: int

    def open(self, handle: PcapHandle) -> FileDumper | MemoryDumper: ...

    def batch_done(self, packets: int) -> None:
        """Called after every dispatch that wrote `packets` (> 0) records."""

    def close(self) -> None:
        """Flush and release everything; called exactly once, also after errors."""


class PcapFileOutput:
    """Classic pcap file written by libpcap itself: no Python runs per packet."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._dumper: FileDumper | None = None
        self.dropped_records = 0

    def open(self, handle: PcapHandle) -> FileDumper:
        self._dumper = FileDumper(handle, part_path(self.path))
        return self._dumper

    def batch_done(self, packets: int) -> None:
        # A flush per batch (not per packet) keeps the file current for readers
        # following it and surfaces a full disk within one batch.
        assert self._dumper is not None
        self._dumper.flush()

    def close(self) -> None:
        if self._dumper is not None:
            self._dumper.close()
            os.replace(part_path(self.path), self.path)
            self._dumper = None


class BatchOutput:
    """Classic-pcap bytes per batch handed to `on_bytes`; the first call is the file header.

    The callable must not block: a consumer slower than the capture buffers or drops
    whole batches itself (never parts of records).
    """

    def __init__(self, on_bytes: Callable[[bytes], None], on_close: Callable[[], None]) -> None:
        self._on_bytes = on_bytes
        self._on_close = on_close
        self._dumper: MemoryDumper | None = None
        self.dropped_records = 0

    def open(self, handle: PcapHandle) -> MemoryDumper:
        self._dumper = MemoryDumper(handle)
        self._on_bytes(self._dumper.file_header)
        return self._dumper

    def batch_done(self, packets: int) -> None:
        assert self._dumper is not None
        data = self._dumper.drain()
        if data:
            self._on_bytes(data)

    def close(self) -> None:
        try:
            if self._dumper is not None:
                self._dumper.close()
                self._dumper = None
        finally:
            self._on_close()


class PcapngFileOutput(BatchOutput):
    """pcapng file: libpcap dumps each batch into memory, Python transcodes it to EPBs.

    libpcap cannot write pcapng, so this path costs Python work per record; it is
    measured on its own line by bench/capture.py.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interface_name: str | None = None,
        key_log: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self._transcoder = PcapToPcapng(key_log=key_log, interface_name=interface_name)
        self._fd: int | None = None
        super().__init__(self._write_pcap, self._finish)

    def open(self, handle: PcapHandle) -> MemoryDumper:
        self._fd = os.open(
            part_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        return super().open(handle)

    def _write_pcap(self, data: bytes) -> None:
        self._write(self._transcoder.feed(data))

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        write_all(self._fd, data, self.path)

    def _finish(self) -> None:
        if self._fd is None:
            return
        try:
            self._write(self._transcoder.close())
        finally:
            os.close(self._fd)
            self._fd = None
        os.replace(part_path(self.path), self.path)


class PacketOutput(BatchOutput):
    """Batches of decoded `Packet`s handed to `on_packets`, for consumers that look at each.

    libpcap still does the per-packet copy in C (into memory); Python then decodes
    the batch with `struct`, with no cffi callback crossing per packet.
    """

    def __init__(
        self,
        on_packets: Callable[[list[Packet]], None],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._decoder = CaptureDecoder()
        self._on_packets = on_packets
        super().__init__(self._decode, on_close)

    def _decode(self, data: bytes) -> None:
        self._decoder.feed(data)
        packets = [event for event in self._decoder.events() if isinstance(event, Packet)]
        if packets:
            self._on_packets(packets)
