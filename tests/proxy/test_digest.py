"""RFC 7616 digest verifier: RFC test vectors, every algorithm, nonces, replays, fuzzing."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import OptionError
from wirecap.proxy.credentials import Account, InMemoryCredentials
from wirecap.proxy.digest import (
    MAX_AUTHORIZATION_LEN,
    NC_REORDER_WINDOW,
    SUPPORTED_ALGORITHMS,
    Accepted,
    DigestParams,
    DigestVerifier,
    MalformedDigest,
    NotDigest,
    Rejected,
    Stale,
    decode_ext_value,
    digest_response,
    parse_digest_header,
    user_hash,
)

REALM = "connectcap"
TARGET = "example.com:443"
PASSWORD = "correct horse battery staple"
ALICE = Account("alice", PASSWORD, "alice@example.org")
JASON = Account("Jäsøn Doe", "Secret, or not? Long enough.", "jason@example.org")
CNONCE = "0a4f113b6c2d9e8fa7b1c3d5e7f90123"
HAS_SHA512_256 = "SHA-512-256" in SUPPORTED_ALGORITHMS
needs_sha512_256 = pytest.mark.skipif(not HAS_SHA512_256, reason="this OpenSSL has no SHA-512/256")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counting_random(start: int = 1) -> Callable[[int], bytes]:
    counter = itertools.count(start)

    def random_bytes(n: int) -> bytes:
        # Distinct, reproducible "random" bytes: a counter, repeated.
        return (next(counter).to_bytes(4, "big") * (n // 4 + 1))[:n]

    return random_bytes


def make_verifier(
    *,
    accounts: tuple[Account, ...] = (ALICE, JASON),
    algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    userhash: bool = True,
    nonce_lifetime: float = 300.0,
    max_tracked_nonces: int = 1000,
    secret: bytes = b"s" * 32,
    random_start: int = 1,
) -> tuple[DigestVerifier, Clock, InMemoryCredentials]:
    clock = Clock()
    store = InMemoryCredentials(accounts)
    verifier = DigestVerifier(
        REALM,
        store,
        secret=secret,
        clock=clock,
        random_bytes=counting_random(random_start),
        algorithms=algorithms,
        userhash=userhash,
        nonce_lifetime=nonce_lifetime,
        max_tracked_nonces=max_tracked_nonces,
    )
    return verifier, clock, store


def challenge_params(header: str) -> Mapping[str, str]:
    parsed = parse_digest_header(header)
    assert isinstance(parsed, DigestParams)
    return parsed.params


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answer_params(
    challenge: Mapping[str, str],
    *,
    username: str = "alice",
    password: str = PASSWORD,
    algorithm: str | None = None,
    method: str = "CONNECT",
    uri: str = TARGET,
    nc: str = "00000001",
    cnonce: str = CNONCE,
    userhash: bool = False,
    extended: bool = False,
    nonce: str | None = None,
) -> dict[str, str]:
    """What a correct client sends, as quoted/unquoted parameter text."""
    algorithm = algorithm or challenge["algorithm"]
    nonce = challenge["nonce"] if nonce is None else nonce
    realm = challenge["realm"]
    response = digest_response(
        algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        nc=nc,
        cnonce=cnonce,
    )
    params = {
        "realm": quote(realm),
        "uri": quote(uri),
        "algorithm": algorithm,
        "nonce": quote(nonce),
        "nc": nc,
        "cnonce": quote(cnonce),
        "qop": "auth",
        "response": quote(response),
        "opaque": quote(challenge["opaque"]),
    }
    if userhash:
        params["username"] = quote(user_hash(algorithm, username, realm))
        params["userhash"] = "true"
    elif extended:
        encoded = "".join(
            chr(b) if chr(b).isalnum() and b < 128 else f"%{b:02X}" for b in username.encode()
        )
        params["username*"] = f"UTF-8''{encoded}"
    else:
        params["username"] = quote(username)
    return params


def render(params: Mapping[str, str]) -> str:
    return "Digest " + ", ".join(f"{k}={v}" for k, v in params.items())


def authorization(challenge: Mapping[str, str], **kwargs: Any) -> str:
    return render(answer_params(challenge, **kwargs))


def first_challenge(verifier: DigestVerifier, index: int = 0) -> Mapping[str, str]:
    return challenge_params(verifier.challenge()[index])


# --- RFC 7616 §3.9 test vectors ------------------------------------------------------

RFC_391 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}
RFC_391_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_391_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}

# §3.9.2 as corrected by erratum 4897: the published username hash
# (488869477b…) and response (ae66e67d…) do not follow from the example's inputs.
RFC_392 = {
    "username": "Jäsøn Doe",
    "realm": "api@example.org",
    "password": "Secret, or not?",
    "method": "GET",
    "uri": "/doe.json",
    "nonce": "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
    "nc": "00000001",
    "cnonce": "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
}
RFC_392_OPAQUE = "HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS"
RFC_392_USERHASH = "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
RFC_392_RESPONSE = "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_3_9_1_responses(algorithm: str) -> None:
    assert digest_response(algorithm, **RFC_391) == RFC_391_RESPONSES[algorithm]


@needs_sha512_256
def test_rfc7616_3_9_2_userhash_and_response_per_erratum_4897() -> None:
    assert user_hash("SHA-512-256", "Jäsøn Doe", "api@example.org") == RFC_392_USERHASH
    assert digest_response("SHA-512-256", **RFC_392) == RFC_392_RESPONSE


def test_userhash_of_the_rfc_example_user_with_sha256() -> None:
    # The same user and realm hashed with SHA-256 (a value quoted in some notes
    # as the §3.9.2 userhash; it is the SHA-256 one, not SHA-512-256).
    assert (
        user_hash("SHA-256", "Jäsøn Doe", "api@example.org")
        == "5a1a8a47df5c298551b9b42ba9b05835174a5bd7d511ff7fe9191d8e946fc4e7"
    )


def test_rspauth_is_the_response_with_an_empty_method() -> None:
    # RFC 7616 §3.5: A2 = ":" request-uri.
    rspauth = digest_response("MD5", **{**RFC_391, "method": ""})
    assert rspauth != RFC_391_RESPONSES["MD5"]
    assert len(rspauth) == 32


def rfc_verifier(realm: str, account: Account, algorithm: str) -> DigestVerifier:
    return DigestVerifier(
        realm,
        InMemoryCredentials([account]),
        secret=b"k" * 16,
        clock=Clock(),
        random_bytes=counting_random(),
        algorithms=(algorithm,),
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_3_9_1_header_verbatim_proves_the_password(algorithm: str) -> None:
    # The RFC's own header, folded onto one line. Its nonce is not ours, so the
    # best answer is Stale: the response is right (RFC 7616 §3.3).
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f"algorithm={algorithm}, "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        f'response="{RFC_391_RESPONSES[algorithm]}", opaque="{RFC_391_OPAQUE}"'
    )
    account = Account("Mufasa", "Circle of Life", "mufasa@example.org")
    verifier = rfc_verifier("http-auth@example.org", account, algorithm)
    result = verifier.verify(header, method="GET", uri="/dir/index.html")
    assert result == Stale("nonce not issued by this proxy instance", "Mufasa")
    impostor = Account("Mufasa", "Circle of Strife", "mufasa@example.org")
    wrong = rfc_verifier("http-auth@example.org", impostor, algorithm)
    result = wrong.verify(header, method="GET", uri="/dir/index.html")
    assert result == Rejected("wrong password", "Mufasa")


@needs_sha512_256
@pytest.mark.parametrize("form", ["userhash", "username*"])
def test_rfc7616_3_9_2_header_verbatim_proves_the_password(form: str) -> None:
    user = (
        f'username="{RFC_392_USERHASH}", userhash=true'
        if form == "userhash"
        else "username*=UTF-8''J%C3%A4s%C3%B8n%20Doe"
    )
    header = (
        f'Digest {user}, realm="api@example.org", uri="/doe.json", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", nc=00000001, '
        'cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v", qop=auth, '
        f'response="{RFC_392_RESPONSE}", opaque="{RFC_392_OPAQUE}"'
    )
    account = Account("Jäsøn Doe", "Secret, or not?", "jason@example.org")
    verifier = rfc_verifier("api@example.org", account, "SHA-512-256")
    result = verifier.verify(header, method="GET", uri="/doe.json")
    assert result == Stale("nonce not issued by this proxy instance", "Jäsøn Doe")


# --- happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("form", ["plain", "userhash", "username*"])
def test_every_algorithm_and_username_form_is_accepted(algorithm: str, form: str) -> None:
    verifier, _, _ = make_verifier(algorithms=(algorithm,))
    challenge = first_challenge(verifier)
    assert challenge["algorithm"] == algorithm
    header = authorization(
        challenge,
        username=JASON.username,
        password=JASON.password,
        userhash=form == "userhash",
        extended=form == "username*",
    )
    result = verifier.verify(header, method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted), result
    assert (result.username, result.algorithm) == (JASON.username, algorithm)


def test_authentication_info_carries_rspauth_and_a_working_nextnonce() -> None:
    verifier, _, _ = make_verifier()
    challenge = first_challenge(verifier)
    result = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted)
    info = parse_digest_header("Digest " + result.authentication_info)
    assert isinstance(info, DigestParams)
    assert info.get("qop") == "auth"
    assert info.get("nc") == "00000001"
    assert info.get("cnonce") == CNONCE
    assert info.get("rspauth") == digest_response(
        "SHA-256",
        username="alice",
        realm=REALM,
        password=PASSWORD,
        method="",
        uri=TARGET,
        nonce=challenge["nonce"],
        nc="00000001",
        cnonce=CNONCE,
    )
    nextnonce = info.get("nextnonce")
    assert nextnonce is not None and nextnonce != challenge["nonce"]
    # RFC 7616 §3.5: the client may use nextnonce (with the same opaque) next time.
    again = verifier.verify(authorization(challenge, nonce=nextnonce), method="CONNECT", uri=TARGET)
    assert isinstance(again, Accepted)


def test_userhash_false_answers_are_accepted_when_userhash_was_offered() -> None:
    verifier, _, _ = make_verifier(userhash=True)
    challenge = first_challenge(verifier)
    assert challenge["userhash"] == "true"
    result = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted)


def test_userhash_true_answers_are_accepted_when_not_offered() -> None:
    verifier, _, _ = make_verifier(userhash=False)
    challenge = first_challenge(verifier)
    assert challenge["userhash"] == "false"
    header = authorization(challenge, userhash=True)
    assert isinstance(verifier.verify(header, method="CONNECT", uri=TARGET), Accepted)


def test_missing_algorithm_means_md5() -> None:
    verifier, _, _ = make_verifier(algorithms=("MD5",))
    params = answer_params(first_challenge(verifier))
    del params["algorithm"]
    result = verifier.verify(render(params), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted) and result.algorithm == "MD5"


def test_names_are_case_insensitive_and_values_quoted_or_not() -> None:
    verifier, _, _ = make_verifier()
    params = answer_params(first_challenge(verifier))
    # Scheme, parameter and algorithm names in any case, tabs as whitespace, and
    # qop and nc quoted although RFC 7616 §3.4 says a sender must not quote them.
    unchanged = (f"{k.upper()}={v}" for k, v in params.items() if k not in ("qop", "nc"))
    header = "DIGEST " + ",\t".join(unchanged) + ', QOP="auth", NC="00000001"'
    header = header.replace("ALGORITHM=SHA-256", "Algorithm=sha-256")
    assert "Algorithm=sha-256" in header
    result = verifier.verify(header, method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted), result


def test_raw_utf8_username_in_a_quoted_string_is_understood() -> None:
    # A client sending "Jäsøn Doe" as raw UTF-8 bytes; the head parser hands
    # header bytes over as ISO-8859-1 characters.
    verifier, _, _ = make_verifier()
    challenge = first_challenge(verifier)
    params = answer_params(challenge, username=JASON.username, password=JASON.password)
    params["username"] = quote(JASON.username.encode().decode("latin-1"))
    result = verifier.verify(render(params), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted) and result.username == JASON.username


def test_a_challenge_per_algorithm_in_order_sharing_one_nonce() -> None:
    verifier, _, _ = make_verifier(algorithms=("SHA-256", "MD5-sess", "MD5"))
    headers = verifier.challenge(stale=True)
    assert len(headers) == 3
    assert all(h.startswith('Digest realm="connectcap", qop="auth", algorithm=') for h in headers)
    params = [challenge_params(h) for h in headers]
    assert [p["algorithm"] for p in params] == ["SHA-256", "MD5-sess", "MD5"]
    assert len({p["nonce"] for p in params}) == 1
    assert len({p["opaque"] for p in params}) == 1
    for p in params:
        assert (p["stale"], p["userhash"], p["charset"], p["qop"]) == (
            "true",
            "true",
            "UTF-8",
            "auth",
        )
    assert challenge_params(verifier.challenge()[0])["stale"] == "false"


def test_every_challenge_has_a_new_nonce_and_opaque_even_on_a_frozen_clock() -> None:
    verifier, _, _ = make_verifier()
    challenges = [first_challenge(verifier) for _ in range(50)]
    assert len({c["nonce"] for c in challenges}) == 50
    assert len({c["opaque"] for c in challenges}) == 50


def test_a_realm_with_quotes_is_escaped_in_the_challenge() -> None:
    verifier = DigestVerifier(
        'the "best" proxy \\ ever',
        InMemoryCredentials([ALICE]),
        secret=b"x" * 16,
        clock=Clock(),
        random_bytes=counting_random(),
    )
    challenge = first_challenge(verifier)
    assert challenge["realm"] == 'the "best" proxy \\ ever'
    result = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted)


# --- wrong answers -------------------------------------------------------------------


def verify_modified(changes: Mapping[str, str | None], **kwargs: Any) -> object:
    verifier, _, _ = make_verifier()
    params = answer_params(first_challenge(verifier), **kwargs)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return verifier.verify(render(params), method="CONNECT", uri=TARGET)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"password": "not the password at all"}, Rejected("wrong password", "alice")),
        ({"method": "GET"}, Rejected("wrong password", "alice")),
        ({"username": "mallory"}, Rejected("unknown user", "mallory")),
        ({"username": "mallory", "userhash": True}, Rejected("unknown user", None)),
        ({"uri": "example.com:80"}, Rejected("uri does not match the request target", "alice")),
        ({"algorithm": "SHA-512-256"}, Rejected("algorithm not offered", None)),
    ],
)
def test_wrong_answers_are_rejected(kwargs: dict[str, Any], expected: Rejected) -> None:
    if kwargs.get("algorithm") == "SHA-512-256" and not HAS_SHA512_256:
        pytest.skip("this OpenSSL has no SHA-512/256")
    assert verify_modified({}, **kwargs) == expected


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"realm": '"elsewhere"'}, "realm does not match"),
        ({"qop": None}, "RFC 2069 digest (no qop) is not accepted"),
        ({"qop": "auth-int"}, "qop=auth-int is not offered"),
        ({"qop": "auth,auth-int"}, "malformed Digest parameter list"),
        ({"qop": '"auth,auth-int"'}, "qop is not auth"),
        ({"algorithm": "SHA-1"}, "algorithm not offered"),
        ({"nc": "1"}, "nc is not 8 hex digits"),
        ({"nc": "0000000g"}, "nc is not 8 hex digits"),
        ({"nc": "00000000"}, "nc must not be zero"),
        ({"cnonce": '""'}, "cnonce is empty or not printable ASCII"),
        ({"cnonce": '"caf\u00e9"'}, "cnonce is empty or not printable ASCII"),
        ({"response": '"abc"'}, "response is not a SHA-256 hex digest"),
        ({"response": '"' + "z" * 64 + '"'}, "response is not a SHA-256 hex digest"),
        ({"userhash": "maybe"}, "userhash is neither true nor false"),
        ({"username*": "UTF-8''alice"}, "both username and username* given"),
        ({"username": None, "username*": "UTF-8'alice"}, "username* is not a valid RFC 8187 value"),
        ({"username": None, "username*": "UTF-8''%FF"}, "username* is not a valid RFC 8187 value"),
        (
            {"username": None, "username*": "UTF-8''a%0D%0Ab"},
            "username contains control characters",
        ),
        (
            {"username": None, "userhash": "true", "username*": "UTF-8''alice"},
            "username* cannot be combined with userhash=true",
        ),
        ({"username": '"ali\tce"'}, "username contains control characters"),
    ],
)
def test_malformed_answers_are_rejected(changes: dict[str, str | None], reason: str) -> None:
    result = verify_modified(changes)
    assert isinstance(result, Rejected)
    assert result.reason == reason


@pytest.mark.parametrize(
    "name", ["username", "realm", "nonce", "uri", "response", "nc", "cnonce", "opaque"]
)
def test_each_required_parameter_must_be_present(name: str) -> None:
    result = verify_modified({name: None})
    assert isinstance(result, Rejected)
    assert result.reason == f"missing parameter: {name}"


@pytest.mark.parametrize("name", ["username", "nc", "response", "realm"])
def test_a_duplicated_parameter_rejects_the_answer(name: str) -> None:
    verifier, _, _ = make_verifier()
    params = answer_params(first_challenge(verifier))
    header = render(params) + f", {name.upper()}={params[name]}"
    result = verifier.verify(header, method="CONNECT", uri=TARGET)
    assert result == Rejected(f"duplicate parameter: {name}")


def test_other_schemes_are_rejected_with_a_clear_reason() -> None:
    verifier, _, _ = make_verifier()
    basic = verifier.verify("Basic YWxpY2U6cGFzc3dvcmQ=", method="CONNECT", uri=TARGET)
    assert basic == Rejected("Basic authentication is not accepted, only Digest")
    bearer = verifier.verify("Bearer abc", method="CONNECT", uri=TARGET)
    assert bearer == Rejected("not Digest authentication")


def test_only_the_configured_algorithms_are_accepted() -> None:
    verifier, _, _ = make_verifier(algorithms=("SHA-256",))
    challenge = first_challenge(verifier)
    for algorithm in ("MD5", "SHA-256-sess"):
        header = authorization(challenge, algorithm=algorithm)
        assert verifier.verify(header, method="CONNECT", uri=TARGET) == Rejected(
            "algorithm not offered", None
        )


# --- nonces and nonce-counts ---------------------------------------------------------


def test_a_replayed_answer_is_rejected() -> None:
    verifier, _, _ = make_verifier()
    header = authorization(first_challenge(verifier))
    assert isinstance(verifier.verify(header, method="CONNECT", uri=TARGET), Accepted)
    replay = verifier.verify(header, method="CONNECT", uri=TARGET)
    assert replay == Rejected("nonce count replayed", "alice")


def test_nonce_counts_may_arrive_out_of_order_but_only_once() -> None:
    verifier, _, _ = make_verifier()
    challenge = first_challenge(verifier)

    def verify(nc: int) -> object:
        header = authorization(challenge, nc=f"{nc:08x}")
        return verifier.verify(header, method="CONNECT", uri=TARGET)

    for nc in (1, 3, 2, 10, 4):
        assert isinstance(verify(nc), Accepted), nc
    for nc in (1, 2, 3, 4, 10):
        assert verify(nc) == Rejected("nonce count replayed", "alice"), nc
    highest = 10 + NC_REORDER_WINDOW
    assert isinstance(verify(highest), Accepted)
    assert isinstance(verify(highest - NC_REORDER_WINDOW + 1), Accepted)
    # Too far behind to know whether it was used: never fresh, the client retries.
    assert verify(highest - NC_REORDER_WINDOW) == Stale(
        "nonce count too far behind on this nonce", "alice"
    )
    assert verify(9) == Stale("nonce count too far behind on this nonce", "alice")


def test_an_expired_nonce_is_stale_with_the_right_password_only() -> None:
    verifier, clock, _ = make_verifier(nonce_lifetime=300.0)
    challenge = first_challenge(verifier)
    clock.now += 300.0
    ok = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
    assert isinstance(ok, Accepted)  # exactly at the lifetime: still valid
    clock.now += 0.001
    late = authorization(challenge, nc="00000002")
    assert verifier.verify(late, method="CONNECT", uri=TARGET) == Stale("nonce expired", "alice")
    wrong = authorization(challenge, nc="00000003", password="guess guess guess guess")
    assert verifier.verify(wrong, method="CONNECT", uri=TARGET) == Rejected(
        "wrong password", "alice"
    )
    # The stale=true challenge that follows works.
    fresh = challenge_params(verifier.challenge(stale=True)[0])
    result = verifier.verify(authorization(fresh), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted)


def test_a_nonce_from_the_future_is_never_accepted() -> None:
    verifier, clock, _ = make_verifier()
    challenge = first_challenge(verifier)
    clock.now -= 10.0  # the wall clock stepped back
    result = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
    assert result == Stale("nonce issued in the future (clock stepped back)", "alice")


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("index", [0, 7, 15, 20, 30, 42])
def test_a_forged_nonce_is_stale_with_the_right_password_and_rejected_without(
    index: int,
) -> None:
    verifier, _, _ = make_verifier()
    challenge = first_challenge(verifier)
    forged = _flip(challenge["nonce"], index)
    header = authorization(challenge, nonce=forged)
    assert verifier.verify(header, method="CONNECT", uri=TARGET) == Stale(
        "nonce not issued by this proxy instance", "alice"
    )
    wrong = authorization(challenge, nonce=forged, password="guess guess guess guess")
    assert verifier.verify(wrong, method="CONNECT", uri=TARGET) == Rejected(
        "wrong password", "alice"
    )


@pytest.mark.parametrize("nonce", ["", "x", "A" * 43, "not base64 at all, really!!!!!!!!!!!!!!!!!"])
def test_garbage_nonces_are_not_accepted(nonce: str) -> None:
    verifier, _, _ = make_verifier()
    header = authorization(first_challenge(verifier), nonce=nonce)
    result = verifier.verify(header, method="CONNECT", uri=TARGET)
    assert result == Stale("nonce not issued by this proxy instance", "alice")


def test_a_nonce_is_bound_to_its_opaque() -> None:
    verifier, _, _ = make_verifier()
    first, second = first_challenge(verifier), first_challenge(verifier)
    params = answer_params(first)
    params["opaque"] = quote(second["opaque"])
    result = verifier.verify(render(params), method="CONNECT", uri=TARGET)
    assert result == Stale("nonce not issued by this proxy instance", "alice")


def test_nonces_of_another_verifier_with_the_same_secret_are_not_accepted() -> None:
    # As after a restart: the old process's nonce-counts are gone, so its nonces
    # must not be usable (connectcap allowed replays across restarts).
    before, _, _ = make_verifier()
    after, _, _ = make_verifier(random_start=1000)  # same secret, new random bytes
    header = authorization(first_challenge(before))
    assert after.verify(header, method="CONNECT", uri=TARGET) == Stale(
        "nonce not issued by this proxy instance", "alice"
    )


def test_a_nonce_dropped_from_tracking_is_stale_never_fresh() -> None:
    verifier, _, _ = make_verifier(max_tracked_nonces=2)
    unused = first_challenge(verifier)  # issued now, first used after the eviction
    challenges = [first_challenge(verifier) for _ in range(3)]
    for challenge in challenges:
        result = verifier.verify(authorization(challenge), method="CONNECT", uri=TARGET)
        assert isinstance(result, Accepted)
        assert verifier.tracked_nonces <= 2
    # The first one was evicted: a replay of it must not look like a first use.
    replay = authorization(challenges[0])
    assert verifier.verify(replay, method="CONNECT", uri=TARGET) == Stale(
        "nonce no longer tracked", "alice"
    )
    next_nc = authorization(challenges[0], nc="00000002")
    assert verifier.verify(next_nc, method="CONNECT", uri=TARGET) == Stale(
        "nonce no longer tracked", "alice"
    )
    # An older nonce never used is answered stale too (costs one retry).
    first_use = verifier.verify(authorization(unused), method="CONNECT", uri=TARGET)
    assert first_use == Stale("nonce no longer tracked", "alice")
    # Nonces still tracked, and new ones, keep working.
    for challenge in (challenges[2], first_challenge(verifier)):
        header = authorization(challenge, nc="00000002")
        assert isinstance(verifier.verify(header, method="CONNECT", uri=TARGET), Accepted)


def test_expired_nonces_leave_the_tracking_table() -> None:
    verifier, clock, _ = make_verifier(nonce_lifetime=60.0)
    for _ in range(5):
        header = authorization(first_challenge(verifier))
        assert isinstance(verifier.verify(header, method="CONNECT", uri=TARGET), Accepted)
    assert verifier.tracked_nonces == 5
    clock.now += 61.0
    header = authorization(first_challenge(verifier))
    assert isinstance(verifier.verify(header, method="CONNECT", uri=TARGET), Accepted)
    assert verifier.tracked_nonces == 1


def test_failed_answers_leave_no_tracking_state() -> None:
    verifier, _, _ = make_verifier()
    challenge = first_challenge(verifier)
    wrong = authorization(challenge, password="guess guess guess guess")
    assert isinstance(verifier.verify(wrong, method="CONNECT", uri=TARGET), Rejected)
    assert verifier.tracked_nonces == 0
    right = authorization(challenge)
    assert isinstance(verifier.verify(right, method="CONNECT", uri=TARGET), Accepted)


# --- credentials changes -------------------------------------------------------------


def test_the_userhash_index_follows_credential_changes() -> None:
    verifier, _, store = make_verifier(accounts=(ALICE,))
    bob = Account("bob", "another long password!", "bob@example.org")

    def verify_bob() -> object:
        challenge = first_challenge(verifier)
        header = authorization(challenge, username="bob", password=bob.password, userhash=True)
        return verifier.verify(header, method="CONNECT", uri=TARGET)

    assert verify_bob() == Rejected("unknown user", None)
    store.replace([ALICE, bob])
    assert isinstance(verify_bob(), Accepted)
    store.replace([ALICE])
    assert verify_bob() == Rejected("unknown user", None)


def test_a_password_change_takes_effect_at_once() -> None:
    verifier, _, store = make_verifier(accounts=(ALICE,))
    store.replace([Account("alice", "a brand new long password", "alice@example.org")])
    header = authorization(first_challenge(verifier))
    assert verifier.verify(header, method="CONNECT", uri=TARGET) == Rejected(
        "wrong password", "alice"
    )


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"realm": ""},
        {"realm": "line\r\nbreak"},
        {"realm": "caf\u00e9"},
        {"secret": b"short"},
        {"algorithms": ()},
        {"algorithms": ("SHA-1",)},
        {"algorithms": ("MD5", "md5")},
        {"nonce_lifetime": 0.0},
        {"nonce_lifetime": float("nan")},
        {"max_tracked_nonces": 0},
    ],
)
def test_unusable_configurations_are_option_errors(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "secret": b"s" * 16,
        "clock": Clock(),
        "random_bytes": counting_random(),
    }
    realm = options.pop("realm", REALM)
    arguments.update(options)
    with pytest.raises(OptionError):
        DigestVerifier(realm, InMemoryCredentials(), **arguments)


def test_algorithm_names_are_canonicalised() -> None:
    verifier, _, _ = make_verifier(algorithms=("sha-256-SESS", "md5"))
    assert verifier.algorithms == ("SHA-256-sess", "MD5")


def test_sha512_256_availability_is_probed() -> None:
    import hashlib

    try:
        hashlib.new("sha512_256")
    except ValueError:
        assert not HAS_SHA512_256
    else:
        assert HAS_SHA512_256


# --- parsing -------------------------------------------------------------------------


def test_parse_handles_escapes_tabs_empty_elements_and_case() -> None:
    parsed = parse_digest_header(
        'digest , USERNAME="a \\"quoted\\" \\\\ name",\tRealm = "r" ,, nc=00000001 ,'
    )
    assert isinstance(parsed, DigestParams)
    assert dict(parsed.params) == {
        "username": 'a "quoted" \\ name',
        "realm": "r",
        "nc": "00000001",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Digest", DigestParams({})),
        ("Basic dXNlcjpwYXNz", NotDigest("basic")),
        ("NTLM", NotDigest("ntlm")),
        ("", MalformedDigest("no authentication scheme")),
        ("Digest,a=1", MalformedDigest("no authentication scheme")),
        ("Digest abc==", MalformedDigest("malformed Digest parameter list")),
        ("Digest a=1 b=2", MalformedDigest("malformed Digest parameter list")),
        ('Digest a="unterminated', MalformedDigest("malformed Digest parameter list")),
        ('Digest a="x"y', MalformedDigest("malformed Digest parameter list")),
        ('Digest a="line\nbreak"', MalformedDigest("malformed Digest parameter list")),
        ("Digest a=1\n", MalformedDigest("malformed Digest parameter list")),
        ("Digest a=1, A=2", MalformedDigest("duplicate parameter: parameter")),
        ("Digest nc=1, NC=2", MalformedDigest("duplicate parameter: nc")),
        (
            "Digest a=" + "x" * MAX_AUTHORIZATION_LEN,
            MalformedDigest("authorization header too long"),
        ),
    ],
)
def test_parse_results(value: str, expected: object) -> None:
    assert parse_digest_header(value) == expected


def test_decode_ext_value() -> None:
    assert decode_ext_value("UTF-8''J%C3%A4s%C3%B8n%20Doe") == "Jäsøn Doe"
    assert decode_ext_value("utf-8'en'%e2%82%ac%20rates") == "€ rates"
    assert decode_ext_value("iso-8859-1''caf%E9") == "café"
    assert decode_ext_value("UTF-8''caf%E9") is None  # not UTF-8
    assert decode_ext_value("UTF-16''x") is None
    assert decode_ext_value("UTF-8''a b") is None  # space must be %20
    assert decode_ext_value("UTF-8''%2") is None


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_*", min_size=1, max_size=10)
# Anything a quoted-string can carry: no controls but HTAB (RFC 9110 §5.6.4).
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"], include_characters="\t"),
    max_size=20,
)


@given(st.dictionaries(_tokens, _values, max_size=8))
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    header = render({k: quote(v) for k, v in params.items()})
    parsed = parse_digest_header(header)
    assert isinstance(parsed, DigestParams)
    assert dict(parsed.params) == params


@given(st.text(max_size=300))
def test_parse_never_raises(value: str) -> None:
    result = parse_digest_header("Digest " + value)
    assert isinstance(result, DigestParams | NotDigest | MalformedDigest)
    result = parse_digest_header(value)
    assert isinstance(result, DigestParams | NotDigest | MalformedDigest)


_VERIFIER = make_verifier(algorithms=SUPPORTED_ALGORITHMS)[0]


@given(st.text(max_size=300))
def test_verify_never_raises_on_arbitrary_text(value: str) -> None:
    for header in (value, "Digest " + value):
        result = _VERIFIER.verify(header, method="CONNECT", uri=TARGET)
        assert isinstance(result, Rejected | Stale)


_PARAM_NAMES = (
    "username",
    "username*",
    "realm",
    "uri",
    "algorithm",
    "nonce",
    "nc",
    "cnonce",
    "qop",
    "response",
    "opaque",
    "userhash",
)


@given(
    st.sampled_from(SUPPORTED_ALGORITHMS),
    st.booleans(),
    st.dictionaries(
        st.sampled_from(_PARAM_NAMES),
        st.one_of(st.none(), st.text(max_size=70), st.text(max_size=70).map(quote)),
        max_size=4,
    ),
)
def test_mutated_answers_never_raise_and_reasons_never_leak_secrets(
    algorithm: str, hashed: bool, changes: dict[str, str | None]
) -> None:
    verifier, _, _ = make_verifier(algorithms=SUPPORTED_ALGORITHMS)
    challenge = first_challenge(verifier)
    params = answer_params(challenge, algorithm=algorithm, userhash=hashed)
    response = params["response"].strip('"')
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    result = verifier.verify(render(params), method="CONNECT", uri=TARGET)
    assert isinstance(result, Accepted | Stale | Rejected)
    if isinstance(result, Accepted):
        return
    for secret in (response, CNONCE, PASSWORD, challenge["nonce"]):
        assert secret not in result.reason
    for value in changes.values():
        if value is not None and len(value.strip('"')) >= 12:
            assert value.strip('"') not in result.reason
