"""One YAML file per gateway: pydantic models, loading with `FILE:LINE key.path: message` errors.

The models are the single source of truth: `street-gateway schema` exports their JSON Schema and
`check` validates against them. Secrets come from `${ENV_VAR}` or `token_file:`/`password_file:`
keys and are held as `SecretStr`, so they never print.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from firmware_bridge.driver import Driver
from firmware_bridge.drivers import DRIVERS
from firmware_bridge.options import DriverOptions, NoOptions
from gateway.configtypes import (
    Duration,
    Ident,
    PositiveDuration,
    Size,
    Strict,
    parse_duration,
    parse_size,
)
from gateway.privacy.disclosure import validate_cap, validate_min_count
from gateway.sinks import SINKS
from gateway.sinks.base import SinkSettings
from gateway.sources import SOURCES

if TYPE_CHECKING:  # imported where a YAML text is parsed: `run` takes its config parsed (gateway/validated_config.py)
    import yaml

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config", "parse_duration",
           "parse_size", "problem_at"]  # fmt: skip

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
    publish_address_keys: bool = Field(
        False, description="Publish usrn/uprn on the Thing and in the catalogue (address-level)."
    )


Policy = Literal["cell_key", "ten_five", "suppress"]


def _min_count(v: int | None) -> int | None:
    """min_count below 3 is refused: it would let a published number describe one person."""
    if v is not None and (problem := validate_min_count(v)):
        raise ValueError(problem)
    return v


class SensorPrivacy(Strict):
    """Per-sensor overrides of the gateway privacy defaults."""

    publish: list[str] | None = Field(
        None, description="Subset of the driver's non-personal properties to publish."
    )
    window: PositiveDuration | None = None
    min_count: int | None = Field(None, description="Contributors needed behind a published value (3 or more).")
    delay: Duration | None = Field(None, description="Hold observations back this long.")
    disclosure: Policy | None = Field(
        None, description="cell_key, ten_five or suppress: how figures of personal data are "
        "protected against differencing (docs/privacy.md).")
    residential: bool = Field(
        False, description="A home's EV bay: status leaves only as the last per hour, an hour "
        "late, with occupancy states published as UNKNOWN; other per-reading fields only if "
        "listed in publish.")

    _check_min_count = field_validator("min_count")(_min_count)


class SensorBase(Strict):
    """What every sensor entry has. Each driver gets a subclass (built from the registry below)
    whose `driver` is that driver's name, whose `options` is its `Options` model and whose
    transport keys are the sections of the sources it can arrive through."""

    id: Ident
    driver: str
    options: DriverOptions = NoOptions()
    privacy: SensorPrivacy = SensorPrivacy()
    description: str | None = None

    @property
    def transports(self) -> tuple[str, ...]:
        return tuple(n for n in SOURCES if n in type(self).model_fields)

    @property
    def transport(self) -> tuple[str, BaseModel]:
        """(source name, its section): the one transport this sensor is configured with."""
        for name in self.transports:
            section = getattr(self, name)
            if section is not None:
                return name, section
        raise AssertionError("validated: exactly one transport")  # pragma: no cover

    @model_validator(mode="after")
    def _one_transport(self) -> SensorBase:
        given = [n for n in self.transports if getattr(self, n) is not None]
        if len(given) != 1:
            keys = " or ".join(f"`{n}:`" for n in self.transports)
            raise ValueError(f"{self.driver} needs exactly one of {keys}")
        return self


@functools.cache
def _sensor_model(name: str) -> type[SensorBase]:
    """The model of a sensor entry of the driver called `name` (or an alias of it)."""
    driver: Driver = DRIVERS[name]
    names = (driver.name, *getattr(driver, "aliases", ()))
    opts = driver.options
    required = any(f.is_required() for f in opts.model_fields.values())
    fields: dict[str, Any] = {
        "driver": (Literal[names], Field(description=f"{driver.name}: see {driver.doc}")),
        "options": (opts, ...) if required else (opts, Field(default_factory=opts)),
    }
    for t in driver.transports:
        fields[t] = (SOURCES[t].section | None, None)
    return create_model(f"Sensor_{driver.name}", __base__=SensorBase, **fields)


def _sensors_type(drivers: frozenset[str]) -> Any:
    """`list[...]` of the union of the sensor models of `drivers`, told apart by `driver`. Only
    these drivers are imported (firmware_bridge/drivers/__init__.py); a name no driver has is
    refused by the union with the registry's names (`_readable`)."""
    known = sorted({DRIVERS[n].name for n in drivers if n in DRIVERS}) or ["generic_json"]
    models = tuple(_sensor_model(n) for n in known)
    return list[Annotated[Union[models], Field(discriminator="driver")]]  # type: ignore[valid-type]  # noqa: UP007


