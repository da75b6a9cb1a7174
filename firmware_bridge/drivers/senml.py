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
from dataclasses import dataclass
from typing import Any

from pydantic import Field as Opt
from pydantic import field_validator, model_validator

from firmware_bridge import units
from firmware_bridge.base import (
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonmapping import MAX_CATEGORY_CHARS, PropertyMapping, unique_properties
from firmware_bridge.jsonpayload import PayloadDecoder, concrete_topic, is_number, load_json
from firmware_bridge.options import PayloadOptions

RELATIVE_LIMIT = 2**28  # RFC 8428 section 4.5.3
LATEST_PLAUSIBLE = 2**33  # year 2242: anything later is a broken clock
BASE_VERSION = 10
KNOWN_FEATURES = 1 << 4  # RFC 9100 feature code 4: secondary units (so bver 26 = 10 + 16)



class NameMapping(PropertyMapping):
    """A SenML record name (full, or its ending) mapped to a property."""

    name: str | None = Opt(None, min_length=1, description="Full resolved SenML name (bn + n)")
    suffix: str | None = Opt(None, min_length=1, description="End of the resolved name")

    @model_validator(mode="after")
    def _named(self) -> NameMapping:
        if (self.name is None) == (self.suffix is None):
            raise ValueError("give exactly one of name (full SenML name) or suffix")
        return self


class Options(PayloadOptions):
    fields: list[NameMapping] = Opt(min_length=1, max_length=256)
    description: str = "Device publishing SenML JSON"

    @field_validator("fields")
    @classmethod
    def _unique(cls, v: list[NameMapping]) -> list[NameMapping]:
        return unique_properties(v)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    index: int
    name: str | None
    suffix: str | None
    field: Field
    kind: str
    allowed: frozenset[str] | None


def build_specs(options: Options) -> tuple[FieldSpec, ...]:
    return tuple(
        FieldSpec(i, m.name, m.suffix, m.to_field(), m.type,
                  frozenset(m.allowed) if m.allowed is not None else None)
        for i, m in enumerate(options.fields)
    )


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
        self.specs = build_specs(options)
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
        if spec.allowed is not None and value not in spec.allowed:
            return DecodeError("not_in_vocabulary", f"record #{i} holds a word outside the vocabulary of mapped field #{spec.index}")
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
            return text if ok and isinstance(text, str) else None  # vocabulary: see _record
        if is_number(record.get("v")):
            number = base.value + float(record["v"])
        elif is_number(record.get("s")):
            number = base.sum + float(record["s"])
        else:
            return None
        unit = record.get("u", base.unit)
        target = spec.field.unit or ""
        if unit is not None or "u" in record:  # an explicit null unit is malformed, not absent
            ucum = units.SENML_TO_UCUM.get(unit) if isinstance(unit, str) else None
            if ucum is None:
                return DecodeError(
                    "wrong_unit",
                    f"mapped field #{spec.index} arrived in a unit this driver does not know",
                )
            try:
                number = units.convert(number, ucum, target)
            except units.UnitError:
                return DecodeError(
                    "wrong_unit",
                    f"mapped field #{spec.index} arrived in a unit that cannot be converted",
                )
        if not math.isfinite(number):
            return None
        if spec.kind == "count":
            return int(number) if number.is_integer() else None
        return round(number, 9)


def catalogue_for(options: Options) -> Catalogue:
    specs = build_specs(options)
    return Catalogue(
        driver="senml",
        make="any",
        model="SenML JSON (RFC 8428)",
        description=options.description,
        transport="mqtt",
        datasheet="RFC 8428, RFC 8798, RFC 9100",
        fields=tuple(s.field for s in specs),
    )


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


DRIVER = MessageDriver(
    name="senml",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="senml/+",
    simulate=simulate,
    example_options={"fields": [
        {"suffix": ":temp", "property": "temperature", "unit": "Cel"},
        {"suffix": ":humidity", "property": "humidity", "unit": "%"},
        {"suffix": ":pm25", "property": "pm2_5", "unit": "ug/m3"},
    ]},
    doc="docs/drivers/senml.md",
)
