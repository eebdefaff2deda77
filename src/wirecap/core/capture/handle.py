"""SHELL: one libpcap handle, opened, armed and read without blocking.

This is the synchronous layer: it never waits. `live.py` drives it from asyncio.
Error statuses from libpcap become WirecapError subclasses carrying libpcap's own text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from wirecap.core.capture import _libpcap as C
from wirecap.core.capture.spec import MAX_SNAPLEN, CaptureSpec
from wirecap.core.formats.linktype import LinkType
from wirecap.errors import (
    BadFilterError,
    CaptureError,
    CaptureWriteError,
    NoSuchInterfaceError,
    PermissionDeniedError,
)

__all__ = ["FileDumper", "MemoryDumper", "PcapHandle", "RawStats", "check_filter"]

_SEEK_SET = 0


@dataclass(frozen=True, slots=True)
class RawStats:
    received: int
    dropped: int
    if_dropped: int


def _text(lib: C.Libpcap, cstr: Any) -> str:
    if cstr == lib.ffi.NULL:
        return ""
    return str(lib.ffi.string(cstr).decode("utf-8", "replace"))


def _compile(lib: C.Libpcap, raw: Any, expression: str) -> Any:
    """Compile `expression` for handle `raw`; raise BadFilterError with libpcap's message."""
    program = lib.ffi.new("struct bpf_program *")
    # Netmask unknown: only matters for "ip broadcast", which libpcap then rejects clearly.
    status = lib.pcap.pcap_compile(
        raw, program, expression.encode("utf-8"), 1, C.PCAP_NETMASK_UNKNOWN
    )
    if status != 0:
        reason = _text(lib, lib.pcap.pcap_geterr(raw)) or "invalid filter"
        raise BadFilterError(f"bad filter {expression!r}: {reason}")
    return program


def _compile_dead(lib: C.Libpcap, expression: str, linktype: int, snaplen: int) -> Any:
    """Compile on a dead handle: no interface needed, and the program's accept value
    is `snaplen`, which is how long the kernel cuts each packet it accepts."""
    dead = lib.pcap.pcap_open_dead_with_tstamp_precision(
        int(linktype), snaplen, C.PCAP_TSTAMP_PRECISION_NANO
    )
    if dead == lib.ffi.NULL:  # pragma: no cover - only on allocation failure
        raise CaptureError("pcap_open_dead failed")
    try:
        return _compile(lib, dead, expression)
    finally:
        lib.pcap.pcap_close(dead)


# Files carry LINKTYPE_* values, pcap_open_dead wants DLT_* ones; they differ only
# where a DLT number meant different things on different systems (pcap-linktype(7)).
_DLT_RAW_LINUX = 12
_DLT_FOR_LINKTYPE: dict[int, int] = {LinkType.RAW: _DLT_RAW_LINUX}


def check_filter(
    expression: str, linktype: int = LinkType.ETHERNET, snaplen: int = MAX_SNAPLEN
) -> None:
    """Validate a BPF expression for a file link type without opening an interface."""
    lib = C.load()
    dlt = _DLT_FOR_LINKTYPE.get(linktype, linktype)
    lib.pcap.pcap_freecode(_compile_dead(lib, expression, dlt, snaplen))


