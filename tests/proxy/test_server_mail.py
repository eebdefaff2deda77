"""Mail from the running proxy: a sendmail-compatible program and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import socket
import sys
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from tests.proxy.harness import curl, proxy, tls_origin

pytestmark = pytest.mark.root


def _fake_sendmail(tmp_path: Path, status: int) -> Path:
    script = tmp_path / "sendmail"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        f"open('{tmp_path}/mail-%d.eml' % time.time_ns(), 'wb').write(sys.stdin.buffer.read())\n"
        f"sys.exit({status})\n"
    )
    script.chmod(0o700)
    return script


def _wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _attachment(message: email.message.EmailMessage) -> tuple[str, bytes]:
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return str(part.get_filename()), payload
    raise AssertionError("no attachment")


def test_sendmail_gets_the_spooled_pcap_byte_for_byte(tmp_path: Path) -> None:
    sendmail = _fake_sendmail(tmp_path, 0)
    with (
        tls_origin(tmp_path) as origin,
        proxy(
            tmp_path, "--digest-algorithms", "MD5", "--keep", str(sendmail), "-t", "-i"
        ) as running,
    ):
        assert curl(running.port, f"https://127.0.0.1:{origin.port}/", "-k")[2] == "200"
        (summary,) = running.summaries(1)
        _wait_for(lambda: list(tmp_path.glob("mail-*.eml")))
    raw = next(tmp_path.glob("mail-*.eml")).read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message["To"] == "alice@example.org"
    assert message["Message-ID"] and message["Date"] and message["From"]
    assert "established" in str(message["Subject"]) or "connected" in str(message["Subject"])
    name, data = _attachment(message)
    pcap = running.spool / "alice" / str(summary["capture_file"])
    assert name == pcap.name
    assert data == pcap.read_bytes()
    assert b'filename="' in raw
    plots = [p for p in message.iter_attachments() if p.get_content_type() == "image/png"]
    assert len(plots) == 1
    assert plots[0].get_filename() == pcap.with_suffix(".png").name
    png = plots[0].get_payload(decode=True)
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert "Verdict:" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_failing_sendmail_leaves_the_capture_in_the_spool(tmp_path: Path) -> None:
    sendmail = _fake_sendmail(tmp_path, 75)
    with (
        tls_origin(tmp_path) as origin,
        proxy(tmp_path, "--digest-algorithms", "MD5", str(sendmail), "-t", "-i") as running,
    ):
        assert curl(running.port, f"https://127.0.0.1:{origin.port}/", "-k")[2] == "200"
        (summary,) = running.summaries(1)
        _wait_for(lambda: list(tmp_path.glob("mail-*.eml")))
        time.sleep(0.5)
        log = running.stop()
    assert "retry" in log
    assert (running.spool / "alice" / str(summary["capture_file"])).exists()
    assert list((running.spool / "alice").glob("*.json"))


def test_smtp_delivery_removes_the_capture_after_acceptance(tmp_path: Path) -> None:
    received: list[email.message.Message] = []

    class Keep(Message):
        def handle_message(self, message: email.message.Message) -> None:
            received.append(message)

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with (
            tls_origin(tmp_path) as origin,
            proxy(tmp_path, "--digest-algorithms", "MD5", "--smtp", f"127.0.0.1:{port}") as running,
        ):
            assert curl(running.port, f"https://127.0.0.1:{origin.port}/", "-k")[2] == "200"
            _wait_for(lambda: received)
            _wait_for(lambda: not list(running.spool.glob("*/*.pcap")))
    finally:
        controller.stop()
    parts = [
        p for p in received[0].walk() if p.get_content_type() == "application/vnd.tcpdump.pcap"
    ]
    assert len(parts) == 1
    pcap = parts[0].get_payload(decode=True)
    assert isinstance(pcap, bytes) and pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")


def test_sigterm_finishes_and_mails_an_open_tunnel_before_exit(tmp_path: Path) -> None:
    from tests.proxy.harness import PASSWORD
    from tests.proxy.tunnel_client import connect

    sendmail = _fake_sendmail(tmp_path, 0)
    with (
        tls_origin(tmp_path) as origin,
        proxy(tmp_path, "--digest-algorithms", "MD5", str(sendmail), "-t", "-i") as running,
    ):
        sock, status = connect(running.port, f"127.0.0.1:{origin.port}", "alice", PASSWORD)
        try:
            assert status == 200
            started = time.monotonic()
            log = running.stop()  # SIGTERM while the tunnel is open
            assert time.monotonic() - started < 30
        finally:
            sock.close()
    assert "shutting down" in log and "mail " in log
    mails = list(tmp_path.glob("mail-*.eml"))
    assert len(mails) == 1
    message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert "proxy shut down" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Mailed, so removed from the spool; nothing else left behind.
    assert not list(running.spool.glob("*/*.pcap*"))
