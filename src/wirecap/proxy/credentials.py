"""The proxy's accounts: the ccpasswd file, and the lookup plug point the verifier uses.

The file format is connectcap's, so existing files keep working::

    # comment
    username:password:email

The username runs to the first ``:``, the email starts after the last ``:``, so a
password may contain colons. Passwords are plaintext: digest authentication
(RFC 7616 §3.4.2) needs ``H(username ":" realm ":" password)`` for any realm and
algorithm, which a stored hash of one kind cannot give.

Where connectcap was silent or lax, this parser says why it skipped a line and
is stricter about what ends up in a mail header: the email must be a single
plain address (no spaces, commas, CR/LF, so it cannot inject a header or add a
recipient). Warnings name the line and the user, never the password.

`parse_ccpasswd` is pure. `CcpasswdFile` is the thin shell: it refuses a file
that group or others may read or that someone else owns (connectcap checked only
the mode), and reloads it on demand (SIGHUP) or when it changed on disk, keeping
the old accounts when the new file is bad.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wirecap.errors import CredentialsFileError

__all__ = [
    "MAX_CCPASSWD_BYTES",
    "MIN_PASSWORD_LENGTH",
    "Account",
    "CcpasswdFile",
    "CredentialLookup",
    "InMemoryCredentials",
    "ReloadOutcome",
    "parse_ccpasswd",
]

#: connectcap's PASSWORD_MIN. Digest responses travel in clear, so anyone who sees
#: one can run an offline dictionary attack; only a long password resists it.
MIN_PASSWORD_LENGTH = 16

#: A line is about 100 bytes, so this is some 150 000 accounts: far more than a
#: diagnostics proxy has, and a bound on memory if the option names a wrong file.
MAX_CCPASSWD_BYTES = 16 * 1024 * 1024

# One plain address: RFC 5322 §3.2.3 atext dot-atoms before the @, an ASCII host
# name after it. Deliberately narrower than RFC 5322: no quoted local parts, no
# display names, nothing that a mail header could read as a second recipient.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# C0 controls, DEL and C1 controls: nothing a log line or mail subject should carry.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# connectcap splits on CR or LF; str.splitlines would also split on FF, VT, U+2028…,
# which may legitimately occur inside a password.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Account:
    """One user of the proxy. The password is left out of repr so it never lands in a log."""

    username: str
    password: str = field(repr=False)
    email: str


class CredentialLookup(Protocol):
    """Where the digest verifier finds accounts.

    `lookup` answers a plain username. `accounts` and `generation` let the verifier
    build, once per change, the index of H(username ":" realm) values it needs for
    answers with ``userhash=true`` (RFC 7616 §3.4.4): `generation` changes
    whenever the set of accounts does, so a cached index is rebuilt only then.
    """

    @property
    def generation(self) -> int: ...

    def lookup(self, username: str) -> Account | None: ...

    def accounts(self) -> Iterable[Account]: ...


class InMemoryCredentials:
    """A `CredentialLookup` over accounts held in memory (tests, embedding)."""

    __slots__ = ("_accounts", "_generation")

    def __init__(self, accounts: Iterable[Account] = ()) -> None:
        self._accounts: dict[str, Account] = {}
        self._generation = 0
        self.replace(accounts)

    @property
    def generation(self) -> int:
        return self._generation

    def lookup(self, username: str) -> Account | None:
        return self._accounts.get(username)

    def accounts(self) -> Iterable[Account]:
        return self._accounts.values()

    def replace(self, accounts: Iterable[Account]) -> None:
        """Swap in a new set of accounts (a later duplicate username wins)."""
        # A new dict rather than mutation: an iteration already handed out stays valid.
        self._accounts = {account.username: account for account in accounts}
        self._generation += 1


def parse_ccpasswd(text: str) -> tuple[dict[str, Account], list[str]]:
    """Parse ccpasswd text into accounts by username, and warnings for skipped lines.

    Warnings start with ``line N:`` and never quote a password or a whole line
    (a malformed line may well be mostly password).
    """
    accounts: dict[str, Account] = {}
    defined_on: dict[str, int] = {}
    warnings: list[str] = []
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parsed = _parse_line(line)
        if isinstance(parsed, str):
            warnings.append(f"line {number}: {parsed}, skipped")
            continue
        if parsed.username in accounts:
            warnings.append(
                f"line {number}: user {parsed.username!r} was already defined on line "
                f"{defined_on[parsed.username]}; this later entry wins"
            )
            # Move the user to the end, as if the earlier line had not been there.
            del accounts[parsed.username]
        accounts[parsed.username] = parsed
        defined_on[parsed.username] = number
    return accounts, warnings


def _parse_line(line: str) -> Account | str:
    """One ``username:password:email`` line: its account, or why it is unusable."""
    first = line.find(":")
    last = line.rfind(":")
    if first == last:  # also covers "no colon at all" (both -1)
        return "not of the form username:password:email"
    username, password, email = line[:first], line[first + 1 : last], line[last + 1 :]
    if not username:
        return "empty username"
    if _CONTROL.search(username):
        return "username contains control characters"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"user {username!r}: password shorter than {MIN_PASSWORD_LENGTH} characters"
    if not _EMAIL.fullmatch(email):
        # The address is not quoted back: it may be a password typed in the wrong place.
        return f"user {username!r}: email is not a single plain address (user@host)"
    return Account(username=username, password=password, email=email)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did.

    ``reloaded`` is True when new accounts are now in effect. ``problem`` says why
    the file on disk was not taken (the previous accounts stay in effect).
    ``warnings`` are the skipped lines of the file that was taken.
    """

    reloaded: bool
    problem: str | None = None
    warnings: tuple[str, ...] = ()


