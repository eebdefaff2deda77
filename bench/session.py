"""Session benchmark: wirecap.capture_packets() against the original capture-packets.

Method
------
Each *round* runs the same block under each capturer, in an order rotated from
round to round, both on ``lo`` (the original with its defaults otherwise: dumpcap
through ``sh -c``, ``wait_before_terminate=1.0`` in 0.1.2; wirecap with its
defaults: marker packets, a 3 s bound):

1. ``__enter__`` is timed until it returns (the capture armed, as each tool
   defines it: the original polls until dumpcap's file is non-empty).
2. The block makes one bounded local transfer: a TCP connection to a server
   thread on 127.0.0.1 that sends ``--megabytes`` MiB (default 16) in 64 KiB
   writes, pausing ``--pause-ms`` (default 1 ms) after each, and closes; the
   client reads it all, then the block ends. The pause keeps the rate (about
   60 MB/s) where dumpcap keeps up: unpaced, loopback bursts faster than either
   capture's ring buffer drains and both lose bytes (see ``--pause-ms 0``).
3. ``__exit__`` is timed from the block's end until it returns.
4. The file is read with wirecap's own reader: the server's payload bytes that
   the capture holds are compared with what was sent, by TCP sequence ranges, so
   *lost* is the number of payload bytes of the transfer missing from the file
   (0 = every byte captured). The SYN and FIN must be there as well.
5. For 1 s after ``__exit__`` returned, UDP datagrams are sent on lo and the
   file's size is watched: a capture that is really stopped does not grow. The
   original's dumpcap, started through dash, outlives its shell: its pid is found
   during the block (the shell's child) and is killed by the bench afterwards.

Targets (exit status 1 when one is missed):

* wirecap's median enter+exit time ≤ 0.2 × the original's;
* wirecap loses 0 bytes (and misses no SYN/FIN) in every round where the
  original loses none;
* wirecap's file never grows after ``__exit__``.

The original needs ``capture-packets`` (PyPI 0.1.2; the Makefile's bench target
installs it without its stale ``cryptography<37`` pin) and Debian's dumpcap.
Without them, the original is replaced by its closest real peer: dumpcap started
directly (no shell) around the block, with the original's waits. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wirecap
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import Interface, Packet
from wirecap.core.packet import decode

ENTER_EXIT_RATIO_TARGET = 0.2
#: capture-packets 0.1.2's default wait after the block (HEAD's is 3.0).
ORIGINAL_WAIT_S = 1.0
FIN, SYN = 0x01, 0x02


@dataclass
class Run:
    tool: str
    enter_s: float
    exit_s: float
    sent: int
    lost: int
    syn_fin: bool
    packets: int
    grew_after_exit: int
    orphan: bool = False

    @property
    def total_s(self) -> float:
        return self.enter_s + self.exit_s


# -- the transfer ----------------------------------------------------------------------


class Transfer:
    """A server thread on 127.0.0.1 that sends `size` bytes to one client and closes."""

    def __init__(self, size: int, pause_s: float) -> None:
        self.size = size
        self.pause_s = pause_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            block = b"\xa5" * 65536
            left = self.size
            while left:
                conn.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))
                if self.pause_s:
                    time.sleep(self.pause_s)

    def fetch(self) -> None:
        got = 0
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
        self._thread.join()
        self.listener.close()
        if got != self.size:
            raise RuntimeError(f"transfer got {got} of {self.size} bytes")


def lost_bytes(path: str, port: int, size: int) -> tuple[int, bool, int]:
    """(payload bytes of the server's stream missing from the capture, SYN and FIN seen,
    packets of the transfer's connection in the capture)."""
    linktypes: list[int] = []
    ranges: list[tuple[int, int]] = []
    isn: int | None = None
    syn = fin = False
    packets = 0
    for event in read_file(path):
        if isinstance(event, Interface):
            linktypes.append(event.linktype)
        elif isinstance(event, Packet):
            decoded = decode(linktypes[event.interface_id], event.data, event.orig_len)
            tcp = decoded.tcp
            if tcp is None or port not in (tcp.sport, tcp.dport):
                continue
            packets += 1
            if tcp.sport != port:
                continue
            if tcp.flags & SYN:
                isn, syn = tcp.seq, True
            if tcp.flags & FIN:
                fin = True
            if tcp.payload_length:
                ranges.append((tcp.seq, tcp.seq + tcp.payload_length))
    if isn is None:
        return size, False, packets
    covered, end = 0, isn + 1
    for start, stop in sorted((s - isn - 1, e - isn - 1) for s, e in ranges):
        start, stop = max(start, end - isn - 1), min(stop, size)
        if stop > start:
            covered += stop - start
            end = stop + isn + 1
    return size - covered, syn and fin, packets


def growth_after(path: str, seconds: float = 1.0) -> int:
    """Bytes the file grows by while UDP traffic goes over lo for `seconds`."""
    before = os.path.getsize(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            sock.sendto(b"after-exit" * 10, sock.getsockname())
            with contextlib.suppress(BlockingIOError):
                sock.recv(2048, socket.MSG_DONTWAIT)
            time.sleep(0.001)
    return os.path.getsize(path) - before


# -- the capturers ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _dumpcap_pids() -> list[int]:
    """dumpcap processes under our children (the original's shell's child)."""
    pids = []
    for child in _children(os.getpid()):
        for pid in [child, *_children(child)]:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "dumpcap":
                    pids.append(pid)
    return pids


def run_block(tool: str, make: Callable[[], Any], size: int, pause_s: float) -> Run:
    saved = os.environ.get("SSLKEYLOGFILE")
    manager = make()
    transfer = Transfer(size, pause_s)
    start = time.perf_counter()
    pcap = manager.__enter__()
    armed = time.perf_counter()
    dumpcaps: list[int] = []
    try:
        transfer.fetch()
        dumpcaps = _dumpcap_pids()
    finally:
        done = time.perf_counter()
        manager.__exit__(None, None, None)
        exited = time.perf_counter()
        # The original never restores SSLKEYLOGFILE; put it back for the next round.
        if saved is None:
            os.environ.pop("SSLKEYLOGFILE", None)
        else:
            os.environ["SSLKEYLOGFILE"] = saved
    path = pcap.pcap_filepath
    grew = growth_after(path)
    orphan = False
    for pid in dumpcaps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            orphan = True
    lost, syn_fin, packets = lost_bytes(path, transfer.port, size)
    if hasattr(pcap, "delete"):
        pcap.delete()
    else:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    return Run(tool, armed - start, exited - done, size, lost, syn_fin, packets, grew, orphan)


@contextlib.contextmanager
def dumpcap_direct(interface: str) -> Iterator[Any]:
    """The closest peer when capture-packets is missing: dumpcap, no shell, same waits."""

    class Result:
        pcap_filepath = ""

    directory = tempfile.mkdtemp()
    result = Result()
    result.pcap_filepath = os.path.join(directory, "packets.pcapng")
    process = subprocess.Popen(
        ["dumpcap", "-q", "-i", interface, "-w", result.pcap_filepath], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and (
        not os.path.exists(result.pcap_filepath) or os.path.getsize(result.pcap_filepath) == 0
    ):
        time.sleep(0.1)
    try:
        yield result
    finally:
        time.sleep(ORIGINAL_WAIT_S)
        process.terminate()
        process.wait(timeout=10)


def original_factory() -> tuple[str, Callable[[], Any]]:
    try:
        original = importlib.import_module("capture_packets").capture_packets
    except ImportError as exc:
        print(f"capture-packets cannot be imported ({exc}); comparing with dumpcap run directly")
        return "dumpcap (direct)", lambda: dumpcap_direct("lo")
    return "capture-packets 0.1.2", lambda: original(interfaces=["lo"])


# -- main ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=16, help="MiB per transfer")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=1.0,
        help="pause after each 64 KiB the server sends (0: as fast as loopback goes)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (live capture)")
        return 1
    if shutil.which("dumpcap") is None:
        print("dumpcap is not installed (Debian wireshark-common)")
        return 1
    size = args.megabytes << 20
    original_name, original = original_factory()
    tools: list[tuple[str, Callable[[], Any]]] = [
        ("wirecap", lambda: wirecap.capture_packets(interfaces=["lo"])),
        (original_name, original),
    ]
    runs: dict[str, list[Run]] = {name: [] for name, _ in tools}
    for round_index in range(args.rounds):
        order = tools[round_index % 2 :] + tools[: round_index % 2]
        for name, make in order:
            runs[name].append(run_block(name, make, size, args.pause_ms / 1000))

    print(
        f"{args.rounds} rounds, {args.megabytes} MiB over loopback TCP per block "
        f"(64 KiB then {args.pause_ms} ms pause), captured on lo\n"
    )
    print(f"{'tool':<24}{'enter ms':>10}{'exit ms':>10}{'total ms':>10}"
          f"{'packets':>9}{'lost B':>9}{'SYN+FIN':>9}{'grew B':>10}{'orphan':>8}")  # fmt: skip
    for name, _ in tools:
        group = runs[name]
        print(
            f"{name:<24}"
            f"{median([r.enter_s for r in group]) * 1000:>10.1f}"
            f"{median([r.exit_s for r in group]) * 1000:>10.1f}"
            f"{median([r.total_s for r in group]) * 1000:>10.1f}"
            f"{median([r.packets for r in group]):>9.0f}"
            f"{max(r.lost for r in group):>9}"
            f"{'all' if all(r.syn_fin for r in group) else 'missing':>9}"
            f"{max(r.grew_after_exit for r in group):>10}"
            f"{'yes' if any(r.orphan for r in group) else 'no':>8}"
        )
    print(
        "(medians over rounds; packets: the transfer's, both directions, as GSO on lo "
        "sends them; lost, grew: the worst round; orphan: dumpcap outlived the block)"
    )

    ours, theirs = runs["wirecap"], runs[original_name]
    ratio = median([r.total_s for r in ours]) / median([r.total_s for r in theirs])
    failures = []
    if ratio > ENTER_EXIT_RATIO_TARGET:
        failures.append(
            f"enter+exit {ratio:.3f}× the original's (target ≤ {ENTER_EXIT_RATIO_TARGET})"
        )
    for mine, other in zip(ours, theirs, strict=True):
        if other.lost == 0 and other.syn_fin and (mine.lost or not mine.syn_fin):
            failures.append(f"wirecap lost {mine.lost} bytes where the original lost none")
    if any(r.grew_after_exit for r in ours):
        failures.append("wirecap's file grew after __exit__")
    print(f"\nenter+exit: wirecap {ratio:.3f}× the original's (target ≤ {ENTER_EXIT_RATIO_TARGET})")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    if not failures:
        print("all targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
