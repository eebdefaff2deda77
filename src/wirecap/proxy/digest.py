"""HTTP Digest access authentication (RFC 7616), server side, for the CONNECT proxy.

Pure: header text, method and request-target in, a frozen result out. The clock
and randomness are passed in; nothing here touches a socket or a file.

What the proxy offers and accepts
---------------------------------
- One ``Proxy-Authenticate`` challenge per configured algorithm, in the configured
  order (RFC 7235 §4.3; clients take the first they support, curl 7.88 even the
  first one only). The default is SHA-256 then MD5. MD5, SHA-256 and SHA-512-256
  and their ``-sess`` variants are known; an answer must use one of the
  *configured* names (case-insensitive; no ``algorithm`` means MD5, RFC 7616 §3.3).
  SHA-512-256 needs OpenSSL's SHA-512/256; `SUPPORTED_ALGORITHMS` lists only what
  this interpreter's hashlib really has.
- ``qop=auth`` only. ``auth-int`` is refused rather than computed over an empty
  body: we never offer it, and a client that answers it violated the challenge.
  RFC 2069 answers (no qop) are refused: they have no cnonce and no nc, so
  nothing stops a replay.
- ``userhash=true`` answers (RFC 7616 §3.4.4) are matched through an index of
  H(username ":" realm) per hash, rebuilt only when the credential store's
  generation changes; ``userhash=false`` answers are accepted whatever we
  advertised (no Python client hashes the username). ``username*`` (RFC 8187
  ext-value, UTF-8 or ISO-8859-1) is accepted when userhash is false.
- ``uri`` must equal the CONNECT request-target exactly (RFC 7616 §3.4.6).
- ``Proxy-Authentication-Info`` (RFC 7616 §3.5) carries rspauth and a nextnonce.

Nonces
------
A nonce is base64url(serial ‖ issued-at µs ‖ MAC), the MAC being HMAC-SHA-256
over serial ‖ issued-at ‖ opaque under a key derived from the configured secret
*and* random bytes drawn when the verifier is made. So the proxy needs no table
of issued nonces, a nonce cannot be forged, and a nonce outlives neither its
lifetime nor the verifier that issued it: after a restart every old nonce is
invalid, so the replay tracking below can never have been lost for a nonce that
still verifies (connectcap's nonces had no secret and no expiry, and its replay
state vanished on restart).

Each nonce's nonce-counts are tracked once it has been used with a correct
password: the highest nc seen and a bitmap of the `NC_REORDER_WINDOW` below it,
so answers may arrive out of order but none is accepted twice. At most
`MAX_TRACKED_NONCES` nonces are tracked; the oldest is dropped first, and every
nonce whose serial is not above the highest serial ever dropped is answered
"stale" unless still tracked, so dropping state can only cost a retry, never
admit a replay.

Stale or rejected
-----------------
RFC 7616 §3.3: stale=true only when the nonce is invalid but the response is
right for it. So the password is checked first, and a bad nonce with a right
password is `Stale` (expired; from before a restart; MAC not ours; dated in the
future after the clock stepped back; no longer tracked), with a wrong password
`Rejected`. A replayed nc is `Rejected`.

Reasons are fixed phrases for logs. They never quote client values (no response,
cnonce, nonce or username) and never a password.

Header text is expected as the head parser hands it over: the field's bytes one
to one as ISO-8859-1 characters (a plain ``username`` with UTF-8 bytes in it is
decoded as UTF-8, since the challenge says charset=UTF-8).

Checked by hand against curl 7.88.1 ``--proxy-digest`` through a CONNECT:
SHA-256 with and without userhash, MD5, SHA-256-sess, MD5-sess and a non-ASCII
username are accepted; its SHA-512-256 is not (curl hashes with SHA-256), which
is why SHA-512-256 is not offered by default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import struct
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from wirecap.errors import OptionError
from wirecap.proxy.credentials import Account, CredentialLookup

__all__ = [
    "DEFAULT_NONCE_LIFETIME",
    "MAX_AUTHORIZATION_LEN",
    "MAX_TRACKED_NONCES",
    "MIN_SECRET_LEN",
    "NC_REORDER_WINDOW",
    "SUPPORTED_ALGORITHMS",
    "Accepted",
    "DigestParams",
    "DigestVerifier",
    "MalformedDigest",
    "NotDigest",
    "Rejected",
    "Stale",
    "VerifyResult",
    "decode_ext_value",
    "digest_response",
    "parse_digest_header",
    "user_hash",
]

#: Longest Proxy-Authorization value looked at. A real Digest answer is 300–700
#: characters (a 64-hex response, 43-character nonce, a host:port uri of at most
#: 261); 4096 leaves room for long usernames in username* while bounding the work
#: a hostile header can cause.
MAX_AUTHORIZATION_LEN = 4096

#: Nonces whose nonce-counts are remembered. Only nonces answered with a correct
#: password get an entry (about 200 bytes), so this is ~3 MiB and filling it takes
#: valid users opening some 55 new nonces a second for a whole nonce lifetime; an
#: entry dropped early costs its client one stale=true round trip.
MAX_TRACKED_NONCES = 16384

#: How far below the highest nc seen on a nonce an answer may still arrive. Out of
#: order only happens between connections opened together; browsers open at most
#: 32 per proxy (Chromium's per-proxy socket limit), so 128 is ample. Older
#: nonce-counts cannot be proven unused and are answered stale.
NC_REORDER_WINDOW = 128

#: Shortest secret accepted: 128 bits, the strength of the MAC's truncation.
MIN_SECRET_LEN = 16

#: Seconds a nonce stays valid (connectcap's never expired).
DEFAULT_NONCE_LIFETIME = 300.0

_OPAQUE_BYTES = 12
_NONCE_HEAD = struct.Struct(">Qq")  # serial, issued-at in microseconds
_NONCE_MAC_LEN = 16
_NONCE_LEN = _NONCE_HEAD.size + _NONCE_MAC_LEN
_NONCE_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of 32 bytes, unpadded


# --- algorithms (RFC 7616 §3.2, §6.1) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str  # RFC spelling, as written in a challenge
    hash_name: str  # hashlib's name
    session: bool  # -sess: A1 also covers nonce and cnonce (RFC 7616 §3.4.2)
    hex_len: int


def _hash_available(hash_name: str) -> bool:
    # OpenSSL builds differ: SHA-512/256 may be missing, FIPS mode refuses MD5.
    try:
        hashlib.new(hash_name)
    except ValueError:
        return False
    return True


def _known_algorithms() -> dict[str, _Algorithm]:
    hashes = (("MD5", "md5", 32), ("SHA-256", "sha256", 64), ("SHA-512-256", "sha512_256", 64))
    known: dict[str, _Algorithm] = {}
    for base, hash_name, hex_len in hashes:
        if not _hash_available(hash_name):
            continue
        for name, session in ((base, False), (f"{base}-sess", True)):
            known[name.lower()] = _Algorithm(name, hash_name, session, hex_len)
    return known


_ALGORITHMS = _known_algorithms()

#: Algorithm names this interpreter can verify, in RFC spelling.
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(a.name for a in _ALGORITHMS.values())


def _algorithm(name: str) -> _Algorithm:
    try:
        return _ALGORITHMS[name.lower()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {name!r}") from None


def _h(algorithm: _Algorithm, text: str) -> str:
    # charset=UTF-8 is advertised (RFC 7616 §4), so every string is hashed as
    # UTF-8. surrogatepass keeps this total on any str; no real input has one.
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.new(algorithm.hash_name, data).hexdigest()


def _ha1(
    algorithm: _Algorithm, username: str, realm: str, password: str, nonce: str, cnonce: str
) -> str:
    """H(A1), RFC 7616 §3.4.2."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.session:
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    return ha1


