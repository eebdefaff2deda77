"""ccpasswd: connectcap's format, stricter checks, safe file handling and reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import CredentialsFileError, UsageError
from wirecap.proxy.credentials import (
    MIN_PASSWORD_LENGTH,
    Account,
    CcpasswdFile,
    InMemoryCredentials,
    ReloadOutcome,
    parse_ccpasswd,
)

PW = "a password of 24 chars!!"
PW2 = "another password, 27 chars"


def test_parses_users_comments_blank_lines_and_crlf() -> None:
    text = (
        f"# users\r\n\r\nalice:{PW}:alice@example.org\r\n   \n"
        f"# bob:x:y\nbob:{PW2}:bob@mail.example.org"
    )
    accounts, warnings = parse_ccpasswd(text)
    assert warnings == []
    assert accounts == {
        "alice": Account("alice", PW, "alice@example.org"),
        "bob": Account("bob", PW2, "bob@mail.example.org"),
    }


def test_password_runs_from_the_first_to_the_last_colon() -> None:
    accounts, warnings = parse_ccpasswd("carol:pass:word:with:colons!!:carol@example.org\n")
    assert warnings == []
    assert accounts["carol"].password == "pass:word:with:colons!!"


def test_a_password_may_contain_form_feeds_and_unicode_line_separators() -> None:
    password = "long password\x0cwith\u2028odd breaks"
    accounts, warnings = parse_ccpasswd(f"dave:{password}:dave@example.org")
    assert warnings == []
    assert accounts["dave"].password == password


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("just-a-name", "line 1: not of the form username:password:email, skipped"),
        (f"alice{PW}:x", "line 1: not of the form username:password:email, skipped"),
        (f":{PW}:a@example.org", "line 1: empty username, skipped"),
        (f"al\tice:{PW}:a@example.org", "line 1: username contains control characters, skipped"),
        (
            "alice:short but 15!:a@example.org",
            f"line 1: user 'alice': password shorter than {MIN_PASSWORD_LENGTH} characters, "
            "skipped",
        ),
    ],
)
def test_unusable_lines_are_skipped_with_a_warning(line: str, warning: str) -> None:
    accounts, warnings = parse_ccpasswd(line)
    assert accounts == {}
    assert warnings == [warning]


@pytest.mark.parametrize(
    "email",
    [
        "",
        "no-at-sign",
        "two@@example.org",
        "a@b@example.org",
        "a@",
        "@example.org",
        "alice @example.org",
        "alice@example.org, mallory@example.org",
        "alice@example.org\tBcc",
        "Alice <alice@example.org>",
        "alice@exa mple.org",
        "alice@.example.org",
        "alice.@example.org",
        "ålice@example.org",
    ],
)
def test_emails_must_be_one_plain_address(email: str) -> None:
    accounts, warnings = parse_ccpasswd(f"alice:{PW}:{email}")
    assert accounts == {}
    assert warnings == [
        "line 1: user 'alice': email is not a single plain address (user@host), skipped"
    ]


@pytest.mark.parametrize(
    "email", ["a@localhost", "first.last+tag@sub.example.org", "o'brien@example.ie", "x_y@10.0.0.1"]
)
def test_plain_addresses_are_accepted(email: str) -> None:
    accounts, warnings = parse_ccpasswd(f"alice:{PW}:{email}")
    assert warnings == []
    assert accounts["alice"].email == email


def test_the_last_duplicate_wins_with_a_warning() -> None:
    text = f"alice:{PW}:old@example.org\nbob:{PW}:bob@example.org\nalice:{PW2}:new@example.org\n"
    accounts, warnings = parse_ccpasswd(text)
    assert accounts["alice"] == Account("alice", PW2, "new@example.org")
    assert list(accounts) == ["bob", "alice"]
    assert warnings == ["line 3: user 'alice' was already defined on line 1; this later entry wins"]


def test_account_repr_hides_the_password() -> None:
    account = Account("alice", PW, "alice@example.org")
    assert PW not in repr(account)
    assert "alice@example.org" in repr(account)


_password_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    min_size=4,
    max_size=40,
)


@given(
    st.lists(st.tuples(_password_text, st.sampled_from(["ok@example.org", "bad", ""])), max_size=6)
)
def test_warnings_never_contain_a_password(entries: list[tuple[str, str]]) -> None:
    # Passwords of any length, with colons that shift where the email starts:
    # whatever is wrong with a line, the warning never quotes the password (marked
    # by "ZZ", which nothing else in these lines contains).
    text = "\n".join(f"user{i}:ZZ{pw}:{email}" for i, (pw, email) in enumerate(entries))
    accounts, warnings = parse_ccpasswd(text)
    assert all("ZZ" not in warning for warning in warnings)
    assert len(accounts) + len(warnings) == len(entries)


@given(st.text(max_size=400))
def test_parse_never_raises(text: str) -> None:
    accounts, warnings = parse_ccpasswd(text)
    for name, account in accounts.items():
        assert name == account.username
        assert len(account.password) >= MIN_PASSWORD_LENGTH
        assert "\n" not in account.email and "\r" not in account.email
    assert all(w.startswith("line ") for w in warnings)


def test_in_memory_credentials_bump_their_generation() -> None:
    store = InMemoryCredentials([Account("alice", PW, "a@example.org")])
    first = store.generation
    assert store.lookup("alice") is not None and store.lookup("bob") is None
    store.replace([Account("bob", PW, "b@example.org")])
    assert store.generation == first + 1
    assert [a.username for a in store.accounts()] == ["bob"]
    assert store.lookup("alice") is None


# --- the file ------------------------------------------------------------------------


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


@pytest.fixture
def ccpasswd(tmp_path: Path) -> Path:
    return write(tmp_path / "ccpasswd", f"alice:{PW}:alice@example.org\n")


def test_loads_a_private_file(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    assert store.lookup("alice") == Account("alice", PW, "alice@example.org")
    assert [a.username for a in store.accounts()] == ["alice"]
    assert store.warnings == ()
    assert store.path == ccpasswd


def test_warnings_of_the_loaded_file_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "ccpasswd", f"alice:{PW}:alice@example.org\nbroken\n")
    store = CcpasswdFile(path)
    assert store.warnings == ("line 2: not of the form username:password:email, skipped",)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o601, 0o660, 0o644])
def test_a_file_others_may_access_is_refused(ccpasswd: Path, mode: int) -> None:
    os.chmod(ccpasswd, mode)
    with pytest.raises(CredentialsFileError, match=f"mode {mode:04o}.*chmod 600") as error:
        CcpasswdFile(ccpasswd)
    assert isinstance(error.value, UsageError)
    assert error.value.exit_code == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_file_owned_by_someone_else_is_refused(ccpasswd: Path) -> None:
    os.chown(ccpasswd, 12345, -1)
    with pytest.raises(CredentialsFileError, match="owned by uid 12345"):
        CcpasswdFile(ccpasswd)


def test_a_missing_file_a_directory_and_non_utf8_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialsFileError, match="cannot open"):
        CcpasswdFile(tmp_path / "absent")
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(CredentialsFileError, match="not a regular file"):
        CcpasswdFile(directory)
    binary = tmp_path / "binary"
    binary.write_bytes(b"alice:\xff\xfe password :a@example.org\n")
    os.chmod(binary, 0o600)
    with pytest.raises(CredentialsFileError, match="not UTF-8"):
        CcpasswdFile(binary)


def test_a_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ccpasswd"
    path.write_bytes(b"\xef\xbb\xbf" + f"j\u00e4s\u00f8n:{PW}:j@example.org\n".encode())
    os.chmod(path, 0o600)
    assert CcpasswdFile(path).lookup("jäsøn") is not None


def _touch_later(path: Path) -> None:
    # Make the change visible even on filesystems with coarse timestamps.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_reload_if_changed_notices_a_change(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    generation = store.generation
    assert store.reload_if_changed() == ReloadOutcome(reloaded=False)
    assert store.generation == generation
    write(ccpasswd, f"bob:{PW2}:bob@example.org\nbad line\n")
    _touch_later(ccpasswd)
    outcome = store.reload_if_changed()
    assert outcome.reloaded and outcome.problem is None
    assert outcome.warnings == ("line 2: not of the form username:password:email, skipped",)
    assert store.generation == generation + 1
    assert store.lookup("alice") is None and store.lookup("bob") is not None
    assert store.reload_if_changed() == ReloadOutcome(reloaded=False)


def test_reload_if_changed_notices_a_rename_over_the_file(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    replacement = write(ccpasswd.with_name("new"), f"carol:{PW}:carol@example.org\n")
    os.replace(replacement, ccpasswd)
    assert store.reload_if_changed().reloaded
    assert store.lookup("carol") is not None


def test_reload_always_reloads(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    generation = store.generation
    assert store.reload().reloaded
    assert store.generation == generation + 1


def test_a_bad_new_file_keeps_the_old_accounts(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    generation = store.generation
    write(ccpasswd, f"mallory:{PW}:mallory@example.org\n", mode=0o644)
    _touch_later(ccpasswd)
    outcome = store.reload_if_changed()
    assert not outcome.reloaded
    assert outcome.problem is not None and "group or others" in outcome.problem
    assert store.lookup("alice") is not None and store.lookup("mallory") is None
    assert store.generation == generation
    # Reported once, not on every request while the file stays as it is.
    assert store.reload_if_changed() == ReloadOutcome(reloaded=False)
    # Fixing the mode (a ctime change only) is noticed.
    os.chmod(ccpasswd, 0o600)
    assert store.reload_if_changed().reloaded
    assert store.lookup("mallory") is not None


def test_a_vanished_file_keeps_the_old_accounts(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    ccpasswd.unlink()
    outcome = store.reload_if_changed()
    assert not outcome.reloaded and outcome.problem is not None
    assert "cannot open" in outcome.problem
    assert store.lookup("alice") is not None
    assert store.reload_if_changed() == ReloadOutcome(reloaded=False)
    write(ccpasswd, f"bob:{PW}:bob@example.org\n")
    assert store.reload_if_changed().reloaded
    assert store.lookup("bob") is not None


def test_sighup_reload_of_a_bad_file_reports_and_keeps(ccpasswd: Path) -> None:
    store = CcpasswdFile(ccpasswd)
    ccpasswd.write_bytes(b"\xff\n")
    outcome = store.reload()
    assert not outcome.reloaded and outcome.problem is not None
    assert "not UTF-8" in outcome.problem
    assert store.lookup("alice") is not None
