"""Cayenne LPP, for any device that speaks it: each configured channel becomes one field.

LPP says what a value is (temperature, humidity, ...) but not what it measures on this device,
so the sensor's options map channels to fields:

    options: {channels: {3: {key: air_temperature, type: temperature},
                         21: {key: people, type: luminosity, unit: "{devices}", role: person_count}}}

Items on channels that are not configured are valid and ignored; an item whose LPP type differs
from the configured one is an error (the device or the mapping changed). With no configured
channel present a frame yields nothing, and the caller counts it as ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field as OptionField
from pydantic import field_validator, model_validator

from firmware_bridge import lpp
from firmware_bridge.base import (
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Role,
)
from firmware_bridge.base import Value as FieldValue
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.options import DriverOptions

_CATEGORY_TYPES = frozenset({"digital_input", "digital_output", "presence", "switch"})


class Channel(DriverOptions):
    key: str = OptionField(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="field name")
    type: str = OptionField(description="LPP type name, e.g. temperature, luminosity")
    axis: str | None = OptionField(None, description="dimension of a multi-value type, e.g. x")
    unit: str | None = OptionField(None, description="UCUM unit; default: the LPP type's unit")
    role: Literal["reading", "person_count"] = "reading"
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in lpp.TYPE_NAMES:
            known = ", ".join(sorted(lpp.TYPE_NAMES))
            raise ValueError(f"not an LPP type (known: {known})")
        return value

    @model_validator(mode="after")
    def _axis_matches_type(self) -> Channel:
        axes = lpp.TYPE_NAMES[self.type].axes
        if axes and self.axis not in axes:
            raise ValueError(f"axis: {self.type} needs one of {', '.join(axes)}")
        if not axes and self.axis is not None:
            raise ValueError(f"axis: {self.type} has a single value")
        return self


class Options(DriverOptions):
    channels: dict[int, Channel] = OptionField(default_factory=dict)
    packed: bool = OptionField(False, description="LPP 2.0 packed: no channel bytes")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[int, Channel]) -> dict[int, Channel]:
        if any(not 0 <= ch <= 255 for ch in value):
            raise ValueError("channel numbers are 0..255")
        keys = [c.key for c in value.values()]
        if len(keys) != len(set(keys)):
            raise ValueError("two channels map to the same key")
        return value


def _field(channel: Channel) -> Field:
    type_ = lpp.TYPE_NAMES[channel.type]
    count = channel.role == "person_count"
    if count:
        obs = ObservationType.COUNT
    elif channel.type in _CATEGORY_TYPES:
        obs = ObservationType.CATEGORY
    else:
        obs = ObservationType.MEASUREMENT
    return Field(
        channel.key,
        channel.unit if channel.unit is not None else type_.unit,
        obs,
        channel.description or f"Cayenne LPP {channel.type}",
        minimum=channel.minimum,
        maximum=channel.maximum,
        role=Role.PERSON_COUNT if count else Role.READING,
    )


def catalogue_for(options: Options) -> Catalogue:
    return Catalogue(
        driver="cayenne_lpp",
        make="Any",
        model="Cayenne LPP device",
        description="A LoRaWAN device sending Cayenne Low Power Payload",
        transport="lorawan",
        fields=tuple(_field(c) for _, c in sorted(options.channels.items())),
        datasheet="myDevices Cayenne LPP reference",
    )


def _value(item: lpp.LppItem, channel: Channel) -> FieldValue:
    type_ = item.type
    index = type_.axes.index(channel.axis) if channel.axis is not None else 0
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
        channel = options.channels.get(item.channel)
        if channel is None:
            continue
        if item.type.name != channel.type:
            return [DecodeError("wrong_type", "a channel carries another LPP type than configured")]
        if channel.key in values:
            return [DecodeError("duplicate_channel", "a configured channel appears twice")]
        values[channel.key] = _value(item, channel)
    return [Decoded(values)] if values else []


CODEC = CodecSpec(
    name="cayenne_lpp",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/drivers/firmware-findings.md",
)
