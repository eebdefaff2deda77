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


def test_addresses_and_lookup_by_address() -> None:
    import ipaddress

    from wirecap.core.capture.devices import device_for_address

    devices = {d.name: d for d in list_devices()}
    assert ipaddress.ip_address("127.0.0.1") in devices["lo"].addresses
    assert device_for_address(ipaddress.ip_address("127.0.0.1")) == "lo"
    assert device_for_address(ipaddress.ip_address("192.0.2.254")) is None
