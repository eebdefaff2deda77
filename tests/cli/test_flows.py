"""`wirecap flows` and `conntracct` end to end, as processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.flows.conntrack_netns import conntrack_netns
from wirecap.flows.metrics import FlowAggregates, PipelineMetrics

WIRECAP = [sys.executable, "-m", "wirecap"]
CONNTRACCT = [
    sys.executable,
    "-c",
    "import sys; from wirecap.cli.flows import conntracct; sys.exit(conntracct())",
]

_HOLD_UDP = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    client.sendto(bytes(72), server.getsockname())
print(client.getsockname()[1], flush=True)
sys.stdin.readline()
"""


def _run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_help_names_the_actions_and_sinks() -> None:
    done = _run(*WIRECAP, "flows", "--help")
    assert done.returncode == 0
    for word in (
        "run",
        "check",
        "dump",
        "--sink",
        "--rate-curve",
        "influxdb:URL",
        "flows.toml",
        "ENOBUFS",
    ):
        assert word in done.stdout
    assert _run(*CONNTRACCT, "--help").returncode == 0
    version = _run(*CONNTRACCT, "version")
    assert version.returncode == 0 and "conntracct" in version.stdout


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "flows.toml"
    config.write_text("sinks = 3\n")
    done = _run(*WIRECAP, "flows", "check", "--config", str(config))
    assert done.returncode == 2 and "sinks" in done.stderr
    done = _run(*WIRECAP, "flows", "--sink", "kafka:x")
    assert done.returncode == 2 and "kafka" in done.stderr
    done = _run(*CONNTRACCT, "run", "-c", str(tmp_path / "missing.yml"))
    assert done.returncode == 2 and "cannot read" in done.stderr


@pytest.mark.netns
def test_dump_prints_the_table_as_json_lines() -> None:
    with conntrack_netns() as ns:
        ns.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        holder = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "python3", "-c", _HOLD_UDP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            port = int(holder.stdout.readline())
            done = _run(*WIRECAP, "flows", "dump", "--netns", ns.name)
            peer = ns.conntrack_list()
        finally:
            holder.kill()
            holder.communicate()
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    [mine] = [line for line in lines if line["orig"]["sport"] == port]
    assert mine["event"] == "snapshot" and mine["proto"] == "udp"
    expected = peer[mine["flow_id"]]
    assert (mine["packets_orig"], mine["bytes_orig"]) == (
        expected["packets_orig"],
        expected["bytes_orig"],
    )


@pytest.mark.netns
def test_check_reports_and_suggests_fixes() -> None:
    with conntrack_netns(track=False) as ns:
        ns.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0")
        done = _run(*WIRECAP, "flows", "check", "--no-sysctl-manage", "--netns", ns.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok      ctnetlink answered a table dump" in done.stdout
    assert "warning nf_conntrack_acct = 0" in done.stdout
    assert "fix: sysctl -w net.netfilter.nf_conntrack_acct=1" in done.stdout
    assert "no flow is tracked" in done.stdout
    missing = _run(*WIRECAP, "flows", "check", "--netns", "wcf-does-not-exist")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.netns
def test_conntracct_run_with_its_yaml(tmp_path: Path) -> None:
    config = tmp_path / "conntracct.yml"
    config.write_text(
        "sinks:\n  stdout:\n    type: stdout\nsysctl_manage: true\napi_enabled: true\n"
    )
    with conntrack_netns() as ns:
        proc = subprocess.Popen(
            [*CONNTRACCT, "run", "-c", str(config), "--netns", ns.name, "--dump-interval", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            head = ""
            while "following conntrack" not in (line := proc.stderr.readline()):
                assert line, "conntracct exited early"
                head += line
            port = int(ns.python(_HOLD_UDP.replace("sys.stdin.readline()", "")))
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert any(r["event"] == "new" and r["orig"]["sport"] == port for r in records)
    assert "applied sysctl net.netfilter.nf_conntrack_acct=1" in head
    assert "api_enabled is not used" in head


def test_help_names_only_metrics_that_exist() -> None:
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    FlowAggregates(registry)
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("",)}
    exposed = {m.name + suffix for m in registry.collect() for suffix in suffixes[m.type]}
    text = _run(*WIRECAP, "flows", "--help").stdout
    named = set(re.findall(r"\b(wirecap_flows_\w+)", text))
    assert named and named <= exposed, named - exposed
