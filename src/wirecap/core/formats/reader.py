"""Reading capture files: the thin I/O shell around `CaptureDecoder`.

All decoding is in the sans-IO decoder; this module only reads the file in
chunks, feeds them in, and puts the file name into decode errors so a message
says which file was bad.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import Event, Packet
from wirecap.errors import DecodeError

__all__ = ["READ_CHUNK_SIZE", "read_file", "read_packets"]

#: Bytes read per system call: large enough that the per-chunk Python overhead
#: vanishes, small enough that the decoder's buffer stays a few MiB.
READ_CHUNK_SIZE = 1 << 20


def read_file(
    path: str | os.PathLike[str], *, chunk_size: int = READ_CHUNK_SIZE
) -> Iterator[Event]:
    """Every event of a pcap or pcapng file, in file order.

    Raises:
        DecodeError: the same subclass the decoder raised, its message prefixed
            with the path (TruncatedError for an empty or cut-off file).
        OSError: the file cannot be opened or read.
    """
    decoder = CaptureDecoder()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(chunk_size):
                decoder.feed(chunk)
                yield from decoder.events()
        decoder.close()
        yield from decoder.events()
    except DecodeError as error:
        raise type(error)(f"{os.fsdecode(path)}: {error}") from error


def read_packets(
    path: str | os.PathLike[str], *, chunk_size: int = READ_CHUNK_SIZE
) -> Iterator[Packet]:
    """Only the packets of a capture file (see `read_file`)."""
    for event in read_file(path, chunk_size=chunk_size):
        if isinstance(event, Packet):
            yield event
