"""capture_packets() end to end on loopback: real libpcap, real TLS clients and servers.

Every server is started by the test on 127.0.0.1 with a free port. Other programs
on this machine use loopback too, so assertions look only at the test's own ports
or payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wirecap
from tests.netns import run as netns_run
from tests.session.origin import Origin, https_origin
from tests.tls_peer import SECRET_BODY
from wirecap.core.capture.devices import list_devices
from wirecap.core.formats.reader import read_file, read_packets
from wirecap.core.formats.records import SECRETS_TLS_KEY_LOG, DecryptionSecrets, Interface
from wirecap.errors import (
    BadFilterError,
    CaptureWriteError,
    NoSuchInterfaceError,
    UsageError,
)
from wirecap.session import CapturedPackets, CaptureSession, SessionOptions, SessionServices

PROJECT = Path(__file__).resolve().parents[2]
KEYLOG = "SSLKEYLOGFILE"
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]

pytestmark = pytest.mark.root


# -- helpers -----------------------------------------------------------------------------


def _fetch_urllib3(origin: Origin) -> Callable[[], None]:
    import urllib3

    pool = urllib3.PoolManager(ca_certs=str(origin.cafile))
    assert pool.request("GET", origin.url).data == SECRET_BODY
    return pool.clear


def _fetch_requests(origin: Origin) -> Callable[[], None]:
    import requests

    session = requests.Session()
    assert session.get(origin.url, verify=str(origin.cafile)).content == SECRET_BODY
    return session.close


def _fetch_httpx(origin: Origin) -> Callable[[], None]:
    import httpx

    # Created inside the block: ssl.create_default_context reads SSLKEYLOGFILE.
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(origin.cafile)))
    assert client.get(origin.url).content == SECRET_BODY
    return client.close


CLIENTS = {"urllib3": _fetch_urllib3, "requests": _fetch_requests, "httpx": _fetch_httpx}


def _decrypted(pcap: CapturedPackets) -> bytes:
    """Every TLS application-data payload scapy decrypted, joined."""
    from scapy.layers.tls.record import TLSApplicationData

    chunks = []
    for packet in pcap.packets(layers=TLSApplicationData):
        # A segment can hold several records (TLS 1.3 nests each in its own TLS13).
        nth = 1
        while (layer := packet.getlayer(TLSApplicationData, nb=nth)) is not None:
            chunks.append(bytes(layer.data))
            nth += 1
    return b"".join(chunks)


def _tcp_flags(pcap: CapturedPackets, port: int) -> list[tuple[str, str]]:
    from scapy.layers.inet import TCP

    return [
        ("to" if p[TCP].dport == port else "from", str(p[TCP].flags))
        for p in pcap.packets(layers=TCP)
        if port in (p[TCP].sport, p[TCP].dport)
    ]


def _own_packet_sockets() -> set[int]:
    """Inodes of AF_PACKET sockets this process holds open (libpcap handles)."""
    packet_inodes = set()
    for line in Path("/proc/net/packet").read_text().splitlines()[1:]:
        packet_inodes.add(int(line.split()[-1]))
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(int(target[8:-1]))
    return packet_inodes & ours


def _send_udp(payload: bytes, count: int = 1) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as source,
    ):
        sink.bind(("127.0.0.1", 0))
        for _ in range(count):
            source.sendto(payload, sink.getsockname())


def _payload_count(path: str, payload: bytes) -> int:
    return sum(payload in packet.data for packet in read_packets(path))


@pytest.fixture
def no_keylog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEYLOG, raising=False)


@pytest.fixture
def finished() -> Iterator[list[CapturedPackets]]:
    """Captures a test made; deleted afterwards whatever happened."""
    made: list[CapturedPackets] = []
    yield made
    for pcap in made:
        pcap.delete(tarballs=True)


def _services(root: Path) -> SessionServices:
    return SessionServices(
        environ=os.environ, devices=list_devices, random_bytes=os.urandom, temp_root=str(root)
    )


# -- TLS through real clients ---------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_traffic_is_captured_and_decrypted(
    tmp_path: Path,
    no_keylog_env: None,
    finished: list[CapturedPackets],
    client: str,
    version: ssl.TLSVersion,
) -> None:
    with https_origin(tmp_path, version) as origin:
        with wirecap.capture_packets(interfaces=["lo"]) as pcap:
            finished.append(pcap)
            close = CLIENTS[client](origin)
        # The pooled connection is still open: only the marker can say we caught up.
        try:
            assert pcap.caught_up
            flags = _tcp_flags(pcap, origin.port)
            assert ("to", "S") in flags and ("from", "SA") in flags
            assert not any("F" in f for side, f in flags if side == "to")
            data = _decrypted(pcap)
            assert b"GET /secret HTTP/1.1\r\n" in data
            assert b"HTTP/1.1 200 OK\r\n" in data and SECRET_BODY in data
        finally:
            close()


def _tshark_bodies(path: Path, port: int) -> list[str]:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-o", "tls.keylog_file:", "-d",
         f"tcp.port=={port},tls", "-Y", f"http.response && tcp.port == {port}",
         "-T", "fields", "-e", "http.file_data"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if line]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_tshark_decrypts_the_file_alone(
    tmp_path: Path, no_keylog_env: None, version: ssl.TLSVersion
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    with https_origin(tmp_path, version) as origin:
        with wirecap.capture_packets(interfaces=["lo"], filter=f"tcp port {origin.port}") as pcap:
            close = _fetch_urllib3(origin)
        close()
    # Only the pcapng is kept: no key log file exists anywhere any more.
    alone = tmp_path / "alone.pcapng"
    shutil.copyfile(pcap.pcap_filepath, alone)
    keys = Path(pcap.keylog_filepath).read_bytes()
    pcap.delete()
    assert not Path(pcap.keylog_filepath).exists()
    assert keys.count(b"\n") >= (1 if version == ssl.TLSVersion.TLSv1_2 else 4)
    assert DecryptionSecrets(SECRETS_TLS_KEY_LOG, keys) in list(read_file(alone))
    bodies = _tshark_bodies(alone, origin.port)
    assert any(SECRET_BODY.decode() in b or SECRET_BODY.hex() in b for b in bodies)


def test_existing_context_logs_keys_through_the_helper(
    tmp_path: Path, no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with https_origin(tmp_path, ssl.TLSVersion.TLSv1_3) as origin:
        # Made before the block: SSLKEYLOGFILE is not set yet, so it logs nothing...
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(origin.cafile))
        with wirecap.capture_packets(interfaces=["lo"]) as pcap:
            finished.append(pcap)
            pcap.log_keys(context)  # ...until the helper points it at the key log.
            with (
                socket.create_connection(("127.0.0.1", origin.port)) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                while tls.recv(4096):
                    pass
    assert SECRET_BODY in _decrypted(pcap)


# -- the key log and the environment --------------------------------------------------


def test_key_log_is_private_and_named_by_the_environment(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        path = os.environ[KEYLOG]
        assert path == pcap.keylog_filepath
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(pcap.directory).st_mode) == 0o700
        assert os.stat(path).st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(pcap.pcap_filepath).st_mode) == 0o600


def test_unset_variable_is_unset_again(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        assert os.environ[KEYLOG] == pcap.keylog_filepath
    assert KEYLOG not in os.environ


def test_set_variable_gets_its_value_back(
    monkeypatch: pytest.MonkeyPatch, finished: list[CapturedPackets]
) -> None:
    monkeypatch.setenv(KEYLOG, "/home/someone/keys.log")
    with wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        assert os.environ[KEYLOG] == pcap.keylog_filepath
    assert os.environ[KEYLOG] == "/home/someone/keys.log"


def test_exception_in_block_propagates_and_environment_is_restored(
    monkeypatch: pytest.MonkeyPatch, finished: list[CapturedPackets]
) -> None:
    monkeypatch.setenv(KEYLOG, "before")
    error = ValueError("the block failed")
    with pytest.raises(ValueError) as caught, wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        _send_udp(b"sent-before-the-error")
        raise error
    assert caught.value is error
    assert not getattr(caught.value, "__notes__", None)
    assert os.environ[KEYLOG] == "before"
    # The capture was finished anyway.
    assert _payload_count(pcap.pcap_filepath, b"sent-before-the-error") == 1


def test_nested_blocks_unwind_the_environment(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    session = wirecap.capture_packets(interfaces=["lo"])
    with session as outer:
        with session as inner:
            assert os.environ[KEYLOG] == inner.keylog_filepath
        assert os.environ[KEYLOG] == outer.keylog_filepath
    finished += [outer, inner]
    assert KEYLOG not in os.environ and session.last is outer


# -- stopping, files, deletion --------------------------------------------------------


def test_capture_is_really_stopped_after_the_block(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        assert len(_own_packet_sockets()) == 1
        _send_udp(b"inside-the-block")
    assert _own_packet_sockets() == set()
    assert not any(t.name == "wirecap-session" for t in threading.enumerate())
    size = os.path.getsize(pcap.pcap_filepath)
    listing = sorted(os.listdir(pcap.directory))
    assert listing == ["keylog-filename.txt", "packets.pcapng"]
    stop = time.monotonic() + 2.0
    sent = 0
    while time.monotonic() < stop:
        _send_udp(b"after-the-block", 20)
        sent += 20
        time.sleep(0.01)
    assert sent > 1000
    assert os.path.getsize(pcap.pcap_filepath) == size
    assert sorted(os.listdir(pcap.directory)) == listing
    assert _payload_count(pcap.pcap_filepath, b"inside-the-block") == 1
    assert _payload_count(pcap.pcap_filepath, b"after-the-block") == 0


def test_marker_packets_are_not_in_the_file(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with wirecap.capture_packets(interfaces=["lo"], filter="udp") as pcap:
        finished.append(pcap)
        _send_udp(b"user-datagram", 3)
    assert pcap.caught_up
    assert pcap.stats["lo"].written >= 4  # the 3 datagrams and the marker
    assert _payload_count(pcap.pcap_filepath, b"wirecap session marker") == 0
    assert _payload_count(pcap.pcap_filepath, b"user-datagram") == 3


def test_without_waiting_nothing_already_sent_is_lost(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    start = time.monotonic()
    with wirecap.capture_packets(interfaces=["lo"], filter="udp", wait_for_packets=False) as pcap:
        finished.append(pcap)
        _send_udp(b"no-wait", 5)
    assert time.monotonic() - start < 3.0
    assert not pcap.caught_up
    assert _payload_count(pcap.pcap_filepath, b"no-wait") == 5


def test_tarball_holds_file_keys_and_readme(
    tmp_path: Path, no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    with wirecap.capture_packets(interfaces=["lo"]) as pcap:
        finished.append(pcap)
        with pytest.raises(UsageError, match="while still capturing"):
            pcap.tarball()
        with pytest.raises(UsageError):
            pcap.packets()
        Path(os.environ[KEYLOG]).write_text("CLIENT_RANDOM 00 11\n")
    default = Path(pcap.tarball())
    assert default.name.endswith(".tar.gz") and default.parent != Path(pcap.directory)
    plain = Path(pcap.tarball(tmp_path / "plain.tar", gzip=False))
    for path, mode in ((default, "r:gz"), (plain, "r:")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == ["README.txt", "keylog-filename.txt", "packets.pcapng"]
            assert all(m.mode == 0o600 for m in members.values())
            keys = tar.extractfile("keylog-filename.txt")
            readme = tar.extractfile("README.txt")
            assert keys is not None and readme is not None
            assert keys.read() == b"CLIENT_RANDOM 00 11\n"
            assert b"WARNING" in readme.read()
    # delete() removes the session; the tarball to hand on stays unless asked.
    pcap.delete()
    assert not os.path.exists(pcap.directory)
    assert default.exists() and plain.exists()
    pcap.delete(tarballs=True)
    assert not default.exists() and plain.exists()
    with pytest.raises(UsageError, match="after delete"):
        pcap.tarball()


def test_delete_removes_everything(tmp_path: Path, no_keylog_env: None) -> None:
    root = tmp_path / "sessions"
    root.mkdir()
    session = CaptureSession(SessionOptions.build(interfaces=["lo"]), _services(root))
    with session as pcap:
        _send_udp(b"x")
    assert sorted(os.listdir(pcap.directory)) == ["keylog-filename.txt", "packets.pcapng"]
    pcap.delete()
    pcap.delete()  # idempotent
    assert list(root.iterdir()) == []


# -- failing to start, failing to finish ----------------------------------------------


def test_unknown_interface_raises_in_enter_and_leaves_nothing(
    tmp_path: Path, no_keylog_env: None
) -> None:
    session = CaptureSession(SessionOptions.build(interfaces=["nosuch0"]), _services(tmp_path))
    ran = False
    with pytest.raises(NoSuchInterfaceError, match="nosuch0"), session:
        ran = True
    assert not ran
    assert list(tmp_path.iterdir()) == []
    assert KEYLOG not in os.environ


def test_bad_filter_raises_with_the_users_expression(tmp_path: Path, no_keylog_env: None) -> None:
    session = CaptureSession(
        SessionOptions.build(interfaces=["lo"], filter="tcp port"), _services(tmp_path)
    )
    with pytest.raises(BadFilterError, match="'tcp port'"), session:
        pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []


_NO_PRIVILEGE = """
import json, os, sys, wirecap
result = {}
try:
    with wirecap.capture_packets(interfaces=["lo"]):
        result["body"] = "ran"
