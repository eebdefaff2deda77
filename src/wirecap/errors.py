"""The one error tree of wirecap, split by who is at fault.

::

    WirecapError
    ├── UsageError               the caller asked for something impossible (exit 2)
    │   ├── BadFilterError       BPF expression libpcap cannot compile
    │   ├── NoSuchInterfaceError interface name the system does not know
    │   ├── OptionError          an option value out of range or malformed
    │   └── CredentialsFileError password file unsafe, unreadable or not UTF-8
    ├── SystemSetupError         the machine lacks something (exit 3)
    │   ├── LibpcapMissingError  libpcap shared library not found
    │   ├── PermissionDeniedError capture needs CAP_NET_RAW / root
    │   ├── EnforcementError     nftables cannot be reached or refused a command
    │   └── ExtraMissingError    an optional dependency (a pip extra) is missing or too old
    ├── CaptureError             a running capture failed (exit 4)
    │   └── CaptureWriteError    the output could not be written (disk full, I/O error)
    ├── MailError                a message could not be handed to the mail system
    └── DecodeError              input bytes are not what they claim (exit 5)
        ├── TruncatedError       input ended inside a record
        ├── FormatError          bad magic, bad block, impossible field
        └── LimitExceededError   a field exceeds a named MAX_* limit

Expected outcomes (a wrong password, "need more data") are results, not exceptions.
Front ends translate these to exit codes or HTTP statuses at their boundary only.
"""

from __future__ import annotations

__all__ = [
    "BadFilterError",
    "CaptureError",
    "CaptureWriteError",
    "CredentialsFileError",
    "DecodeError",
    "EnforcementError",
    "ExtraMissingError",
    "FormatError",
    "LibpcapMissingError",
    "LimitExceededError",
    "MailError",
    "NoSuchInterfaceError",
    "OptionError",
    "PermissionDeniedError",
    "SystemSetupError",
    "TruncatedError",
    "UsageError",
    "WirecapError",
]


class WirecapError(Exception):
    """Base of every error wirecap raises on purpose."""

    #: Process exit status a command-line front end uses for this error.
    exit_code: int = 1


class UsageError(WirecapError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class BadFilterError(UsageError):
    """A BPF filter expression libpcap cannot compile; the message is libpcap's."""


class NoSuchInterfaceError(UsageError):
    """The named capture interface does not exist."""


class OptionError(UsageError):
    """An option value is malformed or out of its allowed range."""


class CredentialsFileError(UsageError):
    """The password file (ccpasswd) cannot be used: missing, unreadable, not UTF-8,
    not a regular file, readable by group or others, or owned by someone else."""


class SystemSetupError(WirecapError):
    """The machine lacks something wirecap needs (a library, a privilege)."""

    exit_code = 3


class LibpcapMissingError(SystemSetupError):
    """The libpcap shared library could not be loaded."""


class PermissionDeniedError(SystemSetupError):
    """Capturing needs CAP_NET_RAW and CAP_NET_ADMIN (usually: run as root)."""


class EnforcementError(SystemSetupError):
    """nftables (libnftables or the nft command) is missing or refused a command;
    the message carries nft's own text."""


class ExtraMissingError(SystemSetupError):
    """An optional dependency is missing or too old; the message names the pip extra."""


class CaptureError(WirecapError):
    """A capture failed while running."""

    exit_code = 4


class CaptureWriteError(CaptureError):
    """Captured packets could not be written (full disk, I/O error)."""


class MailError(WirecapError):
    """Sendmail or the SMTP server refused, failed or timed out; the capture stays spooled."""


class DecodeError(WirecapError):
    """Input bytes do not decode as the format they claim to be."""

    exit_code = 5


class TruncatedError(DecodeError):
    """The input ended in the middle of a header or record."""


class FormatError(DecodeError):
    """The input is malformed: bad magic, bad block structure, impossible field."""


class LimitExceededError(DecodeError):
    """A length field exceeds a named limit; refusing it avoids a memory blow-up."""
