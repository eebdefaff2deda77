"""Benchmark `wirecap merge` against `mergecap` on two 1M-packet pcap files.

Method: two synthetic pcap files are generated once (default 1,000,000 packets
each) with interleaved timestamps: file A at even microseconds, file B at odd
ones, so a merge must alternate between them on every packet. Frames are small
TCP segments cut to a 96-byte snapshot (as `tcpdump -s 96` would), so each file
stays ~110 MB. Then, in the same run, each pair is timed (wall clock, best and
median of `--rounds`):

    mergecap -w out.pcapng A B            vs  wirecap merge -w out.pcapng A B
    mergecap -F pcap -w out.pcap A B      vs  wirecap merge --format pcap -w out.pcap A B

Every output is checked with `capinfos -c -o -M`: it must hold 2N packets and be
in strict time order ("Strict time order: True"), i.e. non-decreasing timestamps.

Tie-break for equal timestamps (checked on a small extra pair of files whose
packets all share one timestamp): the SOURCE given first (lower index) comes
first, then each source's own order.

Live: the same two files served over HTTP by two local stand-in workers (a
small aiohttp server streaming the file's bytes as fast as they are read, as
`wirecap worker` streams a capture), merged by `wirecap merge URL URL`: packets/s
of the whole live path (HTTP, incremental decoding, watermark merge).

Latency: two stand-in workers each send 5,000 packets/s (10 k pkt/s in all) in
batches every millisecond, every packet stamped with the wall clock when it is
sent; the bench reads the merger's standard output as it comes and reports,
per packet, arrival time minus its timestamp (what the merger, HTTP and the
decoding add; with both streams busy the watermark never waits for --max-delay).

Targets (the script exits 1 if one is missed): packets/s of wirecap / mergecap
≥ 1.0× for pcapng output and ≥ 0.5× for pcap output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from _synthetic import tcp_frame, timed_run
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_packets
from wirecap.core.formats.records import Interface, Packet

TARGETS = {"pcapng": 1.0, "pcap": 0.5}
SNAPLEN = 96
PAYLOAD = 1448
BASE_NS = 1_700_000_000_000_000_000


def _frame(src: int, dst: int, sport: int, seq: int, marker: int) -> tuple[bytes, int]:
    return tcp_frame(
        src,
        dst,
        sport,
        443,
        seq=seq,
        ack=1,
        flags=0x18,
        payload=PAYLOAD,
        snaplen=SNAPLEN,
        fill=marker,
    )


def generate(path: Path, packets: int, source: int, step_us: int = 2) -> int:
    """Write `packets` records; packet i at BASE + (step_us * i + source) µs.

    With step_us=0 every packet has the same timestamp (the tie-break check).
    The payload byte is the source index, the TCP sequence number the packet index.
    """
    encoder = PcapEncoder(Interface(linktype=1, snaplen=SNAPLEN))
    src, dst = 0x0A000001 + source, 0x0A640001
    flows = 64
    frames = [_frame(src, dst, 20000 + f, 0, source) for f in range(flows)]
    with path.open("wb") as out:
        out.write(encoder.header())
        chunk: list[bytes] = []
        for i in range(packets):
            data, wire = frames[i % flows]
            data = data[:38] + i.to_bytes(4, "big") + data[42:]  # TCP seq = packet index
            ts = BASE_NS + (step_us * i + source) * 1000
            chunk.append(encoder.packet(Packet(ts, data, wire)))
            if len(chunk) >= 20000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    return packets


def _capinfos(path: Path) -> tuple[int, bool]:
    """(packet count, strict time order) as capinfos reports them."""
    text = subprocess.run(
        ["capinfos", "-c", "-o", "-M", str(path)], capture_output=True, text=True, check=True
    ).stdout
    count, ordered = -1, False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Number of packets":
            count = int(value.strip())
        elif key.strip() == "Strict time order":
            ordered = value.strip() == "True"
    return count, ordered


def _tie_order(tmp: Path, wirecap: list[str], mergecap: str) -> tuple[str, str]:
    """Source order of equal-timestamp packets in each tool's pcap output."""
    a, b = tmp / "tie-a.pcap", tmp / "tie-b.pcap"
    generate(a, 3, 0, step_us=0)
    generate(b, 3, 0, step_us=0)
    # same timestamp in both; mark B's payload (its snapshot ends inside the payload)
    raw = bytearray(b.read_bytes())
    for offset in range(24, len(raw), 16 + SNAPLEN):
        raw[offset + 16 + SNAPLEN - 1] = 1
    b.write_bytes(bytes(raw))
    orders = []
    for name, argv in (
        ("wirecap", [*wirecap, "--format", "pcap", "-w"]),
        ("mergecap", [mergecap, "-F", "pcap", "-w"]),
    ):
        out = tmp / f"tie-{name}.pcap"
        timed_run([*argv, str(out), str(a), str(b)])
        orders.append("".join("AB"[p.data[-1]] for p in read_packets(out)))
        out.unlink()
    return orders[0], orders[1]


