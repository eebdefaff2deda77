"""Capture benchmark: `wirecap record` against tcpdump on a loopback UDP flood.

Method
------
One UDP socket is bound on 127.0.0.1:PORT with the smallest receive buffer the
kernel allows and is never read, so the kernel drops the flood at that socket
(after the capture tap) and never answers with ICMP port-unreachable.

Each *run* is one capturer against its own flood of the same parameters:

1. ``--senders`` sender processes (multiprocessing, spawn) open their sockets and
   wait for a start signal.
2. The capturer is started and the benchmark waits until it says it is armed
   (tcpdump: ``listening on``; wirecap: ``wirecap: recording on``). Its CPU time so
   far (utime + stime of its pid, from ``/proc/PID/stat``) is the *start-up CPU*.
3. The senders call ``sendto`` with a 64-byte payload in a tight loop for
   ``--seconds`` and report exactly how many calls succeeded (*sent*).
4. After the flood the benchmark waits ``--drain`` seconds (at least 1.2 s:
   tcpdump's TPACKET_V3 block timeout is 1 s), and longer while the capturer's CPU
   time is still rising, then reads its CPU time again: the difference is the
   *window CPU*, which covers the capture of the flood and nothing else.
5. The capturer is stopped with SIGINT. Its final counters are parsed from stderr,
   the records in the file are counted (a small struct reader for pcap, capinfos
   or tshark for pcapng) and the tool's own packet count must equal the file's.

The capturers are tcpdump (``-B 32768``, pcap), ``wirecap record`` (pcap, written
by libpcap's pcap_dump) and ``wirecap record --format pcapng`` (transcoded in
Python). Every round runs each of them once, in an order rotated from round to
round, and the table shows the median over rounds with the min–max range.

CPU per packet = window CPU / packets in the file. CPU time from /proc is counted
in clock ticks (1/SC_CLK_TCK s, normally 10 ms), so each window value is uncertain
by about two ticks; the output says how much that is relative to the measurement.

Targets (exit status 1 when one is missed, or when a run fails):

* wirecap (pcap) drops nothing in every round where tcpdump dropped nothing:
  0 kernel drops reported, and no packet missing from its file that tcpdump's has;
* wirecap (pcap) median CPU per packet ≤ 1.5 × tcpdump's.

pcapng has no target; it is reported next to tcpdump's pcap numbers.

Needs root (live capture), tcpdump, and capinfos or tshark for the pcapng count.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PAYLOAD_SIZE = 64
#: sendto calls between two looks at the clock in a sender.
SEND_BATCH = 512
#: The drain after the flood: tcpdump's TPACKET_V3 block timeout (1 s) plus a margin.
MIN_DRAIN_S = 1.2
DEFAULT_DRAIN_S = 1.5
#: After the minimum drain, keep waiting while the capturer still burns CPU, up to this.
MAX_EXTRA_DRAIN_S = 20.0
IDLE_POLL_S = 0.25
ARM_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
CPU_RATIO_TARGET = 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run or a setup step failed; the message says why."""


# ---------------------------------------------------------------------------------
# capturers


@dataclass(frozen=True, slots=True)
class Capturer:
    key: str
    label: str
    file_format: str
    armed_marker: str
    command: Callable[[Path, int], list[str]]


def make_capturers(tcpdump: str, wirecap: str) -> list[Capturer]:
    def tcpdump_cmd(path: Path, port: int) -> list[str]:
        return [tcpdump, "-i", "lo", "-B", "32768", "-n", "-w", str(path), f"udp dst port {port}"]

    def wirecap_cmd(file_format: str) -> Callable[[Path, int], list[str]]:
        def command(path: Path, port: int) -> list[str]:
            fmt = [] if file_format == "pcap" else ["--format", file_format]
            return [
                wirecap,
                "record",
                "-i",
                "lo",
                "-q",
                *fmt,
                "-w",
                str(path),
                "udp",
                "dst",
                "port",
                str(port),
            ]

        return command

    return [
        Capturer("tcpdump", "tcpdump pcap", "pcap", "listening on", tcpdump_cmd),
        Capturer("wirecap", "wirecap pcap", "pcap", "wirecap: recording on", wirecap_cmd("pcap")),
        Capturer(
            "wirecap-ng",
            "wirecap pcapng",
            "pcapng",
            "wirecap: recording on",
            wirecap_cmd("pcapng"),
        ),
    ]


