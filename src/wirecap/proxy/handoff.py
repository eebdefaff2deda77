"""Where a finished connection goes: its summary into the spool, then into the mail queue."""

from __future__ import annotations

from wirecap.proxy.mailer import Mailer
from wirecap.proxy.spool import Spool, SpoolEntry
from wirecap.proxy.summary import ConnectionSummary

__all__ = ["SpoolSink"]


class SpoolSink:
    """The server's `SummarySink`: reserve spool names, complete entries, queue mail."""

    def __init__(self, spool: Spool, mailer: Mailer | None) -> None:
        self.spool = spool
        self.mailer = mailer

    def reserve(self, username: str, host: str, port: int, now_ns: int) -> SpoolEntry:
        return self.spool.reserve(username, host, port, now_ns)

    async def finished(self, slot: SpoolEntry, summary: ConnectionSummary) -> None:
        captured = self.spool.complete(slot, summary)
        if self.mailer is not None:
            self.mailer.submit(captured)
