"""Options of `wirecap flows`, parsed once into frozen specs (pure: text in, specs out).

Two file formats are read:

- wirecap's own TOML (``flows.toml``)::

      netns = "blue"                 # optional; default: the caller's namespace
      sysctl_manage = true
      dump_interval = "2s"
      buffer_size = 8388608
      metrics = "127.0.0.1:9469"
      flow_metrics = true
      rate_curve = [{age = "0s", rate = "20s"}, {age = "1m", rate = "1m"},
                    {age = "5m", rate = "5m"}]

      [sinks.influx]
      type = "influxdb"              # influxdb | elasticsearch | stdout | file
      address = "http://127.0.0.1:8086"
      database = "flows"

- conntracct's YAML (``conntracct.yml``), so its users can switch: ``sinks``
  (``type`` influxdb-http / influxdb-udp / elastic / elasticsearch / stdout /
  stderr / dummy, ``address``, ``database``, ``batchSize``, ``sourcePorts``,
  ``username``, ``password``, ``timeout``), ``probe.rate_curve`` (points
  ``"0"``, ``"1"``, ``"2"`` with ``age``/``rate``) and ``sysctl_manage``. Keys
  match case-insensitively as in conntracct (Viper lowercases them).

Every key is also a command-line flag (`wirecap.cli.flows`); flags win.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from wirecap.errors import OptionError
from wirecap.flows.curve import DEFAULT_CURVE, NS_PER_S, RateCurve, parse_duration

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_DUMP_INTERVAL_NS",
    "MAX_BATCH_SIZE",
    "MAX_QUEUE_SIZE",
    "FlowsOptions",
    "SinkSpec",
    "SinkType",
    "parse_conntracct_yaml",
    "parse_ports_flag",
    "parse_rate_curve_flag",
    "parse_sink_flag",
    "parse_toml",
]

SinkType = Literal["stdout", "file", "influxdb", "elasticsearch"]
_SINK_TYPES: tuple[SinkType, ...] = ("stdout", "file", "influxdb", "elasticsearch")

#: Each queued event costs ~1 KiB of socket memory (skb truesize, not its ~300
#: bytes), so 32 MiB rides out ~30 000 events while the loop is busy with a dump
#: or a burst; measured (bench/flows.py): 8 MiB lost events at ~30 000 events/s,
#: as did conntrack -E -b 8388608.
DEFAULT_BUFFER_SIZE = 32 * 1024 * 1024
#: Counters are read by dumps this often; at most the curve's shortest rate.
DEFAULT_DUMP_INTERVAL_NS = 5 * NS_PER_S
#: A bulk or write body past ~10 000 records is tens of MB; servers cap bodies
#: (Elasticsearch's http.max_content_length is 100 MB) and a retry resends it all.
MAX_BATCH_SIZE = 50_000
#: Records waiting per sink; past it records are dropped and counted, so a dead
#: sink costs bounded memory (1 M records ≈ 500 MB would not be).
MAX_QUEUE_SIZE = 1_000_000

_DEFAULT_BATCH = {"stdout": 1, "file": 256, "influxdb": 128, "elasticsearch": 2048}
_DEFAULT_FLUSH_NS = {
    "stdout": 0,
    "file": NS_PER_S,
    "influxdb": NS_PER_S,
    "elasticsearch": 5 * NS_PER_S,
}


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One sink. ``address`` is a URL (InfluxDB, Elasticsearch) or a path (file)."""

    name: str
    type: SinkType
    address: str = ""
    #: InfluxDB v1 database, or the Elasticsearch index prefix.
    database: str = ""
    #: InfluxDB v2: organisation, bucket, API token (given → /api/v2/write).
    org: str = ""
    bucket: str = ""
    token: str = ""
    username: str = ""
    password: str = ""
    batch_size: int = 128
    flush_interval_ns: int = NS_PER_S
    queue_size: int = 65_536
    timeout_ns: int = 10 * NS_PER_S
    source_ports: bool = False
    #: Elasticsearch: the host name written into index names and document ids.
    hostname: str = ""

    @property
    def influx_v2(self) -> bool:
        return bool(self.token or self.bucket)