@functools.cache
def _inputs_model(sources: frozenset[str]) -> type[Strict]:
    """`inputs:` with a key for each of `sources` that has shared settings (registry order);
    only these sources are imported. Any other key is refused as unknown, as it is when every
    source is there: a source without `inputs` has no key either."""
    fields: dict[str, Any] = {}
    for name in SOURCES:
        if name in sources and (spec := SOURCES[name]).inputs:
            fields[name] = (spec.inputs | None, None)
    return create_model("Inputs", __base__=Strict, **fields)


def _sinks_type(types: frozenset[str]) -> Any:
    """`dict[name, ...]` of the union of the settings models of the sink `types` (registry
    order), told apart by `type`. Only these sinks are imported; a type no sink has is refused by
    the union with the registry's names (`_readable`)."""
    known = [t for t in SINKS if t in types] or ["file"]
    models = tuple(SINKS[t].settings for t in known)
    return dict[Ident, Annotated[Union[models], Field(discriminator="type")]]  # type: ignore[valid-type]  # noqa: UP007


Sensor = SensorBase  # a configured sensor: its driver's subclass (`config_model`)
SinkEntry = SinkSettings  # a configured sink's settings: its type's subclass (`config_model`)


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
    window: PositiveDuration | None = None
    min_count: int | None = None
    delay: Duration | None = None
    last_per_window: bool = Field(
        False, description="Per-reading properties leave only as the last value per window."
    )

    _check_min_count = field_validator("min_count")(_min_count)


class PrivacySection(Strict):
    window: PositiveDuration = Field(900, description="Aggregation window (default 15m).")
    min_count: int = Field(10, description="Nothing derived from personal data leaves with fewer "
                           "contributors (people, devices, sessions) behind it; 3 or more.")
    disclosure: Policy = Field("cell_key", description="cell_key (ONS Census 2021 cell key method), "
                               "ten_five (ONS 10-5 rule) or suppress (threshold only).")
    distinct_cap: int = Field(10_000, description="Exact pseudonyms kept per open window, then a "
                              "HyperLogLog sketch (16 KiB) and the figure is flagged an estimate.")
    location_grid_m: float = Field(100, ge=0, description="Published locations snap to this grid.")
    salt_rotation: PositiveDuration = Field(86400, description="Pseudonym key lifetime: a new key "
                                            "every period on the clock; a whole multiple of every window.")
    governance: Governance = Governance()
    footfall: FootfallMethod = FootfallMethod()
    zones: list[PrivacyZone] = Field(default_factory=list)
    street_segment: list[LonLat] | None = Field(
        None, min_length=2, description="[[lon, lat], ...]: publish the location on this street."
    )
    street_segment_publish: Literal["snapped", "midpoint"] = Field(
        "snapped", description="snapped: along the line to location_grid_m; midpoint: the middle."
    )

    _check_min_count = field_validator("min_count")(_min_count)

    @model_validator(mode="after")
    def _cap(self) -> PrivacySection:
        if problem := validate_cap(self.distinct_cap, self.min_count):
            raise ValueError(f"distinct_cap: {problem}")
        return self


class OutboxSection(Strict):
    max_bytes: Size = 2**30
    max_age: PositiveDuration = Field(30 * 86400, description="Observations older than this are dropped.")
    when_full: Literal["drop_oldest", "downsample"] = "drop_oldest"
    sync: Literal["full", "normal"] = Field(
        "full", description="full: durable on power loss (fsync per group commit)."
    )
    group_commit: Duration = Field(
        0.05,
        le=5,
        description="How long a commit waits to gather readings: longer = fewer fsyncs and "
        "less SD-card wear, at the cost of ingest latency (acks wait for the commit). With MQTT "
        "acknowledgements pending it waits less (docs/durability.md: group commit).",
    )


