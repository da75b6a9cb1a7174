"""One YAML file per gateway: pydantic models, loading with `FILE:LINE key.path: message` errors.

The models are the single source of truth: `street-gateway schema` exports their JSON Schema and
`check` validates against them. Secrets come from `${ENV_VAR}` or `token_file:`/`password_file:`
keys and are held as `SecretStr`, so they never print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

# --------------------------------------------------------------------------- value types

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_DUR_FACTOR = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_duration(v: Any) -> float:
    """'15m', '24h', '30d', '500ms' or a number of seconds."""
    if isinstance(v, bool):
        raise ValueError("must be a duration like 15m, 24h or 30d")
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(f"must be a duration like 15m, 24h or 30d, not {v!r}")
    return float(m.group(1)) * _DUR_FACTOR[m.group(2)]


def parse_size(v: Any) -> int:
    """'1GiB', '64MiB', '500MB' or a number of bytes."""
    if isinstance(v, bool):
        raise ValueError("must be a size like 64MiB or 1GiB")
    if isinstance(v, int):
        return v
    m = _SIZE.match(str(v))
    if not m:
        raise ValueError(f"must be a size like 64MiB or 1GiB, not {v!r}")
    return int(float(m.group(1)) * _SIZE_FACTOR[(m.group(2) or "B").lower()])


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sections


class Location(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class GatewaySection(Strict):
    id: Ident = Field(description="Stable gateway id; Thing and Datastream ids derive from it.")
    borough: str
    location: Location
    data_dir: Path = Field(Path("/var/lib/street-gateway"), description="Outbox and files.")
    name: str | None = None
    description: str | None = None
    usrn: str | None = Field(None, description="Unique Street Reference Number, optional.")
    uprn: str | None = Field(None, description="Unique Property Reference Number, optional.")


class SerialPort(Strict):
    port: str = Field(description="Prefer a stable path: /dev/serial/by-id/… or /dev/street-gateway/…")
    baud: int | None = Field(None, description="Defaults to the driver's documented baud rate.")

    @field_validator("baud")
    @classmethod
    def _baud(cls, v: int | None) -> int | None:
        allowed = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)
        if v is not None and v not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return v


class MqttTopic(Strict):
    topic: str = Field(description="Topic filter the device publishes to (+ and # allowed).")


class SensorPrivacy(Strict):
    """Per-sensor overrides of the gateway privacy defaults."""

    publish: list[str] | None = Field(
        None, description="Subset of the driver's non-personal properties to publish."
    )
    window: Duration | None = None
    min_count: int | None = Field(None, ge=1)
    delay: Duration | None = Field(None, description="Hold observations back this long.")


class Sensor(Strict):
    id: Ident
    driver: str
    serial: SerialPort | None = None
    mqtt: MqttTopic | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    privacy: SensorPrivacy = SensorPrivacy()
    description: str | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> Sensor:
        if (self.serial is None) == (self.mqtt is None):
            raise ValueError("needs exactly one of `serial:` or `mqtt:`")
        return self


class MqttBroker(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)


class InputsMqtt(MqttBroker):
    max_payload_bytes: Size = 65536


class Inputs(Strict):
    mqtt: InputsMqtt | None = None


class Governance(Strict):
    """What an information-governance lead needs on the privacy report."""

    controller: str | None = None
    dpo_contact: str | None = None
    dpia_reference: str | None = None
    lawful_basis: str | None = None
    retention: str | None = None
    data_sharing_agreement: str | None = None


LonLat = tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]]


class FootfallMethod(Strict):
    """Wi-Fi footfall method for distinct counts of MACs (docs/privacy.md)."""

    rssi_min_dbm: float = Field(-71, ge=-120, le=0, description="Probes weaker than this are ignored.")
    dwell_max: Duration = Field(1800, gt=0, description="Devices seen across longer are not footfall.")
    randomised_factor: float = Field(
        1.0, ge=0, le=1, description="Devices per distinct randomised MAC in a window."
    )
    max_tracked: int = Field(50_000, ge=100, le=1_000_000, description="Bound on the dwell table.")


class PrivacyZone(Strict):
    """A polygon where data is withheld (`suppress`) or made coarser (`coarsen`).

    A zone applies when it contains the gateway location, to every sensor or only to `sensors`.
    Zones can only make things more private: the larger window, min_count, grid and delay win.
    """

    name: str
    polygon: list[LonLat] = Field(min_length=3, description="[[lon, lat], ...]")
    action: Literal["suppress", "coarsen"]
    sensors: list[str] | None = Field(None, description="Sensor ids it applies to; all if unset.")
    grid_m: float | None = Field(None, ge=0)
    window: Duration | None = None
    min_count: int | None = Field(None, ge=1)
    delay: Duration | None = None
    last_per_window: bool = Field(
        False, description="Per-reading properties leave only as the last value per window."
    )


class PrivacySection(Strict):
    window: Duration = Field(900, description="Aggregation window (default 15m).")
    min_count: int = Field(10, ge=1, description="Counts below this are not published.")
    location_grid_m: float = Field(100, ge=0, description="Published locations snap to this grid.")
    salt_rotation: Duration = Field(86400, gt=0, description="Pseudonym key lifetime.")
    governance: Governance = Governance()
    footfall: FootfallMethod = FootfallMethod()
    zones: list[PrivacyZone] = Field(default_factory=list)
    street_segment: list[LonLat] | None = Field(
        None, min_length=2, description="[[lon, lat], ...]: publish the location on this street."
    )
    street_segment_publish: Literal["snapped", "midpoint"] = Field(
        "snapped", description="snapped: along the line to location_grid_m; midpoint: the middle."
    )


class InfluxSink(Strict):
    url: str
    org: str
    bucket: str
    token: SecretStr | None = None
    batch_size: int = Field(1000, ge=1, le=100000)
    timeout: Duration = 10
    gzip: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    max_rate: float = Field(20000, gt=0, description="Observations/s cap while catching up.")


class MqttSink(MqttBroker):
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = True
    topic_prefix: str = "v1.1"


class FileSink(Strict):
    path: Path = Path("observations.jsonl")
    max_bytes: Size = 64 * 2**20
    keep: int = Field(5, ge=1, le=1000)


class Sinks(Strict):
    influxdb: InfluxSink | None = None
    mqtt: MqttSink | None = None
    file: FileSink | None = None


class OutboxSection(Strict):
    max_bytes: Size = 2**30
    max_age: Duration = 30 * 86400
    when_full: Literal["drop_oldest", "downsample"] = "drop_oldest"
    sync: Literal["full", "normal"] = Field(
        "full", description="full: durable on power loss (fsync per group commit)."
    )
    group_commit: Duration = Field(
        0.05,
        le=5,
        description="How long a commit waits to gather readings: longer = fewer fsyncs and "
        "less SD-card wear, at the cost of ingest latency (acks wait for the commit).",
    )


class Ops(Strict):
    http: str | None = Field("127.0.0.1:9108", description="host:port for health/metrics, or null.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("http")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if v is not None:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("must be host:port, e.g. 127.0.0.1:9108")
        return v


class Config(Strict):
    _source: tuple[str, dict[tuple[str | int, ...], int]] = PrivateAttr(default=("<config>", {}))

    gateway: GatewaySection
    sensors: list[Sensor] = Field(default_factory=list)
    inputs: Inputs = Inputs()
    privacy: PrivacySection = PrivacySection()
    sinks: Sinks = Sinks()
    outbox: OutboxSection = OutboxSection()
    ops: Ops = Ops()

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        seen: set[str] = set()
        for s in self.sensors:
            if s.id in seen:
                raise ValueError(f"sensor id {s.id!r} is used twice")
            seen.add(s.id)
        return self

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config live under the data dir."""
        return path if path.is_absolute() else self.gateway.data_dir / path


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem found in a config file, each as one readable line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


