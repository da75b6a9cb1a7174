"""Cayenne Low Power Payload (LPP), the byte format many LoRaWAN sensors send: a parser only.

Two layouts exist. *Dynamic* (LPP 1.0) is a run of `channel, type, data`; *packed* (the
"packed sensor payload" of LPP 2.0, sent on its own fPort) leaves the channel byte out, so an
item's position is its channel. Each type fixes its data size, scale and sign; all numbers are
big-endian. Type codes, sizes and scales follow myDevices' LPP reference (IPSO object id - 3200)
and the extended types of the ElectronicCats CayenneLPP library that pycayennelpp also reads.
Item names are the lowercased LPP constants, which is how The Things Stack names its
`decoded_payload` keys (`temperature_3`), so a field mapping written for one works on the other.

Pure and total: bad input comes back as a `DecodeError`, never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.base import DecodeError

MAX_PAYLOAD = 255  # a LoRaWAN FRMPayload is at most 242 bytes; anything longer is not LPP


@dataclass(frozen=True, slots=True)
class LppType:
    code: int
    name: str  # lowercased LPP constant: the key stem The Things Stack uses
    sizes: tuple[int, ...]  # bytes per dimension
    scale: int  # value = raw / scale
    signed: bool
    unit: str | None  # UCUM code of the decoded value, None for states and categories
    axes: tuple[str, ...] = ()  # names of the dimensions of a multi-value type

    @property
    def size(self) -> int:
        return sum(self.sizes)


_XYZ = ("x", "y", "z")
TYPES: dict[int, LppType] = {
    t.code: t
    for t in (
        LppType(0, "digital_input", (1,), 1, False, None),
        LppType(1, "digital_output", (1,), 1, False, None),
        LppType(2, "analog_input", (2,), 100, True, "1"),
        LppType(3, "analog_output", (2,), 100, True, "1"),
        LppType(100, "generic_sensor", (4,), 1, False, "1"),
        LppType(101, "luminosity", (2,), 1, False, "lx"),
        LppType(102, "presence", (1,), 1, False, None),
        LppType(103, "temperature", (2,), 10, True, "Cel"),
        LppType(104, "relative_humidity", (1,), 2, False, "%"),
        LppType(113, "accelerometer", (2, 2, 2), 1000, True, "[g]", _XYZ),
        LppType(115, "barometric_pressure", (2,), 10, False, "hPa"),
        LppType(116, "voltage", (2,), 100, False, "V"),
        LppType(117, "current", (2,), 1000, False, "A"),
        LppType(118, "frequency", (4,), 1, False, "Hz"),
        LppType(120, "percentage", (1,), 1, False, "%"),
        LppType(121, "altitude", (2,), 1, True, "m"),
        LppType(122, "load", (3,), 1000, True, "kg"),
        LppType(125, "concentration", (2,), 1, False, "[ppm]"),
        LppType(128, "power", (2,), 1, False, "W"),
        LppType(130, "distance", (4,), 1000, False, "m"),
        LppType(131, "energy", (4,), 1000, False, "kW.h"),
        LppType(132, "direction", (2,), 1, False, "deg"),
        LppType(133, "unixtime", (4,), 1, False, "s"),
        LppType(134, "gyrometer", (2, 2, 2), 100, True, "deg/s", _XYZ),
        LppType(135, "colour", (1, 1, 1), 1, False, None, ("r", "g", "b")),
        LppType(136, "gps", (3, 3, 3), 0, True, None, ("latitude", "longitude", "altitude")),
        LppType(142, "switch", (1,), 1, False, None),
    )
}
TYPE_NAMES: dict[str, LppType] = {t.name: t for t in TYPES.values()}
_GPS_SCALES = (10000, 10000, 100)  # degrees, degrees, metres: the one type with mixed scales


@dataclass(frozen=True, slots=True)
class LppItem:
    """One decoded reading. `channel` is the position in a packed payload."""

    channel: int
    type: LppType
    values: tuple[float, ...]  # one per dimension, already scaled

    @property
    def key(self) -> str:
        return f"{self.type.name}_{self.channel}"


def _number(raw: bytes, signed: bool, scale: int) -> float:
    value = int.from_bytes(raw, "big", signed=signed)
    if scale == 1:
        return float(value)
    return value / scale


def _item(channel: int, type_: LppType, data: bytes) -> LppItem:
    values: list[float] = []
    pos = 0
    for i, size in enumerate(type_.sizes):
        scale = _GPS_SCALES[i] if type_.code == 136 else type_.scale
        values.append(_number(data[pos : pos + size], type_.signed, scale))
        pos += size
    return LppItem(channel, type_, tuple(values))


def _check(payload: bytes) -> DecodeError | None:
    if not payload:
        return DecodeError("empty", "LPP payload is empty")
    if len(payload) > MAX_PAYLOAD:
        return DecodeError("too_large", f"LPP payload exceeds {MAX_PAYLOAD} bytes")
    return None


def _parse(payload: bytes, channels: bool) -> list[LppItem] | DecodeError:
    """Items to the end of the payload: `channel, type, data` (LPP 1.0) or, packed, `type,
    data` with the n-th item on channel n (LPP 2.0)."""
    bad = _check(payload)
    if bad is not None:
        return bad
    items: list[LppItem] = []
    head = 2 if channels else 1
    pos = 0
    while pos < len(payload):
        if pos + head > len(payload):
            return DecodeError("truncated", "LPP item is cut off after its channel byte")
        channel = payload[pos] if channels else len(items)
        type_ = TYPES.get(payload[pos + head - 1])
        if type_ is None:
            return DecodeError("unknown_type", "an LPP type code is not a known type")
        end = pos + head + type_.size
        if end > len(payload):
            return DecodeError("truncated", f"LPP {type_.name} item is cut off")
        items.append(_item(channel, type_, payload[pos + head : end]))
        pos = end
    return items


def parse_dynamic(payload: bytes) -> list[LppItem] | DecodeError:
    """LPP 1.0: `channel, type, data` repeated to the end of the payload."""
    return _parse(payload, channels=True)


def parse_packed(payload: bytes) -> list[LppItem] | DecodeError:
    """LPP 2.0 packed: `type, data` repeated; the n-th item is channel n."""
    return _parse(payload, channels=False)