@dataclass(frozen=True, slots=True)
class FlowsOptions:
    netns: str | None = None
    sysctl_manage: bool = True
    dump_interval_ns: int = DEFAULT_DUMP_INTERVAL_NS
    buffer_size: int = DEFAULT_BUFFER_SIZE
    curve: RateCurve = DEFAULT_CURVE
    metrics: str | None = None
    flow_metrics: bool = False
    #: Destination ports above 1023 that keep their own label in flow_metrics.
    flow_metrics_ports: tuple[int, ...] = ()
    #: Subscribe to UPDATE events (state changes: TCP state, mark). They carry no
    #: counters and are most of a busy host's events; off, the kernel does not
    #: send them and TCP state comes from dumps and DESTROY.
    update_events: bool = True
    max_flows: int | None = None
    sinks: tuple[SinkSpec, ...] = field(default_factory=tuple)
    #: Keys of the file that are understood but do nothing here (said once at start).
    ignored: tuple[str, ...] = ()

    def merged(self, **changes: Any) -> FlowsOptions:
        return replace(self, **changes)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise OptionError(f"{what}: {value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise OptionError(f"{what}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise OptionError(f"{what}: {number} is outside {low}..{high}")
    return number


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "true",
        "yes",
        "on",
        "1",
        "false",
        "no",
        "off",
        "0",
    ):
        return value.lower() in ("true", "yes", "on", "1")
    raise OptionError(f"{what}: {value!r} is not true or false")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise OptionError(f"{what}: {value!r} is not a string")
    return value


def _lower_keys(mapping: Any, what: str) -> dict[str, Any]:
    if not isinstance(mapping, Mapping):
        raise OptionError(f"{what}: expected a table of keys")
    return {str(k).lower().replace("-", "_"): v for k, v in mapping.items()}


def sink_spec(name: str, raw: Mapping[str, Any]) -> SinkSpec:
    """A sink from already parsed keys (TOML table or --sink flag)."""
    keys = _lower_keys(raw, f"sink {name}")
    what = f"sink {name}"
    kind = _str(keys.pop("type", ""), f"{what}: type")
    if kind not in _SINK_TYPES:
        raise OptionError(f"{what}: type {kind!r} is not one of {', '.join(_SINK_TYPES)}")
    sink_type: SinkType = kind
    spec: dict[str, Any] = {
        "batch_size": _DEFAULT_BATCH[sink_type],
        "flush_interval_ns": _DEFAULT_FLUSH_NS[sink_type],
    }
    for key, value in keys.items():
        if key in (
            "address",
            "database",
            "org",
            "bucket",
            "token",
            "username",
            "password",
            "hostname",
        ):
            spec[key] = _str(value, f"{what}: {key}")
        elif key in ("batch_size", "batchsize"):
            spec["batch_size"] = _int(value, f"{what}: batch_size", 1, MAX_BATCH_SIZE)
        elif key in ("queue_size", "queuesize"):
            spec["queue_size"] = _int(value, f"{what}: queue_size", 1, MAX_QUEUE_SIZE)
        elif key in ("flush_interval", "flushinterval"):
            spec["flush_interval_ns"] = parse_duration(value, what=f"{what}: flush_interval")
        elif key == "timeout":
            spec["timeout_ns"] = parse_duration(value, what=f"{what}: timeout")
        elif key in ("source_ports", "sourceports"):
            spec["source_ports"] = _bool(value, f"{what}: source_ports")
        else:
            raise OptionError(f"{what}: unknown key {key!r}")
    result = SinkSpec(name=name, type=sink_type, **spec)
    _validate_sink(result)
    return result


