"""SenML JSON (RFC 8428) packs, with RFC 8798 secondary units and RFC 9100 versions.

Names and times are resolved with the base fields (bn, bt, bu, bv, bs), then matched against
the configured mapping by full name, else by name suffix; unmapped names are dropped (default
deny), so device identifiers embedded in names never go further. Absolute times (>= 2**28)
become the device time; relative times (RFC 8428: seconds relative to "now") cannot be resolved
without a clock, so those readings carry no device time and the flag `relative_time`, and the
gateway stamps them on receipt.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware_bridge.base import (
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
    concrete_topic,
    is_number,
    limit_problems,
    load_json,
    unit_problem,
)

RELATIVE_LIMIT = 2**28  # RFC 8428 section 4.5.3
LATEST_PLAUSIBLE = 2**33  # year 2242: anything later is a broken clock
BASE_VERSION = 10
KNOWN_FEATURES = 1 << 4  # RFC 9100 feature code 4: secondary units (so bver 26 = 10 + 16)
MAX_CATEGORY_CHARS = 64

# SenML unit symbol (RFC 8428 and RFC 8798 secondary units) -> UCUM code
SENML_TO_UCUM: dict[str, str] = {
    "Cel": "Cel", "K": "K", "%RH": "%", "%": "%", "%EL": "%", "/": "1", "ppm": "[ppm]",
    "ug/m3": "ug/m3", "Pa": "Pa", "hPa": "hPa", "kPa": "kPa", "W": "W", "kW": "kW",
    "Wh": "W.h", "kWh": "kW.h", "J": "J", "V": "V", "mV": "mV", "A": "A", "mA": "mA",
    "Hz": "Hz", "s": "s", "ms": "ms", "min": "min", "h": "h", "m": "m", "m/s": "m/s",
    "mm/h": "mm/h", "m3": "m3", "l": "L", "lx": "lx", "dB": "dB", "dBm": "dB[mW]",
    "deg": "deg", "lat": "deg", "lon": "deg", "count": "{count}",
}  # fmt: skip

# (from UCUM, to UCUM) -> (factor, offset); identical units need no entry
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("K", "Cel"): (1.0, -273.15), ("Cel", "K"): (1.0, 273.15),
    ("W.h", "kW.h"): (0.001, 0.0), ("kW.h", "W.h"): (1000.0, 0.0),
    ("W", "kW"): (0.001, 0.0), ("kW", "W"): (1000.0, 0.0),
    ("Pa", "hPa"): (0.01, 0.0), ("hPa", "Pa"): (100.0, 0.0), ("kPa", "hPa"): (10.0, 0.0),
    ("mA", "A"): (0.001, 0.0), ("mV", "V"): (0.001, 0.0),
    ("ms", "s"): (0.001, 0.0), ("min", "s"): (60.0, 0.0), ("h", "s"): (3600.0, 0.0),
    ("1", "%"): (100.0, 0.0), ("%", "1"): (0.01, 0.0),
}  # fmt: skip

TYPES: dict[str, ObservationType] = {
    "measurement": ObservationType.MEASUREMENT,
    "count": ObservationType.COUNT,
    "category": ObservationType.CATEGORY,
    "truth": ObservationType.TRUTH,
}
_PROPERTY = re.compile(r"[a-z][a-z0-9_]{0,63}")
FIELD_KEYS = frozenset({"name", "suffix", "property", "unit", "type", "personal", "description"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    index: int
    name: str | None
    suffix: str | None
    field: Field
    kind: str


def _parse_field(i: int, raw: object, problems: list[str]) -> FieldSpec | None:
    where = f"fields[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping with name or suffix, property and unit")
        return None
    start = len(problems)
    problems += [f"{where}.{k}: unknown key" for k in sorted(set(raw) - FIELD_KEYS, key=str)]
    name, suffix = raw.get("name"), raw.get("suffix")
    if (name is None) == (suffix is None):
        problems.append(f"{where}: give exactly one of name (full SenML name) or suffix")
    for key, value in (("name", name), ("suffix", suffix)):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{where}.{key}: must be non-empty text")
    prop = raw.get("property")
    if not isinstance(prop, str) or not _PROPERTY.fullmatch(prop):
        problems.append(f"{where}.property: must be snake_case, e.g. temperature")
    kind = raw.get("type", "measurement")
    unit = raw.get("unit")
    if kind not in TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(TYPES)}")
    elif kind in ("measurement", "count"):
        unit = "{count}" if unit is None and kind == "count" else unit
        problem = unit_problem(where, unit)
        if problem:
            problems.append(problem)
    elif unit is not None:
        problems.append(f"{where}.unit: a {kind} field has no unit")
    personal = raw.get("personal", False)
    if not isinstance(personal, bool):
        problems.append(f"{where}.personal: must be true or false")
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}.description: must be text")
    if len(problems) > start:
        return None
    assert isinstance(prop, str) and isinstance(kind, str)
    field = Field(
        prop, unit if isinstance(unit, str) else None, TYPES[kind], description, personal=personal
    )
    return FieldSpec(
        i,
        name if isinstance(name, str) else None,
        suffix if isinstance(suffix, str) else None,
        field,
        kind,
    )


def parse_options(options: Options) -> tuple[tuple[FieldSpec, ...] | None, list[str]]:
    """The mapping and its problems; the mapping is None whenever there is any problem."""
    problems = limit_problems(options)
    known = {"fields", "description", "max_payload_bytes"}
    problems += [f"{k}: unknown key" for k in sorted(set(options) - known, key=str)]
    raw_fields = options.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        return None, [*problems, "fields: must be a non-empty list of name mappings"]
    specs: list[FieldSpec] = []
    for i, raw in enumerate(raw_fields):
        spec = _parse_field(i, raw, problems)
        if spec is not None:
            if any(s.field.key == spec.field.key for s in specs):
                problems.append(f"fields[{i}].property: `{spec.field.key}` is already mapped")
            specs.append(spec)
    if not isinstance(options.get("description", ""), str):
        problems.append("description: must be text")
    return (None, problems) if problems else (tuple(specs), [])


def _require(options: Options) -> tuple[FieldSpec, ...]:
    specs, problems = parse_options(options)
    if specs is None:
        raise ValueError("senml options: " + "; ".join(problems))
    return specs


@dataclass(slots=True)
class _Base:
    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float = 0.0
    sum: float = 0.0


def _update_base(base: _Base, record: dict[str, Any]) -> bool:
    """Apply a record's base fields; False if one has the wrong type."""
    for key, attr in (("bt", "time"), ("bv", "value"), ("bs", "sum")):
        if key in record:
            if not is_number(record[key]):
                return False
            setattr(base, attr, float(record[key]))
    for key, attr in (("bn", "name"), ("bu", "unit")):
        if key in record:
            if not isinstance(record[key], str):
                return False
            setattr(base, attr, record[key])
    return True


