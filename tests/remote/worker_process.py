"""`wirecap` commands run as real subprocesses by the worker tests, their stderr in a file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

__all__ = ["LoggedProcess", "wirecap_argv"]


def wirecap_argv() -> list[str]:
    """The virtualenv's `wirecap` console script (or ``python -m wirecap`` without one)."""
    script = Path(sys.executable).with_name("wirecap")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wirecap"]


class LoggedProcess:
    """A subprocess whose stderr goes to `log`, which the test polls."""

    def __init__(self, argv: list[str], log: Path, *, umask: int = -1) -> None:
        self.log = log
        self._stderr: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self._stderr, umask=umask
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, count: int = 1, timeout: float = 15.0) -> None:
        """Until `needle` is in the log `count` times; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} x{count} in: {self.text()}"
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode
