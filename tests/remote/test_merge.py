"""`wirecap merge`: files against mergecap, fake workers (aiohttp.web in a thread), TLS."""

from __future__ import annotations

import asyncio
import gc
import io
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from wirecap.cli.merge import build_parser, options_from_args, translate_ddump_args
from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import Interface, InterfaceStatistics, Packet
from wirecap.errors import CaptureError, OptionError
from wirecap.remote.merge import MergeOptions, _Merge, _Output, merge
from wirecap.remote.sources import FileSource, Source, parse_source

S = 1_000_000_000
ETH = Interface(linktype=1, snaplen=65535)


def frame(tag: int, size: int = 60) -> bytes:
    return bytes([tag % 256]) * size


def pcap_bytes(timestamps: Sequence[int], tag: int, interface: Interface = ETH) -> bytes:
    enc = PcapEncoder(interface)
    return enc.header() + b"".join(
        enc.packet(Packet(ts, frame(tag) + ts.to_bytes(8, "big"), 68)) for ts in timestamps
    )


def pcapng_bytes(timestamps: Sequence[int], tag: int) -> bytes:
    enc = PcapngEncoder()
    out = enc.section_header() + enc.interface(Interface(linktype=1, name="eth0"))
    return out + b"".join(
        enc.packet(Packet(ts, frame(tag) + ts.to_bytes(8, "big"), 68)) for ts in timestamps
    )


def packets_of(path: Path) -> list[Packet]:
    return [e for e in read_file(path) if isinstance(e, Packet)]


class Logs(list[str]):
    def __call__(self, text: str) -> None:
        self.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self)


# -- fake workers -----------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeWorkers:
    """aiohttp.web servers on 127.0.0.1 (port 0) in a thread with its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> int:
        async def go() -> int:
            app = web.Application()
            app.router.add_get("/capture", handler)
            runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            self.runners.append(runner)
            port: int = runner.addresses[0][1]
            return port

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def start_unix(self, handler: Handler, path: Path) -> None:
        async def go() -> None:
            app = web.Application()
            app.router.add_get("/capture", handler)
            runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
            await runner.setup()
            await web.UnixSite(runner, str(path)).start()
            self.runners.append(runner)

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()
            await asyncio.sleep(0.05)  # let cancelled handlers close their transports

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def workers() -> Iterator[FakeWorkers]:
    fake = FakeWorkers()
    yield fake
    fake.close()
    gc.collect()  # a leaked transport shows up in the test that leaked it


def streaming(
    parts: Sequence[tuple[float, bytes]], content_type: str = "application/vnd.tcpdump.pcap"
) -> Handler:
    """A worker sending each part after its delay, then ending the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for delay, data in parts:
            if delay:
                await asyncio.sleep(delay)
            await response.write(data)
        await response.write_eof()
        return response

    return handler