# ---------------------------------------------------------------------------------
# results


@dataclass(slots=True)
class RunResult:
    capturer: str
    round: int
    sent: int = 0
    send_errors: int = 0
    flood_s: float = 0.0
    in_file: int = 0
    reported: int | None = None
    kernel_drops: int = 0
    interface_drops: int = 0
    startup_ticks: int = 0
    window_ticks: int = 0
    #: The same window from the scheduler's nanosecond run-time clock (cross-check).
    window_ns: int | None = None
    extra_drain_s: float = 0.0
    backlog_drops: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def captured_pct(self) -> float:
        return 100.0 * self.in_file / self.sent if self.sent else 0.0

    @property
    def window_cpu(self) -> float:
        return self.window_ticks / CLK_TCK

    @property
    def startup_cpu(self) -> float:
        return self.startup_ticks / CLK_TCK

    @property
    def us_per_packet(self) -> float | None:
        return 1e6 * self.window_cpu / self.in_file if self.in_file else None

    @property
    def packets_per_cpu_s(self) -> float | None:
        return self.in_file / self.window_cpu if self.window_ticks else None

    @property
    def us_per_packet_ns_clock(self) -> float | None:
        if self.window_ns is None or not self.in_file:
            return None
        return self.window_ns / 1000 / self.in_file


# ---------------------------------------------------------------------------------
# the flood


def _sender(
    port: int,
    seconds: float,
    go: multiprocessing.synchronize.Event,
    abort: multiprocessing.synchronize.Event,
    out: multiprocessing.queues.Queue[tuple[str, int, int, float]],
) -> None:
    """One flood process: counts exactly the sendto calls that succeeded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(PAYLOAD_SIZE)
    addr = ("127.0.0.1", port)
    send = sock.sendto
    out.put(("ready", 0, 0, 0.0))
    go.wait()
    if abort.is_set():
        out.put(("done", 0, 0, 0.0))
        return
    calls = errors = 0
    start = time.monotonic()
    deadline = start + seconds
    while True:
        for _ in range(SEND_BATCH):
            try:
                send(payload, addr)
            except OSError:
                errors += 1
        calls += SEND_BATCH
        if time.monotonic() >= deadline:
            break
    elapsed = time.monotonic() - start
    sock.close()
    out.put(("done", calls - errors, errors, elapsed))


class Flood:
    """Sender processes, started ahead of the capturer and released by `fire`."""

    def __init__(self, senders: int, port: int, seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._go = ctx.Event()
        self._abort = ctx.Event()
        self._out: multiprocessing.queues.Queue[tuple[str, int, int, float]] = ctx.Queue()
        self._seconds = seconds
        self._procs = [
            ctx.Process(
                target=_sender,
                args=(port, seconds, self._go, self._abort, self._out),
                name=f"flood-{i}",
                daemon=True,
            )
            for i in range(senders)
        ]

    def start(self) -> None:
        for proc in self._procs:
            proc.start()
        for _ in self._procs:
            kind, *_ = self._get(timeout=60.0)
            if kind != "ready":
                raise BenchError(f"sender sent {kind!r} before it was ready")

    def fire(self) -> tuple[int, int, float]:
        """Release the senders, wait for them: (packets sent, send errors, longest s)."""
        self._go.set()
        sent = errors = 0
        longest = 0.0
        for _ in self._procs:
            _, n, e, elapsed = self._get(timeout=self._seconds + 60.0)
            sent += n
            errors += e
            longest = max(longest, elapsed)
        for proc in self._procs:
            proc.join(timeout=10.0)
        return sent, errors, longest

    def close(self) -> None:
        self._abort.set()
        self._go.set()
        for proc in self._procs:
            if proc.pid is None:
                continue
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        self._out.close()
        self._out.join_thread()

    def _get(self, timeout: float) -> tuple[str, int, int, float]:
        try:
            return self._out.get(timeout=timeout)
        except Exception as exc:  # queue.Empty
            dead = [p.name for p in self._procs if p.exitcode not in (None, 0)]
            raise BenchError(
                f"sender processes did not report in time (failed: {dead or 'none'})"
            ) from exc


def softnet_drops() -> int:
    """Packets the kernel's input backlog dropped (all CPUs): lost before any tap."""
    try:
        text = Path("/proc/net/softnet_stat").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1], 16) for line in text.splitlines() if line.strip())