def _kd_response(
    algorithm: _Algorithm, ha1: str, a2: str, nonce: str, nc: str, cnonce: str, qop: str
) -> str:
    """KD(H(A1), nonce:nc:cnonce:qop:H(A2)), RFC 7616 §3.4.1."""
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{_h(algorithm, a2)}")


def digest_response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The ``response`` value for qop=auth (RFC 7616 §3.4.1), lower-case hex.

    With ``method=""`` this is ``rspauth`` (RFC 7616 §3.5: A2 = ":" request-uri).
    ``username`` is the plain name even for userhash answers. ValueError for an
    algorithm not in `SUPPORTED_ALGORITHMS`.
    """
    alg = _algorithm(algorithm)
    ha1 = _ha1(alg, username, realm, password, nonce, cnonce)
    return _kd_response(alg, ha1, f"{method}:{uri}", nonce, nc, cnonce, qop)


def user_hash(algorithm: str, username: str, realm: str) -> str:
    """H(username ":" realm), the username of a userhash=true answer (RFC 7616 §3.4.4)."""
    return _h(_algorithm(algorithm), f"{username}:{realm}")


# --- header parsing (RFC 7235 §2.1, RFC 9110 §5.6) -----------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# qdtext and quoted-pair (RFC 9110 §5.6.4): no controls but HTAB; obs-text allowed.
# Lone surrogates cannot come off the wire and are refused too.
_QDTEXT = r'[^\x00-\x08\x0a-\x1f\x7f"\\\ud800-\udfff]'
_QUOTED_PAIR = r"\\[^\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]"
_SCHEME = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|\Z)")
_PARAM = re.compile(rf'({_TOKEN})[ \t]*=[ \t]*(?:({_TOKEN})|"((?:{_QDTEXT}|{_QUOTED_PAIR})*)")')
# Empty list elements must be accepted (RFC 9110 §5.6.1).
_LIST_GAP = re.compile(r"[ \t,]*")
_AFTER_PARAM = re.compile(r"[ \t]*(?:,|\Z)")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)

# Parameter names a reason may name: only these, never a client-chosen one.
_DIGEST_PARAM_NAMES = frozenset(
    (
        "algorithm",
        "charset",
        "cnonce",
        "nc",
        "nonce",
        "opaque",
        "qop",
        "realm",
        "response",
        "uri",
        "username",
        "username*",
        "userhash",
    )
)


@dataclass(frozen=True, slots=True)
class DigestParams:
    """The parameters of a Digest credentials value: lower-cased names, unquoted values."""

    params: Mapping[str, str]

    def get(self, name: str) -> str | None:
        return self.params.get(name)


@dataclass(frozen=True, slots=True)
class NotDigest:
    """Well-formed credentials of another scheme (``scheme`` lower-cased, e.g. "basic")."""

    scheme: str


@dataclass(frozen=True, slots=True)
class MalformedDigest:
    """Not parseable as Digest credentials; ``reason`` is a fixed phrase."""

    reason: str


def parse_digest_header(value: str) -> DigestParams | NotDigest | MalformedDigest:
    """Parse a ``Proxy-Authorization`` value of the form ``Digest k=v, k="v", …``.

    Parameter names are case-insensitive (RFC 7235 §2.1); values are tokens or
    quoted-strings with backslash escapes; a parameter given twice makes the whole
    value malformed (RFC 7616 §3.4 allows each at most once, and guessing which
    one counts invites confusion). Never raises.
    """
    if len(value) > MAX_AUTHORIZATION_LEN:
        return MalformedDigest("authorization header too long")
    scheme = _SCHEME.match(value)
    if scheme is None:
        return MalformedDigest("no authentication scheme")
    if scheme.group(1).lower() != "digest":
        return NotDigest(scheme.group(1).lower())
    params: dict[str, str] = {}
    pos = scheme.end()
    while True:
        pos = _gap_end(value, pos)
        if pos == len(value):
            return DigestParams(MappingProxyType(params))
        param = _PARAM.match(value, pos)
        if param is None:
            return MalformedDigest("malformed Digest parameter list")
        name, token, quoted = param.groups()
        name = name.lower()
        if name in params:
            shown = name if name in _DIGEST_PARAM_NAMES else "parameter"
            return MalformedDigest(f"duplicate parameter: {shown}")
        params[name] = token if token is not None else _ESCAPED.sub(r"\1", quoted)
        after = _AFTER_PARAM.match(value, param.end())
        if after is None:
            return MalformedDigest("malformed Digest parameter list")
        pos = after.end()


def _gap_end(value: str, pos: int) -> int:
    gap = _LIST_GAP.match(value, pos)
    return pos if gap is None else gap.end()


# --- username* (RFC 8187 §3.2) -------------------------------------------------------

_EXT_VALUE = re.compile(
    r"(?i:(utf-8|iso-8859-1))'[A-Za-z0-9-]*'((?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+.^_`|~-])*)"
)


def decode_ext_value(value: str) -> str | None:
    """Decode an RFC 8187 ext-value such as ``UTF-8''J%C3%A4s%C3%B8n%20Doe``; None if invalid.

    UTF-8 must be supported (RFC 8187 §3.2.1); ISO-8859-1 too, as RFC 5987 required.
    """
    match = _EXT_VALUE.fullmatch(value)
    if match is None:
        return None
    raw = urllib.parse.unquote_to_bytes(match.group(2))
    try:
        return raw.decode(match.group(1).lower())
    except UnicodeDecodeError:
        return None


def _wire_text(value: str) -> str:
    """A quoted-string value as the client meant it.

    Header bytes reach us one to one as ISO-8859-1 characters. We advertise
    charset=UTF-8 (RFC 7616 §4), so non-ASCII bytes in a plain ``username`` are
    UTF-8: decode them. A value that is not UTF-8 (or was already decoded) stays.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer proves the password.

    ``authentication_info`` is the ``Proxy-Authentication-Info`` value to send
    with the 200 (RFC 7616 §3.5, RFC 7615 §4).
    """

    username: str
    algorithm: str
    authentication_info: str


@dataclass(frozen=True, slots=True)
class Stale:
    """The password was right but the nonce is not usable: challenge again with stale=true.

    ``username`` is the account the password proved.
    """

    reason: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not authenticated: challenge again with stale=false.

    ``username`` is the plain name the client claimed (unverified), or the
    account matched by a userhash; None when neither is known.
    """

    reason: str
    username: str | None = None


