"""Spool: names, modes whatever the umask, no overwrite across restarts, pending entries."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.proxy.test_summary import START, make_summary
from wirecap.errors import CaptureWriteError
from wirecap.proxy.spool import (
    ANONYMOUS_DIR,
    ID_FILE,
    MAX_HOST_COMPONENT,
    MAX_USER_COMPONENT,
    Spool,
    SpoolEntry,
    entry_stem,
    sanitise_host,
    sanitise_user,
    utc_stamp,
)
from wirecap.proxy.summary import from_json

PCAP_BYTES = b"\xd4\xc3\xb2\xa1" + bytes(20) + b"packets"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=["umask000", "umask022", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def record(entry: SpoolEntry, data: bytes = PCAP_BYTES) -> None:
    """What the recorder does: write the .part, rename it to the final name."""
    with open(entry.pcap_part, "wb") as f:  # truncates the reservation, keeps its mode
        f.write(data)
    os.replace(entry.pcap_part, entry.pcap)


# --- names --------------------------------------------------------------------------


def test_stem_layout() -> None:
    assert utc_stamp(START) == "20261122T152500Z"
    assert entry_stem(7, "Example.COM", 443, START) == "20261122T152500Z-7-example.com-443"
    assert entry_stem(8, "2001:db8::1", 443, START) == "20261122T152500Z-8-2001_db8__1-443"
    assert entry_stem(9, "fe80::1%eth0", 22, START) == "20261122T152500Z-9-fe80__1_eth0-22"


@pytest.mark.parametrize(
    ("host", "safe"),
    [("..", "__"), (".hidden", "_hidden"), ("a..b", "a__b"), ("a/b", "a_b"), ("", "_")],
)
def test_sanitise_host_cases(host: str, safe: str) -> None:
    assert sanitise_host(host) == safe


_SAFE_HOST = re.compile(r"[a-z0-9_-][a-z0-9._-]*")


@given(st.text(max_size=300))
def test_sanitise_host_is_always_safe(host: str) -> None:
    safe = sanitise_host(host)
    assert _SAFE_HOST.fullmatch(safe)
    assert ".." not in safe and "/" not in safe
    assert 1 <= len(safe) <= MAX_HOST_COMPONENT


def test_sanitise_user_cases() -> None:
    assert sanitise_user("alice") == "alice"
    assert sanitise_user("Bob.Smith-2") == "Bob.Smith-2"
    assert sanitise_user(None) == ANONYMOUS_DIR
    for odd in ("..", ".", "", "a/b", "a b", "alice@example.com", "../etc", ".ssh"):
        safe = sanitise_user(odd)
        assert safe not in (".", "..") and "/" not in safe and not safe.startswith(".")
    # Different unsafe names do not share a directory.
    assert sanitise_user("a/b") != sanitise_user("a b") != sanitise_user("a_b")


_SAFE_USER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@given(st.text(max_size=200))
def test_sanitise_user_is_always_safe(user: str) -> None:
    safe = sanitise_user(user)
    assert _SAFE_USER.fullmatch(safe)
    assert ".." not in safe
    assert len(safe) <= MAX_USER_COMPONENT + 9


# --- files --------------------------------------------------------------------------


def test_root_and_user_dirs_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    spool = Spool(tmp_path / "spool")
    assert mode(spool.root) == 0o700
    entry = spool.reserve("alice", "example.com", 443, START)
    assert mode(entry.directory) == 0o700
    assert entry.directory == spool.root / "alice"
    assert mode(entry.pcap_part) == 0o600
    assert entry.pcap_part.stat().st_size == 0
    assert mode(spool.root / ID_FILE) == 0o600
    record(entry)
    assert mode(entry.pcap) == 0o600
    spool.complete(entry, make_summary())
    assert mode(entry.summary) == 0o600
    spool.mark_mailed(entry)
    assert mode(entry.mailed_marker) == 0o600


def test_reserve_names(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.reserve("alice", "Example.com", 443, START)
    second = spool.reserve("alice", "example.com", 443, START)
    assert first.connection_id == 1 and second.connection_id == 2
    assert first.pcap.name == "20261122T152500Z-1-example.com-443.pcap"
    assert first.pcap_part.name == "20261122T152500Z-1-example.com-443.pcap.part"
    assert first.summary.name == "20261122T152500Z-1-example.com-443.json"
    assert (tmp_path / ID_FILE).read_text() == "3\n"


def test_ids_survive_a_restart_and_nothing_is_overwritten(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    old = spool.reserve("alice", "example.com", 443, START)
    record(old)
    spool.complete(old, make_summary())
    # A restart within the same second, for the same target.
    again = Spool(tmp_path)
    new = again.reserve("alice", "example.com", 443, START)
    assert new.connection_id > old.connection_id
    assert new.pcap != old.pcap
    assert old.pcap.read_bytes() == PCAP_BYTES


def test_a_lost_counter_file_does_not_reuse_ids(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for _ in range(5):
        spool.reserve("bob", "a", 1, START)
    (tmp_path / ID_FILE).unlink()
    assert Spool(tmp_path).reserve("bob", "a", 1, START).connection_id == 6
    (tmp_path / ID_FILE).write_text("garbage")
    assert Spool(tmp_path).reserve("bob", "a", 1, START).connection_id == 7


def test_reserve_skips_a_name_that_exists(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    # Someone (another process, a restored backup) holds the names of ids 1 and 2.
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / (entry_stem(1, "a", 1, START) + ".pcap.part")).write_bytes(b"x")
    (tmp_path / "alice" / (entry_stem(2, "a", 1, START) + ".json")).write_bytes(b"x")
    entry = spool.reserve("alice", "a", 1, START)
    assert entry.connection_id == 3
    assert (tmp_path / "alice" / (entry_stem(1, "a", 1, START) + ".pcap.part")).read_bytes() == b"x"


def test_complete_records_the_capture_name_and_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.reserve("alice", "example.com", 443, START)
    record(entry)
    done = spool.complete(entry, make_summary(connection_id=999, capture_file=None))
    assert done.summary.connection_id == entry.connection_id
    assert done.summary.capture_file == entry.pcap.name
    assert from_json(entry.summary.read_text()) == done.summary
    assert not entry.pcap_part.exists()
    assert not entry.summary.with_name(entry.summary.name + ".part").exists()


def test_complete_without_a_capture_drops_the_empty_reservation(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.reserve("alice", "nx.example", 443, START)
    done = spool.complete(entry, make_summary())
    assert done.summary.capture_file is None
    assert not entry.pcap_part.exists() and not entry.pcap.exists()
    assert spool.pending() == [done]


def test_complete_publishes_a_capture_left_as_part(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.reserve("alice", "example.com", 443, START)
    entry.pcap_part.write_bytes(PCAP_BYTES)  # a recorder that failed before renaming
    done = spool.complete(entry, make_summary())
    assert done.summary.capture_file == entry.pcap.name
    assert entry.pcap.read_bytes() == PCAP_BYTES


def test_complete_never_overwrites_a_summary(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.reserve("alice", "example.com", 443, START)
    record(entry)
    spool.complete(entry, make_summary())
    before = entry.summary.read_bytes()
    with pytest.raises(CaptureWriteError):
        spool.complete(entry, make_summary(user="mallory"))
    assert entry.summary.read_bytes() == before
    assert sorted(p.name for p in entry.directory.iterdir()) == [
        entry.summary.name,
        entry.pcap.name,
    ]


def test_pending_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entries = [spool.reserve(user, "example.com", 443, START) for user in ("bob", "alice", None)]
    done = []
    for entry in entries:
        record(entry)
        done.append(spool.complete(entry, make_summary(user=entry.directory.name)))
    running = spool.reserve("alice", "in-progress.example", 443, START)
    restarted = Spool(tmp_path)
    assert restarted.pending() == done  # oldest id first, across users
    assert list(restarted.recovered.pending) == done
    assert restarted.recovered.incomplete == (running.pcap_part,)
    assert restarted.recovered.unreadable == ()


def test_mailed_and_removed_entries_are_not_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    kept, gone = (spool.reserve("alice", "a", 1, START) for _ in range(2))
    for entry in (kept, gone):
        record(entry)
        spool.complete(entry, make_summary())
    spool.mark_mailed(kept)
    spool.mark_mailed(kept)  # idempotent
    spool.remove(gone)
    assert spool.pending() == []
    assert kept.pcap.exists() and kept.summary.exists()
    assert not gone.pcap.exists() and not gone.summary.exists()
    spool.remove(kept)
    assert not kept.mailed_marker.exists() and not kept.pcap.exists()


def test_stale_parts_are_reported_and_left_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    crashed = spool.reserve("alice", "a", 1, START)
    crashed.pcap_part.write_bytes(PCAP_BYTES)
    half = spool.reserve("alice", "b", 1, START)
    record(half)  # captured, but the summary was never written
    restarted = Spool(tmp_path)
    assert set(restarted.recovered.incomplete) == {crashed.pcap_part, half.pcap}
    assert restarted.pending() == []
    assert crashed.pcap_part.read_bytes() == PCAP_BYTES
    assert half.pcap.exists()


def test_unusable_summaries_are_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    broken = spool.reserve("alice", "a", 1, START)
    record(broken)
    broken.summary.write_text("{not json")
    missing = spool.reserve("alice", "b", 1, START)
    record(missing)
    spool.complete(missing, make_summary())
    missing.pcap.unlink()
    (tmp_path / "alice" / "stray.json").write_text("{}")
    scan = Spool(tmp_path).recovered
    assert scan.pending == ()
    reasons = dict(scan.unreadable)
    assert "not JSON" in reasons[broken.summary]
    assert "missing" in reasons[missing.summary]
    assert "not a spool file name" in reasons[tmp_path / "alice" / "stray.json"]


def test_hidden_and_symlinked_directories_are_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / (entry_stem(50, "a", 1, START) + ".json")).write_text("{}")
    (spool.root / "link").symlink_to(outside)
    (spool.root / ".hidden").mkdir()
    assert spool.scan().unreadable == ()
    assert spool.reserve("x", "a", 1, START).connection_id == 1
    with pytest.raises(CaptureWriteError, match="symbolic link"):
        spool.reserve("link", "a", 1, START)
    assert list(outside.iterdir()) == [outside / (entry_stem(50, "a", 1, START) + ".json")]


def test_root_may_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "spool").symlink_to(tmp_path / "real")
    entry = Spool(tmp_path / "spool").reserve("alice", "a", 1, START)
    assert (tmp_path / "real" / "alice" / entry.pcap_part.name).exists()


def test_root_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(CaptureWriteError):
        Spool(tmp_path / "file")


def test_existing_root_mode_is_left_to_the_admin(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir(mode=0o750)
    os.chmod(root, 0o750)
    Spool(root)
    assert mode(root) == 0o750
