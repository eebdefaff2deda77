"""A network namespace where conntrack tracks loopback traffic, and its peer `conntrack -L`.

Names carry the ``wcf-`` prefix and a random suffix; the namespace is deleted on
exit whatever happened. Only loopback inside it is used.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

_RULES = """table inet wcf {
  chain out {
    type filter hook output priority 0;
    ct state new,established accept
  }
}
"""
#: Short timeouts so a DESTROY follows the traffic within seconds.
_SYSCTLS = {
    "net.netfilter.nf_conntrack_udp_timeout": "2",
    "net.netfilter.nf_conntrack_udp_timeout_stream": "2",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_close": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "1",
}


def run(*argv: str, input: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class ConntrackNetns:
    name: str

    def exec(self, *argv: str, input: str | None = None, timeout: float = 60) -> str:
        return run("ip", "netns", "exec", self.name, *argv, input=input, timeout=timeout)

    def python(self, code: str, *args: str, timeout: float = 60) -> str:
        return self.exec("python3", "-c", code, *args, timeout=timeout)

    def conntrack_list(self) -> dict[int, dict[str, int | str]]:
        """`conntrack -L -o id` parsed: id → proto, sport, dport, packets/bytes each way."""
        out = self.exec("conntrack", "-L", "-o", "id")
        table: dict[int, dict[str, int | str]] = {}
        for line in out.splitlines():
            found = re.search(r"id=(\d+)", line)
            if not found:
                continue
            packets = [int(v) for v in re.findall(r"packets=(\d+)", line)]
            octets = [int(v) for v in re.findall(r"bytes=(\d+)", line)]
            sport = re.search(r"sport=(\d+)", line)
            dport = re.search(r"dport=(\d+)", line)
            table[int(found.group(1))] = {
                "proto": line.split()[0],
                "sport": int(sport.group(1)) if sport else 0,
                "dport": int(dport.group(1)) if dport else 0,
                "packets_orig": packets[0] if packets else -1,
                "bytes_orig": octets[0] if octets else -1,
                "packets_ret": packets[1] if len(packets) > 1 else -1,
                "bytes_ret": octets[1] if len(octets) > 1 else -1,
            }
        return table


@contextmanager
def conntrack_netns(*, track: bool = True) -> Iterator[ConntrackNetns]:
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack (Debian conntrack) is not installed")
    name = f"wcf-{secrets.token_hex(4)}"
    run("ip", "netns", "add", name)
    try:
        ns = ConntrackNetns(name)
        ns.exec("ip", "link", "set", "lo", "up")
        if track:
            ns.exec("nft", "-f", "-", input=_RULES)
        ns.exec("sysctl", "-qw", *(f"{k}={v}" for k, v in _SYSCTLS.items()))
        yield ns
    finally:
        for pid in run("ip", "netns", "pids", name).split():
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