# What identifies one version of the file on disk without reading it.
_Signature = tuple[int, int, int, int, int]


class CcpasswdFile:
    """The ccpasswd file as a `CredentialLookup`.

    Construction loads the file and raises `CredentialsFileError` (exit 2) if it
    cannot be used. Later reloads never raise: a bad new file leaves the previous
    accounts in effect and says why in the returned `ReloadOutcome`.
    """

    __slots__ = ("_accounts", "_generation", "_path", "_signature", "warnings")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        accounts, warnings, signature = _load(self._path)
        self._accounts = accounts
        # None after a refused reload when the file has gone: any file showing up
        # later counts as a change.
        self._signature: _Signature | None = signature
        self._generation = 1
        #: Skipped lines of the file currently in effect.
        self.warnings: tuple[str, ...] = tuple(warnings)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def generation(self) -> int:
        """1 after construction, bumped by every successful reload."""
        return self._generation

    def lookup(self, username: str) -> Account | None:
        return self._accounts.get(username)

    def accounts(self) -> Iterable[Account]:
        # Safe to hand out: a reload replaces the dict, never mutates it.
        return self._accounts.values()

    def reload(self) -> ReloadOutcome:
        """Load the file again, changed or not (SIGHUP)."""
        try:
            accounts, warnings, signature = _load(self._path)
        except CredentialsFileError as error:
            # Remember what was refused so reload_if_changed does not retry and
            # repeat the same complaint on every request until the file changes.
            self._signature = _stat_signature(self._path)
            return ReloadOutcome(reloaded=False, problem=str(error))
        self._accounts = accounts
        self._signature = signature
        self._generation += 1
        self.warnings = tuple(warnings)
        return ReloadOutcome(reloaded=True, warnings=self.warnings)

    def reload_if_changed(self) -> ReloadOutcome:
        """Reload when inode, size, mtime or ctime changed since the last attempt (one stat)."""
        if _stat_signature(self._path) == self._signature:
            return ReloadOutcome(reloaded=False)
        return self.reload()


def _stat_signature(path: Path) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _signature_of(st)


def _signature_of(st: os.stat_result) -> _Signature:
    # The inode catches an editor's write-and-rename even when size and mtime
    # match; ctime catches chmod and chown, so fixing a refused file's mode is
    # noticed too.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _load(path: Path) -> tuple[dict[str, Account], list[str], _Signature]:
    """Read and parse the file; CredentialsFileError if it must not be used."""
    try:
        # O_NONBLOCK: a FIFO put in the file's place must not hang the proxy; it
        # is refused below as not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise CredentialsFileError(f"cannot open password file {path}: {error.strerror}") from None
    try:
        # fstat the opened file, not the path: no window to swap the file between
        # the permission check and the read.
        st = os.fstat(fd)
        _check_safe(path, st)
        data = _read_all(path, fd)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CredentialsFileError(
            f"password file {path} is not UTF-8 (byte {error.start})"
        ) from None
    accounts, warnings = parse_ccpasswd(text)
    return accounts, warnings, _signature_of(st)


def _read_all(path: Path, fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError as error:
            raise CredentialsFileError(
                f"cannot read password file {path}: {error.strerror}"
            ) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_CCPASSWD_BYTES:
            raise CredentialsFileError(
                f"password file {path} is larger than {MAX_CCPASSWD_BYTES} bytes; "
                "is it the right file?"
            )
        chunks.append(chunk)


def _check_safe(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise CredentialsFileError(f"password file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        # Plaintext passwords: anyone who can read the file can be any user.
        raise CredentialsFileError(
            f"password file {path} is accessible to group or others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        # Whoever owns the file can chmod it and add themselves (connectcap never
        # checked the owner).
        raise CredentialsFileError(
            f"password file {path} is owned by uid {st.st_uid}, "
            f"not by this user (uid {euid}) or root"
        )