_HTTP = r"^https?://[^\s/]+\S*$"
EU_THEMES = ("AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "OP_DATPRO",
             "REGI", "SOCI", "TECH", "TRAN")  # fmt: skip


class ContactPoint(Strict):
    """Who answers questions about the data (DCAT-AP contact point, a vCard)."""

    name: str = Field(min_length=1, description="A team or role, e.g. Camden Open Data team.")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    url: str | None = Field(None, pattern=_HTTP, description="A contact form or page.")

    @model_validator(mode="after")
    def _reachable(self) -> ContactPoint:
        if self.email is None and self.url is None:
            raise ValueError("give an email or a url")
        return self


class CatalogueSection(Strict):
    """The open-data catalogue record (`street-gateway catalogue`, DCAT-AP 3.0 and CKAN): what
    the rest of the config does not already say. `check` warns about what is missing."""

    title: str | None = Field(None, description="Default: Street sensors: <gateway.name or id>.")
    description: str | None = Field(None, description="Default: generated from the gateway.")
    publisher: str | None = Field(
        None, description="Default: privacy.governance.controller, else the borough.")
    publisher_type: Literal[
        "LocalAuthority", "RegionalAuthority", "NationalAuthority", "SupraNationalAuthority",
        "Company", "IndustryConsortium", "NonGovernmentalOrganisation", "Academia-ScientificOrganisation",
        "StandardisationBody", "PrivateIndividual(s)",
    ] = Field("LocalAuthority", description="ADMS publisher type.")  # fmt: skip
    contact: ContactPoint | None = Field(None, description="Who answers questions about the data.")
    homepage: str | None = Field(None, pattern=_HTTP, description="The catalogue's web page.")
    licence: str = Field(
        "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/", pattern=_HTTP,
        description="Licence URL (default: Open Government Licence v3.0).")  # fmt: skip
    issued: date | None = Field(None, description="When the feeds were first published.")
    modified: date | None = Field(None, description="When they last changed (default: issued).")
    languages: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(
        default_factory=lambda: ["ENG"], description="EU language codes of the text, e.g. ENG, WEL.")
    themes: list[Literal[EU_THEMES]] | None = Field(  # type: ignore[valid-type]
        None, description="EU data themes for every dataset; default: from what each sensor measures.")
    keywords: list[str] = Field(default_factory=list)
    availability: Literal["temporary", "experimental", "available", "stable"] = Field(
        "available", description="How long the feeds are planned to stay (EU planned availability).")
    access_rights: Literal["PUBLIC", "RESTRICTED", "NON_PUBLIC"] = "PUBLIC"


class ClockSection(Strict):
    max_hold: Duration = Field(
        3600,
        description="How long sinks hold observations stamped while the clock was not yet "
        "synchronised, waiting to re-stamp them with the true time; after that they are sent "
        "as they are, flagged clock_unsynced (0: send them at once).",
    )


class Ops(Strict):
    http: str | None = Field("127.0.0.1:9108", description="host:port for health/metrics, or null.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    token: SecretStr | None = Field(
        None, description="Bearer token for ops.http (give token_file); needed beyond loopback."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header names accepted besides loopback names."
    )

    @field_validator("http")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if v is not None:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("must be host:port, e.g. 127.0.0.1:9108")
        return v


_SINKS_DOC = ("Named sink instances, each with a `type`; an entry named after a type "
              "(`influxdb:`, `mqtt:`, `file:`) may leave `type` out.")