Loc = tuple[str | int, ...]


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*loc, key)] = k.start_mark.line + 1
            _lines(v, (*loc, key), out)
            out[(*loc, key)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out)


def _fmt(loc: Loc) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_FILE_KEYS = {"token_file": "token", "password_file": "password"}


def _expand(data: Any, loc: Loc, env: dict[str, str], errors: list[tuple[Loc, str]]) -> Any:
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and k in SECRET_FILE_KEYS and isinstance(v, str):
                target = SECRET_FILE_KEYS[k]
                if target in data:
                    errors.append(((*loc, k), f"give either {target} or {k}, not both"))
                    continue
                try:
                    out[target] = Path(_expand(v, (*loc, k), env, errors)).read_text().strip()
                except OSError as e:
                    errors.append(((*loc, k), f"cannot read secret file: {e.strerror}"))
                continue
            out[k] = _expand(v, (*loc, k), env, errors)
        return out
    if isinstance(data, list):
        return [_expand(v, (*loc, i), env, errors) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                errors.append((loc, f"environment variable {name} is not set"))
                return ""
            return env[name]

        return _ENV.sub(sub, data)
    return data


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Load and validate; raise ConfigError listing every problem with its line."""
    path = Path(path)
    name = str(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(name, None, "", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(name, None, "", "is not UTF-8 text")]) from None
    return parse_config(text, name, env)


def parse_config(text: str, name: str = "<config>", env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(e, "problem", None) or str(e)
        raise ConfigError([Problem(name, line, "", f"YAML syntax: {msg}")]) from None
    if node is None or not isinstance(data, dict):
        raise ConfigError([Problem(name, 1, "", "must be a YAML mapping with a `gateway:` section")])
    lines: dict[Loc, int] = {}
    _lines(node, (), lines)

    def line_of(loc: Loc) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                return lines[loc[:n]]
        return None

    env_errors: list[tuple[Loc, str]] = []
    data = _expand(data, (), env, env_errors)
    problems = [Problem(name, line_of(loc), _fmt(loc), msg) for loc, msg in env_errors]
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see `street-gateway schema`)"
            elif err["type"] == "missing":
                msg = "is required"
            problems.append(Problem(name, line_of(loc), _fmt(loc), msg))
        cfg = None
    if problems or cfg is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    cfg._source = (name, lines)
    return cfg


def problem_at(cfg: Config, loc: Loc, message: str) -> Problem:
    """A problem found after validation (unknown driver, missing port), with its line."""
    name, lines = cfg._source
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return Problem(name, lines[loc[:n]], _fmt(loc), message)
    return Problem(name, None, _fmt(loc), message)


def iter_secret_values(cfg: Config) -> Iterator[str]:
    """Every secret value in the config, so logs can be checked never to contain them."""
    for broker in (cfg.inputs.mqtt, cfg.sinks.mqtt):
        if broker is not None and broker.password is not None:
            yield broker.password.get_secret_value()
    if cfg.sinks.influxdb is not None and cfg.sinks.influxdb.token is not None:
        yield cfg.sinks.influxdb.token.get_secret_value()


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "street-gateway configuration"
    return schema
