"""Where captures wait until they are mailed: names (pure) and files (a small shell).

Layout, one directory per user::

    SPOOL/.next-id                                   next connection id (decimal)
    SPOOL/<user>/<stamp>-<id>-<host>-<port>.pcap     the capture
    SPOOL/<user>/<stamp>-<id>-<host>-<port>.json     its summary: written last
    SPOOL/<user>/<stamp>-<id>-<host>-<port>.mailed   only with keep: already mailed

``<stamp>`` is the UTC time of the reservation (``20261122T154500Z``), ``<id>`` a
counter that survives restarts, ``<host>`` and ``<user>`` are sanitised to file-name
safe characters. Directories are 0700 and files 0600 whatever the umask.

The life of one entry, and who does what:

1. `Spool.reserve` picks the id and creates ``STEM.pcap.part`` empty, with
   O_EXCL: the name is taken, nothing existing is ever overwritten.
2. The recorder writes the capture to ``entry.pcap_part`` and renames it to
   ``entry.pcap`` when it closes (core's ``PcapFileOutput(entry.pcap)`` does
   exactly that; it truncates the empty reservation and keeps its 0600).
3. `Spool.complete` writes the summary JSON (``.json.part``, then linked to
   ``.json``). The JSON's presence is what makes an entry complete.
4. The mailer sends it and then calls `Spool.remove` (JSON first, so a crash in
   between leaves a capture without a summary, which is reported, never lost) or,
   when captures are kept, `Spool.mark_mailed`.

`*.part` files found by a scan are reported and left alone: at start-up they are
the remains of a crash and may hold the only copy of a capture.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from wirecap.errors import CaptureWriteError, DecodeError
from wirecap.proxy.summary import ConnectionSummary, from_json, to_json

__all__ = [
    "ANONYMOUS_DIR",
    "ID_FILE",
    "MAX_HOST_COMPONENT",
    "MAX_USER_COMPONENT",
    "Spool",
    "SpoolEntry",
    "SpoolScan",
    "SpooledCapture",
    "entry_stem",
    "sanitise_host",
    "sanitise_user",
    "utc_stamp",
]

#: The counter file in the spool root; a dot-name so no user directory can be it.
ID_FILE: Final = ".next-id"
#: Directory for connections without an authenticated user.
ANONYMOUS_DIR: Final = "_anonymous"
#: Longest host part of a file name: a DNS name can be 253 characters, and the
#: whole name (stamp, id, host, port, ".pcap.part") must stay under NAME_MAX 255.
MAX_HOST_COMPONENT: Final = 64
#: Longest user directory name before its disambiguating hash suffix.
MAX_USER_COMPONENT: Final = 64
#: Attempts to find a free name when a reservation collides (another process on
#: the same spool, or a counter file restored from a backup).
MAX_RESERVE_ATTEMPTS: Final = 1000

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_STEM = re.compile(r"(?P<stamp>[0-9]{8}T[0-9]{6}Z)-(?P<id>[0-9]{1,20})-(?P<rest>.+)")
_HOST_UNSAFE = re.compile(r"[^a-z0-9.-]")
_USER_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DOTS = re.compile(r"\.{2,}")


# --- names (pure) -------------------------------------------------------------------


def _no_dot_runs(name: str) -> str:
    # No "..", no leading dot: a component is never a parent link or a hidden file.
    name = _DOTS.sub(lambda m: "_" * len(m[0]), name)
    return "_" + name[1:] if name.startswith(".") else name


def sanitise_host(host: str) -> str:
    """A host as a file-name part: ``[a-z0-9.-]``, others (IPv6 ':', '%') as '_'."""
    safe = _no_dot_runs(_HOST_UNSAFE.sub("_", host.lower()))[:MAX_HOST_COMPONENT]
    return safe or "_"


def sanitise_user(user: str | None) -> str:
    """A user name as a directory name: ``[A-Za-z0-9._-]``, never hidden or ``..``.

    A name that had to be changed gets a short hash of the original appended, so
    two users whose names differ only in unsafe characters keep separate
    directories.
    """
    if user is None:
        return ANONYMOUS_DIR
    safe = _no_dot_runs(_USER_UNSAFE.sub("_", user))[:MAX_USER_COMPONENT]
    if safe != user or not safe:
        digest = hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe}-{digest}" if safe else f"_-{digest}"
    return safe


def utc_stamp(now_ns: int) -> str:
    """``20261122T154500Z``: ISO 8601 basic format, UTC, sorts as it reads."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ns // 1_000_000_000))


def entry_stem(connection_id: int, host: str, port: int, now_ns: int) -> str:
    """The common name of an entry's files, without extension."""
    return f"{utc_stamp(now_ns)}-{connection_id}-{sanitise_host(host)}-{port}"


