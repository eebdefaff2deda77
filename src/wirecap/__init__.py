"""wirecap: record network traffic for diagnostics and explain what was recorded.

Layers (each imports only those below it)::

    cli/        command-line front ends; the only place defaults are read
    session/    capture_packets(): capture + TLS keys around a block of code
    core/       capture engine, pcap/pcapng codecs, merge, packet headers
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from wirecap._version import __version__

if TYPE_CHECKING:
    from wirecap.session import CaptureSession

__all__ = ["__version__", "available_interfaces", "capture_packets"]


def capture_packets(
    *,
    interfaces: Iterable[str] | None = None,
    wait_for_packets: bool = True,
    wait_before_terminate: float = 3.0,
    filter: str = "",
) -> CaptureSession:
    """Capture the traffic of a block, with its TLS keys; a drop-in for capture-packets.

    ::

        with wirecap.capture_packets() as pcap:
            urllib3.PoolManager().request("GET", "https://example.org/")
        print(pcap.tarball())   # packets.pcapng (TLS keys embedded), key log, README
        pcap.packets(layers=DNSQR)
        pcap.delete()

    `interfaces` None captures on all (libpcap's ``any``); several names get one
    handle each, merged into one multi-interface pcapng. `filter` is a BPF
    expression (tcpdump's language). The capture is armed before the block runs;
    SSLKEYLOGFILE names the session's key log (0600, in a 0700 directory) during
    the block, so TLS contexts created inside it log their secrets, and is put
    back as it was afterwards. At exit a marker packet per interface tells when
    everything is written (at most `wait_before_terminate` seconds of waiting;
    `wait_for_packets=False` skips it). Also usable as ``async with`` and as a
    decorator. Raises the reason (no privilege, no such interface, bad filter)
    when the capture cannot start.
    """
    # Imported here so that `import wirecap` stays cheap for everything else.
    import os

    from wirecap.core.capture.devices import list_devices
    from wirecap.session import CaptureSession, SessionOptions, SessionServices

    options = SessionOptions.build(
        interfaces=interfaces,
        filter=filter,
        wait_for_packets=wait_for_packets,
        wait_before_terminate=wait_before_terminate,
    )
    services = SessionServices(environ=os.environ, devices=list_devices, random_bytes=os.urandom)
    return CaptureSession(options, services)


def available_interfaces() -> set[str]:
    """The names of the interfaces libpcap can capture on (``any`` included on Linux)."""
    from wirecap.core.capture.devices import list_devices

    return {device.name for device in list_devices()}
