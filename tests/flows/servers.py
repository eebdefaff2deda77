"""Real InfluxDB 1.x and Prometheus servers from Debian packages, on loopback, for tests.

Each runs from a temporary directory on free loopback ports and is killed on exit.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Influx:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, database: str, query: str) -> list[dict[str, Any]]:
        """Rows of the first series of the first statement, as dicts."""
        params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ns"})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=10) as response:
            answer = json.load(response)
        result = answer["results"][0]
        if "error" in result:
            raise AssertionError(result["error"])
        rows: list[dict[str, Any]] = []
        for series in result.get("series", []):
            rows += [
                dict(zip(series["columns"], values, strict=True)) for values in series["values"]
            ]
        return rows


@contextmanager
def influxd(tmp: Path) -> Iterator[Influx]:
    if shutil.which("influxd") is None:
        pytest.skip("influxd (Debian influxdb) is not installed")
    port, rpc = free_port(), free_port()
    config = tmp / "influxdb.conf"
    config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp}/meta"
[data]
  dir = "{tmp}/data"
  wal-dir = "{tmp}/wal"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    proc = subprocess.Popen(
        ["influxd", "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", proc)
        yield Influx(port)
    finally:
        _stop(proc)


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


@contextmanager
def prometheus(tmp: Path, target: str) -> Iterator[Prometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus (Debian prometheus) is not installed")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: wirecap-flows
    scrape_interval: 1s
    static_configs:
      - targets: ["{target}"]
""")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp}/tsdb",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/-/ready", proc)
        yield Prometheus(port)
    finally:
        _stop(proc)
