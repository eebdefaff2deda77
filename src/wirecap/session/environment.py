"""SSLKEYLOGFILE for the duration of a block: set it, and put back exactly what was there.

Python's `ssl.create_default_context()` (and urllib3's, requests', httpx's own
context factories) read ``SSLKEYLOGFILE`` when a context is *created* and then
append every TLS secret of that context to the file (NSS key log format). So the
variable has to be set before the block's code builds its contexts, and taken
away afterwards, or every later context in the process (and every child process,
which inherits the environment) keeps writing secrets to a capture's file.

Pure: the environment is passed in as a mapping.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

__all__ = ["KEYLOG_VARIABLE", "SavedVariable", "restore_variable", "set_variable"]

KEYLOG_VARIABLE = "SSLKEYLOGFILE"


@dataclass(frozen=True, slots=True)
class SavedVariable:
    """An environment variable as it was before a block set it: its value or its absence."""

    name: str
    #: None when the variable was not set at all (which is not the same as empty).
    previous: str | None


def set_variable(environ: MutableMapping[str, str], name: str, value: str) -> SavedVariable:
    """Set `name` to `value`; return what restores it."""
    saved = SavedVariable(name, environ.get(name))
    environ[name] = value
    return saved


def restore_variable(environ: MutableMapping[str, str], saved: SavedVariable) -> None:
    """Put the variable back as it was: the old value, or no variable at all."""
    if saved.previous is None:
        environ.pop(saved.name, None)
    else:
        environ[saved.name] = saved.previous