# ---------------------------------------------------------------------------------
# the capturer process


class StderrWatcher(threading.Thread):
    """Collects a child's stderr lines and notices when it says it is armed."""

    def __init__(self, stream: IO[str], marker: str) -> None:
        super().__init__(daemon=True)
        self.lines: list[str] = []
        self._stream = stream
        self._marker = marker
        self.armed = False
        self._changed = threading.Event()

    def run(self) -> None:
        try:
            for line in self._stream:
                self.lines.append(line.rstrip("\n"))
                if not self.armed and self._marker in line:
                    self.armed = True
                    self._changed.set()
        finally:
            self._changed.set()

    def wait_armed(self, timeout: float) -> bool:
        self._changed.wait(timeout)
        return self.armed

    def tail(self, n: int = 8) -> str:
        lines = [line for line in self.lines if line.strip()][-n:]
        return "\n".join("    " + line for line in lines) or "    (no output)"


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def run_time_ns(pid: int) -> int | None:
    """Time on CPU of all a process's threads from the scheduler, in ns (or None).

    Finer than utime+stime (which the kernel derives from the same clock and rounds
    to ticks); used only as a cross-check of the tick-based numbers.
    """
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def wait_idle(pid: int, budget_s: float) -> tuple[int, float]:
    """Poll until the CPU time stops rising (two polls apart) or the budget runs out."""
    started = time.monotonic()
    last = cpu_ticks(pid)
    still = 0
    while time.monotonic() - started < budget_s:
        time.sleep(IDLE_POLL_S)
        now = cpu_ticks(pid)
        still = still + 1 if now == last else 0
        last = now
        if still >= 2:
            break
    extra = time.monotonic() - started - still * IDLE_POLL_S
    return last, max(0.0, extra)


_TCPDUMP_STATS = {
    "reported": re.compile(r"^(\d+) packets? captured$", re.M),
    "kernel": re.compile(r"^(\d+) packets? dropped by kernel$", re.M),
    "interface": re.compile(r"^(\d+) packets? dropped by interface$", re.M),
}
_WIRECAP_STATS = re.compile(
    r"^(\d+) packets captured, (\d+) received by filter, (\d+) dropped by kernel, "
    r"(\d+) dropped by interface",
    re.M,
)


def parse_final_stats(cap: Capturer, stderr: str) -> tuple[int, int, int]:
    """(packets the tool says it wrote, kernel drops, interface drops) from its stderr."""
    if cap.key == "tcpdump":
        found = {k: rx.search(stderr) for k, rx in _TCPDUMP_STATS.items()}
        reported, kernel = found["reported"], found["kernel"]
        if reported is None or kernel is None:
            raise BenchError("tcpdump printed no final statistics")
        interface = found["interface"]
        return int(reported[1]), int(kernel[1]), int(interface[1]) if interface else 0
    m = _WIRECAP_STATS.search(stderr)
    if m is None:
        raise BenchError("wirecap printed no final statistics line")
    return int(m[1]), int(m[3]), int(m[4])


# ---------------------------------------------------------------------------------
# counting records


