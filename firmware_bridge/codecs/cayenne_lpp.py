"""Cayenne LPP, for any device that speaks it: each configured item becomes one field.

LPP says what a value is (temperature, humidity, ...) but not what it measures on this device,
so the sensor's options map items to fields. An item is named `<lpp type>_<channel>`, exactly
as The Things Stack names its Cayenne `decoded_payload` keys, so one mapping serves both the
built-in codec and a server-side formatter (one channel may carry several types):

    options: {items: {temperature_3: {key: air_temperature},
                      luminosity_21: {key: people, unit: "{devices}", role: person_count}}}

Items that are not configured are valid and ignored; a frame with none of them gives `Ignored`.
A `person_count` item leaves only as its largest value per window (`<key>_max`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field as OptionField
from pydantic import model_validator

from firmware_bridge import lpp
from firmware_bridge.base import (
    Aggregation,
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    Ignored,
    ObservationType,
    Role,
)
from firmware_bridge.base import Value as FieldValue
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.options import DriverOptions

_CATEGORY_TYPES = frozenset({"digital_input", "digital_output", "presence", "switch"})


_ITEM = re.compile(r"([a-z_]+)_(\d{1,3})")


class Item(DriverOptions):
    key: str = OptionField(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="field name")
    axis: str | None = OptionField(None, description="dimension of a multi-value type, e.g. x")
    unit: str | None = OptionField(None, description="UCUM unit; default: the LPP type's unit")
    role: Literal["reading", "person_count"] = "reading"
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


def item_type(name: str) -> lpp.LppType | None:
    """The LPP type of an item name such as `temperature_3`, if the name is well formed."""
    match = _ITEM.fullmatch(name)
    if match is None or int(match.group(2)) > 255:
        return None
    return lpp.TYPE_NAMES.get(match.group(1))


class Options(DriverOptions):
    items: dict[str, Item] = OptionField(default_factory=dict)
    packed: bool = OptionField(False, description="LPP 2.0 packed: no channel bytes")

    @model_validator(mode="after")
    def _items(self) -> Options:
        for name, item in self.items.items():
            type_ = item_type(name)
            if type_ is None:
                known = ", ".join(sorted(lpp.TYPE_NAMES))
                raise ValueError(f"items.{name}: not <lpp type>_<channel 0-255> (types: {known})")
            if type_.axes and item.axis not in type_.axes:
                raise ValueError(f"items.{name}.axis: needs one of {', '.join(type_.axes)}")
            if not type_.axes and item.axis is not None:
                raise ValueError(f"items.{name}.axis: {type_.name} has a single value")
        keys = [i.key for i in self.items.values()]
        if len(keys) != len(set(keys)):
            raise ValueError("items: two items map to the same key")
        return self


def _field(name: str, item: Item) -> Field:
    type_ = item_type(name)
    if type_ is None:  # Options validated it
        raise AssertionError("type_ is not None")
    count = item.role == "person_count"
    if count:
        obs = ObservationType.COUNT
    elif type_.name in _CATEGORY_TYPES:
        obs = ObservationType.CATEGORY
    else:
        obs = ObservationType.MEASUREMENT
    return Field(
        item.key,
        item.unit if item.unit is not None else type_.unit,
        obs,
        item.description or f"Cayenne LPP {name}",
        minimum=item.minimum,
        maximum=item.maximum,
        role=Role.PERSON_COUNT if count else Role.READING,
    )


def _peak(field: Field) -> Field:
    """A person count leaves only as its largest value per window (disclosure control)."""
    return Field(
        f"{field.key}_max",
        field.unit,
        ObservationType.COUNT,
        f"Largest {field.key} per window",
        aggregation=Aggregation.MAX,
        source=field.key,
        minimum=field.minimum,
        maximum=field.maximum,
    )


def catalogue_for(options: Options) -> Catalogue:
    fields = tuple(_field(name, item) for name, item in sorted(options.items.items()))
    return Catalogue(
        driver="cayenne_lpp",
        make="Any",
        model="Cayenne LPP device",
        description="A LoRaWAN device sending Cayenne Low Power Payload",
        transport="lorawan",
        fields=fields + tuple(_peak(f) for f in fields if f.role is Role.PERSON_COUNT),
        datasheet="myDevices Cayenne LPP reference",
    )


def _value(item: lpp.LppItem, mapping: Item) -> FieldValue:
    type_ = item.type
    index = type_.axes.index(mapping.axis) if mapping.axis is not None else 0
    value = item.values[index]
    if type_.scale == 1 and type_.code != 136:
        return int(value)
    return value


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    items = lpp.parse_packed(payload) if options.packed else lpp.parse_dynamic(payload)
    if isinstance(items, DecodeError):
        return [items]
    values: dict[str, FieldValue] = {}
    for item in items:
        mapping = options.items.get(item.key)
        if mapping is None:
            continue
        if mapping.key in values:
            return [DecodeError("duplicate_channel", "a configured item appears twice")]
        values[mapping.key] = _value(item, mapping)
    return [Decoded(values)] if values else [Ignored("no_configured_item")]


CODEC = CodecSpec(
    name="cayenne_lpp",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/codecs/cayenne_lpp.md",
    example_options={"items": {"temperature_1": {"key": "temperature"},
                               "relative_humidity_2": {"key": "humidity"},
                               "luminosity_21": {"key": "people", "unit": "{devices}",
                                                 "role": "person_count"}}},
)
