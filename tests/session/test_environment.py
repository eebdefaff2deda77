"""SSLKEYLOGFILE is put back exactly: old value, or no variable at all."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wirecap.session.environment import KEYLOG_VARIABLE, restore_variable, set_variable


def test_unset_before_is_unset_after() -> None:
    environ: dict[str, str] = {"PATH": "/bin"}
    saved = set_variable(environ, KEYLOG_VARIABLE, "/tmp/k")
    assert environ[KEYLOG_VARIABLE] == "/tmp/k"
    restore_variable(environ, saved)
    assert environ == {"PATH": "/bin"}


def test_set_before_gets_its_value_back() -> None:
    environ = {KEYLOG_VARIABLE: "/home/me/keys.log"}
    saved = set_variable(environ, KEYLOG_VARIABLE, "/tmp/k")
    restore_variable(environ, saved)
    assert environ == {KEYLOG_VARIABLE: "/home/me/keys.log"}


def test_empty_value_is_not_absence() -> None:
    environ = {KEYLOG_VARIABLE: ""}
    restore_variable(environ, set_variable(environ, KEYLOG_VARIABLE, "/tmp/k"))
    assert environ == {KEYLOG_VARIABLE: ""}


def test_nested_sets_unwind_in_order() -> None:
    environ: dict[str, str] = {}
    outer = set_variable(environ, KEYLOG_VARIABLE, "/outer")
    inner = set_variable(environ, KEYLOG_VARIABLE, "/inner")
    restore_variable(environ, inner)
    assert environ[KEYLOG_VARIABLE] == "/outer"
    restore_variable(environ, outer)
    assert KEYLOG_VARIABLE not in environ


@given(previous=st.none() | st.text(), value=st.text())
def test_restore_is_exact_for_any_value(previous: str | None, value: str) -> None:
    environ = {} if previous is None else {KEYLOG_VARIABLE: previous}
    before = dict(environ)
    restore_variable(environ, set_variable(environ, KEYLOG_VARIABLE, value))
    assert environ == before
