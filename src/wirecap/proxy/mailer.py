"""SHELL: mail spooled captures to their users, and delete them only once that worked.

Transports hand one finished message to the mail system:

- `SendmailTransport` runs a sendmail-compatible program (``/usr/sbin/sendmail -t -i``)
  without a shell, feeds the message on stdin, waits for it with a timeout
  (killing it when it runs out), and counts only exit status 0 as success. The
  old tool never waited (a zombie per mail), ignored the status and had deleted
  the capture before it even started the program (connectcap §4, §8 item 10).
- `SmtpTransport` speaks SMTP to a relay with `smtplib`, in a worker thread.

`Mailer` is the queue: it builds the message from the spool files, sends it,
and only after the transport said yes removes the entry from the spool (or marks
it mailed when captures are kept). A failure keeps the files and retries with
exponential back-off; `drain` gives in-flight and queued mail one bounded last
chance at shutdown, and whatever is still unsent stays in the spool for the next
start (`Spool.pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import os
import signal
import smtplib
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Final, Protocol

from wirecap.errors import CaptureWriteError, MailError, OptionError
from wirecap.proxy.mail import build_message, mail_subject
from wirecap.proxy.spool import Spool, SpooledCapture
from wirecap.proxy.summary import render_text

__all__ = [
    "DEFAULT_SEND_TIMEOUT",
    "MAX_ATTACHMENT_BYTES",
    "MAX_OUTPUT_KEPT",
    "RETRY_BASE",
    "RETRY_CAP",
    "Delivery",
    "DeliveryStatus",
    "DrainResult",
    "Mailer",
    "SendmailFailed",
    "SendmailTransport",
    "SmtpTransport",
    "Transport",
    "retry_delay",
]

#: One hand-over to sendmail or the relay; a local MTA answers in well under a
#: second, a slow one in seconds. Beyond this the attempt counts as failed.
DEFAULT_SEND_TIMEOUT: Final = 60.0
#: First retry after a failure, doubling per failure up to RETRY_CAP: an MTA
#: that is restarting is back within seconds, one that is down may be for hours,
#: and hourly attempts cost nothing while keeping delivery prompt once it is up.
RETRY_BASE: Final = 30.0
RETRY_CAP: Final = 3600.0
#: sendmail's output (stdout and stderr) read back for the error message.
MAX_OUTPUT_KEPT: Final = 4096
#: Largest capture attached to a mail. Postfix's default message_size_limit is
#: 10,240,000 bytes and base64 grows data by 4/3; larger captures are announced
#: in the text and stay in the spool (marked mailed, never deleted).
MAX_ATTACHMENT_BYTES: Final = 7 * 1024 * 1024


def retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th failed attempt (1, 2, ...)."""
    if failures < 1:
        raise ValueError("retry_delay counts failures from 1")
    # Capping the exponent first keeps 2**n small however long the MTA is down.
    factor: int = 2 ** min(failures - 1, 32)
    return min(RETRY_BASE * factor, RETRY_CAP)


# --- transports ---------------------------------------------------------------------