# --- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One reserved spool name; the paths of its files follow from it."""

    directory: Path
    stem: str
    connection_id: int

    @property
    def pcap(self) -> Path:
        """The finished capture (the recorder renames `pcap_part` to this)."""
        return self.directory / f"{self.stem}.pcap"

    @property
    def pcap_part(self) -> Path:
        """The capture while it is written; reserved (empty) by `Spool.reserve`."""
        return self.directory / f"{self.stem}.pcap.part"

    @property
    def plot(self) -> Path:
        """The time-sequence graph of the capture (written when it was analysed)."""
        return self.directory / f"{self.stem}.png"

    @property
    def summary(self) -> Path:
        """The summary JSON; its presence means the entry is complete."""
        return self.directory / f"{self.stem}.json"

    @property
    def mailed_marker(self) -> Path:
        """Exists once the entry was mailed and kept."""
        return self.directory / f"{self.stem}.mailed"


@dataclass(frozen=True, slots=True)
class SpooledCapture:
    """A complete entry: its summary is written; the capture exists if it names one."""

    entry: SpoolEntry
    summary: ConnectionSummary


@dataclass(frozen=True, slots=True)
class SpoolScan:
    """What a look through the spool found."""

    #: Complete entries not mailed yet, oldest id first.
    pending: tuple[SpooledCapture, ...]
    #: ``*.part`` files (being written now, or left by a crash) and captures
    #: without a summary. Reported, never touched.
    incomplete: tuple[Path, ...]
    #: Summaries that cannot be used, with why (bad JSON, capture file missing).
    unreadable: tuple[tuple[Path, str], ...]


# --- files (shell) ------------------------------------------------------------------


def _make_dir(path: Path, *, follow_symlink: bool = False) -> None:
    try:
        path.mkdir(mode=_DIR_MODE)
    except FileExistsError:
        if path.is_symlink() and not follow_symlink:
            # Only the root may be a link (an admin's choice); a linked user
            # directory would put captures wherever the link points.
            raise CaptureWriteError(f"{path} is a symbolic link") from None
        if not path.is_dir():
            raise CaptureWriteError(f"{path} exists and is not a directory") from None
        return
    os.chmod(path, _DIR_MODE)  # mkdir's mode is filtered by the umask


def _create_exclusive(path: Path, data: bytes = b"", *, sync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)  # so is open's
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _publish(part: Path, final: Path) -> None:
    """Rename `part` to `final` without ever replacing an existing `final`."""
    try:
        os.link(part, final)  # fails with EEXIST instead of overwriting
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # A file system without hard links: check, then rename (one writer per spool).
        if final.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
        os.rename(part, final)
        return
    part.unlink()