except Exception as exc:
    result["error"] = type(exc).__name__
    result["message"] = str(exc)
result["env"] = os.environ.get("SSLKEYLOGFILE")
result["left"] = os.listdir(os.environ["TMPDIR"])
print(json.dumps(result))
"""


def test_missing_privilege_raises_in_enter_with_the_reason(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    env = {k: v for k, v in os.environ.items() if k != KEYLOG}
    env["TMPDIR"] = str(tmp_path)
    # Still root, but without CAP_NET_RAW and CAP_NET_ADMIN: what an unprivileged user has.
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-net_raw,-net_admin", sys.executable, "-c", _NO_PRIVILEGE],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert "body" not in result
    assert result["error"] == "PermissionDeniedError"
    assert "CAP_NET_RAW" in result["message"]
    assert result["env"] is None and result["left"] == []


def test_failure_to_finish_is_a_note_on_the_users_exception(
    no_keylog_env: None,
) -> None:
    with pytest.raises(ValueError) as caught, wirecap.capture_packets(interfaces=["lo"]) as pcap:
        shutil.rmtree(pcap.directory)
        raise ValueError("mine")
    assert str(caught.value) == "mine"
    notes = getattr(caught.value, "__notes__", [])
    assert any("could not be finished" in note for note in notes)
    assert KEYLOG not in os.environ and _own_packet_sockets() == set()


def test_failure_to_finish_without_an_exception_is_raised(no_keylog_env: None) -> None:
    with pytest.raises(CaptureWriteError), wirecap.capture_packets(interfaces=["lo"]) as pcap:
        shutil.rmtree(pcap.directory)
    assert KEYLOG not in os.environ and _own_packet_sockets() == set()


_NO_SCAPY = """
import sys
sys.modules["scapy"] = None  # what an installation without the extra looks like
import wirecap
from wirecap.errors import ExtraMissingError
with wirecap.capture_packets(interfaces=["lo"]) as pcap:
    pass