VerifyResult = Accepted | Stale | Rejected


# --- reading an answer ---------------------------------------------------------------

_NC = re.compile(r"[0-9A-Fa-f]{8}")  # nc-value = 8LHEX (RFC 7616 §3.4)
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REQUIRED = ("realm", "nonce", "uri", "response", "nc", "cnonce", "opaque")


@dataclass(frozen=True, slots=True)
class _Answer:
    algorithm: _Algorithm
    username: str  # plain name, or lower-case hex H(username:realm) when userhash
    userhash: bool
    realm: str
    nonce: str
    uri: str
    qop: str
    nc_text: str  # as sent: the response was computed over these exact characters
    nc: int
    cnonce: str
    opaque: str
    response: str  # lower-case hex


def _read_answer(
    params: Mapping[str, str], offered: Mapping[str, _Algorithm]
) -> _Answer | Rejected:
    """Check presence and syntax of every parameter; the checks against state come later."""
    qop = params.get("qop")
    if qop is None:
        return Rejected("RFC 2069 digest (no qop) is not accepted")
    if qop.lower() == "auth-int":
        return Rejected("qop=auth-int is not offered")
    if qop.lower() != "auth":
        return Rejected("qop is not auth")
    for name in _REQUIRED:
        if name not in params:
            return Rejected(f"missing parameter: {name}")
    algorithm = offered.get(params.get("algorithm", "MD5").lower())
    if algorithm is None:
        return Rejected("algorithm not offered")
    user = _read_username(params)
    if isinstance(user, Rejected):
        return user
    username, userhash = user
    claimed = None if userhash else username
    nc_text = params["nc"]
    if not _NC.fullmatch(nc_text):
        return Rejected("nc is not 8 hex digits", claimed)
    nc = int(nc_text, 16)
    if nc == 0:
        return Rejected("nc must not be zero", claimed)
    if not _PRINTABLE.fullmatch(params["cnonce"]):
        # It is echoed in Proxy-Authentication-Info, so keep it to plain ASCII.
        return Rejected("cnonce is empty or not printable ASCII", claimed)
    response = params["response"]
    if len(response) != algorithm.hex_len or not _HEX.fullmatch(response):
        return Rejected(f"response is not a {algorithm.name} hex digest", claimed)
    return _Answer(
        algorithm=algorithm,
        username=username,
        userhash=userhash,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        qop=qop,
        nc_text=nc_text,
        nc=nc,
        cnonce=params["cnonce"],
        opaque=params["opaque"],
        response=response.lower(),
    )


