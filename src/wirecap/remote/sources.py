"""What a `wirecap merge` SOURCE argument means: a capture file or a worker URL. Pure.

A SOURCE with a scheme (``http://`` or ``https://``) is a worker URL::

    http[s]://[user[:pass]@]host[:port][/path][?filter=BPF...]

with port 8475 (the worker's default) when none is given, and path
``/capture`` when none is given (ddump used 80/443 and no path, so a bare
``http://host`` reached the wrong port or the worker's 404 page). The query
string goes to the worker unchanged. Credentials become HTTP basic auth; they
are kept out of `display` and `repr`, so nothing that is logged contains them.
``unix:PATH[?query]`` is a worker on a Unix socket (``wirecap worker --listen
unix:PATH``), asked for ``/capture`` with the query. Anything else without a
scheme is a pcap/pcapng file path (checked when opened).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from urllib.parse import parse_qs, unquote, urlsplit

from wirecap.errors import OptionError

__all__ = ["DEFAULT_PATH", "DEFAULT_PORT", "FileSource", "Source", "UrlSource", "parse_source"]

#: The worker's default listening port (ddump's README promised it, its code did not).
DEFAULT_PORT = 8475
#: The worker's capture endpoint.
DEFAULT_PATH = "/capture"
_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class FileSource:
    """A pcap or pcapng file, merged like mergecap does."""

    path: PurePath

    @property
    def display(self) -> str:
        return str(self.path)

    @property
    def label(self) -> str:
        """Short name for the output's interface names: the file name."""
        return self.path.name or str(self.path)


@dataclass(frozen=True, slots=True)
class UrlSource:
    """A worker stream; `username`/`password` are for basic auth and never displayed."""

    scheme: str
    host: str
    port: int
    path: str = DEFAULT_PATH
    #: Raw query string (without "?"), passed to the worker as given.
    query: str = ""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: A worker on a Unix socket: connect there (host and port are then unused).
    socket_path: str | None = None

    @property
    def url(self) -> str:
        """The URL to request: without credentials (they go in a header)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}:{self.port}{self.path}{query}"

    @property
    def display(self) -> str:
        """What error and status lines name the worker by: `url` (no credentials)."""
        if self.socket_path is not None:
            query = f"?{self.query}" if self.query else ""
            return f"unix:{self.socket_path}{query}"
        return self.url

    @property
    def label(self) -> str:
        """The worker's host (and port when not the default): names its interfaces."""
        if self.socket_path is not None:
            return f"unix:{PurePath(self.socket_path).name}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORT else f"{host}:{self.port}"

    @property
    def interface(self) -> str:
        """The interface the worker is asked to capture on (its default: ``any``)."""
        values = parse_qs(self.query).get("interface")
        return values[-1] if values and values[-1] else "any"


Source = FileSource | UrlSource


def parse_source(text: str) -> Source:
    """Parse one SOURCE argument.

    Raises:
        OptionError: empty, an unsupported scheme, no host, a bad port, or a
            fragment (which no worker would see). The message never contains
            the password.
    """
    if not text:
        raise OptionError("empty SOURCE: give a capture file or a worker URL")
    if text.startswith("unix:") and "://" not in text:
        path, _, query = text[len("unix:") :].partition("?")
        if not path.startswith("/"):
            raise OptionError(f"unix socket SOURCE {text!r}: give an absolute path (unix:/run/...)")
        return UrlSource(scheme="http", host="localhost", port=80, query=query, socket_path=path)
    if "://" not in text:
        return FileSource(PurePath(text))
    scheme = text.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise OptionError(f"unsupported URL scheme {scheme!r} in SOURCE: use http:// or https://")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise OptionError(f"bad worker URL {_redact(text)!r}: {exc}") from None
    if not host:
        raise OptionError(f"worker URL {_redact(text)!r} has no host")
    if parts.fragment:
        raise OptionError(f"worker URL {_redact(text)!r} has a #fragment; remove it")
    if port == 0:
        raise OptionError(f"worker URL {_redact(text)!r}: port 0 is not a port")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    return UrlSource(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORT,
        path=path,
        query=parts.query,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _redact(text: str) -> str:
    """`text` with any userinfo replaced, for error messages."""
    scheme, sep, rest = text.partition("://")
    authority_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority = rest[:authority_end]
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return scheme + sep + authority + rest[authority_end:]