class StandIns:
    """aiohttp servers on 127.0.0.1 in a thread of their own: stand-in workers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, handler: object) -> int:
        async def up() -> int:
            app = web.Application()
            app.router.add_get("/capture", handler)  # type: ignore[arg-type]
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            server = site._server
            assert server is not None
            return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        return asyncio.run_coroutine_threadsafe(up(), self.loop).result()

    def close(self) -> None:
        async def down() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def serve_file(path: Path) -> object:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.tcpdump.pcap"})
        await response.prepare(request)
        with path.open("rb") as file:
            while chunk := file.read(1 << 16):
                await response.write(chunk)
        await response.write_eof()
        return response

    return handler


def paced(rate: int, seconds: float, tag: int) -> object:
    """pcapng at `rate` packets/s, stamped with the wall clock, in 1 ms batches."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-pcapng"})
        await response.prepare(request)
        encoder = PcapngEncoder()
        await response.write(encoder.section_header() + encoder.interface(Interface(linktype=1)))
        frame, _wire = _frame(0x0A000001 + tag, 0x0A640001, 20000, 0, tag)
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            if due > 0:
                now = time.time_ns()
                await response.write(
                    b"".join(encoder.packet(Packet(now, frame, len(frame))) for _ in range(due))
                )
                sent += due
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    return handler


def live_rate(a: Path, b: Path, wirecap: list[str], tmp: Path) -> tuple[float, int, bool]:
    """Seconds and packets of `wirecap merge URL URL` over two stand-ins serving a and b."""
    servers = StandIns()
    try:
        ports = [servers.start(serve_file(path)) for path in (a, b)]
        out = tmp / "live.pcapng"
        # The files are replayed far faster than they were captured, so one
        # stream may run seconds of capture time ahead of the other: a long
        # --max-delay keeps the output ordered (a real capture arrives in real time).
        seconds = timed_run(
            [
                *wirecap,
                "--max-delay",
                "60000",
                "-w",
                str(out),
                *(f"http://127.0.0.1:{p}" for p in ports),
            ]
        )
        count, ordered = _capinfos(out)
        out.unlink()
        return seconds, count, ordered
    finally:
        servers.close()