def _version_ok(value: object) -> bool:
    if not isinstance(value, int) or isinstance(value, bool) or value < BASE_VERSION:
        return False
    return value & 0b1111 == BASE_VERSION and (value & ~0b1111) & ~KNOWN_FEATURES == 0


class Decoder(PayloadDecoder):
    """Stateless: a pack in, one reading per distinct resolved time (records sharing a time
    are one reading), plus one error per unusable mapped record."""

    def __init__(self, options: Options) -> None:
        self.specs = _require(options)
        self.by_name = {s.name: s for s in self.specs if s.name is not None}
        # longest suffix first, so ":pm2_5" wins over "5"
        self.by_suffix = sorted(
            (s for s in self.specs if s.suffix is not None), key=lambda s: -len(s.suffix or "")
        )
        super().__init__(options)

    def _match(self, name: str) -> FieldSpec | None:
        spec = self.by_name.get(name)
        if spec is not None:
            return spec
        return next((s for s in self.by_suffix if name.endswith(s.suffix or "\0")), None)

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        pack = load_json(payload, self.limit)
        if isinstance(pack, DecodeError):
            return [pack]
        if not isinstance(pack, list):
            return [DecodeError("wrong_type", "SenML pack is not a JSON array")]
        base = _Base()
        groups: list[tuple[float, dict[str, Value]]] = []
        errors: list[Event] = []
        for i, record in enumerate(pack):
            if not isinstance(record, dict):
                errors.append(DecodeError("wrong_type", f"record #{i} is not an object"))
                continue
            if any(isinstance(k, str) and k.endswith("_") for k in record):
                return [
                    DecodeError(
                        "unsupported_extension", f"record #{i} needs an extension this driver lacks"
                    )
                ]
            if "bver" in record and not _version_ok(record["bver"]):
                return [
                    DecodeError(
                        "unsupported_version",
                        f"record #{i} declares a SenML version this driver lacks",
                    )
                ]
            if not _update_base(base, record):
                return [DecodeError("wrong_type", f"a base field of record #{i} is malformed")]
            reading = self._record(i, record, base)
            if isinstance(reading, DecodeError):
                errors.append(reading)
            elif reading is not None:
                when, key, value = reading
                group = next((g for g in groups if g[0] == when and key not in g[1]), None)
                if group is None:
                    groups.append((when, {key: value}))
                else:
                    group[1][key] = value
        events: list[Event] = []
        for when, values in groups:
            if when >= RELATIVE_LIMIT:
                events.append(Decoded(values, device_time=when))
            else:
                events.append(Decoded(values, flags=("relative_time",)))
        return events + errors

    def _record(
        self, i: int, record: dict[str, Any], base: _Base
    ) -> tuple[float, str, Value] | DecodeError | None:
        name = record.get("n", "")
        if not isinstance(name, str):
            return DecodeError("wrong_type", f"record #{i} has a non-text name")
        spec = self._match(base.name + name)
        if spec is None:
            return None  # default deny: not mapped, not read further
        offset = record.get("t", 0)
        if not is_number(offset):
            return DecodeError("wrong_type", f"record #{i} time is not numeric")
        when = base.time + float(offset)
        if not math.isfinite(when) or when >= LATEST_PLAUSIBLE:
            return DecodeError("bad_time", f"record #{i} time is not plausible")
        value = self._value(spec, record, base)
        if value is None:
            return DecodeError(
                "wrong_type", f"record #{i} value does not suit mapped field #{spec.index}"
            )
        if isinstance(value, DecodeError):
            return value
        return when, spec.field.key, value

    def _value(
        self, spec: FieldSpec, record: dict[str, Any], base: _Base
    ) -> Value | DecodeError | None:
        if spec.kind == "truth":
            flag = record.get("vb")
            return flag if isinstance(flag, bool) else None
        if spec.kind == "category":
            text = record.get("vs")
            ok = isinstance(text, str) and 0 < len(text) <= MAX_CATEGORY_CHARS
            return text if ok and isinstance(text, str) else None
        if is_number(record.get("v")):
            number = base.value + float(record["v"])
        elif is_number(record.get("s")):
            number = base.sum + float(record["s"])
        else:
            return None
        unit = record.get("u", base.unit)
        target = spec.field.unit or ""
        if unit is not None or "u" in record:  # an explicit null unit is malformed, not absent
            ucum = SENML_TO_UCUM.get(unit) if isinstance(unit, str) else None
            if ucum is None:
                return DecodeError(
                    "wrong_unit",
                    f"mapped field #{spec.index} arrived in a unit this driver does not know",
                )
            if ucum != target:
                factor = CONVERSIONS.get((ucum, target))
                if factor is None:
                    return DecodeError(
                        "wrong_unit",
                        f"mapped field #{spec.index} arrived in a unit that cannot be converted",
                    )
                number = number * factor[0] + factor[1]
        if not math.isfinite(number):
            return None
        if spec.kind == "count":
            return int(number) if number.is_integer() else None
        return round(number, 9)