class Config(Strict):
    # (file name, its text): the line of a key is found again from the text when a problem is
    # reported after validation (`problem_at`), rather than kept for every key of every sensor
    _source: tuple[str, str] = PrivateAttr(default=("<config>", ""))
    # False when loaded with `secrets=False` (privacy report, catalogue, datastreams): secret
    # values are placeholders then, and the pipeline refuses to run such a config
    _secrets_resolved: bool = PrivateAttr(default=True)

    gateway: GatewaySection
    # the base class holds any sensor entry; `config_model` gives the class that validates the
    # configured drivers' entries, and `json_schema` the one of every driver
    # likewise `inputs` (the sections of the sources named there) and `sinks` (the union of the
    # configured sink types' settings): `run` imports only the plugins its file names
    sensors: list[Sensor] = Field(default_factory=list)
    inputs: Strict = Field(default_factory=Strict)
    privacy: PrivacySection = PrivacySection()
    sinks: dict[Ident, SinkEntry] = Field(default_factory=dict, description=_SINKS_DOC)
    outbox: OutboxSection = OutboxSection()
    clock: ClockSection = ClockSection()
    ops: Ops = Ops()
    catalogue: CatalogueSection = CatalogueSection()

    @field_validator("sinks", mode="before")
    @classmethod
    def _sink_types(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for name, entry in v.items():
            if isinstance(entry, dict) and "type" not in entry and name in SINKS:
                entry = {**entry, "type": name}
            out[name] = entry
        return out

    def sinks_of_type(self, type_: str) -> list[tuple[str, SinkSettings]]:
        return [(name, s) for name, s in self.sinks.items() if s.type == type_]

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        seen: dict[str, int] = {}
        for i, s in enumerate(self.sensors):
            if s.id in seen:
                # the key path first: `_readable` points the problem at this sensor's `id:` line
                raise ValueError(f"sensors[{i}].id: sensor id {s.id!r} is used twice (first by sensors[{seen[s.id]}]); "
                                 "Datastream ids derive from it, so each sensor needs its own")  # fmt: skip
            seen[s.id] = i
        return self

    def input(self, source: str) -> BaseModel | None:
        """The `inputs.<source>` section, if the source has one and it is set."""
        value = getattr(self.inputs, source, None)
        return value if isinstance(value, BaseModel) else None

    @property
    def secrets_resolved(self) -> bool:
        return self._secrets_resolved

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


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int], dups: list[tuple[Loc, int, int]]) -> None:
    """Line of every key path; a key given twice in one mapping goes to `dups` as
    (its path, first line, second line): YAML itself would silently keep only the last."""
    import yaml

    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value
            if k.tag == "tag:yaml.org,2002:int" and key.isdigit():
                key = int(key)  # as the loaded data has it (`ports: {1: …}`)
            line = k.start_mark.line + 1
            if key != "<<":
                if key in first:
                    dups.append(((*loc, key), first[key], line))
                else:
                    first[key] = line
            out[(*loc, key)] = line
            _lines(v, (*loc, key), out, dups)
            out[(*loc, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out, dups)


def _fmt(loc: Loc) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


# What PyYAML says -> one plain sentence, and whether the line to name is where the construct
# started (an unclosed bracket or quote) rather than where the parser gave up.
_YAML_PLAIN: tuple[tuple[str, str, bool], ...] = (
    ("expected <block end>", "this line is indented differently from the lines above it: "
     "keys of one mapping, and items of one list, must line up exactly", False),
    ("mapping values are not allowed here", "a `key:` where YAML cannot take one: check this "
     "line's indentation, or put quotes around a value that contains `: `", False),
    ("could not find expected ':'", "a line in a mapping without `key: value` (a missing `:`?)", True),
    ("that cannot start any token", "a tab or another character YAML cannot start a value with: "
     "indent with spaces only, and quote values that start with `@` or a backtick", False),
    ("expected ',' or ']'", "a `[` list opened on this line is not closed with `]` (or a `,` is missing)", True),
    ("expected ',' or '}'", "a `{` mapping opened on this line is not closed with `}` (or a `,` is missing)", True),
    ("while scanning a quoted scalar", "a quote opened on this line is not closed", True),
    ("found undefined alias", "a value starting with `*` refers to an anchor that is not defined: "
     "put the value in quotes", False),
    ("but found another document", "a second YAML document (`---`): one gateway per file", False),
    ("did not find expected '-' indicator", "a list item is indented differently from the items above it", False),
    ("did not find expected key", "this line is indented differently from the lines above it, "
     "or a quote or bracket above is not closed", False),
)  # fmt: skip


def _yaml_problem(name: str, e: yaml.YAMLError) -> Problem:
    """A PyYAML error as one plain sentence with the line it is about."""
    problem = str(getattr(e, "problem", "") or "")
    context = str(getattr(e, "context", "") or "")
    pmark, cmark = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    for needle, sentence, at_start in _YAML_PLAIN:
        if needle in problem or needle in context:
            mark = cmark if at_start and cmark is not None else pmark
            return Problem(name, mark.line + 1 if mark is not None else None, "", sentence)
    line = pmark.line + 1 if pmark is not None else None
    return Problem(name, line, "", f"YAML cannot read this line ({problem or e})")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_FILE_KEYS = {"token_file": "token", "password_file": "password"}


@dataclass
class _Expander:
    """Resolves `${VAR}` and `*_file:` keys. With `secrets=False` nothing secret is read: an unset
    variable stays as its `${VAR}` text and a secret file is not opened, so a DPO without the
    secrets can still produce the privacy report; such a config can never run."""

    env: dict[str, str]
    secrets: bool = True
    errors: list[tuple[Loc, str]] = field(default_factory=list)

    def expand(self, data: Any, loc: Loc) -> Any:
        if isinstance(data, dict):
            return self._mapping(data, loc)
        if isinstance(data, list):
            return [self.expand(v, (*loc, i)) for i, v in enumerate(data)]
        if isinstance(data, str) and "${" in data:
            return _ENV.sub(lambda m: self._variable(m, loc), data)
        return data

    def _variable(self, m: re.Match[str], loc: Loc) -> str:
        name = m.group(1)
        value = self.env.get(name)
        if not self.secrets and not value:
            return m.group(0)
        if value is None:
            self.errors.append((loc, f"environment variable {name} is not set"))
            return ""
        if not value:
            self.errors.append((loc, f"environment variable {name} is set but empty"))
        return value

    def _mapping(self, data: dict[Any, Any], loc: Loc) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if not (isinstance(k, str) and k in SECRET_FILE_KEYS and isinstance(v, str)):
                out[k] = self.expand(v, (*loc, k))
                continue
            target = SECRET_FILE_KEYS[k]
            if target in data:
                self.errors.append(((*loc, k), f"give either {target} or {k}, not both"))
                continue
            path = self.expand(v, (*loc, k))
            if not self.secrets:
                out[target] = f"<secret from {path}, not read>"
                continue
            try:
                secret = Path(path).read_text().strip()
            except OSError as e:
                self.errors.append(((*loc, k), f"cannot read secret file {path}: {e.strerror}"))
                continue
            except UnicodeDecodeError:
                self.errors.append(((*loc, k), f"secret file {path} is not UTF-8 text"))
                continue
            if not secret:
                self.errors.append(((*loc, k), f"secret file {path} is empty"))
            out[target] = secret
        return out


def _empty_secrets(value: Any, loc: Loc) -> Iterator[Loc]:
    """Where a secret (any `SecretStr`, wherever a plugin declared one) is empty."""
    if isinstance(value, SecretStr):
        if not value.get_secret_value():
            yield loc
    elif isinstance(value, BaseModel):
        for key in type(value).model_fields:
            yield from _empty_secrets(getattr(value, key), (*loc, key))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _empty_secrets(v, (*loc, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _empty_secrets(v, (*loc, i))


def load_config(path: str | Path, env: dict[str, str] | None = None, *, secrets: bool = True) -> Config:
    """Load and validate; raise ConfigError listing every problem with its line.

    `secrets=False`: secret values are not resolved (placeholders; see `_Expander`)."""
    path = Path(path)
    name = str(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(name, None, "", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(name, None, "", "is not UTF-8 text")]) from None
    return parse_config(text, name, env, secrets=secrets)


def _parse_with(loader_class: Any, text: str, lines: dict[Loc, int], dups: list[tuple[Loc, int, int]]) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _lines(node, (), lines, dups)  # before constructing: that merges `<<:` keys into the tree
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _parse_yaml(text: str, lines: dict[Loc, int], dups: list[tuple[Loc, int, int]]) -> Any:
    """The data (what yaml.safe_load gives), and into `lines` and `dups` the line of every key
    and the keys given twice (`_lines`), from one parse by libyaml where PyYAML was built with it
    (its wheels are): PyYAML's pure-Python parser, run twice, left 1.6 MiB more resident for a
    config of 32 sensors (issue 19). A file libyaml refuses is parsed again by the pure-Python
    parser, so problems read as they always have."""
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _parse_with(fast, text, lines, dups)
        except yaml.YAMLError:
            lines.clear()
            dups.clear()
    return _parse_with(yaml.SafeLoader, text, lines, dups)


def parse_config(text: str, name: str = "<config>", env: dict[str, str] | None = None, *,
                 secrets: bool = True) -> Config:  # fmt: skip
    import yaml

    env = dict(os.environ) if env is None else env
    lines: dict[Loc, int] = {}
    dups: list[tuple[Loc, int, int]] = []
    try:
        data = _parse_yaml(text, lines, dups)
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(name, e)]) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(name, 1, "", "must be a YAML mapping with a `gateway:` section")])
    if dups:
        raise ConfigError([
            Problem(name, second, _fmt(loc), f"given twice in one mapping (first at line {first}); "
                    "YAML would silently keep only the last: merge them or remove one")
            for loc, first, second in dups
        ])  # fmt: skip

    def line_of(loc: Loc) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                return lines[loc[:n]]
        return None

    expander = _Expander(env, secrets)
    data = expander.expand(data, ())
    env_errors = expander.errors
    problems = [Problem(name, line_of(loc), _fmt(loc), msg) for loc, msg in env_errors]
    # an unset ${VAR} or an unreadable secret file is the problem, not its effect on validation
    said = {loc for loc, _ in env_errors}
    said |= {(*loc[:-1], SECRET_FILE_KEYS[loc[-1]]) for loc in list(said) if loc and loc[-1] in SECRET_FILE_KEYS}
    try:
        cfg = config_model(*_configured(data)).model_validate(data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc, msg = _readable({**err, "loc": _without_tags(tuple(err["loc"]), data)})
            if loc not in said:
                problems.append(Problem(name, line_of(loc), _fmt(loc), msg))
        cfg = None
    if cfg is not None:
        for loc in _empty_secrets(cfg, ()):
            if loc not in said:
                problems.append(Problem(name, line_of(loc), _fmt(loc), "is empty: a secret must have a value"))
    if problems or cfg is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    cfg._source = (name, text)
    cfg._secrets_resolved = secrets
    return cfg


_UNION_TAGS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "sensors": ("driver", DRIVERS),
    "sinks": ("type", SINKS),
}
_MSG_PATH = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*)*): (.+)$", re.S)