def _read_username(params: Mapping[str, str]) -> tuple[str, bool] | Rejected:
    """The username (or its hash) and whether it is hashed (RFC 7616 §3.4, §3.4.4)."""
    userhash = params.get("userhash", "false").lower()
    if userhash not in ("true", "false"):
        return Rejected("userhash is neither true nor false")
    hashed = userhash == "true"
    plain, extended = params.get("username"), params.get("username*")
    if plain is not None and extended is not None:
        return Rejected("both username and username* given")
    if extended is not None:
        if hashed:
            return Rejected("username* cannot be combined with userhash=true")
        decoded = decode_ext_value(extended)
        if decoded is None:
            return Rejected("username* is not a valid RFC 8187 value")
        username = decoded
    elif plain is None:
        return Rejected("missing parameter: username")
    elif hashed:
        return plain.lower(), True
    else:
        username = _wire_text(plain)
    if _CONTROL.search(username):
        # It would end up in logs and mail; refuse rather than sanitise.
        return Rejected("username contains control characters")
    return username, False


def _quote(value: str) -> str:
    """A quoted-string (RFC 9110 §5.6.4)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- nonce-count tracking ------------------------------------------------------------

_Use = Literal["fresh", "replay", "too old"]


class _NonceUse:
    """The nonce-counts seen on one nonce: the highest, and a bitmap of those just below."""

    __slots__ = ("highest", "issued_us", "seen")

    def __init__(self, issued_us: int) -> None:
        self.issued_us = issued_us
        self.highest = 0
        self.seen = 0  # bit k set: nc (highest - k) was used

    def record(self, nc: int) -> _Use:
        if nc > self.highest:
            shift = nc - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << NC_REORDER_WINDOW) - 1)
            self.highest = nc
            return "fresh"
        behind = self.highest - nc
        if behind >= NC_REORDER_WINDOW:
            return "too old"
        bit = 1 << behind
        if self.seen & bit:
            return "replay"
        self.seen |= bit
        return "fresh"


# --- the verifier --------------------------------------------------------------------

_REALM = re.compile(r"[\x20-\x7e]+")


class DigestVerifier:
    """Issues Digest challenges and checks answers to them, for one realm.

    Args:
        realm: the protection space shown to users; printable ASCII.
        credentials: where accounts are looked up.
        secret: at least `MIN_SECRET_LEN` bytes; keys the nonce MAC.
        clock: seconds, e.g. ``time.time``; only differences matter.
        random_bytes: e.g. ``os.urandom``; used for the opaque and the nonce key.
        algorithms: offered, in this order; names from `SUPPORTED_ALGORITHMS`.
        userhash: advertise ``userhash=true`` (both kinds of answer are accepted).
        nonce_lifetime: seconds after issue a nonce is answered stale.
        max_tracked_nonces: see `MAX_TRACKED_NONCES`.

    Raises OptionError for an unusable configuration.
    """

    __slots__ = (
        "_algorithms",
        "_clock",
        "_credentials",
        "_forgotten_through",
        "_index_generation",
        "_key",
        "_lifetime_us",
        "_max_tracked",
        "_offered",
        "_random_bytes",
        "_realm",
        "_serial",
        "_userhash",
        "_userhash_index",
        "_uses",
    )

    def __init__(
        self,
        realm: str,
        credentials: CredentialLookup,
        *,
        secret: bytes,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        userhash: bool = True,
        nonce_lifetime: float = DEFAULT_NONCE_LIFETIME,
        max_tracked_nonces: int = MAX_TRACKED_NONCES,
    ) -> None:
        if not _REALM.fullmatch(realm):
            raise OptionError("digest realm must be non-empty printable ASCII")
        if len(secret) < MIN_SECRET_LEN:
            raise OptionError(f"digest nonce secret must be at least {MIN_SECRET_LEN} bytes")
        if not (math.isfinite(nonce_lifetime) and nonce_lifetime > 0):
            raise OptionError("digest nonce lifetime must be a positive number of seconds")
        if max_tracked_nonces < 1:
            raise OptionError("max_tracked_nonces must be at least 1")
        self._algorithms = _configured_algorithms(algorithms)
        self._offered = {a.name.lower(): a for a in self._algorithms}
        self._realm = realm
        self._credentials = credentials
        self._clock = clock
        self._random_bytes = random_bytes
        self._userhash = userhash
        self._lifetime_us = round(nonce_lifetime * 1_000_000)
        self._max_tracked = max_tracked_nonces
        # A key of this instance: nonces of an earlier process never verify, so
        # their nonce-counts (lost with that process) cannot be replayed here.
        self._key = hmac.new(
            secret, b"wirecap digest nonce key\x00" + random_bytes(32), hashlib.sha256
        ).digest()
        self._serial = 0
        self._uses: OrderedDict[int, _NonceUse] = OrderedDict()
        self._forgotten_through = 0  # serials start at 1
        self._userhash_index: dict[str, dict[str, str]] = {}
        self._index_generation: int | None = None

    @property
    def realm(self) -> str:
        return self._realm

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(a.name for a in self._algorithms)

    @property
    def tracked_nonces(self) -> int:
        """Nonces whose nonce-counts are currently remembered."""
        return len(self._uses)

    def challenge(self, *, stale: bool = False) -> list[str]:
        """``Proxy-Authenticate`` values, one per algorithm, sharing one nonce (RFC 7616 §3.3)."""
        opaque = _b64(self._random_bytes(_OPAQUE_BYTES))
        nonce = self._issue_nonce(self._now_us(), opaque)
        flags = (
            f"stale={'true' if stale else 'false'}, "
            f"userhash={'true' if self._userhash else 'false'}, charset=UTF-8"
        )
        return [
            f'Digest realm={_quote(self._realm)}, qop="auth", algorithm={a.name}, '
            f'nonce="{nonce}", opaque="{opaque}", {flags}'
            for a in self._algorithms
        ]

    def verify(self, authorization: str, *, method: str, uri: str) -> VerifyResult:
        """Check a ``Proxy-Authorization`` value for a request ``method`` ``uri``.

        ``uri`` is the request-target (authority form for CONNECT). Never raises.
        """
        parsed = parse_digest_header(authorization)
        if isinstance(parsed, NotDigest):
            if parsed.scheme == "basic":
                return Rejected("Basic authentication is not accepted, only Digest")
            return Rejected("not Digest authentication")
        if isinstance(parsed, MalformedDigest):
            return Rejected(parsed.reason)
        answer = _read_answer(parsed.params, self._offered)
        if isinstance(answer, Rejected):
            return answer
        claimed = None if answer.userhash else answer.username
        if answer.realm != self._realm:
            return Rejected("realm does not match", claimed)
        if answer.uri != uri:
            # RFC 7616 §3.4.6 suggests 400 here; the shell may map this reason.
            return Rejected("uri does not match the request target", claimed)
        account = self._find_account(answer)
        if account is None:
            return Rejected("unknown user", claimed)
        alg = answer.algorithm
        ha1 = _ha1(
            alg, account.username, self._realm, account.password, answer.nonce, answer.cnonce
        )
        expected = _kd_response(
            alg, ha1, f"{method}:{uri}", answer.nonce, answer.nc_text, answer.cnonce, answer.qop
        )
        if not hmac.compare_digest(expected.encode("ascii"), answer.response.encode("ascii")):
            return Rejected("wrong password", account.username)
        now_us = self._now_us()
        unusable = self._check_nonce(answer, now_us)
        if unusable is not None:
            return Stale(unusable, account.username)
        use = self._record_use(answer, now_us)
        if use == "replay":
            return Rejected("nonce count replayed", account.username)
        if use == "too old":
            return Stale("nonce count too far behind on this nonce", account.username)
        if use == "forgotten":
            return Stale("nonce no longer tracked", account.username)
        rspauth = _kd_response(
            alg, ha1, f":{uri}", answer.nonce, answer.nc_text, answer.cnonce, answer.qop
        )
        nextnonce = self._issue_nonce(now_us, answer.opaque)
        info = (
            f'nextnonce="{nextnonce}", qop=auth, rspauth="{rspauth}", '
            f"cnonce={_quote(answer.cnonce)}, nc={answer.nc_text}"
        )
        return Accepted(account.username, alg.name, info)

    # -- accounts --

    def _find_account(self, answer: _Answer) -> Account | None:
        if not answer.userhash:
            return self._credentials.lookup(answer.username)
        index = self._userhash_index_for(answer.algorithm)
        username = index.get(answer.username)
        return None if username is None else self._credentials.lookup(username)

    def _userhash_index_for(self, algorithm: _Algorithm) -> dict[str, str]:
        """H(username:realm) → username for this hash, built once per credentials generation."""
        generation = self._credentials.generation
        if generation != self._index_generation:
            self._userhash_index.clear()
            self._index_generation = generation
        index = self._userhash_index.get(algorithm.hash_name)
        if index is None:
            index = {
                _h(algorithm, f"{a.username}:{self._realm}"): a.username
                for a in self._credentials.accounts()
            }
            self._userhash_index[algorithm.hash_name] = index
        return index

    # -- nonces --

    def _now_us(self) -> int:
        return round(self._clock() * 1_000_000)

    def _mac(self, head: bytes, opaque: str) -> bytes:
        message = head + opaque.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_NONCE_MAC_LEN]

    def _issue_nonce(self, now_us: int, opaque: str) -> str:
        # The serial makes every nonce unique even on a clock that stands still,
        # and orders nonces for the "forgotten" watermark.
        self._serial += 1
        head = _NONCE_HEAD.pack(self._serial, now_us)
        return _b64(head + self._mac(head, opaque))

    def _check_nonce(self, answer: _Answer, now_us: int) -> str | None:
        """Why the (MAC-checked) nonce is unusable now, or None if it is usable."""
        if not _NONCE_TEXT.fullmatch(answer.nonce):
            return "nonce not issued by this proxy instance"
        raw = base64.urlsafe_b64decode(answer.nonce + "=")
        head, mac = raw[: _NONCE_HEAD.size], raw[_NONCE_HEAD.size :]
        if len(raw) != _NONCE_LEN or not hmac.compare_digest(mac, self._mac(head, answer.opaque)):
            # Forged, altered, paired with another opaque, or from before a restart.
            return "nonce not issued by this proxy instance"
        _, issued_us = _NONCE_HEAD.unpack(head)
        if issued_us > now_us:
            return "nonce issued in the future (clock stepped back)"
        if now_us - issued_us > self._lifetime_us:
            return "nonce expired"
        return None

    def _record_use(self, answer: _Answer, now_us: int) -> _Use | Literal["forgotten"]:
        """Note the nc on the (checked) nonce; "forgotten" if its counts were dropped."""
        head = base64.urlsafe_b64decode(answer.nonce + "=")[: _NONCE_HEAD.size]
        serial, issued_us = _NONCE_HEAD.unpack(head)
        self._forget_expired(now_us)
        use = self._uses.get(serial)
        if use is None:
            if serial <= self._forgotten_through:
                # Maybe used before and dropped: its counts are unknown, so it
                # must not start afresh.
                return "forgotten"
            while len(self._uses) >= self._max_tracked:
                self._forget_oldest()
            use = self._uses[serial] = _NonceUse(issued_us)
        return use.record(answer.nc)

    def _forget_expired(self, now_us: int) -> None:
        # Entries are in first-use order, close to issue order; stop at the first
        # live one (the capacity bound holds regardless).
        while self._uses:
            use = next(iter(self._uses.values()))
            if now_us - use.issued_us <= self._lifetime_us:
                return
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        serial, _ = self._uses.popitem(last=False)
        self._forgotten_through = max(self._forgotten_through, serial)


def _configured_algorithms(names: Sequence[str]) -> tuple[_Algorithm, ...]:
    if isinstance(names, str):
        names = (names,)
    if not names:
        raise OptionError("at least one digest algorithm must be offered")
    chosen: list[_Algorithm] = []
    for name in names:
        algorithm = _ALGORITHMS.get(name.lower())
        if algorithm is None:
            supported = ", ".join(SUPPORTED_ALGORITHMS)
            raise OptionError(f"digest algorithm {name!r} is not supported here ({supported})")
        if algorithm in chosen:
            raise OptionError(f"digest algorithm {algorithm.name} is listed twice")
        chosen.append(algorithm)
    return tuple(chosen)
