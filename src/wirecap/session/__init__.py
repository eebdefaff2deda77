"""The capture session: ``with capture_packets() as pcap:`` records what the block does.

A drop-in for capture-packets, on wirecap's own capture engine:

- ``options``: `SessionOptions` and the interface choice (pure);
- ``environment``: SSLKEYLOGFILE set for the block and put back (pure);
- ``marker``: the marker packets that tell when a capture has caught up (pure);
- ``contents``: the session's pcapng (merge, DSB, statistics) and README (pure);
- ``dissect``: which ports carry TLS and HTTP, for scapy (pure);
- ``session``: the shell: handles, threads, files, environment, scapy.

The public entry points with their defaults wired are `wirecap.capture_packets`
and `wirecap.available_interfaces`.
"""

from wirecap.session.options import SessionOptions
from wirecap.session.session import CapturedPackets, CaptureSession, SessionServices, log_keys

__all__ = ["CaptureSession", "CapturedPackets", "SessionOptions", "SessionServices", "log_keys"]
