"""Streaming pcap → pcapng conversion, fast enough to run live on every captured batch.

`wirecap record --format pcapng` lets libpcap's `pcap_dump` write classic pcap
into memory (no Python per packet while capturing), then hands each batch of
bytes to `PcapToPcapng.feed`, which returns the same packets as pcapng. The
output opens with an SHB, one IDB (if_tsresol = 9: nanosecond timestamps, exact
for both pcap magics) and, when a TLS key log is given, a DSB right after the
IDB, so Wireshark decrypts the capture with no side file.

Records split across batches are carried over; a batch may end anywhere, even
inside the file header. The hot loop is one `struct.unpack_from` per record
over the caller's buffer, one `struct.pack` (this EPB's head together with the
previous one's tail), one slice of the packet bytes, and one `bytes.join` per
batch. Every batch's output ends on a block boundary.

Measured on the development machine (CPython 3.11, 2 vCPUs): 1.7 million
records per second for 100-byte packets in 1 MiB batches (best of 5 over
300 000 records; about 0.6 µs per record), against 0.8 million for the same
loop with memoryview slices and two packs per record.
`test_convert.py::test_PcapToPcapng_rate_is_far_above_what_a_live_capture_needs`
guards against a regression with a wide margin.

Pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAX_CAPLEN,
    RECORD_HEADER_LEN,
    PcapHeader,
    decode_file_header,
)
from wirecap.core.formats.pcapng import BLOCK_EPB, PcapngEncoder
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Interface,
    InterfaceStatistics,
)
from wirecap.errors import DecodeError, LimitExceededError, TruncatedError

__all__ = ["PcapToPcapng", "pcap_to_pcapng"]

# EPB head (§4.3 of draft-ietf-opsawg-pcapng): type, total length, interface
# id, timestamp high, timestamp low, captured length, original length.
_EPB_HEAD = struct.Struct("<7I")
_EPB_FIXED_LEN = _EPB_HEAD.size + 4  # plus the trailing total length
# Zero padding to 32 bits, then the trailing total length, in one pack.
_EPB_TAILS = tuple(struct.Struct(f"<{pad}xI").pack for pad in range(4))
# The same followed by the next EPB's head.
_EPB_TAIL_HEADS = tuple(struct.Struct(f"<{pad}xI7I").pack for pad in range(4))
_RECORD = {order: struct.Struct(order + "IIII") for order in ("<", ">")}


class PcapToPcapng:
    """Stateful pcap → pcapng transcoder for a stream arriving in batches.

    Args:
        key_log: an NSS key log (SSLKEYLOGFILE contents) to embed as a DSB.
        interface_name, interface_description: if_name / if_description of the IDB.
        comment: opt_comment of the SHB.
        user_application: shb_userappl of the SHB.

    The output is little-endian whatever the input's byte order. `packet_count`
    counts the EPBs written so far: the number of records in the output file.
    """

    __slots__ = (
        "_encoder",
        "_error",
        "_fraction_ns",
        "_header",
        "_pending",
        "_record",
        "comment",
        "interface_description",
        "interface_name",
        "key_log",
        "packet_count",
        "user_application",
    )

    def __init__(
        self,
        key_log: bytes | None = None,
        interface_name: str | None = None,
        interface_description: str | None = None,
        comment: str | None = None,
        user_application: str | None = "wirecap",
    ) -> None:
        self.key_log = key_log
        self.interface_name = interface_name
        self.interface_description = interface_description
        self.comment = comment
        self.user_application = user_application
        self.packet_count = 0
        self._encoder = PcapngEncoder("<")
        self._header: PcapHeader | None = None
        self._record = _RECORD["<"]
        self._fraction_ns = 1
        # Bytes of an incomplete header or record carried to the next feed().
        self._pending = bytearray()
        self._error: DecodeError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Transcode one batch of pcap bytes; return the pcapng bytes ready so far.

        Raises:
            FormatError: the stream does not start with a pcap file header.
            LimitExceededError: a record claims more than MAX_CAPLEN bytes.

        After an error the transcoder stays broken: every later call raises it.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except DecodeError as error:
            self._error = error
            raise

    def _feed(self, data: bytes | bytearray | memoryview) -> bytes:
        pending = self._pending
        if pending:
            pending += data
            buf: bytes | bytearray | memoryview = pending
        else:
            buf = data
        prefix = b""
        start = 0
        if self._header is None:
            if len(buf) < FILE_HEADER_LEN:
                if buf is not pending:
                    pending += buf
                return b""
            prefix = self._start(decode_file_header(buf))
            start = FILE_HEADER_LEN
        body, end = self._transcode(buf, start)
        if end == len(buf):
            pending.clear()
        elif end or buf is not pending:
            # Keep only the unfinished record. When nothing was consumed from
            # `pending` it is already right: leaving it alone keeps a huge record
            # arriving byte by byte linear, not quadratic.
            self._pending = bytearray(buf[end:])
        return prefix + body if prefix else body

    def statistics(self, statistics: InterfaceStatistics) -> bytes:
        """An ISB for the one interface (received / dropped counts from libpcap)."""
        return self._encoder.statistics(statistics)

    def close(self) -> bytes:
        """End of input. Returns the last bytes (always empty: EPBs go out whole).

        An empty input gives an empty output: no capture, no file content.

        Raises:
            TruncatedError: the input ended inside the file header or a record.
        """
        if self._error is not None:
            raise self._error
        left = len(self._pending)
        if left:
            where = "file header" if self._header is None else "record"
            self._error = TruncatedError(f"pcap stream ended inside a {where} ({left} bytes left)")
            raise self._error
        return b""

    def _start(self, header: PcapHeader) -> bytes:
        self._header = header
        self._record = _RECORD[header.byte_order]
        self._fraction_ns = header.fraction_ns
        encoder = self._encoder
        interface = Interface(
            linktype=header.linktype,
            snaplen=header.snaplen,
            name=self.interface_name,
            description=self.interface_description,
        )
        parts = [
            encoder.section_header(comment=self.comment, user_application=self.user_application),
            encoder.interface(interface),
        ]
        if self.key_log is not None:
            parts.append(encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, self.key_log)))
        return b"".join(parts)

    def _transcode(self, buf: bytes | bytearray | memoryview, pos: int) -> tuple[bytes, int]:
        """EPBs for every whole record in buf[pos:]; returns them and the end offset.

        Each EPB's zero padding and trailing length are packed together with
        the next EPB's head (one `pack` per record instead of two), and the
        packet bytes are sliced, not viewed: for small packets a bytes copy is
        cheaper than creating a memoryview slice (measured: 1.2 M vs 0.8 M
        records/s), and no view pins the caller's buffer.
        """
        unpack = self._record.unpack_from
        first_head = _EPB_HEAD.pack
        tail_heads = _EPB_TAIL_HEADS
        fraction_ns = self._fraction_ns
        size = len(buf)
        out: list[bytes | bytearray | memoryview] = []
        append = out.append
        count = 0
        last_pad = last_total = -1
        while pos + RECORD_HEADER_LEN <= size:
            sec, frac, caplen, orig_len = unpack(buf, pos)
            if caplen > MAX_CAPLEN:
                raise LimitExceededError(
                    f"pcap record claims {caplen} captured bytes, more than MAX_CAPLEN {MAX_CAPLEN}"
                )
            data_start = pos + RECORD_HEADER_LEN
            data_end = data_start + caplen
            if data_end > size:
                break
            ts = sec * 1_000_000_000 + frac * fraction_ns
            pad = -caplen & 3
            total = _EPB_FIXED_LEN + caplen + pad
            if last_pad < 0:
                append(first_head(BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, orig_len))
            else:
                append(
                    tail_heads[last_pad](
                        last_total, BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, orig_len
                    )
                )
            append(buf[data_start:data_end])
            last_pad, last_total = pad, total
            pos = data_end
            count += 1
        if last_pad >= 0:
            append(_EPB_TAILS[last_pad](last_total))
        self.packet_count += count
        return b"".join(out), pos


def pcap_to_pcapng(
    chunks: Iterable[bytes],
    key_log: bytes | None = None,
    *,
    interface_name: str | None = None,
    interface_description: str | None = None,
    comment: str | None = None,
) -> Iterator[bytes]:
    """Convert a pcap stream given as byte chunks to pcapng byte chunks.

    Raises:
        DecodeError: as `PcapToPcapng.feed` and `close` do.
    """
    transcoder = PcapToPcapng(
        key_log=key_log,
        interface_name=interface_name,
        interface_description=interface_description,
        comment=comment,
    )
    for chunk in chunks:
        out = transcoder.feed(chunk)
        if out:
            yield out
    tail = transcoder.close()
    if tail:
        yield tail