class PcapHandle:
    """An activated, filtered, non-blocking libpcap handle: *armed* once constructed."""

    def __init__(self, spec: CaptureSpec, *, linktype: int | None = None) -> None:
        self.spec = spec
        self._lib = lib = C.load()
        ffi, pcap = lib.ffi, lib.pcap
        errbuf = ffi.new("char[]", C.PCAP_ERRBUF_SIZE)
        raw = pcap.pcap_create(spec.interface.encode("utf-8"), errbuf)
        if raw == ffi.NULL:
            raise CaptureError(f"{spec.interface}: {_text(lib, errbuf)}")
        self._raw: Any = raw
        try:
            self._configure(spec, linktype, errbuf)
        except BaseException:
            pcap.pcap_close(raw)
            self._raw = None
            raise

    def _configure(self, spec: CaptureSpec, linktype: int | None, errbuf: Any) -> None:
        lib, raw = self._lib, self._raw
        pcap = lib.pcap
        pcap.pcap_set_snaplen(raw, spec.snaplen)
        pcap.pcap_set_promisc(raw, int(spec.promiscuous))
        pcap.pcap_set_timeout(raw, spec.buffer_timeout_ms)
        pcap.pcap_set_immediate_mode(raw, int(spec.immediate))
        pcap.pcap_set_buffer_size(raw, spec.buffer_size)
        precision = C.PCAP_TSTAMP_PRECISION_MICRO
        if spec.nanosecond:
            precision = C.PCAP_TSTAMP_PRECISION_NANO
            if pcap.pcap_set_tstamp_precision(raw, precision) != 0:
                precision = C.PCAP_TSTAMP_PRECISION_MICRO
        status = pcap.pcap_activate(raw)
        if status < 0:
            self._raise_activate(status)
        self.nanosecond: bool = pcap.pcap_get_tstamp_precision(raw) == C.PCAP_TSTAMP_PRECISION_NANO
        if linktype is not None and pcap.pcap_set_datalink(raw, int(linktype)) != 0:
            raise CaptureError(f"link type {linktype}: {self._error()}")
        #: libpcap's DLT_* value of the handle (what pcap_open_dead and
        #: pcap_set_datalink take; pcap_dump writes the LINKTYPE_* equivalent).
        self.linktype: int = int(pcap.pcap_datalink(raw))
        self.snaplen = int(pcap.pcap_snapshot(raw))
        if spec.filter:
            program = _compile(lib, raw, spec.filter)
            try:
                if pcap.pcap_setfilter(raw, program) != 0:
                    raise BadFilterError(_text(lib, pcap.pcap_geterr(raw)))
            finally:
                pcap.pcap_freecode(program)
        if pcap.pcap_setnonblock(raw, 1, errbuf) != 0:
            raise CaptureError(f"{spec.interface}: {_text(lib, errbuf)}")
        self.fd = int(pcap.pcap_get_selectable_fd(raw))
        if self.fd < 0:  # pragma: no cover - every Linux capture has one
            raise CaptureError(f"{spec.interface}: no selectable file descriptor")

    def _raise_activate(self, status: int) -> None:
        lib, raw, name = self._lib, self._raw, self.spec.interface
        detail = _text(lib, lib.pcap.pcap_geterr(raw))
        summary = _text(lib, lib.pcap.pcap_statustostr(status))
        message = f"{name}: {summary}"
        if detail and detail != summary:
            message += f" ({detail})"
        if status == C.PCAP_ERROR_NO_SUCH_DEVICE:
            raise NoSuchInterfaceError(message)
        if status in (C.PCAP_ERROR_PERM_DENIED, C.PCAP_ERROR_PROMISC_PERM_DENIED):
            raise PermissionDeniedError(
                message + "; capturing needs CAP_NET_RAW and CAP_NET_ADMIN (run as root)"
            )
        if status == C.PCAP_ERROR and "socket: Operation not permitted" in detail:
            raise PermissionDeniedError(message + "; capturing needs CAP_NET_RAW (run as root)")
        raise CaptureError(message)

    @property
    def raw(self) -> Any:
        if self._raw is None:
            raise CaptureError("capture handle is closed")
        return self._raw

    def set_filter(self, expression: str, *, snaplen: int | None = None) -> None:
        """Replace the filter of the running handle.

        With `snaplen`, the program is compiled for that snapshot length, so from
        now on the kernel keeps only the first `snaplen` bytes of each packet: the
        one way to shorten packets on an active handle (pcap_set_snaplen works
        only before activation).
        """
        lib = self._lib
        if snaplen is None:
            program = _compile(lib, self.raw, expression)
        else:
            program = _compile_dead(lib, expression, self.linktype, snaplen)
        try:
            if lib.pcap.pcap_setfilter(self.raw, program) != 0:
                raise BadFilterError(_text(lib, lib.pcap.pcap_geterr(self.raw)))
        finally:
            lib.pcap.pcap_freecode(program)

    def dispatch(self, dumper: FileDumper | MemoryDumper, count: int = -1) -> int:
        """Write what libpcap has ready (up to `count` packets) with pcap_dump; never blocks.

        libpcap's own `pcap_dump` is the callback, so no Python runs per packet.
        """
        lib = self._lib
        n = int(
            lib.pcap.pcap_dispatch(
                self.raw, count, lib.ffi.addressof(lib.pcap, "pcap_dump"), dumper.user
            )
        )
        if n < 0:
            raise self._error()
        return n

    def _error(self) -> CaptureError:
        detail = _text(self._lib, self._lib.pcap.pcap_geterr(self.raw))
        return CaptureError(f"{self.spec.interface}: {detail}")

    def stats(self) -> RawStats:
        lib = self._lib
        st = lib.ffi.new("struct pcap_stat *")
        if lib.pcap.pcap_stats(self.raw, st) != 0:
            raise self._error()
        return RawStats(int(st.ps_recv), int(st.ps_drop), int(st.ps_ifdrop))

    def close(self) -> None:
        if self._raw is not None:
            self._lib.pcap.pcap_close(self._raw)
            self._raw = None

    @property
    def closed(self) -> bool:
        return self._raw is None