def live_latency(wirecap: list[str], rate: int, seconds: float) -> list[float]:
    """Per packet: time it left the merger minus its timestamp, in milliseconds."""
    servers = StandIns()
    try:
        ports = [servers.start(paced(rate // 2, seconds, tag)) for tag in (0, 1)]
        proc = subprocess.Popen(
            [*wirecap, *(f"http://127.0.0.1:{p}" for p in ports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        decoder = CaptureDecoder()
        delays: list[float] = []
        while chunk := os.read(proc.stdout.fileno(), 1 << 16):
            now = time.time_ns()
            decoder.feed(chunk)
            delays.extend(
                (now - event.ts_ns) / 1e6 for event in decoder.events() if isinstance(event, Packet)
            )
        proc.wait()
        return delays
    finally:
        servers.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets per file")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--live-packets", type=int, default=200_000, help="packets per file, live merge"
    )
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    args = parser.parse_args()
    mergecap = shutil.which("mergecap")
    if mergecap is None or shutil.which("capinfos") is None:
        print("mergecap/capinfos not installed: no peer to measure", file=sys.stderr)
        return 2
    wirecap = [sys.executable, "-m", "wirecap", "merge"]
    total = 2 * args.packets
    ok = True
    with tempfile.TemporaryDirectory(prefix="wirecap-bench-merge-") as tmpdir:
        tmp = Path(tmpdir)
        a, b = tmp / "a.pcap", tmp / "b.pcap"
        started = time.monotonic()
        generate(a, args.packets, 0)
        generate(b, args.packets, 1)
        size = a.stat().st_size + b.stat().st_size
        print(
            f"generated 2 × {args.packets:,} packets (A even µs, B odd µs), "
            f"{size / 1e6:.0f} MB in {time.monotonic() - started:.1f} s; {os.cpu_count()} CPUs"
        )
        ours_tie, theirs_tie = _tie_order(tmp, wirecap, mergecap)
        tie_ok = ours_tie == "AAABBB"
        print(
            "tie-break (equal timestamps): lower source index first, then each source's "
            f"own order; wirecap {ours_tie} ({'ok' if tie_ok else 'WRONG'}), "
            f"mergecap {theirs_tie}"
        )
        ok &= tie_ok
        for fmt in ("pcapng", "pcap"):
            out = tmp / f"out.{fmt}"
            runs = {
                "mergecap": [mergecap, *(["-F", "pcap"] if fmt == "pcap" else []), "-w"],
                "wirecap": [*wirecap, *(["--format", "pcap"] if fmt == "pcap" else []), "-w"],
            }
            medians: dict[str, float] = {}
            for name, argv in runs.items():
                times = []
                for _ in range(args.rounds):
                    times.append(timed_run([*argv, str(out), str(a), str(b)]))
                    count, ordered = _capinfos(out)
                    out.unlink()
                    if count != total or not ordered:
                        print(
                            f"  {name} {fmt}: {count:,} packets (want {total:,}), "
                            f"strict time order {ordered}: FAILED"
                        )
                        ok = False
                medians[name] = statistics.median(times)
                print(
                    f"{name:8} → {fmt:6}: best {min(times):6.2f} s, median {medians[name]:6.2f} s"
                    f" ({', '.join(f'{t:.2f}' for t in times)}), "
                    f"{total / medians[name] / 1e6:.2f} M packets/s; {total:,} packets, "
                    "strict time order checked"
                )
            ratio = medians["mergecap"] / medians["wirecap"]  # = wirecap pkt/s / mergecap pkt/s
            met = ratio >= TARGETS[fmt]
            ok &= met
            print(
                f"ratio wirecap / mergecap ({fmt}, packets/s, medians): {ratio:.2f}× "
                f"(target ≥ {TARGETS[fmt]:g}×: {'met' if met else 'MISSED'})"
            )
        la, lb = tmp / "live-a.pcap", tmp / "live-b.pcap"
        generate(la, args.live_packets, 0)
        generate(lb, args.live_packets, 1)
        seconds, count, ordered = live_rate(la, lb, wirecap, tmp)
        print(
            f"live merge of 2 × {args.live_packets:,} packets from two stand-in workers over "
            f"HTTP: {seconds:.2f} s, {count / seconds / 1e6:.2f} M packets/s ({count:,} written, "
            f"strict time order {ordered})"
        )
        ok &= count == 2 * args.live_packets and ordered
        delays = sorted(live_latency(wirecap, 10_000, args.latency_seconds))
        if delays:

            def pick(q: float) -> float:
                return delays[min(len(delays) - 1, int(q * len(delays)))]

            print(
                f"live latency at 10 k pkt/s (2 streams): {len(delays):,} packets, "
                f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {delays[-1]:.1f} ms "
                "(sent → out of the merger, incl. HTTP and decoding)"
            )
        else:
            print("live latency: no packet came out")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
