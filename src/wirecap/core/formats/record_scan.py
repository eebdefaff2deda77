"""The two per-record loops of the record-copying merge, in C when built, else in Python.

- `scan_offsets`: where the records of a pcap file start, following each
  record's captured length (draft-ietf-opsawg-pcap §5), from a position up to a
  limit or the first record that is cut off or claims more than MAX_CAPLEN.
- `gather`: one output made of byte ranges of several buffers, in order.

The C versions (`wirecap.core.formats._native`, built by cffi at install
from `_native_build.py`) run a few nanoseconds per record; the Python ones
0.2-0.5 µs, which is most of a merge's time. `NATIVE` says which are in use;
both give the same results and the tests run both.
"""

from __future__ import annotations

import importlib
import mmap
import struct
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from wirecap.core.formats.pcap import MAX_CAPLEN, RECORD_HEADER_LEN

__all__ = ["NATIVE", "Buffer", "gather", "scan_offsets"]

Buffer = bytes | bytearray | mmap.mmap
Int64s = npt.NDArray[np.int64]

_native: ModuleType | None
try:
    _native = importlib.import_module("wirecap.core.formats._native")
except ImportError:  # not built: the Python loops below
    _native = None

#: Whether the C loops are in use.
NATIVE = _native is not None

# §5: the captured length is the third 32-bit field of a record header.
_CAPLEN_AT = 8
_U32 = {False: struct.Struct("<I").unpack_from, True: struct.Struct(">I").unpack_from}
_CAPLEN_BYTES = np.arange(_CAPLEN_AT, _CAPLEN_AT + 4, dtype=np.int64)


def scan_offsets(
    buffer: Buffer, pos: int, *, big_endian: bool, limit: int, native: bool = NATIVE
) -> tuple[Int64s, int]:
    """Offsets of up to `limit` whole, sane records from `pos`, and where scanning stopped.

    The stop position is the next record's start (the limit was reached), the
    buffer's end, or the first record that does not fit or claims more than
    MAX_CAPLEN bytes: the caller looks there to tell which.
    """
    if native and _native is not None:
        return _scan_native(buffer, pos, big_endian, limit)
    return _scan_python(buffer, pos, big_endian, limit)


def _scan_native(buffer: Buffer, pos: int, big_endian: bool, limit: int) -> tuple[Int64s, int]:
    assert _native is not None
    ffi: Any = _native.ffi
    offsets = np.empty(limit, dtype=np.int64)
    stop = ffi.new("int64_t *")
    count = _native.lib.wc_scan_pcap(
        ffi.from_buffer("uint8_t[]", buffer),
        len(buffer),
        pos,
        int(big_endian),
        limit,
        MAX_CAPLEN,
        ffi.from_buffer("int64_t[]", offsets, require_writable=True),
        stop,
    )
    return offsets[:count], int(stop[0])


def _scan_python(buffer: Buffer, pos: int, big_endian: bool, limit: int) -> tuple[Int64s, int]:
    # The loop only follows the lengths; whether each is sane and each record
    # whole is checked afterwards for the block at once with numpy (a bad
    # length sends the loop far off, and everything from it on is dropped
    # again). Checking inside the loop costs 2.5 times as much per record.
    size = len(buffer)
    caplen_at = _U32[big_endian]
    last_start = size - RECORD_HEADER_LEN
    found: list[int] = []
    append = found.append
    for _ in range(limit):
        if pos > last_start:
            break
        append(pos)
        pos += RECORD_HEADER_LEN + caplen_at(buffer, pos + _CAPLEN_AT)[0]
    offsets = np.array(found, dtype=np.int64)
    if not len(offsets):
        return offsets, pos
    raw = np.frombuffer(buffer, dtype=np.uint8)[offsets[:, None] + _CAPLEN_BYTES]
    caplen = raw.view(">u4" if big_endian else "<u4")[:, 0].astype(np.int64)
    bad = (caplen > MAX_CAPLEN) | (offsets + RECORD_HEADER_LEN + caplen > size)
    if bad.any():
        first = int(np.argmax(bad))
        return offsets[:first], int(offsets[first])
    return offsets, pos


def gather(
    buffers: Sequence[Buffer],
    buffer_index: Int64s,
    start: Int64s,
    length: Int64s,
    *,
    native: bool = NATIVE,
) -> bytes | bytearray:
    """buffers[buffer_index[i]][start[i] : start[i] + length[i]] for every i, joined.

    The caller guarantees every range lies inside its buffer.
    """
    if native and _native is not None:
        ffi: Any = _native.ffi
        out = bytearray(int(length.sum()))
        if not out:
            return out
        views = [ffi.from_buffer("uint8_t[]", b) for b in buffers]  # alive until the call returns
        index = np.ascontiguousarray(buffer_index, dtype=np.int64)
        first = np.ascontiguousarray(start, dtype=np.int64)
        sizes = np.ascontiguousarray(length, dtype=np.int64)
        _native.lib.wc_gather(
            ffi.from_buffer("uint8_t[]", out, require_writable=True),
            ffi.new("const uint8_t *[]", views),
            ffi.from_buffer("int64_t[]", index),
            ffi.from_buffer("int64_t[]", first),
            ffi.from_buffer("int64_t[]", sizes),
            len(index),
        )
        return out
    pieces = [
        buffers[which][begin : begin + size]
        for which, begin, size in zip(
            buffer_index.tolist(), start.tolist(), length.tolist(), strict=True
        )
    ]
    return b"".join(pieces)
