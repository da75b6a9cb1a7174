"""The one place that knows UCUM: which unit codes are valid, what they are called, how to convert.

Pure. Drivers declare UCUM codes in their catalogues; `check` validates every code a driver or a
config names through `parse`; encoders (SensorThings, SenML, NGSI-LD, line protocol) take names,
symbols and SenML equivalents from here; device units are converted with `convert`, which works
by dimensional analysis over the atoms below rather than from a list of pairs, so `W.h` to
`kW.h`, `mg/m3` to `ug/m3` or `K` to `Cel` need no table entry of their own.

The grammar is the subset of UCUM (https://ucum.org/ucum) that sensors use: prefixed metric atoms,
non-metric atoms, integer exponents, `.` and `/` (a leading `/` too), and `{annotations}` on their
own (`{count}`) or attached (`{particles}/dL`). Annotations are unity in UCUM; here two units
convert into each other only if they also carry the same annotations, so `{people}` never
silently becomes `{vehicles}`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

UCUM_BASE = "http://unitsofmeasure.org/ucum.html#para-"

# dimension vector: length, mass, time, current, temperature, amount, luminous intensity,
# and two pseudo-dimensions that keep logarithmic levels apart from plain ratios
# (angles are dimensionless in SI; a pseudo-dimension keeps degrees from converting to ppm)
Dims = tuple[int, int, int, int, int, int, int, int, int, int]
_ZERO: Dims = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def _d(L: int = 0, M: int = 0, T: int = 0, I: int = 0, K: int = 0, N: int = 0, J: int = 0,  # noqa: E741
       bel: int = 0, belmw: int = 0, ang: int = 0) -> Dims:  # fmt: skip
    return (L, M, T, I, K, N, J, bel, belmw, ang)


@dataclass(frozen=True, slots=True)
class Atom:
    factor: float  # to the coherent SI unit of its dimension (g -> kg: 1e-3)
    dims: Dims
    metric: bool  # accepts prefixes
    name: str
    symbol: str
    offset: float = 0.0  # Cel, [degF]: value_si = value * factor + offset (only when alone)


ATOMS: dict[str, Atom] = {
    "m": Atom(1, _d(L=1), True, "metre", "m"),
    "g": Atom(1e-3, _d(M=1), True, "gram", "g"),
    "s": Atom(1, _d(T=1), True, "second", "s"),
    "A": Atom(1, _d(I=1), True, "ampere", "A"),
    "K": Atom(1, _d(K=1), True, "kelvin", "K"),
    "mol": Atom(1, _d(N=1), True, "mole", "mol"),
    "cd": Atom(1, _d(J=1), True, "candela", "cd"),
    "L": Atom(1e-3, _d(L=3), True, "litre", "L"),
    "l": Atom(1e-3, _d(L=3), True, "litre", "l"),
    "Hz": Atom(1, _d(T=-1), True, "hertz", "Hz"),
    "N": Atom(1, _d(L=1, M=1, T=-2), True, "newton", "N"),
    "Pa": Atom(1, _d(L=-1, M=1, T=-2), True, "pascal", "Pa"),
    "bar": Atom(1e5, _d(L=-1, M=1, T=-2), True, "bar", "bar"),
    "J": Atom(1, _d(L=2, M=1, T=-2), True, "joule", "J"),
    "W": Atom(1, _d(L=2, M=1, T=-3), True, "watt", "W"),
    "V": Atom(1, _d(L=2, M=1, T=-3, I=-1), True, "volt", "V"),
    "C": Atom(1, _d(T=1, I=1), True, "coulomb", "C"),
    "Ohm": Atom(1, _d(L=2, M=1, T=-3, I=-2), True, "ohm", "Ω"),
    "lx": Atom(1, _d(L=-2, J=1), True, "lux", "lx"),
    "rad": Atom(1, _d(ang=1), True, "radian", "rad"),
    "Cel": Atom(1, _d(K=1), True, "degree Celsius", "°C", offset=273.15),
    "B": Atom(1, _d(bel=1), True, "bel", "B"),
    "B[mW]": Atom(1, _d(belmw=1), True, "bel milliwatt", "B(mW)"),
    "min": Atom(60, _d(T=1), False, "minute", "min"),
    "h": Atom(3600, _d(T=1), False, "hour", "h"),
    "d": Atom(86400, _d(T=1), False, "day", "d"),
    "wk": Atom(604800, _d(T=1), False, "week", "wk"),
    "a": Atom(31557600, _d(T=1), False, "year", "a"),
    "deg": Atom(math.pi / 180, _d(ang=1), False, "degree", "°"),
    "%": Atom(0.01, _ZERO, False, "percent", "%"),
    "[ppth]": Atom(1e-3, _ZERO, False, "parts per thousand", "ppth"),
    "[ppm]": Atom(1e-6, _ZERO, False, "parts per million", "ppm"),
    "[ppb]": Atom(1e-9, _ZERO, False, "parts per billion", "ppb"),
    "[degF]": Atom(5 / 9, _d(K=1), False, "degree Fahrenheit", "°F", offset=273.15 - 32 * 5 / 9),
    "1": Atom(1, _ZERO, False, "one", "1"),
}

PREFIXES: dict[str, tuple[float, str, str]] = {
    "Y": (1e24, "yotta", "Y"), "Z": (1e21, "zetta", "Z"), "E": (1e18, "exa", "E"),
    "P": (1e15, "peta", "P"), "T": (1e12, "tera", "T"), "G": (1e9, "giga", "G"),
    "M": (1e6, "mega", "M"), "k": (1e3, "kilo", "k"), "h": (1e2, "hecto", "h"),
    "da": (1e1, "deka", "da"), "d": (1e-1, "deci", "d"), "c": (1e-2, "centi", "c"),
    "m": (1e-3, "milli", "m"), "u": (1e-6, "micro", "µ"), "n": (1e-9, "nano", "n"),
    "p": (1e-12, "pico", "p"), "f": (1e-15, "femto", "f"), "a": (1e-18, "atto", "a"),
}  # fmt: skip

# Names and symbols for the units the gateway publishes most, as SensorThings shows them; any
# other valid code gets a name composed from its parts. `para` is the UCUM section anchor.
_NAMED: dict[str, tuple[str, str, str]] = {
    "ug/m3": ("microgram per cubic metre", "µg/m³", "30"),
    "mg/m3": ("milligram per cubic metre", "mg/m³", "30"),
    "Cel": ("degree Celsius", "°C", "42"),
    "%": ("percent", "%", "29"),
    "[ppm]": ("parts per million", "ppm", "29"),
    "[ppb]": ("parts per billion", "ppb", "29"),
    "kW.h": ("kilowatt hour", "kWh", "30"),
    "W.h": ("watt hour", "Wh", "30"),
    "dB": ("decibel", "dB", "46"),
    "dB[mW]": ("decibel milliwatt", "dBm", "46"),
    "/cm3": ("per cubic centimetre", "#/cm³", "30"),
    "{particles}/dL": ("particles per decilitre", "#/0.1L", "14"),
    "{count}": ("count", "{count}", "14"),
    "{devices}": ("distinct devices", "{devices}", "14"),
    "{people}": ("people", "{people}", "14"),
    "{sessions}": ("charging sessions", "{sessions}", "14"),
    "{vehicles}": ("vehicles", "{vehicles}", "14"),
    "1": ("dimensionless", "1", "29"),
}


class UnitError(ValueError):
    """Not a UCUM code this gateway understands, or two units that do not convert."""


@dataclass(frozen=True, slots=True)
class Term:
    prefix: str
    atom: str | None  # None: an annotation on its own
    exponent: int
    annotation: str = ""


@dataclass(frozen=True, slots=True)
class Parsed:
    code: str
    terms: tuple[Term, ...]
    factor: float
    dims: Dims
    annotations: tuple[str, ...]
    offset: float  # non-zero only for Cel or [degF] standing alone


@dataclass(frozen=True, slots=True)
class Unit:
    """A published unit: SensorThings `unitOfMeasurement` name, symbol and definition."""

    code: str
    name: str
    symbol: str
    definition: str


_ANNOTATION = re.compile(r"\{[A-Za-z0-9_ .#-]{1,32}\}")


def _atom(text: str) -> tuple[str, str]:
    """(prefix, atom) for a component text, preferring the unprefixed reading (`min`, `cd`)."""
    if text in ATOMS:
        return "", text
    for p in sorted(PREFIXES, key=len, reverse=True):
        rest = text[len(p):]
        if text.startswith(p) and rest in ATOMS:
            if not ATOMS[rest].metric:
                raise UnitError(f"{rest!r} takes no prefix")
            return p, rest
    raise UnitError(f"{text!r} is not a UCUM unit")


def _component(text: str) -> Term:
    m = re.fullmatch(r"([^{}]*?)(-?\d+)?(\{[^{}]*\})?", text)
    if not text or m is None:
        raise UnitError("empty unit component")
    body, exp, ann = m.group(1), m.group(2), m.group(3) or ""
    if ann and not _ANNOTATION.fullmatch(ann):
        raise UnitError(f"annotation {ann!r}: letters, digits, space, _ . # - only, up to 32")
    if not body:
        if exp is not None and not ann:  # a bare integer factor, e.g. the `1` in `1/min`
            if exp != "1":
                raise UnitError(f"numeric factor {exp!r} is not supported; use 1")
            return Term("", "1", 1)
        if exp is not None:
            raise UnitError("an annotation takes no exponent")
        return Term("", None, 1, ann)
    if body in ("1",):
        return Term("", "1", 1, ann)
    prefix, atom = _atom(body)
    return Term(prefix, atom, int(exp) if exp is not None else 1, ann)


@lru_cache(maxsize=512)
def parse(code: str) -> Parsed:
    """Validate a UCUM code and work out its factor and dimension; UnitError says what is wrong."""
    if not isinstance(code, str) or not code or len(code) > 64 or code != code.strip():
        raise UnitError("must be a UCUM code such as ug/m3, Cel, kW.h or {count}")
    parts = re.split(r"([./])", code)
    sign = 1
    terms: list[Term] = []
    if parts[0] == "":  # leading "/": per ...
        parts = parts[1:]
        if not parts or parts[0] != "/":
            raise UnitError(f"{code!r}: empty unit component")
        sign = -1
        parts = parts[1:]
    for i, part in enumerate(parts):
        if i % 2 == 1:
            sign = -1 if part == "/" else 1
            continue
        t = _component(part)
        terms.append(Term(t.prefix, t.atom, t.exponent * sign, t.annotation))
    factor, dims = 1.0, list(_ZERO)
    offset_atoms = 0
    for t in terms:
        if t.atom is None:
            continue
        a = ATOMS[t.atom]
        f = a.factor * (PREFIXES[t.prefix][0] if t.prefix else 1.0)
        factor *= f**t.exponent
        dims = [d + e * t.exponent for d, e in zip(dims, a.dims, strict=True)]
        if a.offset:
            offset_atoms += 1
    offset = 0.0
    if offset_atoms:
        only = [t for t in terms if t.atom is not None]
        if len(only) != 1 or only[0].exponent != 1 or only[0].prefix:
            raise UnitError(f"{code!r}: a temperature scale with an offset cannot be combined")
        offset = ATOMS[only[0].atom or ""].offset
    anns = tuple(sorted(t.annotation for t in terms if t.annotation))
    d: Dims = (dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8],
               dims[9])  # fmt: skip
    return Parsed(code, tuple(terms), factor, d, anns, offset)


def problem(code: object) -> str | None:
    """A readable sentence if `code` is not a valid UCUM code, else None (for `check`)."""
    if not isinstance(code, str):
        return "must be a UCUM code such as ug/m3, Cel, kW.h or {count}"
    try:
        parse(code)
    except UnitError as e:
        return f"{code!r} is not a valid UCUM code ({e}); e.g. ug/m3, Cel, kW.h, {{count}}"
    return None


def is_valid(code: str) -> bool:
    return problem(code) is None


def is_count(code: str | None) -> bool:
    """A pure count: dimensionless, factor 1, annotated or `1` (e.g. {count}, {people})."""
    if code is None:
        return False
    p = parse(code)
    return p.dims == _ZERO and p.factor == 1.0 and p.offset == 0.0


def conversion(from_code: str, to_code: str) -> tuple[float, float]:
    """(factor, offset) so that `to = from * factor + offset`; UnitError if incommensurable."""
    a, b = parse(from_code), parse(to_code)
    if a.dims != b.dims or a.annotations != b.annotations:
        raise UnitError(f"{from_code!r} does not convert to {to_code!r}")
    factor = _tidy(a.factor / b.factor)
    offset = _tidy((a.offset - b.offset) / b.factor)
    return factor, offset


def _tidy(x: float) -> float:
    """12 significant digits: 1e-3/1e-6 is 1000, not 999.9999999999999."""
    return float(f"{x:.12g}")


def convert(value: float, from_code: str, to_code: str) -> float:
    if from_code == to_code:
        return value
    factor, offset = conversion(from_code, to_code)
    return value * factor + offset


def _composed(p: Parsed) -> tuple[str, str]:
    num: list[str] = []
    den: list[str] = []
    num_sym: list[str] = []
    den_sym: list[str] = []
    powers = {2: ("square ", "²"), 3: ("cubic ", "³")}
    for t in p.terms:
        if t.atom is None:
            word, sym = t.annotation.strip("{}"), t.annotation
        else:
            a = ATOMS[t.atom]
            pre = PREFIXES[t.prefix] if t.prefix else (1.0, "", "")
            word, sym = pre[1] + a.name, pre[2] + a.symbol
        e = abs(t.exponent)
        if e in powers:
            word, sym = powers[e][0] + word, sym + powers[e][1]
        elif e != 1:
            word, sym = f"{word}^{e}", f"{sym}^{e}"
        (num if t.exponent > 0 else den).append(word)
        (num_sym if t.exponent > 0 else den_sym).append(sym)
    name = " ".join(num) if num else ""
    if den:
        name = f"{name} per {' '.join(den)}".strip()
    symbol = "·".join(num_sym) or "1"
    if den_sym:
        symbol = f"{symbol}/{'·'.join(den_sym)}"
    return name, symbol


@lru_cache(maxsize=256)
def unit(code: str) -> Unit:
    """The published unit for a UCUM code; an invalid code is an error, not a guess."""
    p = parse(code)
    if code in _NAMED:
        name, symbol, para = _NAMED[code]
        return Unit(code, name, symbol, f"{UCUM_BASE}{para}")
    if len(p.terms) == 1 and p.terms[0].atom is not None and p.terms[0].exponent == 1 and not p.terms[0].annotation:
        t = p.terms[0]
        a = ATOMS[t.atom or ""]
        pre = PREFIXES[t.prefix] if t.prefix else (1.0, "", "")
        return Unit(code, pre[1] + a.name, pre[2] + a.symbol, f"{UCUM_BASE}30")
    name, symbol = _composed(p)
    return Unit(code, name, symbol, f"{UCUM_BASE}30")


# --------------------------------------------------------------------------- SenML (RFC 8428/8798)

# SenML unit symbols -> UCUM codes (RFC 8428 section 12.1 and RFC 8798 secondary units). The
# decoder maps what a device sends; `senml_unit` below picks what the encoder sends.
SENML_TO_UCUM: dict[str, str] = {
    "Cel": "Cel", "K": "K", "%RH": "%", "%": "%", "%EL": "%", "/": "1", "ppm": "[ppm]",
    "ug/m3": "ug/m3", "Pa": "Pa", "hPa": "hPa", "kPa": "kPa", "W": "W", "kW": "kW",
    "Wh": "W.h", "kWh": "kW.h", "J": "J", "V": "V", "mV": "mV", "A": "A", "mA": "mA",
    "Hz": "Hz", "s": "s", "ms": "ms", "min": "min", "h": "h", "m": "m", "m/s": "m/s",
    "mm/h": "mm/h", "m3": "m3", "l": "L", "lx": "lx", "dB": "dB", "dBm": "dB[mW]",
    "deg": "deg", "lat": "deg", "lon": "deg", "count": "{count}", "1/min": "/min",
}  # fmt: skip

# RFC 8798 registered these as secondary units: a pack using one declares bver with feature 4
SENML_SECONDARY = frozenset({"ms", "min", "h", "kW", "Wh", "kWh", "mV", "mA", "dBm", "ug/m3",
                             "mm/h", "ppm", "hPa"})  # fmt: skip
_UCUM_TO_SENML: dict[str, str] = {}
for _sym, _code in SENML_TO_UCUM.items():
    _UCUM_TO_SENML.setdefault(_code, _sym)
# SenML primary units we prefer when encoding a UCUM unit SenML cannot name directly
_SENML_PREFERRED = ("Cel", "W", "V", "A", "Hz", "s", "dB", "kWh", "ug/m3", "ppm", "hPa", "kW",
                    "min", "dBm", "m", "Pa", "J", "lx", "count", "/")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SenmlUnit:
    symbol: str
    factor: float = 1.0  # senml value = published value * factor
    secondary: bool = False  # RFC 8798 secondary unit: needs bver 26


@lru_cache(maxsize=256)
def senml_unit(code: str | None, humidity: bool = False) -> SenmlUnit | None:
    """The SenML unit a published UCUM code is sent in (None: send no `u`; a missing unit is
    honest, a wrong one is not). Relative humidity in % is `%RH`."""
    if code is None or not is_valid(code):
        return None
    if code == "%" and humidity:
        return SenmlUnit("%RH")
    if code == "%":
        return SenmlUnit("/", 0.01)  # RFC 8428 deprecates "%"
    if is_count(code):
        return SenmlUnit("count") if code != "1" else SenmlUnit("/")
    exact = _UCUM_TO_SENML.get(code)
    if exact is not None:
        return SenmlUnit(exact, 1.0, exact in SENML_SECONDARY)
    p = parse(code)
    for symbol in _SENML_PREFERRED:
        tp = parse(SENML_TO_UCUM[symbol])
        if tp.dims == p.dims and tp.annotations == p.annotations and not tp.offset and not p.offset:
            return SenmlUnit(symbol, _tidy(p.factor / tp.factor), symbol in SENML_SECONDARY)
    return None
