"""A declarative mapping from a JSON document to fields: paths, units, roles and aggregates.

Pure. Used by the generic_json profile (a device's own JSON) and the LoRaWAN profiles (a network
server's decoded payload), so that one YAML shape maps both. Default deny: only mapped paths are
read. Paths are dotted keys with list indices (`data.sensors[0].pm25`); a key may hold any
character except `.`, `[` and `]`. Units must be valid UCUM (`firmware_bridge.units`), so a
typo (`ug/m^3`) is caught by `check` rather than published.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import Field as Opt
from pydantic import ValidationInfo, field_validator, model_validator

from firmware_bridge import units
from firmware_bridge.base import (
    DEFAULT_LIMIT,
    Aggregation,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Role,
    Value,
)
from firmware_bridge.jsonpayload import as_float, as_int, parse_rfc3339
from firmware_bridge.options import VOCABULARY_NEEDED, DriverOptions, Vocabulary

_KEY = re.compile(r"[^.\[\]]+")
MAX_CATEGORY_CHARS = 64
PROPERTY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

TYPES: dict[str, ObservationType] = {
    "measurement": ObservationType.MEASUREMENT,
    "count": ObservationType.COUNT,
    "category": ObservationType.CATEGORY,
    "truth": ObservationType.TRUTH,
}
AGGREGATIONS = {a.value: a for a in Aggregation if a is not Aggregation.NONE}

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


M = TypeVar("M", bound="PropertyMapping")


def unique_properties(mappings: list[M]) -> list[M]:
    """A property is mapped once: the second mapping of a name is refused with its index."""
    seen: set[str] = set()
    for i, f in enumerate(mappings):
        if f.property in seen:
            raise ValueError(f"fields[{i}].property: `{f.property}` is already mapped")
        seen.add(f.property)
    return mappings


class PropertyMapping(DriverOptions):
    """What one value of a device's document is: its property, type, unit, role, vocabulary and
    range. Shared by every declarative mapping (a JSON path here, a SenML name in `senml`)."""

    property: str = Opt(pattern=PROPERTY_PATTERN, description="snake_case property name")
    type: Literal["measurement", "count", "category", "truth"] = "measurement"
    unit: str | None = Opt(None, description="UCUM code; required for measurements")
    personal: bool = Opt(False, description="Never published raw; only through aggregates.")
    role: Role | None = Opt(None, description="What the value is as far as people are concerned; "
                            "`personal: true` means identifier (category) or person_event.")
    allowed: Vocabulary | None = Opt(
        None, description="Category vocabulary, required for a category that is published: "
        "the only words that may leave (free text never does)."
    )
    description: str = ""
    minimum: float | None = Opt(None, allow_inf_nan=False, description="Physical range, after "
                                "scaling: a value outside it is withheld (default ±1e9).")
    maximum: float | None = Opt(None, allow_inf_nan=False)

    def numeric(self) -> bool:
        return self.type in ("measurement", "count")

    @model_validator(mode="after")
    def _property_consistent(self) -> PropertyMapping:
        if self.type == "measurement" and self.unit is None:
            raise ValueError("unit: a measurement needs a UCUM unit, e.g. ug/m3")
        if self.unit is not None:
            if not self.numeric():
                raise ValueError(f"unit: a {self.type} field has no unit")
            problem = units.problem(self.unit)
            if problem:
                raise ValueError(f"unit: {problem}")
        if self.allowed is not None and self.type != "category":
            raise ValueError("allowed: a vocabulary is for category fields only")
        if (self.minimum is not None or self.maximum is not None) and not self.numeric():
            raise ValueError("minimum/maximum: only numeric fields have a range")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum: must not exceed maximum")
        if self.role is not None and self.personal and self.role is Role.READING:
            raise ValueError("role: `personal: true` contradicts `role: reading`")
        if self.type == "category" and self.allowed is None and not self.to_field().personal:
            raise ValueError(VOCABULARY_NEEDED)
        return self

    def to_field(self) -> Field:
        low = self.minimum if self.minimum is not None else (-DEFAULT_LIMIT if self.numeric() else None)
        high = self.maximum if self.maximum is not None else (DEFAULT_LIMIT if self.numeric() else None)
        role = self.role or Role.READING
        if self.personal and self.role is None:
            role = Role.IDENTIFIER if self.type in ("category", "truth") else Role.PERSON_EVENT
        unit = self.unit if self.unit is not None or self.type != "count" else "{count}"
        return Field(key=self.property, unit=unit, observation_type=TYPES[self.type],
                     description=self.description, role=role,
                     vocabulary=frozenset(self.allowed) if self.allowed is not None else None,
                     minimum=low, maximum=high)  # fmt: skip


class FieldMapping(PropertyMapping):
    """One payload path mapped to a property."""

    path: str = Opt(description="Dotted keys and list indices, e.g. data.sensors[0].pm25")
    scale: float = Opt(1.0, allow_inf_nan=False, description="value x scale + offset")
    offset: float = Opt(0.0, allow_inf_nan=False)
    optional: bool = Opt(False, description="A missing value is not an error.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if parse_path(v) is None:
            raise ValueError("must look like `data.pm25` or `sensors[0].value`")
        return v

    @model_validator(mode="after")
    def _scaled(self) -> FieldMapping:
        if (self.scale != 1.0 or self.offset != 0.0) and not self.numeric():
            raise ValueError("scale/offset: only numeric fields can be scaled")
        return self


class AggregateMapping(DriverOptions):
    """A property computed per window by the privacy stage from a mapped field."""

    property: str = Opt(pattern=PROPERTY_PATTERN)
    of: str = Opt(description="A mapped field's property")
    aggregation: Literal["distinct_count", "sum", "mean", "count", "last", "increment", "max"]
    unit: str | None = None
    description: str | None = None

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        if v is not None and (problem := units.problem(v)):
            raise ValueError(problem)
        return v


class Mapping(DriverOptions):
    """Paths of a JSON document mapped to fields, and the aggregates derived from them. Shared
    with the LoRaWAN profiles, which map a network server's decoded payload the same way."""

    fields: list[FieldMapping] = Opt(min_length=1, max_length=256)
    aggregates: list[AggregateMapping] = Opt(default_factory=list, max_length=64)
    time_path: str | None = Opt(None, description="Where the device time is, e.g. ts")
    time_format: Literal["auto", "s", "ms", "rfc3339"] = "auto"

    @field_validator("fields")
    @classmethod
    def _unique(cls, v: list[FieldMapping]) -> list[FieldMapping]:
        return unique_properties(v)

    @field_validator("time_path")
    @classmethod
    def _time_path(cls, v: str | None) -> str | None:
        if v is not None and parse_path(v) is None:
            raise ValueError("must look like `ts` or `meta.time`")
        return v

    @field_validator("aggregates")
    @classmethod
    def _sources(cls, v: list[AggregateMapping], info: ValidationInfo) -> list[AggregateMapping]:
        fields: list[FieldMapping] = info.data.get("fields") or []
        by_key = {f.property: f for f in fields}
        for i, a in enumerate(v):
            if a.property in by_key:
                raise ValueError(f"aggregates[{i}].property: `{a.property}` is already used")
            source = by_key.get(a.of)
            if source is None:
                raise ValueError(f"aggregates[{i}].of: must name a mapped field's property")
            counting = a.aggregation in ("count", "distinct_count")
            if not counting and a.aggregation != "last" and source.type not in ("measurement", "count"):
                raise ValueError(f"aggregates[{i}].aggregation: {a.aggregation} needs a numeric source")
            by_key[a.property] = source
        return v


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


