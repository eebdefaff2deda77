"""Transports against a fake sendmail and a real SMTP server; the queue never loses a capture."""

from __future__ import annotations

import asyncio
import datetime
import email
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.proxy.test_summary import START, make_summary
from wirecap.errors import MailError, OptionError
from wirecap.proxy.mailer import (
    RETRY_BASE,
    RETRY_CAP,
    Delivery,
    DeliveryStatus,
    Mailer,
    SendmailFailed,
    SendmailTransport,
    SmtpTransport,
    retry_delay,
)
from wirecap.proxy.spool import Spool, SpooledCapture
from wirecap.proxy.summary import ConnectOutcome

PCAP = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)) * 40
ADDRESSES = {"alice": "alice@example.com", "bob": "Bob <bob@example.com>"}

# A sendmail stand-in: stores its stdin, exits with the status in STATE/status
# (after sleeping STATE/sleep seconds), and says why on stderr. Its pid goes to
# STATE/pid so a test can check that a killed one is really gone.
FAKE_SENDMAIL = """\
import os, sys, time
state = sys.argv[1]
def read(name, default):
    try:
        with open(os.path.join(state, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default
with open(os.path.join(state, "pid"), "w") as f:
    f.write(str(os.getpid()))
data = sys.stdin.buffer.read()
count = len([n for n in os.listdir(state) if n.startswith("mail-")])
with open(os.path.join(state, "mail-%d.eml" % (count + 1)), "wb") as f:
    f.write(data)
with open(os.path.join(state, "argv-%d" % (count + 1)), "w") as f:
    f.write(" ".join(sys.argv[2:]))
time.sleep(float(read("sleep", "0")))
status = int(read("status", "0"))
if status:
    sys.stderr.write("\\nfake-sendmail: queue unavailable (%d)\\nsecond line\\n" % status)
sys.exit(status)
"""


@dataclass
class FakeSendmail:
    state: Path
    argv: list[str]

    def set(self, *, status: int = 0, sleep: float = 0.0) -> None:
        (self.state / "status").write_text(str(status))
        (self.state / "sleep").write_text(str(sleep))

    def mails(self) -> list[bytes]:
        names = sorted(self.state.glob("mail-*.eml"), key=lambda p: int(p.stem.split("-")[1]))
        return [p.read_bytes() for p in names]