def chunks(data: bytes, pieces: int, delay: float) -> list[tuple[float, bytes]]:
    size = max(1, len(data) // pieces)
    return [(delay, data[i : i + size]) for i in range(0, len(data), size)]


def run_merge(
    tmp_path: Path, sources: Sequence[str], **options: object
) -> tuple[int, list[Packet], Logs]:
    logs = Logs()
    out = tmp_path / "out.pcapng"
    opts = MergeOptions(
        sources=tuple(parse_source(s) for s in sources),
        output=out,
        **options,  # type: ignore[arg-type]
    )
    status = merge(opts, log=logs)
    return status, packets_of(out), logs


# -- files ------------------------------------------------------------------------


def test_files_match_mergecap(tmp_path: Path, run_tool: Callable[..., str]) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcapng"
    a.write_bytes(pcap_bytes([S + 2 * i * 1000 for i in range(500)], 1))
    b.write_bytes(pcapng_bytes([S + (2 * i + 1) * 1000 for i in range(500)] + [S], 2))
    status, ours, logs = run_merge(tmp_path, [str(a), str(b)])
    assert status == 0, logs.text
    reference = tmp_path / "ref.pcapng"
    run_tool("mergecap", "-w", str(reference), str(a), str(b))
    theirs = packets_of(reference)
    assert [(p.ts_ns, p.data) for p in ours] == [(p.ts_ns, p.data) for p in theirs]
    info = run_tool("capinfos", "-c", "-M", str(tmp_path / "out.pcapng"))
    assert "1001" in info
    times = run_tool(
        "tshark", "-r", str(tmp_path / "out.pcapng"), "-T", "fields", "-e", "frame.time_epoch"
    )
    values = [float(t) for t in times.split()]
    assert len(values) == 1001


@pytest.mark.parametrize("file_format", ["pcapng", "pcap"])
def test_pcap_files_copied_by_record_match_mergecap(
    tmp_path: Path, run_tool: Callable[..., str], file_format: str
) -> None:
    """Only pcap files: the record-copying path, checked against mergecap and tshark."""
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    a.write_bytes(pcap_bytes([S + 2 * i * 1000 for i in range(3000)], 1))
    b.write_bytes(pcap_bytes([S + (2 * i + 1) * 1000 for i in range(3000)], 2))
    # A third file cut inside its last record: reported, its whole records kept.
    c.write_bytes(pcap_bytes([S + 7, S + 5000_007], 3)[:-3])
    status, ours, logs = run_merge(tmp_path, [str(a), str(b), str(c)], file_format=file_format)
    assert status == 4
    assert f"{c}: pcap stream ended inside a record" in logs.text
    assert "[0] " in logs.text and "3000 packets" in logs.text
    reference = tmp_path / "ref.pcapng"
    intact = tmp_path / "c-intact.pcap"  # what c holds before its damage
    intact.write_bytes(pcap_bytes([S + 7], 3))
    run_tool("mergecap", "-w", str(reference), str(a), str(b), str(intact))
    theirs = packets_of(reference)
    assert len(ours) == len(theirs) == 6001
    assert [(p.ts_ns, p.data, p.orig_len) for p in ours] == [
        (p.ts_ns, p.data, p.orig_len) for p in theirs
    ]
    out = tmp_path / "out.pcapng"
    assert "Strict time order:   True" in run_tool("capinfos", "-o", str(out))
    if file_format == "pcapng":
        names = run_tool("tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name")
        assert set(names.split()) == {"a.pcap", "b.pcap", "c.pcap"}


def test_file_pcap_output_and_linktype_mismatch(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    a.write_bytes(pcap_bytes([1 * S, 3 * S], 1))
    b.write_bytes(pcap_bytes([2 * S], 2))
    c.write_bytes(pcap_bytes([4 * S], 3, Interface(linktype=276)))
    status, ours, logs = run_merge(tmp_path, [str(a), str(b)], file_format="pcap")
    assert status == 0
    assert [p.ts_ns for p in ours] == [1 * S, 2 * S, 3 * S]
    assert (tmp_path / "out.pcapng").read_bytes()[:4] == bytes.fromhex("4d3cb2a1")
    assert "Number of packets:   3" in run_tool("capinfos", "-c", str(tmp_path / "out.pcapng"))
    status, ours, logs = run_merge(tmp_path, [str(a), str(c)], file_format="pcap")
    assert status == 4
    assert "link type 276 differs" in logs.text and "--format pcapng" in logs.text


def test_missing_file_reported(tmp_path: Path) -> None:
    a = tmp_path / "a.pcap"
    a.write_bytes(pcap_bytes([S], 1))
    status, ours, logs = run_merge(tmp_path, [str(a), str(tmp_path / "nope.pcap")])
    assert status == 4
    assert len(ours) == 1
    assert "nope.pcap" in logs.text


# -- live ---------------------------------------------------------------------------


def test_interleaved_workers_ordered_and_complete(
    tmp_path: Path, workers: FakeWorkers, run_tool: Callable[..., str]
) -> None:
    n = 300
    one = pcap_bytes([S + 3 * i * 1000 for i in range(n)], 1)
    two = pcapng_bytes([S + (3 * i + 1) * 1000 for i in range(n)], 2)
    three = pcap_bytes([S + (3 * i + 2) * 1000 for i in range(n)], 3)
    ports = [
        workers.start(streaming(chunks(one, 7, 0.01))),
        workers.start(streaming(chunks(two, 5, 0.015), "application/x-pcapng")),
        workers.start(streaming(chunks(three, 3, 0.02))),
    ]
    status, out, logs = run_merge(
        tmp_path, [f"http://127.0.0.1:{p}/capture?filter=udp" for p in ports], max_delay_ms=5000
    )
    assert status == 0, logs.text
    stamps = [p.ts_ns for p in out]
    assert len(stamps) == 3 * n
    assert stamps == sorted(stamps)
    assert sorted(stamps) == sorted(S + i * 1000 for i in range(3 * n))
    assert "0 late" in logs.text and "error" not in logs.text
    names = run_tool(
        "tshark", "-r", str(tmp_path / "out.pcapng"), "-T", "fields", "-e", "frame.interface_name"
    )
    assert set(names.split()) == {
        f"127.0.0.1:{ports[1]}:eth0",
        # pcap streams name no interface: the one asked for (interface=, or any)
        f"127.0.0.1:{ports[0]}:any",
        f"127.0.0.1:{ports[2]}:any",
    }


def test_equal_timestamps_lower_source_first(tmp_path: Path, workers: FakeWorkers) -> None:
    ports = [workers.start(streaming([(0.0, pcap_bytes([S, 2 * S], tag))])) for tag in (1, 2)]
    status, out, _logs = run_merge(
        tmp_path, [f"http://127.0.0.1:{p}" for p in reversed(ports)], max_delay_ms=5000
    )
    assert status == 0
    assert [p.data[0] for p in out] == [2, 1, 2, 1]


def test_heartbeat_advances_watermark(tmp_path: Path, workers: FakeWorkers) -> None:
    enc = PcapngEncoder()
    head = enc.section_header() + enc.interface(Interface(linktype=1))
    beat = enc.statistics(InterfaceStatistics(interface_id=0, ts_ns=10 * S))
    quiet = workers.start(streaming([(0.0, head), (0.0, beat), (1.0, b"")]))
    busy = workers.start(streaming([(0.05, pcap_bytes([5 * S], 1)), (1.0, b"")]))
    started = time.monotonic()
    timeline: list[float] = []

    class Recording(io.BytesIO):
        def flush(self) -> None:
            if self.getvalue():
                timeline.append(time.monotonic() - started)

    sink = Recording()
    opts = MergeOptions(
        sources=(
            parse_source(f"http://127.0.0.1:{quiet}"),
            parse_source(f"http://127.0.0.1:{busy}"),
        ),
        max_delay_ms=10_000,
    )
    assert merge(opts, stdout=sink, log=Logs()) == 0
    # Released by the heartbeat long before either stream ended or max-delay passed.
    assert timeline and timeline[0] < 0.8


def test_stalling_worker_released_after_max_delay_late_counted(
    tmp_path: Path, workers: FakeWorkers
) -> None:
    enc = PcapEncoder(ETH)
    stall = workers.start(
        streaming(
            [
                (0.0, enc.header() + enc.packet(Packet(10 * S, frame(1), 60))),
                (0.8, enc.packet(Packet(5 * S, frame(1), 60))),
            ]
        )
    )
    other = workers.start(streaming([(0.0, pcap_bytes([20 * S], 2)), (1.2, b"")]))
    status, out, logs = run_merge(
        tmp_path,
        [f"http://127.0.0.1:{stall}", f"http://127.0.0.1:{other}"],
        max_delay_ms=100,
    )
    assert status == 0, logs.text
    # 20 s went out after max-delay, before the stalled worker's older packet came.
    assert [p.ts_ns for p in out] == [10 * S, 20 * S, 5 * S]
    assert "1 late" in logs.text
    assert "1 packets arrived later than --max-delay 100 ms" in logs.text


def test_idle_timeout_fails_a_silent_stream(tmp_path: Path, workers: FakeWorkers) -> None:
    enc = PcapngEncoder()
    head = enc.section_header() + enc.interface(Interface(linktype=1, name="eth0"))
    beat = enc.statistics(InterfaceStatistics(interface_id=0, ts_ns=11 * S))
    # Heartbeats keep a quiet stream alive; silence beyond the timeout ends it.
    beating = workers.start(
        streaming([(0.0, head), *[(0.1, beat)] * 8, (0.0, enc.packet(Packet(12 * S, b"x", 1)))])
    )
    silent = workers.start(streaming([(0.0, pcap_bytes([10 * S], 2)), (5.0, b"")]))
    started = time.monotonic()
    status, out, logs = run_merge(
        tmp_path,
        [f"http://127.0.0.1:{beating}", f"http://127.0.0.1:{silent}"],
        idle_timeout_s=0.4,
    )
    assert time.monotonic() - started < 4
    assert status == 4
    assert "[1]" in logs.text and "nothing received for 0.4 s (--idle-timeout)" in logs.text
    first = [line for line in logs if line.startswith("[0]") and "packets" in line]
    assert first and ": ended; 1 packets" in first[0], logs.text
    assert [p.ts_ns for p in out] == [10 * S, 12 * S]
    with pytest.raises(OptionError, match="idle-timeout"):
        options_from_args(build_parser().parse_args(["--idle-timeout", "0", "x.pcap"]))


def test_unix_socket_worker_merged_with_a_tcp_one(
    tmp_path: Path, workers: FakeWorkers, run_tool: Callable[..., str]
) -> None:
    socket_path = tmp_path / "worker.sock"
    workers.start_unix(streaming([(0.0, pcap_bytes([1 * S, 3 * S], 1))]), socket_path)
    port = workers.start(streaming([(0.0, pcap_bytes([2 * S], 2))]))
    status, out, logs = run_merge(
        tmp_path,
        [f"unix:{socket_path}?filter=udp&interface=eth1", f"http://127.0.0.1:{port}"],
    )
    assert status == 0, logs.text
    assert [p.ts_ns for p in out] == [1 * S, 2 * S, 3 * S]
    assert f"[0] unix:{socket_path}?filter=udp&interface=eth1: ended" in logs.text
    names = run_tool(
        "tshark", "-r", str(tmp_path / "out.pcapng"), "-T", "fields", "-e", "frame.interface_name"
    )
    assert names.split() == [
        "unix:worker.sock:eth1",
        f"127.0.0.1:{port}:any",
        "unix:worker.sock:eth1",
    ]


def test_401_and_garbage_reported_others_continue(tmp_path: Path, workers: FakeWorkers) -> None:
    async def denied(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, text="who are you")

    good = workers.start(streaming(chunks(pcap_bytes([S, 2 * S, 3 * S], 1), 3, 0.01)))
    bad = workers.start(denied)
    junk = workers.start(streaming([(0.0, b"<!DOCTYPE html><html>nope</html>" * 4)], "text/html"))
    cut = workers.start(streaming([(0.0, pcap_bytes([S], 4)[:-10])]))
    urls = [
        f"http://user:pw@127.0.0.1:{good}",
        f"http://user:hunter2@127.0.0.1:{bad}/capture?filter=tcp",
        f"http://127.0.0.1:{junk}",
        f"http://127.0.0.1:{cut}",
    ]
    status, out, logs = run_merge(tmp_path, urls)
    assert status == 4
    assert [p.ts_ns for p in out] == [S, 2 * S, 3 * S]
    text = logs.text
    assert (
        f"http://127.0.0.1:{bad}/capture?filter=tcp: error: HTTP 401 Unauthorized: who are you"
        in text
    )
    assert f"http://127.0.0.1:{junk}/capture: error: not a valid pcap/pcapng stream" in text
    assert f"http://127.0.0.1:{cut}/capture: error: stream ended mid-record" in text
    assert "hunter2" not in text


def test_basic_auth_sent(tmp_path: Path, workers: FakeWorkers) -> None:
    seen: list[str] = []

    async def check(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return await streaming([(0.0, pcap_bytes([S], 1))])(request)

    port = workers.start(check)
    status, out, _logs = run_merge(tmp_path, [f"http://al:s%3Acret@127.0.0.1:{port}"])
    assert status == 0 and len(out) == 1
    assert seen == ["Basic YWw6czpjcmV0"]  # base64("al:s:cret")


def test_fail_fast_and_connect_refused(tmp_path: Path, workers: FakeWorkers) -> None:
    good = workers.start(streaming([(0.0, pcap_bytes([S], 1)), (3.0, b"")]))
    started = time.monotonic()
    with pytest.raises(CaptureError, match=r"127\.0\.0\.1:1/capture: cannot connect"):
        run_merge(tmp_path, [f"http://127.0.0.1:{good}", "http://127.0.0.1:1"], fail_fast=True)
    assert time.monotonic() - started < 2  # at once, not when the other stream ends


def test_connect_timeout_when_no_response(tmp_path: Path, workers: FakeWorkers) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1)  # never answers in time; ends before the server stops
        return web.Response()

    port = workers.start(silent)
    started = time.monotonic()
    status, _out, logs = run_merge(tmp_path, [f"http://127.0.0.1:{port}"], connect_timeout_s=0.3)
    assert status == 4
    assert time.monotonic() - started < 3
    assert "no response within 0.3 s" in logs.text


# -- TLS ---------------------------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_leaf(directory: Path, ca: tuple[Path, Path], name: str, usage: str) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        f"keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "test-ca")
    return {
        "ca": ca,
        "other": make_ca(directory, "other-ca"),
        "server": make_leaf(directory, ca, "server", "serverAuth"),
        "client": make_leaf(directory, ca, "client", "clientAuth"),
    }


def server_context(pki: dict[str, tuple[Path, Path]], require_client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pki["server"])
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=pki["ca"][0])
    return context


def test_tls_with_ca(
    tmp_path: Path, workers: FakeWorkers, pki: dict[str, tuple[Path, Path]]
) -> None:
    port = workers.start(streaming([(0.0, pcap_bytes([S, 2 * S], 1))]), server_context(pki, False))
    status, out, logs = run_merge(tmp_path, [f"https://127.0.0.1:{port}"], ca_file=pki["ca"][0])
    assert status == 0, logs.text
    assert len(out) == 2


def test_tls_wrong_ca_fails_clearly(
    tmp_path: Path, workers: FakeWorkers, pki: dict[str, tuple[Path, Path]]
) -> None:
    port = workers.start(streaming([(0.0, pcap_bytes([S], 1))]), server_context(pki, False))
    status, out, logs = run_merge(tmp_path, [f"https://127.0.0.1:{port}"], ca_file=pki["other"][0])
    assert status == 4
    assert out == []
    assert (
        f"https://127.0.0.1:{port}/capture: error: TLS certificate verification failed" in logs.text
    )


def test_tls_system_store_honours_ssl_cert_file(
    tmp_path: Path,
    workers: FakeWorkers,
    pki: dict[str, tuple[Path, Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = workers.start(streaming([(0.0, pcap_bytes([S], 1))]), server_context(pki, False))
    status, _out, logs = run_merge(tmp_path, [f"https://127.0.0.1:{port}"])
    assert status == 4 and "verification failed" in logs.text  # not in the system store
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"][0]))
    status, out, logs = run_merge(tmp_path, [f"https://127.0.0.1:{port}"])
    assert status == 0, logs.text
    assert len(out) == 1


def test_mtls_required_and_accepted(
    tmp_path: Path, workers: FakeWorkers, pki: dict[str, tuple[Path, Path]]
) -> None:
    port = workers.start(streaming([(0.0, pcap_bytes([S], 1))]), server_context(pki, True))
    status, _out, logs = run_merge(tmp_path, [f"https://127.0.0.1:{port}"], ca_file=pki["ca"][0])
    assert status == 4, logs.text
    cert, key = pki["client"]
    status, out, logs = run_merge(
        tmp_path, [f"https://127.0.0.1:{port}"], ca_file=pki["ca"][0], cert_file=cert, key_file=key
    )
    assert status == 0, logs.text
    assert len(out) == 1


def test_bad_ca_file_is_option_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a cert")
    with pytest.raises(OptionError, match="--ca"):
        run_merge(tmp_path, ["https://127.0.0.1:1"], ca_file=bogus)


# -- fuzz: garbage from a stream never crashes the merger ---------------------------


@settings(max_examples=60)
@given(
    garbage=st.binary(max_size=200),
    prefix=st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a"]),
)
def test_garbage_stream_is_a_stream_error(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes, prefix: bytes
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    good, bad = directory / "good.pcap", directory / "bad.bin"
    good.write_bytes(pcap_bytes([S, 2 * S, 3 * S], 1))
    bad.write_bytes(prefix + garbage)
    sources: tuple[Source, ...] = (FileSource(good), FileSource(bad))
    options = MergeOptions(sources=sources)
    sink = io.BytesIO()
    run = _Merge(options, _Output("pcapng", ["good", "bad"], sink), Logs(), time.monotonic_ns)
    asyncio.run(run.run(None))  # the live path, with files as streams
    assert run.status[0].error is None
    stamps = [
        e.ts_ns
        for e in _events(sink.getvalue(), directory)
        if isinstance(e, Packet) and e.data[0] == 1 and len(e.data) == 68
    ]
    assert stamps == [S, 2 * S, 3 * S]


def _events(data: bytes, directory: Path) -> list[object]:
    path = directory / "out.pcapng"
    path.write_bytes(data)
    return list(read_file(path))


# -- CLI ----------------------------------------------------------------------------


def test_ddump_flags_translated() -> None:
    argv = translate_ddump_args(["-ca", "c.pem", "-cert=x.pem", "-key", "k.pem", "http://w"])
    assert argv == ["--ca", "c.pem", "--cert=x.pem", "--key", "k.pem", "http://w"]
    options = options_from_args(build_parser("ddump").parse_args(argv))
    assert options.ca_file == Path("c.pem") and options.cert_file == Path("x.pem")
    assert options.sources[0].display == "http://w:8475/capture"


def test_help_states_tie_break_and_defaults() -> None:
    text = build_parser().format_help()
    for needle in ("lower index", "8475", "--max-delay", "SSL_CERT_FILE", "tcpdump", "--fail-fast"):
        assert needle in text


def test_sigterm_and_closed_stdout_leave_complete_records(
    tmp_path: Path, workers: FakeWorkers
) -> None:
    enc = PcapEncoder(ETH)
    endless = [(0.0, enc.header())] + [
        (0.002, enc.packet(Packet(S + i * 1000, frame(i), 60))) for i in range(5000)
    ]
    port = workers.start(streaming(endless))
    script = "import sys; from wirecap.cli.merge import ddump; sys.exit(ddump())"
    out = tmp_path / "term.pcapng"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "--max-delay",
            "10",
            "-w",
            str(out),
            f"http://127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
    )
    part = out.with_name(out.name + ".part")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 2000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert len(packets_of(out)) > 10  # read_file raises on a cut record
    # A reader that goes away: clean exit, no traceback.
    proc = subprocess.Popen(
        [sys.executable, "-c", script, f"http://127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    head = proc.stdout.read(2000)
    proc.stdout.close()
    _o, stderr = proc.communicate(timeout=10)
    assert head and b"Traceback" not in stderr, stderr
    assert proc.returncode == 0