def _aggregate_field(a: AggregateMapping, origin: Field) -> Field:
    kind = AGGREGATIONS[a.aggregation]
    counting = kind in (Aggregation.COUNT, Aggregation.DISTINCT_COUNT)
    return Field(
        key=a.property,
        unit=a.unit if a.unit is not None else ("{count}" if counting else origin.unit),
        observation_type=ObservationType.COUNT if counting else origin.observation_type,
        description=a.description or f"{a.aggregation} of {a.of} per window",
        aggregation=kind,
        source=a.of,
        vocabulary=origin.vocabulary if kind is Aggregation.LAST else None,  # `last` publishes the word
    )


def build_spec(options: Mapping, description: str = "") -> Spec:
    """The decoder's plan, from options that are already valid (so this cannot fail)."""
    fields: list[FieldSpec] = []
    by_key: dict[str, Field] = {}
    for i, m in enumerate(options.fields):
        path = parse_path(m.path)
        if path is None:  # validated
            raise AssertionError("path is not None")
        f = m.to_field()
        by_key[f.key] = f
        fields.append(FieldSpec(i, path, f, m.type, m.scale, m.offset, m.optional,
                                frozenset(m.allowed) if m.allowed is not None else None))  # fmt: skip
    aggregates = []
    for a in options.aggregates:
        agg = _aggregate_field(a, by_key[a.of])
        by_key[agg.key] = agg
        aggregates.append(agg)
    time_path = parse_path(options.time_path) if options.time_path is not None else None
    return Spec(tuple(fields), tuple(aggregates), time_path, options.time_format,
                description)  # fmt: skip


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
    return text  # checked against the vocabulary by the caller, which counts it apart


def _time(raw: object, time_format: str) -> float | None:
    if time_format == "rfc3339" or (time_format == "auto" and isinstance(raw, str)):
        return parse_rfc3339(raw)
    number = as_float(raw)
    if number is None:
        return None
    if time_format == "ms" or (time_format == "auto" and number > 1e11):
        number /= 1000
    return number if 0 < number < 2**33 else None


def map_document(spec: Spec, document: object) -> list[Event]:
    """One parsed JSON document through the mapping: at most one reading, plus one error per
    bad field. Pure; shared with the LoRaWAN profiles' decoded payloads."""
    values: dict[str, Value] = {}
    errors: list[Event] = []
    flat = type(document) is dict
    for field in spec.fields:
        path = field.path
        if flat and len(path) == 1 and type(key := path[0]) is str:  # a top-level key: `resolve`
            raw = document.get(key, _MISSING)  # type: ignore[attr-defined]
        else:
            raw = resolve(document, path)
        if raw is _MISSING or raw is None:
            if not field.optional:
                errors.append(DecodeError("missing_field", f"mapped field #{field.index} is absent"))
            continue
        if type(raw) is float and field.kind == "measurement" and math.isfinite(raw):
            value: Value | None = round(raw * field.scale + field.offset, 9)  # `_convert`, usually
        else:
            value = _convert(field, raw)
        if value is None:
            errors.append(DecodeError("wrong_type", f"mapped field #{field.index} has the wrong type"))
            continue
        if field.allowed is not None and value not in field.allowed:
            errors.append(DecodeError(
                "not_in_vocabulary", f"mapped field #{field.index} holds a word outside its vocabulary"
            ))  # fmt: skip
            continue
        values[field.field.key] = value
    if not values:
        return errors or [DecodeError("missing_field", "no mapped field is present")]
    when = None
    flags: tuple[str, ...] = ()
    if spec.time_path is not None:
        when = _time(resolve(document, spec.time_path), spec.time_format)
        flags = () if when is not None else ("no_device_time",)
    return [Decoded(values, device_time=when, flags=flags), *errors]
