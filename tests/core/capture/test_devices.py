"""Interfaces as libpcap lists them."""

from __future__ import annotations

import socket

from wirecap.core.capture.devices import list_devices


def test_lists_loopback_and_any_with_flags() -> None:
    devices = {d.name: d for d in list_devices()}
    assert "lo" in devices and "any" in devices
    assert devices["lo"].loopback and devices["lo"].up
    # Every kernel interface appears (pcap_findalldevs may add pseudo-devices).
    kernel = {name for _, name in socket.if_nameindex()}
    assert kernel <= set(devices)