try:
    pcap.packets()
except ExtraMissingError as exc:
    print(exc)
finally:
    pcap.delete()
"""


def test_packets_without_scapy_says_which_extra(tmp_path: Path) -> None:
    # scapy is installed here; the child hides it to see the message users get.
    done = subprocess.run(
        [sys.executable, "-c", _NO_SCAPY], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'wirecap[scapy]'" in done.stdout


# -- async with, decorators ------------------------------------------------------------


def test_async_with(no_keylog_env: None, finished: list[CapturedPackets]) -> None:
    async def main() -> CapturedPackets:
        async with wirecap.capture_packets(interfaces=["lo"], filter="udp") as pcap:
            assert os.environ[KEYLOG] == pcap.keylog_filepath
            await asyncio.to_thread(_send_udp, b"from-async", 2)
        return pcap

    pcap = asyncio.run(main())
    finished.append(pcap)
    assert KEYLOG not in os.environ and pcap.caught_up
    assert _payload_count(pcap.pcap_filepath, b"from-async") == 2


def test_decorator_on_plain_and_async_functions(
    no_keylog_env: None, finished: list[CapturedPackets]
) -> None:
    session = wirecap.capture_packets(interfaces=["lo"], filter="udp")
    seen: list[str] = []

    @session
    def send(payload: bytes) -> str:
        seen.append(os.environ[KEYLOG])
        _send_udp(payload)
        return "done"

    @session
    async def send_async(payload: bytes) -> str:
        seen.append(os.environ[KEYLOG])
        await asyncio.to_thread(_send_udp, payload)
        return "done async"

    assert send(b"decorated-1") == "done"
    first = session.last
    assert asyncio.run(send_async(b"decorated-2")) == "done async"
    second = session.last
    finished += [first, second]
    assert seen == [first.keylog_filepath, second.keylog_filepath]
    assert _payload_count(first.pcap_filepath, b"decorated-1") == 1
    assert _payload_count(second.pcap_filepath, b"decorated-2") == 1
    assert KEYLOG not in os.environ


def test_interfaces_none_is_any(no_keylog_env: None, finished: list[CapturedPackets]) -> None:
    with wirecap.capture_packets(filter="udp") as pcap:
        finished.append(pcap)
        _send_udp(b"on-any")
    assert pcap.interfaces == ("any",)
    names = [e.name for e in read_file(pcap.pcap_filepath) if isinstance(e, Interface)]
    assert names == ["any"]
    assert _payload_count(pcap.pcap_filepath, b"on-any") == 1


def test_available_interfaces_match_libpcap() -> None:
    names = wirecap.available_interfaces()
    assert {"any", "lo"} <= names
    assert names == {device.name for device in list_devices()}


# -- in network namespaces: name resolution, several interfaces ------------------------

NEAR_V4, FAR_V4 = "10.206.1.1", "10.206.1.2"


@contextlib.contextmanager
def _namespace_pair() -> Iterator[tuple[str, str]]:
    """near (va) — (vb) far, with near's resolv.conf pointing at far's DNS responder.

    The responder (tests.dns_responder) binds a free port; an nft redirect in the
    far namespace makes it answer on port 53, where the near side's resolver and
    scapy's DNS dissector expect it.
    """
    tag = f"wcs{os.getpid() % 10000}{secrets.token_hex(2)}"
    near, far = f"{tag}-near", f"{tag}-far"
    etc = Path("/etc/netns") / near
    created: list[str] = []
    server: subprocess.Popen[str] | None = None
    try:
        for ns in (near, far):
            netns_run("ip", "netns", "add", ns)
            created.append(ns)
        netns_run("ip", "link", "add", "va", "netns", near, "type", "veth", "peer", "vb",
                  "netns", far)  # fmt: skip
        for ns, dev, address in ((near, "va", NEAR_V4), (far, "vb", FAR_V4)):
            netns_run("ip", "-n", ns, "link", "set", "lo", "up")
            netns_run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            netns_run("ip", "-n", ns, "link", "set", dev, "up")
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {FAR_V4}\noptions timeout:2 attempts:2\n")
        server = subprocess.Popen(
            ["ip", "netns", "exec", far, sys.executable, "-m", "tests.session.scenarios",
             "serve", FAR_V4],
            cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["dns_port"]
        netns_run(
            "ip", "netns", "exec", far, "nft", "-f", "-",
            input=(
                "table ip wcsdns {\n chain pre {\n"
                "  type nat hook prerouting priority dstnat;\n"
                f"  udp dport 53 redirect to :{port}\n }}\n}}\n"
            ),
        )  # fmt: skip
        yield near, far
    finally:
        if server is not None:
            server.kill()
            server.communicate()
        for ns in created:
            netns_run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(etc, ignore_errors=True)


def _scenario(namespace: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != KEYLOG}
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.session.scenarios", *args],
        cwd=PROJECT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.netns
def test_readme_examples_with_local_names() -> None:
    with _namespace_pair() as (near, _far):
        result = _scenario(near, "readme")
    tarball = Path(result["tarball"])
    try:
        # test_http: the name was resolved (by the system resolver, against our
        # responder) and one request and one response went by.
        assert result["status"] == 200
        assert "origin.test." in result["qnames"]
        assert len(result["requests"]) == 1 and len(result["response_codes"]) == 1
        assert result["requests"][0].startswith("GET / HTTP/1.1\r\nHost: origin.test\r\n")
        assert result["response_codes"] == [200]
        assert result["interfaces"] == ["any"] and result["caught_up"]
        # The README: a failed lookup is captured, its answer NXDOMAIN.
        assert result["first_qname"] == "service-that-is-not.working."
        assert result["nxdomain"]
        assert result["deleted"] and tarball.exists()
        assert stat.S_IMODE(tarball.stat().st_mode) == 0o600
    finally:
        tarball.unlink(missing_ok=True)


@pytest.mark.netns
def test_several_interfaces_merge_into_one_file(run_tool: Callable[..., str]) -> None:
    with _namespace_pair() as (near, _far):
        result = _scenario(near, "interfaces", "lo", "va")
    try:
        # IDBs come in the order of each interface's first packet, one each.
        assert sorted(result["idbs"]) == ["lo", "va"]
        assert result["per_interface"]["lo"] > 0 and result["per_interface"]["va"] > 0
        assert result["sorted"] and result["markers"] == 0
        # Both markers came back: the Ethernet one on va, the UDP one on lo.
        assert result["caught_up"]
        assert result["loopback_datagram_on"] == ["lo"]
        assert result["origin_body_on"] == ["va"]
        names = run_tool(
            "tshark", "-r", result["file"], "-T", "fields", "-e", "frame.interface_name"
        )
        assert set(names.split()) == {"lo", "va"}
    finally:
        shutil.rmtree(result["directory"], ignore_errors=True)
