"""Configuration: wirecap's TOML, conntracct's YAML, and the flag spellings."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import OptionError
from wirecap.flows.config import (
    parse_conntracct_yaml,
    parse_rate_curve_flag,
    parse_sink_flag,
    parse_toml,
)
from wirecap.flows.curve import DEFAULT_CURVE, NS_PER_S

S = NS_PER_S

# conntracct's configs/conntracct.yml "showcase of all configurables" (reference §1.3).
CONNTRACCT_YML = """
api_enabled: true
api_endpoint: localhost:8000
probe:
  rate_curve:
    "0":
      age: 0
      rate: 20s
    "1":
      age: 60s
      rate: 60s
    "2":
      age: 5m
      rate: 5m
sinks:
  influxdb_http:
    type: influxdb-http
    address: http://localhost:8086
    database: conntracct_http
    batchSize: 200
  elastic:
    type: elastic
    address: http://localhost:9200,http://other:9200
  stdout:
    type: stdout
  dummy:
    type: dummy
sysctl_manage: true
pprof_enabled: false
pprof_endpoint: localhost:6060
"""


def test_conntracct_showcase_config() -> None:
    options = parse_conntracct_yaml(CONNTRACCT_YML)
    assert options.curve == DEFAULT_CURVE
    assert options.sysctl_manage is True
    by_name = {sink.name: sink for sink in options.sinks}
    assert set(by_name) == {"influxdb_http", "elastic", "stdout"}
    influx = by_name["influxdb_http"]
    assert (influx.type, influx.database, influx.batch_size) == ("influxdb", "conntracct_http", 200)
    assert by_name["elastic"].address == "http://localhost:9200"
    assert set(options.ignored) == {
        "api_enabled",
        "api_endpoint",
        "pprof_enabled",
        "pprof_endpoint",
        "sinks.dummy",
    }


def test_conntracct_keys_are_case_insensitive_and_zero_is_unset() -> None:
    options = parse_conntracct_yaml("""
SYSCTL_MANAGE: false
probe:
  rate_curve:
    "1": {rate: 0}
sinks:
  s: {type: STDOUT, BatchSize: 5}
""")
    assert options.sysctl_manage is False
    assert options.curve == DEFAULT_CURVE


@pytest.mark.parametrize(
    "text",
    [
        "sinks: {u: {type: influxdb-udp, address: 'localhost:8089'}}",
        "sinks: {x: {type: kafka}}",
        "sinks: {i: {type: influxdb-http, address: 'http://h:8086'}}",  # no database
        "unknown_key: 1",
        "probe: {rate_curve: {'0': {age: 10s}, '1': {age: 5s}}}",
        ": : :",
    ],
)
def test_conntracct_errors(text: str) -> None:
    with pytest.raises(OptionError):
        parse_conntracct_yaml(text)


def test_toml_config() -> None:
    options = parse_toml("""
netns = "blue"
sysctl_manage = false
dump_interval = "2s"
metrics = "127.0.0.1:9469"
flow_metrics = true
flow_metrics_ports = [8080, 9000]
update_events = false
rate_curve = [{age = "0s", rate = "5s"}, {age = "1m", rate = "30s"}]

[sinks.influx]
type = "influxdb"
address = "http://127.0.0.1:8086"
org = "o"
bucket = "b"
token = "t"
batch_size = 500
flush_interval = "250ms"

[sinks.log]
type = "file"
address = "/var/log/flows.jsonl"
""")
    assert options.netns == "blue" and options.sysctl_manage is False
    assert options.dump_interval_ns == 2 * S and options.flow_metrics
    assert options.flow_metrics_ports == (8080, 9000) and not options.update_events
    assert options.curve.interval_ns(0) == 5 * S
    influx, log = options.sinks
    assert influx.influx_v2 and influx.batch_size == 500
    assert influx.flush_interval_ns == S // 4
    assert log.type == "file"


@pytest.mark.parametrize(
    "text",
    [
        "netns = 3",
        "bogus = 1",
        "[sinks.a]\ntype = 'file'",
        "[sinks.a]\ntype = 'influxdb'\naddress = 'ftp://x'\ndatabase = 'd'",
        "[sinks.a]\ntype = 'influxdb'\naddress = 'http://x'\ntoken = 't'",
        "[sinks.a]\ntype = 'stdout'\nbatch_size = 0",
        "[sinks.a]\ntype = 'stdout'\ncolour = 'red'",
        "rate_curve = [{age = '1m'}]",
        "buffer_size = 10",
        "this is not toml",
    ],
)
def test_toml_errors(text: str) -> None:
    with pytest.raises(OptionError):
        parse_toml(text)


def test_flag_spellings() -> None:
    sink = parse_sink_flag("influxdb:http://h:8086/,database=flows,batch_size=9,name=main", 0)
    assert (sink.name, sink.address, sink.database, sink.batch_size) == (
        "main",
        "http://h:8086/",
        "flows",
        9,
    )
    assert parse_sink_flag("stdout", 3).name == "stdout3"
    curve = parse_rate_curve_flag("0:1s, 10s:2s")
    assert curve.interval_ns(11 * S) == 2 * S
    with pytest.raises(OptionError):
        parse_sink_flag("file:/x,oops", 0)
    with pytest.raises(OptionError):
        parse_rate_curve_flag("10s")


@given(st.text(max_size=200))
def test_garbage_config_is_an_option_error(text: str) -> None:
    for parse in (parse_toml, parse_conntracct_yaml):
        with contextlib.suppress(OptionError):
            parse(text)
