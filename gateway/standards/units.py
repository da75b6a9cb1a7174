"""UCUM units the gateway publishes, with SensorThings `unitOfMeasurement` triples and conversions.

Pure. Drivers declare UCUM codes in their catalogues; this module names them and converts the
device-native units some devices report (Wh, mA, tenths of a degree) to the published ones.
"""

from __future__ import annotations

from dataclasses import dataclass

UCUM_BASE = "http://unitsofmeasure.org/ucum.html#para-"


@dataclass(frozen=True, slots=True)
class Unit:
    code: str  # UCUM case-sensitive code
    name: str
    symbol: str
    definition: str

    def as_sensorthings(self) -> dict[str, str]:
        return {"name": self.name, "symbol": self.symbol, "definition": self.definition}


def _u(code: str, name: str, symbol: str, para: str = "30") -> Unit:
    return Unit(code, name, symbol, f"{UCUM_BASE}{para}")


UNITS: dict[str, Unit] = {
    u.code: u
    for u in (
        _u("ug/m3", "microgram per cubic metre", "µg/m³"),
        _u("mg/m3", "milligram per cubic metre", "mg/m³"),
        _u("Cel", "degree Celsius", "°C", "42"),
        _u("%", "percent", "%", "29"),
        _u("[ppm]", "parts per million", "ppm", "29"),
        _u("[ppb]", "parts per billion", "ppb", "29"),
        _u("kW.h", "kilowatt hour", "kWh"),
        _u("W", "watt", "W"),
        _u("kW", "kilowatt", "kW"),
        _u("V", "volt", "V"),
        _u("A", "ampere", "A"),
        _u("Hz", "hertz", "Hz"),
        _u("s", "second", "s"),
        _u("min", "minute", "min", "31"),
        _u("hPa", "hectopascal", "hPa"),
        _u("dB", "decibel", "dB", "46"),
        _u("dB[mW]", "decibel milliwatt", "dBm", "46"),
        _u("um", "micrometre", "µm"),
        _u("/cm3", "per cubic centimetre", "#/cm³"),
        _u("{particles}/dL", "particles per decilitre", "#/0.1L", "14"),
        _u("{count}", "count", "{count}", "14"),
        _u("{devices}", "distinct devices", "{devices}", "14"),
        _u("{people}", "people", "{people}", "14"),
        _u("{sessions}", "charging sessions", "{sessions}", "14"),
        _u("1", "dimensionless", "1", "29"),
    )
}

# factor and offset from a device unit to a published UCUM unit: published = raw * factor + offset
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("Wh", "kW.h"): (0.001, 0.0),
    ("kWh", "kW.h"): (1.0, 0.0),
    ("kW.h", "kW.h"): (1.0, 0.0),
    ("W", "W"): (1.0, 0.0),
    ("kW", "W"): (1000.0, 0.0),
    ("mA", "A"): (0.001, 0.0),
    ("A", "A"): (1.0, 0.0),
    ("dCel", "Cel"): (0.1, 0.0),  # tenths of a degree, as some firmware reports temperature
    ("Cel", "Cel"): (1.0, 0.0),
    ("K", "Cel"): (1.0, -273.15),
    ("[degF]", "Cel"): (5 / 9, -32 * 5 / 9),
    ("ug/m3", "ug/m3"): (1.0, 0.0),
    ("mg/m3", "ug/m3"): (1000.0, 0.0),
    ("%RH", "%"): (1.0, 0.0),
    ("/", "%"): (100.0, 0.0),  # SenML ratio
    ("%", "%"): (1.0, 0.0),
    ("ppm", "[ppm]"): (1.0, 0.0),
    ("[ppm]", "[ppm]"): (1.0, 0.0),
}


class UnknownUnit(ValueError):
    pass


def unit(code: str) -> Unit:
    """The published unit for a UCUM code; unknown codes are an error, not a guess."""
    try:
        return UNITS[code]
    except KeyError:
        raise UnknownUnit(f"unit {code!r} is not in the gateway's UCUM table") from None


def convert(value: float, from_unit: str, to_unit: str) -> float:
    try:
        factor, offset = CONVERSIONS[(from_unit, to_unit)]
    except KeyError:
        raise UnknownUnit(f"no conversion from {from_unit!r} to {to_unit!r}") from None
    return value * factor + offset