_ABSENT = object()


def _without_tags(loc: Loc, data: Any) -> Loc:
    """Drop the tags pydantic puts in a location inside a discriminated union (`sensors[0].
    chirpstack.options`, `ports[1].cayenne_lpp.options`): a step the document does not have,
    in the middle of a path that goes on."""
    out: list[str | int] = []
    node: Any = data
    for i, part in enumerate(loc):
        child: Any = _ABSENT
        if isinstance(node, dict):
            child = node.get(part, node.get(str(part), _ABSENT))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            child = node[part]
        if child is _ABSENT and isinstance(node, dict) and i < len(loc) - 1:
            continue  # not in the document: a union tag
        out.append(part)
        node = child
    return tuple(out)


def _readable(err: Any) -> tuple[Loc, str]:
    """A pydantic error as (location in the file, one plain sentence). The union tag pydantic
    puts in locations (`sensors[0].pms5003.options`) is dropped; a validator's message that
    starts with a key path (`fields[2].unit: …`) points the location at that key."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    section = loc[0] if loc else None
    if section in _UNION_TAGS and len(loc) > 2 and loc[2] in _UNION_TAGS[str(section)][1]:
        loc = (*loc[:2], *loc[3:])
    if kind in ("union_tag_invalid", "union_tag_not_found") and section in _UNION_TAGS and len(loc) == 2:
        key, registry = _UNION_TAGS[str(section)]
        what = "driver" if key == "driver" else "sink type"
        known = ", ".join(sorted(registry))
        loc = (*loc, key)
        if kind == "union_tag_invalid":
            msg = f"unknown {what} {err['ctx']['tag']!r}; known: {known}"
        else:
            msg = f"is required (one of: {known})"
        return loc, msg
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # a union inside a plugin's options
        ctx = err.get("ctx") or {}
        key = str(ctx.get("discriminator", "type")).strip("'")
        known = str(ctx.get("expected_tags", "")).replace("'", "")
        if kind == "union_tag_invalid":
            return (*loc, key), f"unknown {key} {ctx.get('tag')!r}; known: {known}"
        return (*loc, key), "is required (see `street-gateway schema`)"
    if kind == "extra_forbidden":
        return loc, "unknown key (check spelling; see `street-gateway schema`)"
    if kind == "missing":
        return loc, "is required"
    if kind == "value_error" and (m := _MSG_PATH.match(msg)):
        path: list[str | int] = []
        for part in m.group(1).split("."):
            key, *indices = part.replace("]", "").split("[")
            path += [key, *(int(i) for i in indices)]
        if loc and path and path[0] == loc[-1]:
            path = path[1:]
        loc, msg = (*loc, *path), m.group(2)
    return loc, msg


@functools.lru_cache(maxsize=1)
def key_lines(text: str) -> dict[Loc, int]:
    """The line of every key path of a config's text (`_lines`); {} for a text that does not
    parse (a validated config's always does). The last text's map is kept: `check` reports
    many problems of one config."""
    import yaml

    lines: dict[Loc, int] = {}
    try:
        _parse_yaml(text, lines, [])
    except yaml.YAMLError:
        return {}
    return lines


def problem_at(cfg: Config, loc: Loc, message: str) -> Problem:
    """A problem found after validation (unknown driver, missing port), with its line. The
    lines come from parsing the config's text again: a config keeps its text (a few KiB), not a
    path-to-line map of every key (121 KiB for 32 sensors: issue 19, peak RSS), and problems
    after validation are reported on the way to an exit, by `check`, or at a reload."""
    name, text = cfg._source
    lines = key_lines(text)
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return Problem(name, lines[loc[:n]], _fmt(loc), message)
    return Problem(name, None, _fmt(loc), message)


def iter_secret_values(cfg: Config) -> Iterator[str]:
    """Every secret value in the config (any `SecretStr`, wherever a plugin declared one), so
    logs can be checked never to contain them."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            for key in type(value).model_fields:
                yield from walk(getattr(value, key))
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from walk(v)

    yield from walk(cfg)


def _configured(data: Any) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(drivers, sink types, sources) the document names: the plugins its model needs. Only
    registered names count; anything else is reported by the model built without it."""
    data = data if isinstance(data, dict) else {}
    sensors = data.get("sensors")
    sensors = sensors if isinstance(sensors, list) else []
    drivers = frozenset(s["driver"] for s in sensors if isinstance(s, dict) and isinstance(s.get("driver"), str))
    sinks = data.get("sinks")
    types: set[str] = set()
    for name, entry in (sinks.items() if isinstance(sinks, dict) else ()):
        t = entry.get("type", name) if isinstance(entry, dict) else None
        if isinstance(t, str) and t in SINKS:
            types.add(t)
    inputs = data.get("inputs")
    sources = {n for n in (inputs if isinstance(inputs, dict) else ()) if isinstance(n, str) and n in SOURCES}
    return drivers, frozenset(types), frozenset(sources)


@functools.cache
def config_model(drivers: frozenset[str], sinks: frozenset[str], sources: frozenset[str]) -> type[Config]:
    """The `Config` that validates sensor entries of `drivers` (each against its driver's own
    model), `sinks:` entries of the sink types `sinks` and `inputs:` of `sources`, importing only
    those plugins: `run` loads what it is configured with."""
    model: type[Config] = create_model(
        "Config", __base__=Config,
        sensors=(_sensors_type(drivers), Field(default_factory=list)),
        inputs=(_inputs_model(sources), Field(default_factory=_inputs_model(sources))),
        sinks=(_sinks_type(sinks), Field(default_factory=dict, description=_SINKS_DOC)),
    )  # fmt: skip
    return model


def full_config_model() -> type[Config]:
    """The `Config` of every driver, sink and source (imports every plugin): what `schema` exports."""
    return config_model(frozenset(DRIVERS), frozenset(SINKS), frozenset(SOURCES))


def json_schema() -> dict[str, Any]:
    """The schema of every driver's, sink's and source's settings (imports every plugin)."""
    schema = full_config_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "street-gateway configuration"
    return schema
