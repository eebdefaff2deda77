"""Network namespaces for the guard's tests: attacker — guarded — client.

The guarded namespace runs the guard and a few TCP servers; the attacker and the
client each have a veth link to it, IPv4 and IPv6. Only addresses inside these
namespaces are used (10.208.0.0/16, fd08::/16), and every namespace is deleted on
exit, whatever happened.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

GUARD_A_V4, ATTACKER_V4 = "10.208.1.1", "10.208.1.2"
GUARD_C_V4, CLIENT_V4 = "10.208.2.1", "10.208.2.2"
GUARD_A_V6, ATTACKER_V6 = "fd08:1::1", "fd08:1::2"
GUARD_C_V6, CLIENT_V6 = "fd08:2::1", "fd08:2::2"


def run(*argv: str, check: bool = True, input: str | None = None, timeout: float = 30) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Topology:
    guarded: str
    attacker: str
    client: str

    def exec(self, namespace: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def run(self, namespace: str, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return run(*self.exec(namespace, *argv), check=check, timeout=timeout)


def _configure(ns: str, commands: Sequence[Sequence[str]]) -> None:
    for command in commands:
        run("ip", "netns", "exec", ns, *command)


def _nodad() -> list[list[str]]:
    return [
        ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"],
        ["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
        ["ip", "link", "set", "lo", "up"],
    ]


@contextmanager
def topology() -> Iterator[Topology]:
    tag = f"wcg-{os.getpid() % 10000}{secrets.token_hex(2)}"
    net = Topology(guarded=f"{tag}-gd", attacker=f"{tag}-at", client=f"{tag}-cl")
    created: list[str] = []
    try:
        for ns in (net.guarded, net.attacker, net.client):
            run("ip", "netns", "add", ns)
            created.append(ns)
        run(
            "ip",
            "link",
            "add",
            "ga0",
            "netns",
            net.guarded,
            "type",
            "veth",
            "peer",
            "at0",
            "netns",
            net.attacker,
        )
        run(
            "ip",
            "link",
            "add",
            "gc0",
            "netns",
            net.guarded,
            "type",
            "veth",
            "peer",
            "cl0",
            "netns",
            net.client,
        )
        _configure(
            net.guarded,
            [
                *_nodad(),
                ["ip", "addr", "add", f"{GUARD_A_V4}/24", "dev", "ga0"],
                ["ip", "addr", "add", f"{GUARD_C_V4}/24", "dev", "gc0"],
                ["ip", "-6", "addr", "add", f"{GUARD_A_V6}/64", "dev", "ga0", "nodad"],
                ["ip", "-6", "addr", "add", f"{GUARD_C_V6}/64", "dev", "gc0", "nodad"],
                ["ip", "link", "set", "ga0", "up"],
                ["ip", "link", "set", "gc0", "up"],
            ],
        )
        for ns, dev, v4, v6 in (
            (net.attacker, "at0", ATTACKER_V4, ATTACKER_V6),
            (net.client, "cl0", CLIENT_V4, CLIENT_V6),
        ):
            _configure(
                ns,
                [
                    *_nodad(),
                    ["ip", "addr", "add", f"{v4}/24", "dev", dev],
                    ["ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"],
                    ["ip", "link", "set", dev, "up"],
                ],
            )
        yield net
    finally:
        for ns in created:
            for pid in run("ip", "netns", "pids", ns, check=False).split():
                run("kill", "-9", pid, check=False)
            run("ip", "netns", "del", ns, check=False)


@contextmanager
def empty_namespace() -> Iterator[str]:
    """One namespace with nothing but loopback, deleted on exit."""
    name = f"wcg-{os.getpid() % 10000}{secrets.token_hex(2)}-e"
    run("ip", "netns", "add", name)
    try:
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)
