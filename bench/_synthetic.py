"""Synthetic Ethernet/IPv4/TCP frames and command timing shared by the benchmarks."""

from __future__ import annotations

import struct
import subprocess
import time

__all__ = ["tcp_frame", "timed_run"]

#: Destination 00:00:00:00:00:00, source 02:00:00:00:00:01 (locally administered), IPv4.
_ETH = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
_TCP = struct.Struct("!HHIIBBHHH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")


def tcp_frame(
    src: int,
    dst: int,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: int,
    snaplen: int,
    fill: int = 0,
) -> tuple[bytes, int]:
    """A frame cut to `snaplen` bytes, and its length on the wire.

    No checksums (readers of these files do not verify them); DF set; the
    payload is `payload` bytes of `fill`.
    """
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    ip = _IPV4.pack(
        0x45,
        0,
        20 + 20 + payload,
        0,
        0x4000,
        64,
        6,
        0,
        src.to_bytes(4, "big"),
        dst.to_bytes(4, "big"),
    )
    whole = _ETH + ip + tcp
    return (whole + bytes([fill]) * payload)[:snaplen], len(whole) + payload


def timed_run(argv: list[str]) -> float:
    """Wall-clock seconds of a command; exits with its stderr when it fails."""
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed
