"""Live capture through the system libpcap, driven by asyncio.

`LiveCapture` runs one non-blocking handle from the event loop into one output:
a file libpcap writes itself, a pcapng file, a Python callable, or a stream with
back-pressure. `start()` returns armed; `stop()` drains and reports statistics.
"""

from wirecap.core.capture.devices import CaptureDevice, list_devices
from wirecap.core.capture.handle import check_filter
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import (
    BatchOutput,
    CaptureOutput,
    PacketOutput,
    PcapFileOutput,
    PcapngFileOutput,
)
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stats import CaptureStats
from wirecap.core.capture.stream import StreamOutput

__all__ = [
    "BatchOutput",
    "CaptureDevice",
    "CaptureOutput",
    "CaptureSpec",
    "CaptureStats",
    "LiveCapture",
    "PacketOutput",
    "PcapFileOutput",
    "PcapngFileOutput",
    "StreamOutput",
    "check_filter",
    "list_devices",
]