def _validate_sink(spec: SinkSpec) -> None:
    what = f"sink {spec.name}"
    if spec.type in ("influxdb", "elasticsearch"):
        parts = urlsplit(spec.address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OptionError(f"{what}: address {spec.address!r} must be an http(s):// URL")
    if spec.type == "influxdb":
        if spec.influx_v2 and not (spec.org and spec.bucket):
            raise OptionError(f"{what}: InfluxDB v2 needs org and bucket (and a token)")
        if not spec.influx_v2 and not spec.database:
            raise OptionError(f"{what}: InfluxDB v1 needs a database (v2: org, bucket, token)")
    if spec.type == "file" and not spec.address:
        raise OptionError(f"{what}: a file sink needs address = PATH")


def parse_ports_flag(text: str) -> tuple[int, ...]:
    """``8080,8443`` → (8080, 8443)."""
    return tuple(
        _int(part.strip(), "--flow-metrics-ports", 1, 65535)
        for part in text.split(",")
        if part.strip()
    )


def parse_rate_curve_flag(text: str) -> RateCurve:
    """``AGE:RATE,AGE:RATE,...``, e.g. ``0:20s,1m:1m,5m:5m``."""
    points = []
    for part in text.split(","):
        age, sep, rate = part.strip().partition(":")
        if not sep:
            raise OptionError(f"--rate-curve: {part!r} is not AGE:RATE")
        points.append(
            (
                parse_duration(age, what="--rate-curve age"),
                parse_duration(rate, what="--rate-curve rate"),
            )
        )
    return RateCurve.of(points)


def parse_sink_flag(text: str, index: int) -> SinkSpec:
    """``TYPE[:ADDRESS][,key=value...]``, e.g. ``influxdb:http://h:8086,database=flows``."""
    head, *pairs = text.split(",")
    kind, _, address = head.partition(":")
    raw: dict[str, Any] = {"type": kind}
    if address:
        raw["address"] = address
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise OptionError(f"--sink {text!r}: {pair!r} is not key=value")
        raw[key.strip()] = value
    name = raw.pop("name", f"{kind}{index}")
    return sink_spec(str(name), raw)


def _curve_from_toml(value: Any) -> RateCurve:
    if not isinstance(value, list):
        raise OptionError("rate_curve: expected a list of {age, rate} tables")
    points = []
    for point in value:
        keys = _lower_keys(point, "rate_curve point")
        if set(keys) != {"age", "rate"}:
            raise OptionError("rate_curve: each point has exactly age and rate")
        points.append(
            (
                parse_duration(keys["age"], what="rate_curve age"),
                parse_duration(keys["rate"], what="rate_curve rate"),
            )
        )
    return RateCurve.of(points)


def parse_toml(text: str) -> FlowsOptions:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"configuration is not valid TOML: {exc}") from None
    keys = _lower_keys(document, "configuration")
    options: dict[str, Any] = {}
    for key, value in keys.items():
        if key == "netns":
            options["netns"] = _str(value, "netns") or None
        elif key == "sysctl_manage":
            options["sysctl_manage"] = _bool(value, key)
        elif key == "dump_interval":
            options["dump_interval_ns"] = parse_duration(value, what=key)
        elif key == "buffer_size":
            options["buffer_size"] = _int(value, key, 65536, 1 << 30)
        elif key == "metrics":
            options["metrics"] = _str(value, key) or None
        elif key == "flow_metrics":
            options["flow_metrics"] = _bool(value, key)
        elif key == "flow_metrics_ports":
            if not isinstance(value, list):
                raise OptionError("flow_metrics_ports: expected a list of port numbers")
            options["flow_metrics_ports"] = tuple(_int(v, key, 1, 65535) for v in value)
        elif key == "update_events":
            options["update_events"] = _bool(value, key)
        elif key == "max_flows":
            options["max_flows"] = _int(value, key, 1, 1 << 26)
        elif key == "rate_curve":
            options["curve"] = _curve_from_toml(value)
        elif key == "sinks":
            tables = _lower_keys(value, "sinks")
            options["sinks"] = tuple(sink_spec(name, raw) for name, raw in tables.items())
        else:
            raise OptionError(f"configuration: unknown key {key!r}")
    return FlowsOptions(**options)