class FileDumper:
    """libpcap writes classic pcap straight to a file we created 0600; errors are checked."""

    def __init__(self, handle: PcapHandle, path: str | os.PathLike[str]) -> None:
        self._lib = lib = handle._lib
        self.path = os.fspath(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fp = lib.libc.fdopen(fd, b"wb")
        if fp == lib.ffi.NULL:  # pragma: no cover - fdopen fails only without memory
            os.close(fd)
            raise CaptureWriteError(f"{self.path}: fdopen failed")
        dumper = lib.pcap.pcap_dump_fopen(handle.raw, fp)
        if dumper == lib.ffi.NULL:
            lib.libc.fclose(fp)
            raise CaptureWriteError(f"{self.path}: {_text(lib, lib.pcap.pcap_geterr(handle.raw))}")
        self._dumper: Any = dumper
        self.user = lib.ffi.cast("u_char *", dumper)

    def flush(self) -> None:
        """Push buffered records to the kernel; a full disk is reported here, not ignored."""
        lib = self._lib
        if lib.pcap.pcap_dump_flush(self._dumper) != 0 or lib.libc.ferror(
            lib.pcap.pcap_dump_file(self._dumper)
        ):
            raise CaptureWriteError(f"{self.path}: write failed: {os.strerror(lib.ffi.errno)}")

    def tell(self) -> int:
        """Bytes written to the file so far (header included), buffered ones too."""
        return int(self._lib.pcap.pcap_dump_ftell64(self._dumper))

    def close(self) -> None:
        if self._dumper is None:
            return
        try:
            self.flush()
        finally:
            self._lib.pcap.pcap_dump_close(self._dumper)
            self._dumper = None


class MemoryDumper:
    """libpcap writes into an open_memstream buffer; drain() takes the bytes out per batch.

    Used for every consumer that is not a plain file (sockets, pcapng, Python
    per-packet work): libpcap must never be given a socket or pipe, where a slow
    reader would block the capture and EAGAIN would silently corrupt records.
    """

    def __init__(self, handle: PcapHandle) -> None:
        self._lib = lib = handle._lib
        self._ptr = lib.ffi.new("char **")
        self._size = lib.ffi.new("size_t *")
        fp = lib.libc.open_memstream(self._ptr, self._size)
        if fp == lib.ffi.NULL:  # pragma: no cover
            raise CaptureError("open_memstream failed")
        dumper = lib.pcap.pcap_dump_fopen(handle.raw, fp)
        if dumper == lib.ffi.NULL:
            lib.libc.fclose(fp)
            raise CaptureError(_text(lib, lib.pcap.pcap_geterr(handle.raw)))
        self._fp = fp
        self._dumper: Any = dumper
        self.user = lib.ffi.cast("u_char *", dumper)
        #: The 24-byte pcap file header pcap_dump_fopen wrote.
        self.file_header = self.drain()

    def drain(self) -> bytes:
        """Everything written since the last drain, then rewind the buffer for reuse."""
        lib = self._lib
        if lib.pcap.pcap_dump_flush(self._dumper) != 0:
            raise CaptureError(f"memory stream write failed: {os.strerror(lib.ffi.errno)}")
        size = int(self._size[0])
        if size == 0:
            return b""
        data = bytes(lib.ffi.buffer(self._ptr[0], size))
        lib.libc.fseek(self._fp, 0, _SEEK_SET)
        return data

    def close(self) -> None:
        if self._dumper is None:
            return
        lib = self._lib
        lib.pcap.pcap_dump_close(self._dumper)  # fclose finalises *ptr
        self._dumper = None
        if self._ptr[0] != lib.ffi.NULL:
            lib.libc.free(self._ptr[0])
            self._ptr[0] = lib.ffi.NULL
