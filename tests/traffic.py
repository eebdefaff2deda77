"""Bounded test traffic on loopback: what tests capture."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def udp_sink() -> Iterator[int]:
    """A bound UDP socket on 127.0.0.1 (so no ICMP port-unreachable); yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def send_udp(port: int, count: int, size: int = 64) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        payload = bytes(size)
        for _ in range(count):
            sock.sendto(payload, ("127.0.0.1", port))
