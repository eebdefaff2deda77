"""build_message: a parseable RFC 5322 message, the capture byte-identical, no injection."""

from __future__ import annotations

import datetime
import email
import gzip
import re
from email import policy
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.proxy.test_summary import make_summary
from wirecap.proxy.mail import build_message, mail_subject
from wirecap.proxy.summary import ConnectOutcome

DATE = datetime.datetime(2026, 11, 22, 15, 45, tzinfo=datetime.UTC)
FILENAME = "20261122T154500Z-42-example.com-443.pcap"
PCAP = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)) * 3


def build(text: str = "summary\n", pcap: bytes | None = PCAP, **changes: Any) -> bytes:
    kwargs: dict[str, Any] = {
        "to": "alice@example.com",
        "from_": "wirecap@proxy.example",
        "subject": "[wirecap][proxy.example] example.com:443 — connected",
        "filename": FILENAME,
        "date": DATE,
        "message_id_domain": "proxy.example",
    }
    kwargs.update(changes)
    return build_message(text, pcap, **kwargs)


def text_of(part: MIMEPart) -> str:
    """A text part's content with LF line ends (the parser keeps the wire's CRLF)."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers() -> None:
    message = parse(build())
    assert message["From"] == "wirecap@proxy.example"
    assert message["To"] == "alice@example.com"
    assert message["Date"].datetime == DATE
    assert re.fullmatch(r"<[^<>@]+@proxy\.example>", message["Message-ID"])
    assert message["Subject"] == "[wirecap][proxy.example] example.com:443 — connected"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/mixed"
    assert parse(build())["Message-ID"] != message["Message-ID"]


def test_non_ascii_subject_is_an_encoded_word_and_the_message_is_7bit() -> None:
    raw = build(text="user: jürgen\n", to="Jürgen <j@example.com>")
    assert raw.isascii()
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]  # RFC 2047 in the head
    message = parse(raw)
    assert message["Subject"].endswith("— connected")
    assert message["To"].addresses[0].display_name == "Jürgen"


def test_every_line_ends_in_crlf_and_is_short() -> None:
    raw = build(text="a\nb\n" + "x" * 2000 + "\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78  # RFC 5322 §2.1.1 SHOULD


def test_summary_part_and_attachment() -> None:
    text = "example.com:443 — connected\n\nOutcome: connected\n.\n"
    raw = build(text=text)
    message = parse(raw)
    body = message.get_body(("plain",))
    assert body is not None
    assert text_of(body) == text
    assert body.get_content_charset() == "utf-8"
    (attachment,) = message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_content_type() == "application/vnd.tcpdump.pcap"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == FILENAME
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content() == PCAP
    # RFC 2183 §2: the filename parameter is a quoted-string as written.
    assert f'filename="{FILENAME}"'.encode() in raw


def test_without_a_capture_it_is_plain_text() -> None:
    message = parse(build(pcap=None))
    assert message.get_content_type() == "text/plain"
    assert list(message.iter_attachments()) == []
    assert text_of(message) == "summary\n"


def test_compressed_attachment() -> None:
    message = parse(build(compress=True))
    (attachment,) = message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_content_type() == "application/gzip"
    assert attachment.get_filename() == FILENAME + ".gz"
    assert gzip.decompress(attachment.get_content()) == PCAP


@given(st.binary(max_size=5000), st.text(max_size=500))
def test_any_capture_and_text_survive(pcap: bytes, text: str) -> None:
    text = text.replace("\r", "")  # the text is LF-ended by contract
    message = parse(build(text=text, pcap=pcap))
    (attachment,) = message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_content() == pcap
    body = message.get_body(("plain",))
    assert body is not None
    assert text_of(body).rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "alice@example.com\r\nBcc: mallory@example.com"},
        {"to": "alice@example.com\nBcc: mallory@example.com"},
        {"from_": "x@y\rBcc: m@example.com"},
        {"subject": "hello\r\nBcc: mallory@example.com"},
        {"subject": "nul\x00"},
        {"filename": 'a"b.pcap'},
        {"filename": "../etc/passwd"},
        {"filename": "a\r\nb.pcap"},
        {"filename": ""},
        {"message_id_domain": "proxy.example>\r\nX: y"},
        {"date": datetime.datetime(2026, 11, 22, 15, 45)},  # naive
    ],
)
def test_injection_and_bad_arguments_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(**changes)


def test_message_id_domain_may_be_any_dot_atom() -> None:
    for domain in ("proxy_1.lan", "localhost", "192.0.2.1"):
        assert parse(build(message_id_domain=domain))["Message-ID"].endswith(f"@{domain}>")
    for bad in ("", "a b", "a@b", "a..b", "a>"):
        with pytest.raises(ValueError):
            build(message_id_domain=bad)


def test_mail_subject() -> None:
    summary = make_summary(outcome=ConnectOutcome.REFUSED)
    assert mail_subject(summary, "proxy.example") == (
        "[wirecap][proxy.example] example.com:443 — connection refused"
    )
    assert "\n" not in mail_subject(summary, "bad\nhost")