@pytest.fixture
def sendmail(tmp_path: Path) -> FakeSendmail:
    script = tmp_path / "fake-sendmail"
    script.write_text(f"#!{sys.executable}\n{FAKE_SENDMAIL}")
    script.chmod(stat.S_IRWXU)
    state = tmp_path / "sendmail-state"
    state.mkdir()
    return FakeSendmail(state, [str(script), str(state), "-t", "-i"])


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class MemoryTransport:
    """Accepts or fails as told, and remembers what it was given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[bytes, str, list[str]]] = []

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise MailError("relay down")
        self.sent.append((message, sender, list(recipients)))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def attachment_of(raw: bytes) -> tuple[bytes, str | None]:
    (part,) = parse(raw).iter_attachments()
    content = part.get_content()
    assert isinstance(content, bytes)
    return content, part.get_filename()


def spooled(spool: Spool, user: str | None = "alice", pcap: bytes | None = PCAP) -> SpooledCapture:
    entry = spool.reserve(user, "example.com", 443, START)
    if pcap is not None:
        entry.pcap_part.write_bytes(pcap)
        os.replace(entry.pcap_part, entry.pcap)
    return spool.complete(entry, make_summary(user=user, outcome=ConnectOutcome.REFUSED))


def make_mailer(spool: Spool, transport: Any, clock: Clock | None = None, **kw: Any) -> Mailer:
    clock = clock or Clock()
    return Mailer(
        spool,
        transport,
        sender="wirecap@proxy.example",
        recipient_for=ADDRESSES.get,  # type: ignore[arg-type]
        proxy_host="proxy.example",
        message_id_domain="proxy.example",
        clock=clock,
        sleep=clock.sleep,
        now=lambda: datetime.datetime(2026, 11, 22, 15, 45, tzinfo=datetime.UTC),
        **kw,
    )


# --- back-off -----------------------------------------------------------------------


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert retry_delay(10_000) == RETRY_CAP
    assert retry_delay(1) == RETRY_BASE
    with pytest.raises(ValueError):
        retry_delay(0)


# --- sendmail -----------------------------------------------------------------------


def test_sendmail_gets_the_message_on_stdin(sendmail: FakeSendmail) -> None:
    transport = SendmailTransport(sendmail.argv)
    asyncio.run(transport.send(b"Subject: x\r\n\r\nbody\r\n", "a@b", ["c@d"]))
    assert sendmail.mails() == [b"Subject: x\r\n\r\nbody\r\n"]
    assert (sendmail.state / "argv-1").read_text() == "-t -i"  # argv exactly, no shell


def test_sendmail_failure_reports_status_and_first_stderr_line(sendmail: FakeSendmail) -> None:
    sendmail.set(status=75)
    with pytest.raises(SendmailFailed) as caught:
        asyncio.run(SendmailTransport(sendmail.argv).send(b"x\r\n", "a@b", ["c@d"]))
    assert caught.value.status == 75
    assert caught.value.stderr_line == "fake-sendmail: queue unavailable (75)"
    assert "exited with status 75: fake-sendmail: queue unavailable (75)" in str(caught.value)


def test_hanging_sendmail_is_killed_at_the_timeout(sendmail: FakeSendmail) -> None:
    sendmail.set(sleep=60)
    started = time.monotonic()
    with pytest.raises(MailError, match=r"did not finish within 0\.5 s and was killed"):
        asyncio.run(SendmailTransport(sendmail.argv, timeout=0.5).send(b"x", "a@b", ["c@d"]))
    assert time.monotonic() - started < 5
    pid = int((sendmail.state / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie
        os.kill(pid, 0)


def test_sendmail_that_does_not_read_its_input(tmp_path: Path) -> None:
    script = tmp_path / "deaf"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
    script.chmod(stat.S_IRWXU)
    with pytest.raises(SendmailFailed, match=r"status 1$"):
        asyncio.run(SendmailTransport([str(script)]).send(b"x" * 1_000_000, "a@b", ["c@d"]))


def test_sendmail_command_must_be_absolute_and_runnable(tmp_path: Path) -> None:
    with pytest.raises(OptionError):
        SendmailTransport(["sendmail", "-t"])
    with pytest.raises(OptionError):
        SendmailTransport([])
    with pytest.raises(OptionError):
        SendmailTransport(["/usr/sbin/sendmail"], timeout=0)
    missing = SendmailTransport([str(tmp_path / "no-such-sendmail")])
    with pytest.raises(MailError, match="cannot run"):
        asyncio.run(missing.send(b"x", "a@b", ["c@d"]))


# --- the queue with sendmail ----------------------------------------------------------


def test_mail_carries_the_spooled_capture_then_the_spool_lets_go(
    tmp_path: Path, sendmail: FakeSendmail
) -> None:
    spool = Spool(tmp_path / "spool")
    capture = spooled(spool)
    spooled_bytes = capture.entry.pcap.read_bytes()
    mailer = make_mailer(spool, SendmailTransport(sendmail.argv))
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.SENT
    (raw,) = sendmail.mails()
    message = parse(raw)
    assert message["To"] == "alice@example.com"
    assert message["From"] == "wirecap@proxy.example"
    assert message["Subject"] == "[wirecap][proxy.example] example.com:443 — connection refused"
    content, filename = attachment_of(raw)
    assert content == spooled_bytes == PCAP
    assert filename == capture.entry.pcap.name
    assert f'filename="{capture.entry.pcap.name}"'.encode() in raw
    body = message.get_body(("plain",))
    assert body is not None and "connection refused" in body.get_content()
    # Only now is the capture gone from the spool.
    assert not capture.entry.pcap.exists() and not capture.entry.summary.exists()
    assert spool.pending() == []
    assert mailer.queued == 0


def test_failed_send_keeps_the_capture_and_a_retry_delivers_it(
    tmp_path: Path, sendmail: FakeSendmail
) -> None:
    spool = Spool(tmp_path / "spool")
    capture = spooled(spool)
    clock = Clock()
    seen: list[Delivery] = []
    mailer = make_mailer(spool, SendmailTransport(sendmail.argv), clock, on_delivery=seen.append)
    mailer.submit(capture)
    sendmail.set(status=75)  # EX_TEMPFAIL

    async def scenario() -> None:
        (first,) = await mailer.deliver_due()
        assert first.status is DeliveryStatus.RETRY
        assert first.attempt == 1
        assert "status 75" in (first.error or "")
        assert first.retry_at == clock.now + RETRY_BASE
        assert capture.entry.pcap.read_bytes() == PCAP and capture.entry.summary.exists()
        assert await mailer.deliver_due() == []  # not due yet
        clock.now += RETRY_BASE
        (second,) = await mailer.deliver_due()
        assert second.status is DeliveryStatus.RETRY
        assert second.retry_at == clock.now + 2 * RETRY_BASE  # backing off
        assert capture.entry.pcap.exists()
        sendmail.set(status=0)
        clock.now += 2 * RETRY_BASE
        (third,) = await mailer.deliver_due()
        assert third.status is DeliveryStatus.SENT
        assert third.attempt == 3

    asyncio.run(scenario())
    assert [d.status for d in seen] == ["retry", "retry", "sent"]
    assert len(sendmail.mails()) == 3  # two refused hand-overs and the good one
    assert attachment_of(sendmail.mails()[-1])[0] == PCAP
    assert not capture.entry.pcap.exists()


def test_after_a_restart_unsent_mail_is_found_again(tmp_path: Path, sendmail: FakeSendmail) -> None:
    spool = Spool(tmp_path / "spool")
    capture = spooled(spool)
    sendmail.set(status=75)
    mailer = make_mailer(spool, SendmailTransport(sendmail.argv))
    mailer.submit(capture)
    asyncio.run(mailer.deliver_due())
    # The proxy stops; a new one starts on the same spool.
    sendmail.set(status=0)
    restarted_spool = Spool(tmp_path / "spool")
    restarted = make_mailer(restarted_spool, SendmailTransport(sendmail.argv))
    assert restarted.requeue_pending() == 1
    assert restarted.requeue_pending() == 0  # already queued
    (delivery,) = asyncio.run(restarted.deliver_due())
    assert delivery.status is DeliveryStatus.SENT
    assert attachment_of(sendmail.mails()[-1])[0] == PCAP
    assert restarted_spool.pending() == []


# --- the queue's rules --------------------------------------------------------------


def test_keep_marks_mailed_instead_of_deleting(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool)
    mailer = make_mailer(spool, MemoryTransport(), keep=True)
    mailer.submit(capture)
    asyncio.run(mailer.deliver_due())
    assert capture.entry.pcap.read_bytes() == PCAP
    assert capture.entry.mailed_marker.exists()
    assert spool.pending() == []


def test_no_address_holds_the_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool, user="carol")
    transport = MemoryTransport()
    mailer = make_mailer(spool, transport)
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.HELD
    assert transport.sent == []
    assert mailer.queued == 0
    assert spool.pending() == [capture]  # still there for the next start


def test_a_bad_address_holds_the_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool)
    mailer = make_mailer(spool, MemoryTransport())
    mailer._recipient_for = lambda user: "not an address"
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.HELD
    assert spool.pending() == [capture]


def test_a_transport_bug_is_retried_not_fatal(tmp_path: Path) -> None:
    class Broken:
        async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
            raise RuntimeError("oops")

    spool = Spool(tmp_path)
    capture = spooled(spool)
    mailer = make_mailer(spool, Broken())
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.RETRY
    assert delivery.error == "RuntimeError: oops"
    assert capture.entry.pcap.exists()


def test_a_vanished_capture_holds_the_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool)
    capture.entry.pcap.unlink()
    mailer = make_mailer(spool, MemoryTransport())
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.HELD
    assert capture.entry.summary.exists()


def test_a_connection_without_capture_is_mailed_as_text(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool, pcap=None)
    transport = MemoryTransport()
    mailer = make_mailer(spool, transport)
    mailer.submit(capture)
    asyncio.run(mailer.deliver_due())
    ((raw, sender, recipients),) = transport.sent
    assert parse(raw).get_content_type() == "text/plain"
    assert sender == "wirecap@proxy.example"
    assert recipients == ["alice@example.com"]
    assert not capture.entry.summary.exists()


def test_an_oversized_capture_is_announced_and_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool)
    transport = MemoryTransport()
    mailer = make_mailer(spool, transport, max_attachment=len(PCAP) - 1)
    mailer.submit(capture)
    asyncio.run(mailer.deliver_due())
    ((raw, _, _),) = transport.sent
    message = parse(raw)
    assert list(message.iter_attachments()) == []
    assert "is not attached" in message.get_content()
    assert capture.entry.pcap.exists() and capture.entry.mailed_marker.exists()


def test_compressed_attachment(tmp_path: Path) -> None:
    import gzip

    spool = Spool(tmp_path)
    capture = spooled(spool)
    transport = MemoryTransport()
    mailer = make_mailer(spool, transport, compress=True)
    mailer.submit(capture)
    asyncio.run(mailer.deliver_due())
    content, filename = attachment_of(transport.sent[0][0])
    assert gzip.decompress(content) == PCAP
    assert filename == capture.entry.pcap.name + ".gz"


def test_background_loop_retries_with_back_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    clock = Clock()
    transport = MemoryTransport(failures=2)

    async def scenario() -> list[Delivery]:
        seen: list[Delivery] = []
        sent = asyncio.Event()

        def on_delivery(delivery: Delivery) -> None:
            seen.append(delivery)
            if delivery.status is DeliveryStatus.SENT:
                sent.set()

        mailer = make_mailer(spool, transport, clock, on_delivery=on_delivery)
        mailer.start()
        mailer.submit(spooled(spool))
        await asyncio.wait_for(sent.wait(), 5)
        result = await mailer.drain(5)
        assert result.remaining == 0 and not result.timed_out
        return seen

    seen = asyncio.run(scenario())
    assert [d.status for d in seen] == ["retry", "retry", "sent"]
    assert clock.slept == [RETRY_BASE, 2 * RETRY_BASE]
    assert len(transport.sent) == 1
    assert spool.pending() == []


def test_drain_sends_what_is_queued(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    transport = MemoryTransport()

    async def scenario() -> None:
        mailer = make_mailer(spool, transport)
        for _ in range(3):
            mailer.submit(spooled(spool))
        result = await mailer.drain(5)  # never started: drain alone still flushes
        assert [d.status for d in result.deliveries] == ["sent"] * 3
        assert result.remaining == 0

    asyncio.run(scenario())
    assert len(transport.sent) == 3
    assert spool.pending() == []


def test_drain_is_bounded_and_keeps_what_it_could_not_send(
    tmp_path: Path, sendmail: FakeSendmail
) -> None:
    spool = Spool(tmp_path / "spool")
    sendmail.set(sleep=60)
    captures = [spooled(spool) for _ in range(2)]

    async def scenario() -> None:
        mailer = make_mailer(spool, SendmailTransport(sendmail.argv))
        mailer.start()
        for capture in captures:
            mailer.submit(capture)
        await asyncio.sleep(0.2)  # the first send is in flight
        started = time.monotonic()
        result = await mailer.drain(0.5)
        assert time.monotonic() - started < 5
        assert result.timed_out
        assert result.remaining == 2

    asyncio.run(scenario())
    assert [c.entry.summary for c in spool.pending()] == [c.entry.summary for c in captures]
    pid = int((sendmail.state / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- SMTP ---------------------------------------------------------------------------


class RecordingHandler:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_smtp_delivers_the_message_intact(
    tmp_path: Path, smtp_server: tuple[RecordingHandler, int]
) -> None:
    handler, port = smtp_server
    spool = Spool(tmp_path)
    capture = spooled(spool, user="bob")
    mailer = make_mailer(spool, SmtpTransport("127.0.0.1", port, timeout=10))
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.SENT, delivery.error
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "wirecap@proxy.example"
    assert envelope.rcpt_tos == ["bob@example.com"]  # the addr-spec, not the header text
    content, filename = attachment_of(envelope.content)
    assert content == PCAP
    assert filename == capture.entry.pcap.name
    assert parse(envelope.content)["To"] == "Bob <bob@example.com>"
    assert not capture.entry.pcap.exists()


def test_smtp_failure_is_a_retry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    capture = spooled(spool)
    mailer = make_mailer(spool, SmtpTransport("127.0.0.1", free_port(), timeout=5))
    mailer.submit(capture)
    (delivery,) = asyncio.run(mailer.deliver_due())
    assert delivery.status is DeliveryStatus.RETRY
    assert "127.0.0.1" in (delivery.error or "")
    assert capture.entry.pcap.exists()