def count_pcap(path: Path) -> int:
    """Records in a classic pcap file; a truncated last record is an error."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise BenchError(f"{path.name}: {size} bytes, shorter than a pcap header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            magic = bytes(buf[:4])
            if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
                incl_len = struct.Struct("<I").unpack_from
            elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
                incl_len = struct.Struct(">I").unpack_from
            else:
                raise BenchError(f"{path.name}: not a pcap file (magic {magic.hex()})")
            offset, records = 24, 0
            while offset + 16 <= size:
                offset += 16 + incl_len(buf, offset + 8)[0]
                records += 1
    if offset != size:
        raise BenchError(f"{path.name}: last record truncated ({offset} != {size} bytes)")
    return records


def count_pcapng(path: Path) -> int:
    """Packets in a pcapng file, counted by capinfos (or tshark when it is missing)."""
    capinfos = shutil.which("capinfos")
    if capinfos is not None:
        done = subprocess.run(
            [capinfos, "-c", "-M", str(path)], capture_output=True, text=True, check=False
        )
        m = re.search(r"Number of packets:\s*(\d+)\s*$", done.stdout, re.M)
        if done.returncode != 0 or m is None:
            raise BenchError(f"capinfos failed on {path.name}: {done.stderr.strip()[-300:]}")
        return int(m[1])
    tshark = shutil.which("tshark")
    if tshark is None:
        raise BenchError("neither capinfos nor tshark is installed to count a pcapng file")
    done = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"tshark failed on {path.name}: {done.stderr.strip()[-300:]}")
    return sum(1 for line in done.stdout.splitlines() if line.strip())


# ---------------------------------------------------------------------------------
# one run


def stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_once(
    cap: Capturer, rnd: int, workdir: Path, port: int, args: argparse.Namespace
) -> RunResult:
    result = RunResult(cap.key, rnd)
    path = workdir / f"round{rnd}-{cap.key}.{cap.file_format}"
    flood = Flood(args.senders, port, args.seconds)
    proc: subprocess.Popen[str] | None = None
    watcher: StderrWatcher | None = None
    try:
        flood.start()
        argv = cap.command(path, port)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            raise BenchError(f"{cap.label} could not be started: {exc}") from exc
        assert proc.stderr is not None
        watcher = StderrWatcher(proc.stderr, cap.armed_marker)
        watcher.start()
        if not watcher.wait_armed(ARM_TIMEOUT_S):
            status = proc.poll()
            if status is None:
                stop_process(proc)
                why = f"not armed after {ARM_TIMEOUT_S:.0f} s"
            else:
                why = f"exited with status {status} before it was armed"
            watcher.join(timeout=5.0)
            raise BenchError(
                f"{cap.label} failed to start ({why}): {' '.join(argv)}\n{watcher.tail()}"
            )
        armed_ticks = cpu_ticks(proc.pid)
        armed_ns = run_time_ns(proc.pid)
        result.startup_ticks = armed_ticks
        backlog_before = softnet_drops()

        result.sent, result.send_errors, result.flood_s = flood.fire()
        time.sleep(args.drain)
        if proc.poll() is not None:
            raise BenchError(
                f"{cap.label} exited (status {proc.returncode}) during the flood\n{watcher.tail()}"
            )
        end_ticks, result.extra_drain_s = wait_idle(proc.pid, MAX_EXTRA_DRAIN_S)
        end_ns = run_time_ns(proc.pid)
        result.window_ticks = end_ticks - armed_ticks
        if armed_ns is not None and end_ns is not None:
            result.window_ns = end_ns - armed_ns
        result.backlog_drops = softnet_drops() - backlog_before

        proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            stop_process(proc)
            raise BenchError(
                f"{cap.label} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGINT"
            ) from exc
        watcher.join(timeout=10.0)
        stderr = "\n".join(watcher.lines)
        if status != 0:
            raise BenchError(f"{cap.label} exited with status {status}\n{watcher.tail()}")
        result.reported, result.kernel_drops, result.interface_drops = parse_final_stats(
            cap, stderr
        )
        if not path.exists():
            part = path.with_name(path.name + ".part")
            raise BenchError(
                f"{cap.label} left no {path.name}"
                + (" (only its .part file)" if part.exists() else "")
            )
        result.in_file = count_pcap(path) if cap.file_format == "pcap" else count_pcapng(path)
        if result.reported != result.in_file:
            result.problems.append(
                f"count mismatch: {cap.label} said {result.reported:,} packets, "
                f"its file holds {result.in_file:,}"
            )
        if result.in_file > result.sent:
            result.problems.append(
                f"file holds {result.in_file:,} packets but only {result.sent:,} were sent"
            )
    except BenchError as exc:
        result.problems.append(str(exc))
    finally:
        if proc is not None:
            stop_process(proc)
        flood.close()
        for leftover in (path, path.with_name(path.name + ".part")):
            leftover.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------------------
# reporting


def describe_run(cap: Capturer, r: RunResult, rounds: int) -> str:
    head = f"round {r.round}/{rounds}  {cap.label:<15}"
    if r.sent == 0 and r.problems:
        return f"{head} FAILED: {r.problems[0]}"
    rate = r.sent / r.flood_s / 1000 if r.flood_s else 0.0
    us = f"{r.us_per_packet:.3f} µs/pkt" if r.us_per_packet is not None else "- µs/pkt"
    text = (
        f"{head} sent {r.sent:>9,} ({rate:5.1f} k/s)  file {r.in_file:>9,} "
        f"({r.captured_pct:6.2f} %)  tool said {'-' if r.reported is None else f'{r.reported:,}'}"
        f"  kernel drops {r.kernel_drops:,}  start-up CPU {r.startup_cpu:.2f} s  "
        f"window CPU {r.window_cpu:.2f} s  {us}"
    )
    fine = r.us_per_packet_ns_clock
    if r.window_ns is not None and fine is not None:
        text += f"  (ns clock: {r.window_ns / 1e9:.3f} s, {fine:.3f} µs/pkt)"

    if r.extra_drain_s > 0.05:
        text += f"  (busy {r.extra_drain_s:.1f} s past the drain)"
    if r.send_errors:
        text += f"  [{r.send_errors:,} sendto errors]"
    if r.backlog_drops:
        text += f"  [kernel input backlog dropped {r.backlog_drops:,}]"
    for problem in r.problems:
        text += f"\n    FAILURE: {problem}"
    return text


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def cell(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    s = spread(values)
    if s is None:
        return "n/a"
    med, lo, hi = s
    return fmt(med) if len(values) == 1 or lo == hi else f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})"


COLUMNS: list[tuple[str, Callable[[RunResult], float | None], Callable[[float], str]]] = [
    ("packets sent", lambda r: r.sent, lambda v: f"{v:,.0f}"),
    ("in file", lambda r: r.in_file, lambda v: f"{v:,.0f}"),
    ("captured %", lambda r: r.captured_pct, lambda v: f"{v:.2f}"),
    ("kernel drops", lambda r: r.kernel_drops, lambda v: f"{v:,.0f}"),
    ("start-up CPU s", lambda r: r.startup_cpu, lambda v: f"{v:.2f}"),
    ("window CPU s", lambda r: r.window_cpu, lambda v: f"{v:.2f}"),
    ("CPU µs/packet", lambda r: r.us_per_packet, lambda v: f"{v:.3f}"),
    ("packets/CPU-s", lambda r: r.packets_per_cpu_s, lambda v: f"{v / 1000:,.0f}k"),
    ("µs/packet, ns clock", lambda r: r.us_per_packet_ns_clock, lambda v: f"{v:.3f}"),
]


def table_rows(caps: list[Capturer], ok: dict[str, list[RunResult]]) -> list[list[str]]:
    rows = []
    for cap in caps:
        runs = ok[cap.key]
        row = [f"{cap.label} ({len(runs)} runs)"]
        for _, get, fmt in COLUMNS:
            values = [v for v in (get(r) for r in runs) if v is not None]
            row.append(cell(values, fmt))
        rows.append(row)
    return rows


def print_text_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def print_markdown_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def median_of(runs: list[RunResult], get: Callable[[RunResult], float | None]) -> float | None:
    values = [v for v in (get(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def ratio_text(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


# ---------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark `wirecap record` against tcpdump on a loopback UDP flood.",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each flood (default: 3)"
    )
    parser.add_argument(
        "--senders", type=int, default=1, help="sender processes per flood (default: 1)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN_S,
        help=f"wait after the flood before reading CPU and stopping, "
        f"at least {MIN_DRAIN_S} s (default: {DEFAULT_DRAIN_S})",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print the table as Markdown (for the README)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.senders < 1 or args.rounds < 1:
        parser.error("--seconds must be positive, --senders and --rounds at least 1")
    if args.drain < MIN_DRAIN_S:
        parser.error(f"--drain must be at least {MIN_DRAIN_S} s (tcpdump's block timeout is 1 s)")
    return args


def find_tools() -> tuple[str, str]:
    if os.geteuid() != 0:
        raise BenchError("live capture needs root: run as root (e.g. sudo make bench)")
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise BenchError("tcpdump is not installed (or not on PATH): apt-get install tcpdump")
    beside = Path(sys.executable).with_name("wirecap")
    wirecap = str(beside) if beside.exists() else shutil.which("wirecap")
    if wirecap is None:
        raise BenchError("the wirecap command is not installed: pip install -e . in the venv")
    return tcpdump, wirecap


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tcpdump, wirecap = find_tools()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    caps = make_capturers(tcpdump, wirecap)
    by_key = {c.key: c for c in caps}

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # clamped to the minimum
    receiver.bind(("127.0.0.1", 0))
    port = int(receiver.getsockname()[1])
    rcvbuf = receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    workdir = Path(tempfile.mkdtemp(prefix="wirecap-bench-"))

    print(
        f"wirecap capture benchmark: UDP flood of {PAYLOAD_SIZE}-byte payloads to "
        f"127.0.0.1:{port} on lo (receiver SO_RCVBUF {rcvbuf} B, never read), "
        f"{args.senders} sender process(es), {args.seconds:g} s per flood, "
        f"{args.rounds} round(s), drain ≥ {args.drain:g} s, {os.cpu_count()} CPUs"
    )
    print(f"tcpdump: {tcpdump}; wirecap: {wirecap}")
    print()

    results: list[RunResult] = []
    broken: set[str] = set()
    try:
        for rnd in range(1, args.rounds + 1):
            shift = (rnd - 1) % len(caps)
            for cap in caps[shift:] + caps[:shift]:
                if cap.key in broken:
                    print(
                        f"round {rnd}/{args.rounds}  {cap.label:<15} skipped: failed to "
                        "start before"
                    )
                    continue
                result = run_once(cap, rnd, workdir, port, args)
                results.append(result)
                print(describe_run(cap, result, args.rounds), flush=True)
                if result.sent == 0 and result.problems:
                    broken.add(cap.key)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        receiver.close()
        shutil.rmtree(workdir, ignore_errors=True)

    failures = [
        f"round {r.round} {by_key[r.capturer].label}: {p.splitlines()[0]}"
        for r in results
        for p in r.problems
    ]
    failures += [
        f"{by_key[k].label}: failed to start, not run in later rounds" for k in sorted(broken)
    ]
    ok = {c.key: [r for r in results if r.capturer == c.key and not r.problems] for c in caps}
    return report(args, caps, ok, failures)


def report(
    args: argparse.Namespace,
    caps: list[Capturer],
    ok: dict[str, list[RunResult]],
    failures: list[str],
) -> int:
    header = ["capturer", *(name for name, _, _ in COLUMNS)]
    rows = table_rows(caps, ok)
    print()
    print(
        "medians over rounds, (min–max); CPU = utime+stime of the capturer from "
        "/proc/PID/stat over the capture window (armed → flood end + drain)"
    )
    print_text_table(header, rows)

    tcp, wc, ng = ok["tcpdump"], ok["wirecap"], ok["wirecap-ng"]
    tick_ms = 1000 / CLK_TCK
    tcp_window = median_of(tcp, lambda r: r.window_cpu)
    print()
    resolution = (
        f"CPU resolution: /proc counts CPU in clock ticks of {tick_ms:g} ms "
        f"(SC_CLK_TCK={CLK_TCK}); a window is the difference of two readings, "
        f"so ±{2 * tick_ms:g} ms"
    )
    if tcp_window:
        resolution += f" = ±{100 * 2 / CLK_TCK / tcp_window:.1f} % of tcpdump's median window"
        resolution += f" CPU ({tcp_window:.2f} s)"
    print(resolution + ". Lengthen the flood with --seconds for finer numbers.")
    if tcp_window is not None and tcp_window * CLK_TCK < 50:
        print(
            "WARNING: tcpdump's window CPU is under 50 ticks; the per-packet ratio is "
            "coarse. Use a longer --seconds."
        )

    us = {k: median_of(v, lambda r: r.us_per_packet) for k, v in ok.items()}
    pct = {k: median_of(v, lambda r: r.captured_pct) for k, v in ok.items()}
    print()
    print(
        f"CPU per packet, pcap:   wirecap / tcpdump = {ratio_text(us['wirecap'], us['tcpdump'])}"
        f" (target ≤ {CPU_RATIO_TARGET:.2f}×)"
    )
    print(
        f"CPU per packet, pcapng: wirecap pcapng / tcpdump pcap = "
        f"{ratio_text(us['wirecap-ng'], us['tcpdump'])} (no target)"
    )
    fine = {k: median_of(v, lambda r: r.us_per_packet_ns_clock) for k, v in ok.items()}
    print(
        f"  cross-check, ns clock: pcap {ratio_text(fine['wirecap'], fine['tcpdump'])}, "
        f"pcapng {ratio_text(fine['wirecap-ng'], fine['tcpdump'])} "
        "(scheduler run time of all threads, /proc/PID/task/*/schedstat)"
    )
    print(
        f"captured %:             wirecap pcap / tcpdump = "
        f"{ratio_text(pct['wirecap'], pct['tcpdump'])}; wirecap pcapng / tcpdump = "
        f"{ratio_text(pct['wirecap-ng'], pct['tcpdump'])}"
    )

    misses: list[str] = []
    # Target 1: no drops where tcpdump had none, round by round.
    tcp_by_round = {r.round: r for r in tcp}
    checked = 0
    for label, runs, has_target in (("wirecap pcap", wc, True), ("wirecap pcapng", ng, False)):
        for r in runs:
            t = tcp_by_round.get(r.round)
            if t is None or t.kernel_drops or t.interface_drops:
                continue
            lost = r.sent - r.in_file
            bad = []
            if r.kernel_drops or r.interface_drops:
                bad.append(f"{r.kernel_drops + r.interface_drops:,} dropped (kernel+interface)")
            if lost > 0 and t.in_file >= t.sent:
                bad.append(f"{lost:,} of {r.sent:,} sent missing from its file")
            if not has_target:
                if bad:
                    print(
                        f"note (no target): round {r.round} {label}: {'; '.join(bad)} "
                        "where tcpdump dropped nothing"
                    )
                continue
            checked += 1
            if bad:
                misses.append(f"round {r.round}: tcpdump dropped 0, wirecap pcap {'; '.join(bad)}")
    print()
    if checked:
        print(
            f"target 'no drops where tcpdump has none' (wirecap pcap): "
            f"{'MISSED' if misses else 'met'} ({checked} round(s) compared)"
        )
    else:
        print(
            "target 'no drops where tcpdump has none': no round to compare "
            "(tcpdump dropped in every round, or runs failed)"
        )
    # Target 2: CPU per packet.
    if us["wirecap"] is None or not us["tcpdump"]:
        misses.append("CPU per packet could not be compared (no usable runs or zero CPU)")
    else:
        ratio = us["wirecap"] / us["tcpdump"]
        verdict = "met" if ratio <= CPU_RATIO_TARGET else "MISSED"
        print(
            f"target 'pcap CPU per packet ≤ {CPU_RATIO_TARGET}× tcpdump': {verdict} "
            f"({us['wirecap']:.3f} vs {us['tcpdump']:.3f} µs/packet, {ratio:.2f}×)"
        )
        if ratio > CPU_RATIO_TARGET:
            misses.append(
                f"pcap CPU per packet {ratio:.2f}× tcpdump's (target ≤ {CPU_RATIO_TARGET}×)"
            )

    if args.markdown:
        print()
        print_markdown_table(header, rows)
        print()
        print(
            f"Medians over {args.rounds} rounds (min–max) of a {args.seconds:g} s loopback "
            f"UDP flood ({PAYLOAD_SIZE}-byte payloads, {args.senders} sender(s)); CPU is the "
            f"capturer's utime+stime over the capture window, ±{2 * tick_ms:g} ms."
        )

    print()
    for miss in misses:
        print(f"TARGET MISSED: {miss}")
    for failure in failures:
        print(f"FAILURE: {failure}")
    if misses or failures:
        print("RESULT: FAILED")
        return 1
    print("RESULT: all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
