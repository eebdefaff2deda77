"""Capture statistics, each counter labelled with what it really counts."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CaptureStats"]


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counters of one capture.

    ``written`` is the number of records libpcap handed to the output: the packet
    count of a file. A stream output may drop whole batches for a slow consumer;
    ``delivered`` is then what the consumer got.
    The other three are libpcap's ``pcap_stats``: on Linux ``received`` counts what
    the socket saw before filtering, and on ``lo`` every packet twice (outgoing and
    incoming copies), so it is not a packet count.
    """

    written: int
    received_by_kernel: int
    dropped_by_kernel: int
    dropped_by_interface: int
    #: Records the output discarded because its consumer was too slow (streams only).
    dropped_by_output: int = 0

    @property
    def delivered(self) -> int:
        return self.written - self.dropped_by_output

    def summary(self) -> str:
        text = (
            f"{self.written} packets captured, "
            f"{self.received_by_kernel} received by filter, "
            f"{self.dropped_by_kernel} dropped by kernel, "
            f"{self.dropped_by_interface} dropped by interface"
        )
        if self.dropped_by_output:
            text += f", {self.dropped_by_output} dropped by slow consumer"
        return text