class Transport(Protocol):
    """Hands one message to the mail system."""

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Return once the mail system took responsibility; raise MailError otherwise."""


class SendmailFailed(MailError):
    """The sendmail program exited with a non-zero status (or a signal)."""

    def __init__(self, program: str, status: int, stderr_line: str) -> None:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        super().__init__(f"{program} {how}" + (f": {stderr_line}" if stderr_line else ""))
        #: The exit status (negative: the signal number that ended it).
        self.status = status
        #: The first non-empty line sendmail wrote (stderr or stdout; "" when none).
        self.stderr_line = stderr_line


class SendmailTransport:
    """Runs a sendmail-compatible program with the message on stdin.

    `argv` is used exactly (no shell, no PATH search, so argv[0] must be
    absolute); recipients come from the message itself, so it should contain
    ``-t`` (and ``-i``, so a line holding a single dot does not end the input
    early). The program runs in its own session: a Ctrl-C at the proxy's
    terminal does not cut a mail in half, and a timeout kills its whole group.
    """

    def __init__(self, argv: Sequence[str], *, timeout: float = DEFAULT_SEND_TIMEOUT) -> None:
        if not argv or not os.path.isabs(argv[0]):
            raise OptionError(f"the mail command needs an absolute path, not {argv[:1]!r}")
        if timeout <= 0:
            raise OptionError("the mail timeout must be positive")
        self.argv = tuple(argv)
        self.timeout = timeout

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        # Output goes to an unnamed temporary file, not a pipe: asyncio's wait()
        # returns only once every pipe is closed, and an MTA's background
        # delivery child may keep inherited stdout/stderr open long after
        # sendmail itself has exited.
        with tempfile.TemporaryFile() as output:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise MailError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from exc
            try:
                async with asyncio.timeout(self.timeout):
                    await _feed(proc, message)
                    status = await proc.wait()
            except TimeoutError:
                await _kill(proc)
                raise MailError(
                    f"{self.argv[0]} did not finish within {self.timeout:g} s and was killed"
                ) from None
            except BaseException:  # cancelled (drain ran out of time): never leave it running
                await _kill(proc)
                raise
            if status == 0:
                return
            output.seek(0)
            text = output.read(MAX_OUTPUT_KEPT).decode("utf-8", "replace")
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise SendmailFailed(self.argv[0], status, first[:200])


async def _feed(proc: asyncio.subprocess.Process, message: bytes) -> None:
    stdin = proc.stdin
    assert stdin is not None
    try:
        stdin.write(message)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        # The program stopped reading (it failed early): its exit status says why.
        pass


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        # start_new_session made the child a process-group leader: take its
        # helpers (a wrapper script's children) with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    # Reap it even if our own caller is being cancelled: no zombies.
    await asyncio.shield(proc.wait())


class SmtpTransport:
    """Sends over SMTP (RFC 5321) to `host`:`port` with `smtplib` in a worker thread.

    The envelope sender and recipients are the ones `send` gets. `timeout`
    bounds every socket operation and the whole attempt; a thread cannot be
    cancelled, so an attempt abandoned at the deadline may still finish later
    (a duplicate mail at worst, never a lost one).
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        timeout: float = DEFAULT_SEND_TIMEOUT,
        local_hostname: str | None = None,
    ) -> None:
        if not 0 < port <= 65535:
            raise OptionError(f"SMTP port {port} out of range")
        if timeout <= 0:
            raise OptionError("the mail timeout must be positive")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.local_hostname = local_hostname

    def _send_blocking(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        with smtplib.SMTP(
            self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
        ) as smtp:
            refused = smtp.sendmail(sender, list(recipients), message)
        if refused:
            # sendmail() raises only when every recipient was refused.
            raise MailError(f"SMTP server {self.host} refused recipients: {sorted(refused)}")

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.to_thread(self._send_blocking, message, sender, recipients)
        except TimeoutError:
            raise MailError(f"SMTP to {self.host}:{self.port} timed out") from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise MailError(f"SMTP server {self.host} said {exc.smtp_code} {text}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP to {self.host}:{self.port} failed: {exc}") from exc


# --- the queue ----------------------------------------------------------------------


class DeliveryStatus(enum.StrEnum):
    #: The transport accepted it; the entry was removed (or marked mailed).
    SENT = "sent"
    #: The transport failed; the entry stays spooled and is retried at `retry_at`.
    RETRY = "retry"
    #: It cannot be sent as things are (no address for the user, a file gone):
    #: kept in the spool, out of the queue until the next start.
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery attempt did; handed to `on_delivery` for the log."""

    capture: SpooledCapture
    status: DeliveryStatus
    #: Attempts so far for this entry, this one included.
    attempt: int
    #: Why it failed or was held; for SENT, a note (e.g. spool clean-up failed).
    error: str | None = None
    #: When the next attempt is due, on the mailer's clock (RETRY only).
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What `drain` managed before its deadline."""

    deliveries: tuple[Delivery, ...]
    #: Entries still queued (they stay in the spool for the next start).
    remaining: int
    timed_out: bool


@dataclass(slots=True)
class _Queued:
    capture: SpooledCapture
    due: float
    failures: int = 0


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Mailer:
    """Delivers spooled captures through a `Transport`, retrying until it works.

    `sender` is the From header (``wirecap <wirecap@proxy.example>`` or a bare
    address); its addr-spec is the envelope sender. `recipient_for(user)` gives a
    user's address for the To header, likewise (None: hold the entry). `keep`
    marks mailed entries instead of deleting them; `compress` gzips the
    attachment. `clock` (monotonic seconds) and `sleep` drive the back-off and are
    injectable for tests; `now` gives each message's Date.
    """

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        *,
        sender: str,
        recipient_for: Callable[[str | None], str | None],
        proxy_host: str,
        message_id_domain: str,
        keep: bool = False,
        compress: bool = False,
        max_attachment: int = MAX_ATTACHMENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime.datetime] = _utc_now,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._spool = spool
        self._transport = transport
        self._sender = sender
        self._envelope_from = parseaddr(sender)[1] or sender
        self._recipient_for = recipient_for
        self._proxy_host = proxy_host
        self._domain = message_id_domain
        self._keep = keep
        self._compress = compress
        self._max_attachment = max_attachment
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._on_delivery = on_delivery
        self._queue: dict[Path, _Queued] = {}
        self._busy: set[Path] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- feeding the queue --

    def submit(self, capture: SpooledCapture) -> None:
        """Queue a completed entry for delivery now (ignored if already queued)."""
        key = capture.entry.summary
        if key not in self._queue:
            self._queue[key] = _Queued(capture, self._clock())
            self._wakeup.set()

    def requeue_pending(self) -> int:
        """Queue everything the spool holds unsent (at start-up); how many were added."""
        before = len(self._queue)
        for capture in self._spool.pending():
            self.submit(capture)
        return len(self._queue) - before

    @property
    def queued(self) -> int:
        """Entries waiting for a (first or further) attempt."""
        return len(self._queue)

    def next_due(self) -> float | None:
        """When the earliest queued entry is due, on `clock`; None when empty."""
        return min((q.due for q in self._queue.values()), default=None)

    # -- delivering --

    async def deliver_due(self) -> list[Delivery]:
        """One pass: attempt every entry that is due now, oldest first."""
        now = self._clock()
        due = sorted(
            (q for q in self._queue.values() if q.due <= now),
            key=lambda q: (q.due, q.capture.entry.connection_id),
        )
        results = []
        for item in due:
            if self._closing and self._task is not None and asyncio.current_task() is self._task:
                break  # drain() takes over from here
            if item.capture.entry.summary not in self._busy:
                results.append(await self._attempt(item))
        return results

    async def _attempt(self, item: _Queued) -> Delivery:
        capture = item.capture
        key = capture.entry.summary
        self._busy.add(key)
        try:
            delivery = await self._deliver(item)
        finally:
            self._busy.discard(key)
        if delivery.status is not DeliveryStatus.RETRY:
            self._queue.pop(key, None)
        if self._on_delivery is not None:
            self._on_delivery(delivery)
        return delivery

    async def _deliver(self, item: _Queued) -> Delivery:
        capture = item.capture
        attempt = item.failures + 1
        recipient = self._recipient_for(capture.summary.user)
        if recipient is None:
            return Delivery(capture, DeliveryStatus.HELD, attempt, "no mail address for the user")
        # The envelope (RFC 5321 §4.1.2) takes the bare addr-spec; the To header
        # keeps any display name.
        envelope_to = parseaddr(recipient)[1]
        if "@" not in envelope_to:
            return Delivery(capture, DeliveryStatus.HELD, attempt, f"bad address {recipient!r}")
        try:
            message, oversized = await asyncio.to_thread(self._build, capture, recipient)
        except (OSError, ValueError) as exc:
            return Delivery(capture, DeliveryStatus.HELD, attempt, f"cannot build the mail: {exc}")
        try:
            await self._transport.send(message, self._envelope_from, [envelope_to])
        except Exception as exc:
            # MailError is the expected failure; anything else from a transport is
            # a bug, but the files are safe in the spool either way, so it is
            # retried too rather than ending the background loop.
            item.failures += 1
            item.due = self._clock() + retry_delay(item.failures)
            error = str(exc) if isinstance(exc, MailError) else f"{type(exc).__name__}: {exc}"
            return Delivery(capture, DeliveryStatus.RETRY, attempt, error, item.due)
        # Handed over: only now may the spool let go of it.
        try:
            if self._keep or oversized:
                self._spool.mark_mailed(capture.entry)
            else:
                self._spool.remove(capture.entry)
        except CaptureWriteError as exc:
            return Delivery(capture, DeliveryStatus.SENT, attempt, f"mailed, but {exc}")
        return Delivery(capture, DeliveryStatus.SENT, attempt)

    def _build(self, capture: SpooledCapture, recipient: str) -> tuple[bytes, bool]:
        """The message for `capture` (runs in a thread: it reads the capture file)."""
        summary, entry = capture.summary, capture.entry
        text = render_text(summary, self._proxy_host)
        pcap: bytes | None = None
        oversized = False
        if summary.capture_file is not None:
            size = entry.pcap.stat().st_size
            if size > self._max_attachment:
                oversized = True
                text += (
                    f"\nThe capture ({size:,} bytes) is larger than the mail limit "
                    f"({self._max_attachment:,} bytes) and is not attached; it stays "
                    f"on {self._proxy_host} as {entry.pcap}.\n"
                )
            else:
                pcap = entry.pcap.read_bytes()
        plot = entry.plot.read_bytes() if pcap is not None and entry.plot.exists() else None
        message = build_message(
            text,
            pcap,
            to=recipient,
            from_=self._sender,
            subject=mail_subject(summary, self._proxy_host),
            filename=entry.pcap.name,
            date=self._now(),
            message_id_domain=self._domain,
            compress=self._compress,
            plot_png=plot,
        )
        return message, oversized

    # -- running in the background --

    def start(self) -> None:
        """Deliver in a background task until `drain` (call from the event loop)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="wirecap-mailer")

    async def _run(self) -> None:
        while not self._closing:
            self._wakeup.clear()
            await self.deliver_due()
            if self._closing:
                return
            due = self.next_due()
            await self._wait(None if due is None else max(0.0, due - self._clock()))

    async def _wait(self, delay: float | None) -> None:
        """Until `delay` passes (never, for None) or `submit`/`drain` wakes us."""
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._wakeup.wait())}
        if delay is not None:
            waits.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def drain(self, timeout: float) -> DrainResult:
        """At shutdown: finish the send in flight, then try each queued entry once.

        Bounded by `timeout` seconds in all; a send still running at the deadline
        is cancelled (sendmail is killed). Nothing unsent is deleted: it stays in
        the spool and `requeue_pending` finds it at the next start.
        """
        self._closing = True
        self._wakeup.set()
        results: list[Delivery] = []
        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                if self._task is not None:
                    await self._task
                for item in sorted(self._queue.values(), key=lambda q: q.due):
                    if item.capture.entry.summary not in self._busy:
                        results.append(await self._attempt(item))
        except TimeoutError:
            timed_out = True
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return DrainResult(tuple(results), len(self._queue), timed_out)
