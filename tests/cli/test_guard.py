"""`wirecap guard` and `tcpcap` from the command line: options, check, list, unblock."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.guard.netns_topology import empty_namespace
from wirecap.cli.guard import _forget_in_state, build_parser, load_options, tcpcap_defaults
from wirecap.errors import OptionError
from wirecap.guard import nft
from wirecap.guard.detectors import PortScanSpec, Reason, SynRateSpec
from wirecap.guard.nft import KernelLimitSpec, NftLayout
from wirecap.guard.options import ListenAddress
from wirecap.guard.policy import Block
from wirecap.guard.service import lock_state
from wirecap.guard.statefile import SavedBlock, decode_state, encode_state

WIRECAP = [sys.executable, "-m", "wirecap", "guard"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("wirecap guard").parse_args(argv)


def test_defaults_and_flags() -> None:
    options = load_options(parse())
    assert options.interface == "any" and options.metrics is None and not options.dry_run
    assert options.port_scan == PortScanSpec(15, 60.0)
    assert options.syn_rate == SynRateSpec(50.0, 100)
    assert options.half_open is None and options.layout.kernel_limit is None
    options = load_options(
        parse(
            "-i",
            "eth1",
            "--metrics",
            ":9112",
            "--dry-run",
            "--allow",
            "10.0.0.0/8",
            "--port-scan",
            "3/30",
            "--syn-rate",
            "100",
            "--half-open",
            "20",
            "--block-time",
            "60",
            "--escalate",
            "1.5",
            "--max-block-time",
            "600",
            "--kernel-limit",
            "200/300",
            "--table",
            "guard_t",
            "--no-state-file",
            "--log-format",
            "json",
            "--no-connection-log",
            "--nft-backend",
            "command",
            "--nft-command",
            "/sbin/nft",
            "--reconcile",
            "2",
            "--tcpcap-metrics",
        )
    )
    assert options.interface == "eth1" and options.metrics == ListenAddress("", 9112)
    assert options.dry_run and options.allow == ("10.0.0.0/8",)
    assert options.port_scan == PortScanSpec(3, 30.0)
    assert options.syn_rate == SynRateSpec(100.0, 200)
    assert options.half_open is not None and options.half_open.max_half_open == 20
    assert (options.block.timeout_s, options.block.factor, options.block.max_timeout_s) == (
        60,
        1.5,
        600,
    )
    assert options.layout == NftLayout(table="guard_t", kernel_limit=KernelLimitSpec(200, 300))
    assert options.state_file is None and options.log.format == "json"
    assert not options.log.connections and options.backend == "command"
    assert options.reconcile_s == 2 and options.tcpcap_metrics
    off = load_options(parse("--port-scan", "off", "--syn-rate", "off"))
    assert off.port_scan is None and off.syn_rate is None


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "guard.yml"
    config.write_text("interface: eth2\nport_scan: {ports: 5, window: 10}\nallow: [10.1.0.0/16]\n")
    options = load_options(
        parse("--config", str(config), "--port-scan", "7/20", "--allow", "10.2.0.0/16")
    )
    assert options.interface == "eth2"
    assert options.port_scan == PortScanSpec(7, 20.0)
    assert options.allow == ("10.1.0.0/16", "10.2.0.0/16")


@pytest.mark.parametrize(
    "argv",
    [
        ["--syn-rate", "fast"],
        ["--syn-rate", "nan"],
        ["--port-scan", "inf/60"],
        ["--kernel-limit", "-5"],
        ["--port-scan", "1/60"],
        ["--allow", "10.0.0.0/40"],
        ["--metrics", "9112"],
        ["--table", "x y"],
        ["--config", "/nonexistent/guard.yml"],
        ["--block-time", "0"],
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(OptionError):
        load_options(parse(*argv))


def test_tcpcap_defaults_honour_its_environment() -> None:
    options = tcpcap_defaults({"INTERFACE_NAME": "ens3", "PUBLIC_IP": "203.0.113.5"})
    assert options.interface == "ens3" and options.metrics == ListenAddress("", 2112)
    assert options.port_scan == PortScanSpec(3, 60.0) and options.tcpcap_metrics
    assert options.allow_list().match(bytes([203, 0, 113, 5])) is not None
    assert tcpcap_defaults({}).interface == "eth0"
    with pytest.raises(OptionError, match="PUBLIC_IP"):
        tcpcap_defaults({"PUBLIC_IP": "localhost"})


def test_help_documents_metrics_actions_and_exit_status() -> None:
    out = subprocess.run([*WIRECAP, "--help"], capture_output=True, text=True, check=True).stdout
    for text in (
        "wirecap_guard_syn_total{family}",
        "wirecap_guard_blocks_total{reason}",
        "exit status:",
        "unblock",
        "--kernel-limit",
        "tcpcap_processed_conns_total",
    ):
        assert text in out
    compat = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from wirecap.cli.guard import tcpcap; sys.exit(tcpcap(['--help']))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compat.returncode == 0 and compat.stdout.startswith("usage: tcpcap")


def test_addresses_belong_to_unblock_only() -> None:
    done = subprocess.run([*WIRECAP, "list", "10.0.0.1"], capture_output=True, text=True)
    assert done.returncode == 2 and "unblock action only" in done.stderr
    done = subprocess.run(
        [*WIRECAP, "unblock", "10.0.0.1", "--all"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "not both" in done.stderr
    done = subprocess.run([*WIRECAP, "--port-scan", "zero"], capture_output=True, text=True)
    assert done.returncode == 2 and "--port-scan" in done.stderr


@pytest.mark.netns
def test_check_in_a_namespace() -> None:
    with empty_namespace() as ns:
        good = subprocess.run(
            ["ip", "netns", "exec", ns, *WIRECAP, "check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        bad = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                *WIRECAP,
                "check",
                "--nft-backend",
                "command",
                "--nft-command",
                "/nonexistent/nft",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert good.returncode == 0, good.stderr
    assert "nftables: ok (LibraryEnforcer); table inet wirecap_guard: absent" in good.stdout
    assert "own addresses: 127.0.0.1, ::1" in good.stdout
    assert "capture filter: ok" in good.stdout
    assert bad.returncode == 3 and "nftables: FAILED: the nft command" in bad.stdout


@pytest.mark.netns
def test_list_and_unblock_in_a_namespace(tmp_path: Path) -> None:
    layout = NftLayout()
    blocks = [
        Block(bytes([10, 208, 0, 1]), 300, Reason.PORT_SCAN, 1, "", 0),
        Block(bytes([10, 208, 0, 2]), 600, Reason.SYN_RATE, 2, "", 0),
        Block(bytes.fromhex("fd080000000000000000000000000001"), 900, Reason.HALF_OPEN, 1, "", 0),
    ]
    document = json.dumps(
        nft.request(nft.setup_commands(layout) + nft.block_commands(layout, blocks))
    )
    state = tmp_path / "guard.json"
    state.write_text(
        encode_state(
            [SavedBlock(b.address, 2_000_000_000 * 10**9, b.reason, b.offence) for b in blocks], []
        ).decode()
    )
    with empty_namespace() as ns:

        def guard(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ip", "netns", "exec", ns, *WIRECAP, *argv, "--state-file", str(state)],
                capture_output=True,
                text=True,
                timeout=60,
            )

        absent = guard("list")
        assert absent.returncode == 0 and "does not exist" in absent.stdout
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-j", "-f", "-"],
            input=document,
            text=True,
            check=True,
            timeout=30,
        )
        listed = guard("list")
        assert listed.returncode == 0
        assert "10.208.0.2" in listed.stdout and "syn-rate #2" in listed.stdout
        rows = json.loads(guard("list", "--json").stdout)
        assert [(r["address"], r["timeout"], r["reason"]) for r in rows] == [
            ("10.208.0.1", 300, "port-scan"),
            ("10.208.0.2", 600, "syn-rate"),
            ("fd08::1", 900, "half-open"),
        ]
        one = guard("unblock", "10.208.0.1", "10.208.0.9")
        assert one.returncode == 1
        assert "unblocked 10.208.0.1" in one.stdout and "not blocked: 10.208.0.9" in one.stderr
        assert [b.address[-1] for b in decode_state(state.read_bytes()).blocks] == [2, 1]
        every = guard("unblock", "--all")
        assert every.returncode == 0 and "unblocked fd08::1" in every.stdout
        assert json.loads(guard("list", "--json").stdout) == []
    assert decode_state(state.read_bytes()).blocks == ()


def test_unblock_leaves_the_state_file_to_a_running_guard(tmp_path: Path) -> None:
    """A guard holding the state file's lock rewrites it itself; unblock must not race it."""
    state = tmp_path / "guard.json"
    block = SavedBlock(bytes([10, 208, 0, 1]), 2_000_000_000 * 10**9, Reason.PORT_SCAN, 1)
    state.write_bytes(encode_state([block], []))
    options = load_options(parse("--state-file", str(state)))
    held = lock_state(state)
    assert held is not None
    try:
        _forget_in_state(options, {block.address})
        assert decode_state(state.read_bytes()).blocks == (block,)
    finally:
        os.close(held)
    _forget_in_state(options, {block.address})
    assert decode_state(state.read_bytes()).blocks == ()
