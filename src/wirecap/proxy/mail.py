"""The mail that carries one capture to its user: built here, sent by `mailer` (pure).

One RFC 5322 message: From, To, Date, Message-ID (the old tool sent none of these
and left them to the MTA), a subject saying what happened, the summary as a
text/plain part and the capture as an ``application/vnd.tcpdump.pcap``
attachment (RFC 2046 §4.5 application type; RFC 2183 ``Content-Disposition:
attachment`` with a *quoted* filename), base64. The stdlib `email` package with
`email.policy.SMTP` writes it with CRLF line ends and encodes a non-ASCII
subject as an RFC 2047 encoded-word.

Every text that ends up in a header is checked for CR and LF first: an address or
subject with a line break would let its sender add headers (header injection).
"""

from __future__ import annotations

import datetime
import gzip
import re
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Final

from wirecap.proxy.summary import ConnectionSummary, headline

__all__ = ["PCAP_SUBTYPE", "build_message", "mail_subject"]

#: The IANA media type of a classic pcap file (application/vnd.tcpdump.pcap).
PCAP_SUBTYPE: Final = "vnd.tcpdump.pcap"
#: Attachment names we write: printable ASCII without path separators or quotes,
#: which every mail client shows as typed.
_FILENAME = re.compile(r"[A-Za-z0-9._+-][A-Za-z0-9 ._+-]{0,199}")
#   id-right = dot-atom-text (RFC 5322 §3.6.4), which allows more than host names
#   (an underscore, for one), but no "@", "<", ">", space or line break.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOMAIN = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


def mail_subject(summary: ConnectionSummary, proxy_host: str) -> str:
    """``[wirecap][proxy.example] example.com:443 — connection refused``."""
    host = "".join(c for c in proxy_host if c.isprintable())
    return f"[wirecap][{host}] {headline(summary)}"


def _header_text(name: str, value: str) -> str:
    # RFC 5322 §2.2: a header field ends at CRLF; a bare CR or LF inside a value
    # is where an injected field would start. NUL is not allowed anywhere (§3.5).
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name} must not contain CR, LF or NUL: {value!r}")
    return value


def build_message(
    summary_text: str,
    pcap_bytes: bytes | None,
    *,
    to: str,
    from_: str,
    subject: str,
    filename: str,
    date: datetime.datetime,
    message_id_domain: str,
    compress: bool = False,
    plot_png: bytes | None = None,
) -> bytes:
    """The complete message as bytes with CRLF line ends, ready for sendmail or SMTP.

    `pcap_bytes` None makes a plain text message (no capture, e.g. a DNS failure).
    `compress` attaches the capture gzipped as ``FILENAME.gz`` (application/gzip,
    RFC 6713): Wireshark opens it as is, and mail size limits are met longer.
    `date` must be timezone-aware. `plot_png`, the analyzer's time-sequence graph,
    is attached as ``FILENAME-STEM.png`` after the capture. Bad arguments raise
    ValueError.
    """
    for name, value in (("To", to), ("From", from_), ("Subject", subject)):
        _header_text(name, value)
    if not _FILENAME.fullmatch(filename):
        raise ValueError(f"attachment filename {filename!r} is not a plain file name")
    if not _DOMAIN.fullmatch(message_id_domain):
        raise ValueError(f"Message-ID domain {message_id_domain!r} is not dot-atom text")
    if date.tzinfo is None:
        raise ValueError("the Date needs a time zone (RFC 5322 §3.3 zone is required)")

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid(domain=message_id_domain)
    # RFC 3834 §5: machine-generated; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the summary readable and 7-bit: no dependence on
    # the relay offering 8BITMIME (RFC 6152) for a non-ASCII user name.
    msg.set_content(summary_text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if pcap_bytes is None:
        return msg.as_bytes()

    if compress:
        data, maintype, subtype = gzip.compress(pcap_bytes, mtime=0), "application", "gzip"
        filename += ".gz"
    else:
        data, maintype, subtype = pcap_bytes, "application", PCAP_SUBTYPE
    attachment = EmailMessage(policy=policy.SMTP)
    # `filename` goes into Content-Disposition (RFC 2183 §2.3), which the email
    # package always writes quoted; `name` on Content-Type is for older clients.
    attachment.set_content(
        data,
        maintype=maintype,
        subtype=subtype,
        cte="base64",
        disposition="attachment",
        filename=filename,
        params={"name": filename},
    )
    # EmailMessage.set_content adds MIME-Version, which belongs on the top level
    # only (RFC 2045 §4).
    del attachment["MIME-Version"]
    msg.make_mixed()
    msg.attach(attachment)
    if plot_png is not None:
        plot = EmailMessage(policy=policy.SMTP)
        plot_name = filename.rsplit(".", 1)[0] + ".png"
        plot.set_content(
            plot_png,
            maintype="image",
            subtype="png",
            cte="base64",
            disposition="attachment",
            filename=plot_name,
        )
        del plot["MIME-Version"]
        msg.attach(plot)
    return msg.as_bytes()