class Spool:
    """The spool directory; one `Spool` (one proxy process) per directory.

    Creating it creates the root (0700) if missing, and scans it: `recovered`
    says what a previous run left (pending mail, stale ``.part`` files).
    File-system failures raise `CaptureWriteError`.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            _make_dir(self.root, follow_symlink=True)
            self._next_id = max(self._read_counter(), self._max_id_on_disk() + 1, 1)
            self.recovered: SpoolScan = self.scan()
        except OSError as exc:
            raise CaptureWriteError(f"spool {self.root}: {exc}") from exc

    # -- ids --

    def _read_counter(self) -> int:
        try:
            text = (self.root / ID_FILE).read_text("ascii").strip()
        except FileNotFoundError:
            return 1
        except (OSError, UnicodeDecodeError):
            return 1  # the scan below still prevents reuse of anything on disk
        return int(text) if re.fullmatch(r"[0-9]{1,20}", text) else 1

    def _max_id_on_disk(self) -> int:
        highest = 0
        for directory in self._user_dirs():
            with os.scandir(directory) as it:
                for item in it:
                    match = _STEM.match(item.name)
                    if match:
                        highest = max(highest, int(match["id"]))
        return highest

    def _write_counter(self) -> None:
        # Written fresh and renamed over the old one, so a crash leaves either the
        # old or the new value, never a torn one.
        tmp = self.root / f"{ID_FILE}.tmp"
        tmp.unlink(missing_ok=True)
        _create_exclusive(tmp, f"{self._next_id}\n".encode("ascii"))
        os.replace(tmp, self.root / ID_FILE)

    def _user_dirs(self) -> list[Path]:
        with os.scandir(self.root) as it:
            return sorted(
                Path(item.path)
                for item in it
                if not item.name.startswith(".") and item.is_dir(follow_symlinks=False)
            )

    # -- the life of an entry --

    def reserve(self, user: str | None, host: str, port: int, now_ns: int) -> SpoolEntry:
        """Take a fresh id and name for a connection to `host`:`port` at `now_ns`.

        ``entry.pcap_part`` exists (empty, 0600) when this returns.
        """
        try:
            directory = self.root / sanitise_user(user)
            _make_dir(directory)
            for _ in range(MAX_RESERVE_ATTEMPTS):
                connection_id = self._next_id
                self._next_id += 1
                entry = SpoolEntry(
                    directory, entry_stem(connection_id, host, port, now_ns), connection_id
                )
                if entry.pcap.exists() or entry.summary.exists():
                    continue
                try:
                    _create_exclusive(entry.pcap_part)
                except FileExistsError:
                    continue
                self._write_counter()
                return entry
        except OSError as exc:
            raise CaptureWriteError(f"spool {self.root}: {exc}") from exc
        raise CaptureWriteError(f"spool {self.root}: no free name after {MAX_RESERVE_ATTEMPTS}")

    def complete(self, entry: SpoolEntry, summary: ConnectionSummary) -> SpooledCapture:
        """Write the summary, making the entry complete; call after the recorder closed.

        The spool owns two fields of the stored summary: `connection_id` becomes
        the entry's, `capture_file` the capture's name if a capture exists, else
        None. An empty reservation (no capture was ever started) is removed; a
        capture still named ``.part`` (a recorder that failed before renaming) is
        renamed, so whatever was captured is mailed.
        """
        try:
            if entry.pcap_part.exists() and not entry.pcap.exists():
                if entry.pcap_part.stat().st_size == 0:
                    entry.pcap_part.unlink()
                else:
                    _publish(entry.pcap_part, entry.pcap)
            stored = dataclasses.replace(
                summary,
                connection_id=entry.connection_id,
                capture_file=entry.pcap.name if entry.pcap.exists() else None,
            )
            part = entry.summary.with_name(entry.summary.name + ".part")
            _create_exclusive(part, to_json(stored).encode("ascii"), sync=True)
            try:
                _publish(part, entry.summary)
            except OSError:
                part.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CaptureWriteError(f"spool {entry.summary}: {exc}") from exc
        return SpooledCapture(entry, stored)

    def mark_mailed(self, entry: SpoolEntry) -> None:
        """Record that `entry` was mailed, keeping its files (keep mode)."""
        try:
            _create_exclusive(entry.mailed_marker)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CaptureWriteError(f"spool {entry.mailed_marker}: {exc}") from exc

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a mailed entry. The summary goes first: it is the commit marker."""
        try:
            for path in (entry.summary, entry.pcap, entry.plot, entry.mailed_marker):
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise CaptureWriteError(f"spool {entry.summary}: {exc}") from exc

    # -- looking --

    def pending(self) -> list[SpooledCapture]:
        """Complete entries not yet mailed, oldest id first."""
        return list(self.scan().pending)

    def scan(self) -> SpoolScan:
        """Everything in the spool, sorted by kind; reads only, changes nothing."""
        pending: list[SpooledCapture] = []
        incomplete: list[Path] = []
        unreadable: list[tuple[Path, str]] = []
        for directory in self._user_dirs():
            with os.scandir(directory) as it:
                names = {item.name for item in it if item.is_file(follow_symlinks=False)}
            for name in sorted(names):
                path = directory / name
                if name.endswith(".part"):
                    incomplete.append(path)
                elif name.endswith(".pcap") and name[: -len(".pcap")] + ".json" not in names:
                    incomplete.append(path)  # complete() not run yet, or crashed
                elif name.endswith(".json"):
                    stem = name[: -len(".json")]
                    match = _STEM.fullmatch(stem)
                    if match is None:
                        unreadable.append((path, "not a spool file name"))
                    elif stem + ".mailed" not in names:
                        found = self._load(SpoolEntry(directory, stem, int(match["id"])), names)
                        if isinstance(found, str):
                            unreadable.append((path, found))
                        else:
                            pending.append(found)
        pending.sort(key=lambda c: c.entry.connection_id)
        return SpoolScan(tuple(pending), tuple(incomplete), tuple(unreadable))

    @staticmethod
    def _load(entry: SpoolEntry, names: set[str]) -> SpooledCapture | str:
        try:
            summary = from_json(entry.summary.read_bytes())
        except (OSError, DecodeError) as exc:
            return str(exc)
        if summary.capture_file is not None and summary.capture_file != entry.pcap.name:
            return f"summary names capture {summary.capture_file!r}, not {entry.pcap.name!r}"
        if summary.capture_file is not None and entry.pcap.name not in names:
            return f"capture {entry.pcap.name} is missing"
        return SpooledCapture(entry, summary)