# conntracct sink types → ours; influxdb-udp has no database of its own (the
# server's UDP listener picks it), so it cannot be mapped to an HTTP write.
_CONNTRACCT_TYPES = {
    "influxdb-http": "influxdb",
    "elastic": "elasticsearch",
    "elasticsearch": "elasticsearch",
    "stdout": "stdout",
    "stderr": "stdout",
}


def parse_conntracct_yaml(text: str) -> FlowsOptions:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OptionError(f"configuration is not valid YAML: {exc}") from None
    keys = _lower_keys(document or {}, "configuration")
    options: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in keys.items():
        if key == "sysctl_manage":
            options["sysctl_manage"] = _bool(value, key)
        elif key == "probe":
            probe = _lower_keys(value or {}, "probe")
            if "rate_curve" in probe:
                options["curve"] = _conntracct_curve(probe["rate_curve"])
        elif key == "sinks":
            sinks = []
            for name, raw in _lower_keys(value or {}, "sinks").items():
                sink = _conntracct_sink(name, _lower_keys(raw, f"sink {name}"))
                if sink is None:
                    ignored.append(f"sinks.{name}")
                else:
                    sinks.append(sink)
            options["sinks"] = tuple(sinks)
        elif key in ("api_enabled", "api_endpoint", "pprof_enabled", "pprof_endpoint"):
            ignored.append(key)
        else:
            raise OptionError(f"configuration: unknown key {key!r}")
    return FlowsOptions(ignored=tuple(ignored), **options)


def _conntracct_curve(value: Any) -> RateCurve:
    # conntracct: three points "0", "1", "2"; an omitted field keeps its default.
    defaults = DEFAULT_CURVE.points
    raw = _lower_keys(value or {}, "probe.rate_curve")
    points = []
    for index, default in enumerate(defaults):
        point = _lower_keys(raw.get(str(index)) or {}, f"probe.rate_curve.{index}")
        age = parse_duration(point.get("age", 0), what=f"rate_curve {index} age")
        rate = parse_duration(point.get("rate", 0), what=f"rate_curve {index} rate")
        # conntracct treats zero as unset (pkg/bpf/config.go), except point 0's age.
        points.append((age or (default.age_ns if index else 0), rate or default.rate_ns))
    return RateCurve.of(points)


def _conntracct_sink(name: str, raw: dict[str, Any]) -> SinkSpec | None:
    kind = _str(raw.get("type", ""), f"sink {name}: type").lower()
    if kind == "dummy":
        return None
    if kind == "influxdb-udp":
        raise OptionError(
            f"sink {name}: influxdb-udp is not supported; use type influxdb-http with the "
            "server's HTTP address and a database"
        )
    if kind not in _CONNTRACCT_TYPES:
        raise OptionError(f"sink {name}: failed parsing sink type {kind!r}")
    ours: dict[str, Any] = {"type": _CONNTRACCT_TYPES[kind]}
    for key in ("address", "database", "username", "password"):
        if key in raw:
            ours[key] = raw[key]
    if "batchsize" in raw:
        ours["batch_size"] = raw["batchsize"]
    if "sourceports" in raw:
        ours["source_ports"] = raw["sourceports"]
    if "timeout" in raw:
        ours["timeout"] = raw["timeout"]
    if ours["type"] == "elasticsearch":
        ours.setdefault("address", "http://localhost:9200")
        ours["address"] = str(ours["address"]).split(",")[0]
        ours.setdefault("database", "conntracct")
    return sink_spec(name, ours)
