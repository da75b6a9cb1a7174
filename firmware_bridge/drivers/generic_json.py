"""Generic JSON device: a declarative mapping from payload paths to properties, so that a borough
can add a device in YAML without code.

Default deny: only mapped paths are read, everything else in the payload is never emitted.
Paths are dotted keys with list indices (`data.sensors[0].pm25`); a key may hold any character
except `.`, `[` and `]`. Units must be in the small known UCUM set of `jsonpayload.KNOWN_UNITS`
or be a `{annotation}`, so that a typo (`ug/m^3`) is caught by `check` rather than published.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware_bridge.base import (
    Aggregation,
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Value,
)
from firmware_bridge.driver import MqttDriver, Options
from firmware_bridge.jsonpayload import (
    PayloadDecoder,
    as_float,
    as_int,
    concrete_topic,
    limit_problems,
    load_json,
    parse_rfc3339,
    unit_problem,
)

_PROPERTY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_KEY = re.compile(r"[^.\[\]]+")
MAX_CATEGORY_CHARS = 64

TYPES: dict[str, ObservationType] = {
    "measurement": ObservationType.MEASUREMENT,
    "count": ObservationType.COUNT,
    "category": ObservationType.CATEGORY,
    "truth": ObservationType.TRUTH,
}
AGGREGATIONS = {a.value: a for a in Aggregation if a is not Aggregation.NONE}
TIME_FORMATS = ("auto", "s", "ms", "rfc3339")
FIELD_KEYS = frozenset(
    {
        "path",
        "property",
        "unit",
        "scale",
        "offset",
        "type",
        "personal",
        "optional",
        "allowed",
        "description",
    }
)
OPTION_KEYS = frozenset(
    {"fields", "aggregates", "time_path", "time_format", "description", "max_payload_bytes"}
)

PathPart = str | int


def parse_path(text: object) -> tuple[PathPart, ...] | None:
    """`a.b[0].c` -> ("a", "b", 0, "c"); None when the syntax is wrong."""
    if not isinstance(text, str) or not text or len(text) > 256:
        return None
    parts: list[PathPart] = []
    i, n = 0, len(text)
    while True:
        if not (parts == [] and text.startswith("[")):  # only the first step may be an index
            match = _KEY.match(text, i)
            if match is None:
                return None
            parts.append(match.group())
            i = match.end()
        while i < n and text[i] == "[":
            end = text.find("]", i)
            digits = text[i + 1 : end] if end > i else ""
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 6):
                return None
            parts.append(int(digits))
            i = end + 1
        if i == n:
            return tuple(parts)
        if text[i] != ".":
            return None
        i += 1


_MISSING = object()


def resolve(document: object, path: tuple[PathPart, ...]) -> object:
    """Walk the path; `_MISSING` if any step does not exist or has the wrong container type."""
    current = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return _MISSING
            current = current[part]
        else:
            if not isinstance(current, dict) or part not in current:
                return _MISSING
            current = current[part]
    return current


@dataclass(frozen=True, slots=True)
class FieldSpec:
    index: int
    path: tuple[PathPart, ...]
    field: Field
    kind: str
    scale: float
    offset: float
    optional: bool
    allowed: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Spec:
    fields: tuple[FieldSpec, ...]
    aggregates: tuple[Field, ...]
    time_path: tuple[PathPart, ...] | None
    time_format: str
    description: str


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse_field(i: int, raw: object, problems: list[str]) -> FieldSpec | None:
    where = f"fields[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping with path, property and type")
        return None
    start = len(problems)
    problems += [f"{where}.{k}: unknown key" for k in sorted(set(raw) - FIELD_KEYS, key=str)]
    path = parse_path(raw.get("path"))
    if path is None:
        problems.append(f"{where}.path: must look like `data.pm25` or `sensors[0].value`")
    prop = raw.get("property")
    if not isinstance(prop, str) or not _PROPERTY.fullmatch(prop):
        problems.append(f"{where}.property: must be snake_case, e.g. pm2_5")
    kind = raw.get("type", "measurement")
    if kind not in TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(TYPES)}")
    unit = raw.get("unit")
    if kind in ("measurement", "count"):
        unit = unit if unit is not None or kind == "measurement" else "{count}"
        problem = unit_problem(where, unit)
        if problem:
            problems.append(problem)
    elif unit is not None:
        problems.append(f"{where}.unit: a {kind} field has no unit")
    scale, offset = _number(raw.get("scale", 1.0)), _number(raw.get("offset", 0.0))
    if scale is None or offset is None:
        problems.append(f"{where}.scale/offset: must be numbers")
    elif (scale != 1.0 or offset != 0.0) and kind not in ("measurement", "count"):
        problems.append(f"{where}.scale/offset: only numeric fields can be scaled")
    flags = {k: raw.get(k, False) for k in ("personal", "optional")}
    problems += [
        f"{where}.{k}: must be true or false" for k, v in flags.items() if not isinstance(v, bool)
    ]
    allowed = raw.get("allowed")
    if allowed is not None and (
        kind != "category"
        or not isinstance(allowed, list)
        or not all(isinstance(a, str) for a in allowed)
    ):
        problems.append(f"{where}.allowed: a list of strings, for category fields only")
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}.description: must be text")
    if len(problems) > start:
        return None
    assert path is not None and isinstance(prop, str) and scale is not None and offset is not None
    field = Field(
        key=prop,
        unit=unit if isinstance(unit, str) else None,
        observation_type=TYPES[kind],
        description=description,
        personal=bool(flags["personal"]),
    )
    return FieldSpec(
        i,
        path,
        field,
        kind,
        scale,
        offset,
        bool(flags["optional"]),
        frozenset(allowed) if isinstance(allowed, list) else None,
    )


def _parse_aggregate(i: int, raw: object, by_key: dict[str, Field], problems: list[str]) -> None:
    where = f"aggregates[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping with property, of and aggregation")
        return
    start = len(problems)
    problems += [
        f"{where}.{k}: unknown key"
        for k in sorted(
            set(raw) - {"property", "of", "aggregation", "unit", "description"}, key=str
        )
    ]
    prop, source, how = raw.get("property"), raw.get("of"), raw.get("aggregation")
    if not isinstance(prop, str) or not _PROPERTY.fullmatch(prop):
        problems.append(f"{where}.property: must be snake_case, e.g. footfall")
    elif prop in by_key:
        problems.append(f"{where}.property: `{prop}` is already used")
    if not isinstance(source, str) or source not in by_key:
        problems.append(f"{where}.of: must name a mapped field's property")
    if how not in AGGREGATIONS:
        problems.append(f"{where}.aggregation: must be one of {', '.join(AGGREGATIONS)}")
    if len(problems) > start:
        return
    assert isinstance(prop, str) and isinstance(source, str) and isinstance(how, str)
    aggregation, origin = AGGREGATIONS[how], by_key[source]
    counting = aggregation in (Aggregation.COUNT, Aggregation.DISTINCT_COUNT)
    if not counting and aggregation is not Aggregation.LAST and origin.unit is None:
        problems.append(f"{where}.aggregation: {how} needs a numeric source field")
        return
    unit = raw.get("unit", "{count}" if counting else origin.unit)
    problem = unit_problem(where, unit) if unit is not None else None
    if problem:
        problems.append(problem)
        return
    by_key[prop] = Field(
        key=prop,
        unit=unit if isinstance(unit, str) else None,
        observation_type=ObservationType.COUNT if counting else origin.observation_type,
        description=str(raw.get("description", f"{how} of {source} per window")),
        aggregation=aggregation,
        source=source,
    )


def parse_options(options: Options) -> tuple[Spec | None, list[str]]:
    """The mapping and its problems; the spec is None whenever there is any problem."""
    problems = limit_problems(options)
    problems += [f"{k}: unknown key" for k in sorted(set(options) - OPTION_KEYS, key=str)]
    raw_fields = options.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        return None, [*problems, "fields: must be a non-empty list of field mappings"]
    fields: list[FieldSpec] = []
    by_key: dict[str, Field] = {}
    for i, raw in enumerate(raw_fields):
        spec = _parse_field(i, raw, problems)
        if spec is None:
            continue
        if spec.field.key in by_key:
            problems.append(f"fields[{i}].property: `{spec.field.key}` is already mapped")
            continue
        fields.append(spec)
        by_key[spec.field.key] = spec.field
    raw_aggregates = options.get("aggregates", [])
    if not isinstance(raw_aggregates, list):
        problems.append("aggregates: must be a list")
        raw_aggregates = []
    for i, raw in enumerate(raw_aggregates):
        _parse_aggregate(i, raw, by_key, problems)
    time_path = None
    if "time_path" in options:
        time_path = parse_path(options["time_path"])
        if time_path is None:
            problems.append("time_path: must look like `ts` or `meta.time`")
    time_format = options.get("time_format", "auto")
    if time_format not in TIME_FORMATS:
        problems.append(f"time_format: must be one of {', '.join(TIME_FORMATS)}")
    description = options.get("description", "Device mapped by the generic JSON driver")
    if not isinstance(description, str):
        problems.append("description: must be text")
    if problems:
        return None, problems
    aggregates = tuple(f for f in by_key.values() if f.aggregation is not Aggregation.NONE)
    return Spec(tuple(fields), aggregates, time_path, str(time_format), str(description)), []


def _require(options: Options) -> Spec:
    spec, problems = parse_options(options)
    if spec is None:
        raise ValueError("generic_json options: " + "; ".join(problems))
    return spec


def _convert(spec: FieldSpec, raw: object) -> Value | None:
    if spec.kind == "measurement":
        number = as_float(raw)
        return None if number is None else round(number * spec.scale + spec.offset, 9)
    if spec.kind == "count":
        number = as_float(raw)
        if number is None:
            return None
        scaled = number * spec.scale + spec.offset
        return int(scaled) if float(scaled).is_integer() else None
    if spec.kind == "truth":
        if isinstance(raw, bool):
            return raw
        word = str(raw).lower() if isinstance(raw, str | int) else ""
        return {"true": True, "1": True, "false": False, "0": False}.get(word)
    integer = as_int(raw) if not isinstance(raw, str) else None
    text = raw if isinstance(raw, str) else (str(integer) if integer is not None else None)
    if text is None or not 0 < len(text) <= MAX_CATEGORY_CHARS:
        return None
    if spec.allowed is not None and text not in spec.allowed:
        return None
    return text


def _time(raw: object, time_format: str) -> float | None:
    if time_format == "rfc3339" or (time_format == "auto" and isinstance(raw, str)):
        return parse_rfc3339(raw)
    number = as_float(raw)
    if number is None:
        return None
    if time_format == "ms" or (time_format == "auto" and number > 1e11):
        number /= 1000
    return number if 0 < number < 2**33 else None


class Decoder(PayloadDecoder):
    """Stateless: one JSON payload in, at most one reading (plus one error per bad field)."""

    def __init__(self, options: Options) -> None:
        self.spec = _require(options)
        super().__init__(options)

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        document = load_json(payload, self.limit)
        if isinstance(document, DecodeError):
            return [document]
        values: dict[str, Value] = {}
        errors: list[Event] = []
        for field in self.spec.fields:
            raw = resolve(document, field.path)
            if raw is _MISSING or raw is None:
                if not field.optional:
                    errors.append(
                        DecodeError("missing_field", f"mapped field #{field.index} is absent")
                    )
                continue
            value = _convert(field, raw)
            if value is None:
                errors.append(
                    DecodeError("wrong_type", f"mapped field #{field.index} has the wrong type")
                )
                continue
            values[field.field.key] = value
        if not values:
            return errors or [DecodeError("missing_field", "no mapped field is present")]
        when = None
        flags: tuple[str, ...] = ()
        if self.spec.time_path is not None:
            when = _time(resolve(document, self.spec.time_path), self.spec.time_format)
            flags = () if when is not None else ("no_device_time",)
        return [Decoded(values, device_time=when, flags=flags), *errors]


def catalogue_for(options: Options) -> Catalogue:
    spec = _require(options)
    return Catalogue(
        driver="generic_json",
        make="any",
        model="JSON over MQTT (declarative mapping)",
        description=spec.description,
        transport="mqtt",
        fields=tuple(f.field for f in spec.fields) + spec.aggregates,
    )


def validate_options(options: Options) -> list[str]:
    return parse_options(options)[1]


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """An air-quality node in the shape of the sample in docs/drivers/generic_json.md."""
    pm25 = round(max(0.0, rng.gauss(9, 3)), 1)
    body: dict[str, Any] = {
        "ts": int(now),
        "data": {
            "pm25": pm25,
            "pm10": round(pm25 * rng.uniform(1.2, 1.8), 1),
            "temp": round(rng.gauss(14, 4), 1),
        },
        "sensors": [{"status": "ok"}],
        "device": {"id": "aq-node-7", "wifi": "BoroughIoT"},
    }
    return [(concrete_topic(base_topic, "aq-node-7"), json.dumps(body).encode())]


DRIVER = MqttDriver(
    name="generic_json",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    default_topic="sensors/+/json",
    simulate=simulate,
    validate_options=validate_options,
    doc="docs/drivers/generic_json.md",
)
