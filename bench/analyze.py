"""Benchmark `wirecap analyze` against `tshark -q -z conv,tcp` on the same 1M-packet file.

Method: a synthetic capture is generated once (default 1,000,000 packets): 500 TCP
connections interleaved round-robin, each a handshake, data segments of one MSS
(1448 bytes on the wire, cut to a 96-byte snapshot as `tcpdump -s 96` would, so the
file stays ~110 MB while the analyzer still reasons from the IP lengths), an ACK
every second segment, a retransmission every 50 segments, and FIN both ways. Then,
in the same run, `wirecap analyze --json FILE` and `tshark -r FILE -q -z conv,tcp`
are timed (wall clock, output to /dev/null), each `--rounds` times.

Target (the issue's): wirecap analyses the 1M-packet file in ≤ 10 s; the script
exits non-zero past it. tshark's conversation table is printed as the peer: it
counts bytes and packets per connection and concludes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _synthetic import tcp_frame, timed_run
from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.records import Interface, Packet

TARGET_SECONDS = 10.0
SNAPLEN = 96
MSS = 1448


def _frame(
    src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, payload: int
) -> tuple[bytes, int]:
    return tcp_frame(
        src, dst, sport, dport, seq=seq, ack=ack, flags=flags, payload=payload, snaplen=SNAPLEN
    )


def _connection(index: int, segments: int) -> list[tuple[bytes, int]]:
    client, server = 0x0A000000 + index + 1, 0x0A640001
    sport, dport = 20000 + index, 443
    syn, ack, fin, psh = 0x02, 0x10, 0x01, 0x08
    out = [
        _frame(client, server, sport, dport, 1000, 0, syn, 0),
        _frame(server, client, dport, sport, 5000, 1001, syn | ack, 0),
        _frame(client, server, sport, dport, 1001, 5001, ack, 0),
    ]
    seq = 5001
    for n in range(segments):
        out.append(_frame(server, client, dport, sport, seq, 1001, ack | psh, MSS))
        if n % 50 == 49:  # a retransmission of the segment just sent
            out.append(_frame(server, client, dport, sport, seq, 1001, ack | psh, MSS))
        seq += MSS
        if n % 2:
            out.append(_frame(client, server, sport, dport, 1001, seq, ack, 0))
    out += [
        _frame(server, client, dport, sport, seq, 1001, fin | ack, 0),
        _frame(client, server, sport, dport, 1001, seq + 1, fin | ack, 0),
        _frame(server, client, dport, sport, seq + 1, 1002, ack, 0),
    ]
    return out


def generate(path: Path, packets: int, connections: int) -> int:
    per = max(1, int(packets / connections / 1.52))  # segments per connection
    flows = [_connection(i, per) for i in range(connections)]
    encoder = PcapEncoder(Interface(linktype=1, snaplen=SNAPLEN))
    written = 0
    ts = 1_700_000_000_000_000_000
    with path.open("wb") as out:
        out.write(encoder.header())
        chunk = []
        positions = [0] * connections
        alive = list(range(connections))
        while alive and written < packets:
            still = []
            for c in alive:
                data, wire = flows[c][positions[c]]
                chunk.append(encoder.packet(Packet(ts, data, wire)))
                ts += 1000
                written += 1
                positions[c] += 1
                if positions[c] < len(flows[c]):
                    still.append(c)
                if written >= packets:
                    break
            alive = still
            if len(chunk) > 10000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    with tempfile.TemporaryDirectory(prefix="wirecap-bench-analyze-") as tmp:
        path = Path(tmp) / "bench.pcap"
        started = time.monotonic()
        count = generate(path, args.packets, args.connections)
        size = path.stat().st_size
        print(
            f"generated {count:,} packets, {args.connections} connections, "
            f"{size / 1e6:.0f} MB in {time.monotonic() - started:.1f} s; {os.cpu_count()} CPUs"
        )
        wirecap = [sys.executable, "-m", "wirecap", "analyze", "--json", str(path)]
        ours = [timed_run(wirecap) for _ in range(args.rounds)]
        theirs = (
            [
                timed_run([tshark, "-n", "-r", str(path), "-q", "-z", "conv,tcp"])
                for _ in range(args.rounds)
            ]
            if tshark
            else []
        )
    best = min(ours)
    print(
        f"wirecap analyze --json : {statistics.median(ours):6.2f} s median "
        f"({', '.join(f'{t:.2f}' for t in ours)}), {count / best / 1e3:,.0f} k packets/s"
    )
    if theirs:
        print(
            f"tshark -q -z conv,tcp  : {statistics.median(theirs):6.2f} s median "
            f"({', '.join(f'{t:.2f}' for t in theirs)})"
        )
        print(
            f"ratio wirecap / tshark : {statistics.median(ours) / statistics.median(theirs):.2f}×"
        )
    else:
        print("tshark not installed: no peer measured")
    scaled = statistics.median(ours) * 1_000_000 / count
    ok = scaled <= TARGET_SECONDS
    print(
        f"target ≤ {TARGET_SECONDS:g} s per 1M packets: {'met' if ok else 'MISSED'} "
        f"({scaled:.2f} s per 1M)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
