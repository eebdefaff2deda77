"""Network namespaces for tests: proxy — router — origin over veth pairs.

Only addresses inside these namespaces are used (10.201.0.0/16, fd01::/16).
Every namespace is deleted on exit, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

PROXY_V4, ROUTER_NEAR_V4, ROUTER_FAR_V4, ORIGIN_V4 = (
    "10.201.1.2",
    "10.201.1.1",
    "10.201.2.1",
    "10.201.2.2",
)
PROXY_V6, ROUTER_NEAR_V6, ROUTER_FAR_V6, ORIGIN_V6 = (
    "fd01:1::2",
    "fd01:1::1",
    "fd01:2::1",
    "fd01:2::2",
)


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Topology:
    proxy: str
    router: str
    origin: str
    #: Router interfaces: toward the proxy, toward the origin.
    router_near: str = "rt0"
    router_far: str = "rt1"

    def exec(self, namespace: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def nft(self, namespace: str, ruleset: str) -> None:
        run(*self.exec(namespace, "nft", "-f", "-"), input=ruleset)

    def set_mtu(self, namespace: str, device: str, mtu: int) -> None:
        run(*self.exec(namespace, "ip", "link", "set", device, "mtu", str(mtu)))


def _veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
    run("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", dev_b, "netns", ns_b)


def _configure(ns: str, commands: Sequence[Sequence[str]]) -> None:
    for command in commands:
        run("ip", "netns", "exec", ns, *command)


_PRIME = """
import socket, sys
for address in sys.argv[1:]:
    try:
        socket.create_connection((address, 9), timeout=3).close()
    except OSError:
        pass  # refused is the expected answer: the path works
"""


def _prime_neighbours(net: Topology) -> None:
    # One exchange each way resolves ARP/ND on every hop, so a test's first SYN is
    # not the one that waits for neighbour discovery (IPv6 lost it, costing 1 s).
    run(*net.exec(net.proxy, "python3", "-c", _PRIME, ORIGIN_V4, ORIGIN_V6))


@contextmanager
def topology() -> Iterator[Topology]:
    """proxy (px0) — (rt0) router (rt1) — (or0) origin; IPv4 and IPv6; forwarding on."""
    tag = f"wc{os.getpid() % 100000}"
    names = Topology(proxy=f"{tag}-px", router=f"{tag}-rt", origin=f"{tag}-or")
    created: list[str] = []
    try:
        for ns in (names.proxy, names.router, names.origin):
            run("ip", "netns", "add", ns)
            created.append(ns)
        _veth(names.proxy, "px0", names.router, "rt0")
        _veth(names.router, "rt1", names.origin, "or0")
        # IPv6 addresses are usable at once (no duplicate address detection wait).
        nodad = ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]
        _configure(
            names.proxy,
            [
                nodad,
                ["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", f"{PROXY_V4}/24", "dev", "px0"],
                ["ip", "-6", "addr", "add", f"{PROXY_V6}/64", "dev", "px0", "nodad"],
                ["ip", "link", "set", "px0", "up"],
                ["ip", "route", "add", "default", "via", ROUTER_NEAR_V4],
                ["ip", "-6", "route", "add", "default", "via", ROUTER_NEAR_V6],
            ],
        )
        _configure(
            names.router,
            [
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", f"{ROUTER_NEAR_V4}/24", "dev", "rt0"],
                ["ip", "addr", "add", f"{ROUTER_FAR_V4}/24", "dev", "rt1"],
                ["ip", "-6", "addr", "add", f"{ROUTER_NEAR_V6}/64", "dev", "rt0", "nodad"],
                ["ip", "-6", "addr", "add", f"{ROUTER_FAR_V6}/64", "dev", "rt1", "nodad"],
                ["ip", "link", "set", "rt0", "up"],
                ["ip", "link", "set", "rt1", "up"],
                ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
            ],
        )
        _configure(
            names.origin,
            [
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", f"{ORIGIN_V4}/24", "dev", "or0"],
                ["ip", "-6", "addr", "add", f"{ORIGIN_V6}/64", "dev", "or0", "nodad"],
                ["ip", "link", "set", "or0", "up"],
                ["ip", "route", "add", "default", "via", ROUTER_FAR_V4],
                ["ip", "-6", "route", "add", "default", "via", ROUTER_FAR_V6],
            ],
        )
        _prime_neighbours(names)
        yield names
    finally:
        for ns in created:
            run("ip", "netns", "pids", ns, check=False)
            for pid in run("ip", "netns", "pids", ns, check=False).split():
                run("kill", "-9", pid, check=False)
            run("ip", "netns", "del", ns, check=False)