def catalogue_for(options: Options) -> Catalogue:
    specs = _require(options)
    description = options.get("description", "Device publishing SenML JSON")
    return Catalogue(
        driver="senml",
        make="any",
        model="SenML JSON (RFC 8428)",
        description=str(description),
        transport="mqtt",
        datasheet="RFC 8428, RFC 8798, RFC 9100",
        fields=tuple(s.field for s in specs),
    )


def validate_options(options: Options) -> list[str]:
    return parse_options(options)[1]


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A pack like the RFC 8428 examples: a base name, an absolute base time, two sensors at
    that time and one older sample given relative to it."""
    pack: list[dict[str, Any]] = [
        {
            "bn": "urn:dev:ow:10e2073a01080063:",
            "bt": round(now, 3),
            "bu": "Cel",
            "bver": 26,
            "n": "temp",
            "v": round(rng.gauss(14, 3), 2),
        },
        {"n": "humidity", "u": "%RH", "v": round(min(100.0, max(0.0, rng.gauss(70, 10))), 1)},
        {"n": "pm25", "u": "ug/m3", "v": round(max(0.0, rng.gauss(9, 3)), 1)},
        {"n": "temp", "t": -60, "v": round(rng.gauss(14, 3), 2)},
    ]
    return [(concrete_topic(base_topic, "node-1"), json.dumps(pack).encode())]


DRIVER = MqttDriver(
    name="senml",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    default_topic="senml/+",
    simulate=simulate,
    validate_options=validate_options,
    doc="docs/drivers/senml.md",
)
