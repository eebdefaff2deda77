"""Running the guard in a test namespace, and traffic from the others."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.guard.netns_topology import Topology, run

#: A TCP server on port 8080, IPv4 and IPv6, accepting and closing at once.
SERVER = """
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8080))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

#: Connects to HOST on each PORT in turn; prints one JSON list of outcomes.
CONNECT = """
import json, socket, sys
host, timeout, ports = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
out = []
for port in ports:
    s = socket.socket(family)
    s.settimeout(timeout)
    try:
        s.connect((host, int(port)))
        out.append("ok")
    except ConnectionRefusedError:
        out.append("refused")
    except (TimeoutError, socket.timeout):
        out.append("timeout")
    finally:
        s.close()
print(json.dumps(out))
"""

#: Starts COUNT non-blocking connects to HOST:PORT at once (a small SYN flood).
FLOOD = """
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
socks = []
for _ in range(count):
    s = socket.socket(family)
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    socks.append(s)
time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0.5)
"""


def start_server(net: Topology) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        net.exec(net.guarded, sys.executable, "-c", SERVER), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def connect(
    net: Topology, ns: str, host: str, ports: Sequence[int], timeout: float = 1.0
) -> list[str]:
    out = net.run(
        ns,
        sys.executable,
        "-c",
        CONNECT,
        host,
        str(timeout),
        *map(str, ports),
        timeout=30 + timeout * len(ports),
    )
    result: list[str] = json.loads(out)
    return result


def flood(net: Topology, ns: str, host: str, count: int, hold_s: float = 0.5) -> None:
    net.run(ns, sys.executable, "-c", FLOOD, host, "8080", str(count), str(hold_s))


def blocked(
    net: Topology, set_name: str, table: str = "wirecap_guard"
) -> dict[str, dict[str, Any]]:
    """Elements of a block set, by address, as `nft -j list set` shows them."""
    out = net.run(net.guarded, "nft", "-j", "list", "set", "inet", table, set_name)
    elements: dict[str, dict[str, Any]] = {}
    for item in json.loads(out)["nftables"]:
        for member in item.get("set", {}).get("elem", []):
            fields = member["elem"] if isinstance(member, dict) else {"val": member}
            elements[fields["val"]] = fields
    return elements


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Guard:
    """`wirecap guard` running in the guarded namespace; its output collected."""

    def __init__(self, net: Topology, *args: str, ready: bool = True) -> None:
        argv = net.exec(net.guarded, sys.executable, "-m", "wirecap", "guard", *args)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if ready:
            wait_for(
                lambda: self.has("watching SYNs", err=True) or self.proc.poll() is not None,
                20,
                "the guard to start",
            )
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"guard exited: {self.stderr}")

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def has(self, text: str, *, err: bool = False) -> bool:
        return any(text in line for line in list(self.stderr if err else self.stdout))

    def wait_line(self, text: str, timeout: float = 10.0, *, err: bool = False) -> None:
        wait_for(lambda: self.has(text, err=err), timeout, f"{text!r} in the guard's output")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def metrics_text(net: Topology, port: int) -> str:
    return run(*net.exec(net.guarded, "curl", "-s", f"http://127.0.0.1:{port}/metrics"))


def sample(text: str, series: str) -> float:
    """The value of one series, e.g. ``wirecap_guard_syn_total{family="ipv4"}``."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the metrics")
