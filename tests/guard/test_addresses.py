"""Tests for wirecap.guard.addresses: own addresses and gateways, and change watching."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.guard.netns_topology import empty_namespace, run

pytestmark = pytest.mark.netns

SCRIPT = """
import asyncio, json, subprocess, socket
from wirecap.guard.addresses import AddressWatcher, read_host_addresses

def text(packed):
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)

async def main():
    first = await asyncio.to_thread(read_host_addresses)
    changed = asyncio.Event()
    watcher = AddressWatcher(changed.set)
    watcher.start()
    subprocess.run(["ip", "addr", "add", "10.208.9.9/32", "dev", "lo"], check=True)
    await asyncio.wait_for(changed.wait(), 5)
    watcher.close()
    second = await asyncio.to_thread(read_host_addresses)
    print(json.dumps({
        "local": sorted(text(a) for a in first.local),
        "gateways": sorted(text(a) for a in first.gateways),
        "after": sorted(text(a) for a in second.local),
    }))

asyncio.run(main())
"""


def test_addresses_gateways_and_a_change_seen() -> None:
    with empty_namespace() as ns:
        for command in (
            ["ip", "link", "add", "d0", "type", "veth", "peer", "d1"],
            ["ip", "link", "set", "d1", "up"],
            ["ip", "link", "set", "d0", "up"],
            ["ip", "addr", "add", "10.208.8.2/24", "dev", "d0"],
            ["ip", "-6", "addr", "add", "fd08:8::2/64", "dev", "d0", "nodad"],
            ["ip", "route", "add", "default", "via", "10.208.8.1"],
            ["ip", "-6", "route", "add", "default", "via", "fd08:8::1"],
        ):
            run("ip", "netns", "exec", ns, *command)
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    report = json.loads(done.stdout)
    assert {"10.208.8.2", "fd08:8::2", "127.0.0.1", "::1"} <= set(report["local"])
    assert report["gateways"] == ["10.208.8.1", "fd08:8::1"]
    assert "10.208.9.9" in report["after"] and "10.208.9.9" not in report["local"]
