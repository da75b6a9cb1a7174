"""The vocabulary everyone shares: Reading (may hold personal data), Observation (cannot).

`Reading` is what a driver saw, stamped by the shell. `Observation` is the only thing the outbox
accepts; it is built by the privacy stage alone and holds a number, a category word or a
boolean — never a mapping of raw device fields — so personal fields cannot ride along.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring

from firmware_bridge.base import ObservationType, Value

Result = float | int | str | bool
ParamValue = float | int | str | bool


# One encoder for every compact JSON the gateway writes per observation: `json.dumps` with
# keyword arguments builds a new JSONEncoder per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: object) -> bytes:
    """`json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()`, cheaper."""
    return _COMPACT.encode(value).encode()


_INF = math.inf
_CONSTANT = {None: "null", True: "true", False: "false"}
# (Datastream id, sensor id, property) -> the record's text up to its time: `{"ds":…,"s":…,"p":…,"t":`
_HEADS: dict[tuple[object, object, object], str] = {}
_HEADS_MAX = 4096


# The last times written and their text (`…,"rt":…,"r":`, and the result time's alone): a
# reading's values share their time and result time (the very same float objects), and `repr`
# of a 17-digit time costs more than the rest of the record. Compared by identity: the tuple
# holds both floats, so while they are remembered no other object can have their ids, and the
# same object has the same repr.
_TIMES: tuple[object, object, str, str] = (None, None, "", "")


def _remember_times(t: float, rt: float, text: str, rt_text: str) -> None:
    global _TIMES
    _TIMES = (t, rt, text, rt_text)  # one assignment: a reader sees the old tuple or the new one


def _head(key: tuple[object, object, object]) -> str | None:
    """The start of a record for these names, remembered; None for names of another type."""
    ds, sensor, prop = key
    if not (type(ds) is int and type(sensor) is str and type(prop) is str):
        return None
    head = f'{{"ds":{ds!r},"s":{encode_basestring(sensor)},"p":{encode_basestring(prop)},"t":'
    if len(_HEADS) >= _HEADS_MAX:
        _HEADS.clear()
    _HEADS[key] = head
    return head


def stable_id(*parts: str) -> int:
    """A 16-digit integer id derived from names, stable across restarts and reinstalls.

    Integers keep SensorThings MQTT topics unquoted (`Datastreams(1234…)`); a fixed width of 16
    digits keeps them clear of the egress guard's identifier patterns.
    """
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return 10**15 + int.from_bytes(digest[:8], "big") % (9 * 10**15 - 10**15)


_ISO: dict[float, str] = {}  # the last times written: a reading's values share one, a commit group
_ISO_KEPT = 1024  # its result time, and every SensorThings-shaped sink writes them again


def iso(t: float) -> str:
    """Epoch seconds to ISO 8601 UTC with millisecond precision, as SensorThings expects."""
    text = _ISO.get(t)
    if text is None:
        text = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if len(_ISO) >= _ISO_KEPT:
            _ISO.clear()
        _ISO[t] = text
    return text


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration of whole seconds, in the largest exact unit: 900 -> PT15M."""
    s = round(seconds)
    if s and s % 3600 == 0:
        return f"PT{s // 3600}H"
    if s and s % 60 == 0:
        return f"PT{s // 60}M"
    return f"PT{s}S"


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading from one configured sensor. May contain personal fields: never serialised."""

    sensor_id: str
    time: float  # epoch seconds, from the gateway clock (or the device's, when trusted)
    values: Mapping[str, Value]
    flags: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print values: they may be personal
        return f"Reading(sensor_id={self.sensor_id!r}, time={self.time}, keys={sorted(self.values)})"


@dataclass(frozen=True, slots=True)
class Datastream:
    """One (sensor, observed property) stream. Ids derive from gateway, sensor and property."""

    id: int
    gateway_id: str
    sensor_id: str
    property: str
    unit: str | None
    observation_type: ObservationType
    description: str = ""
    aggregation: str = "none"

    @classmethod
    def build(
        cls,
        gateway_id: str,
        sensor_id: str,
        prop: str,
        unit: str | None,
        observation_type: ObservationType,
        description: str = "",
        aggregation: str = "none",
    ) -> Datastream:
        return cls(
            stable_id("datastream", gateway_id, sensor_id, prop),
            gateway_id,
            sensor_id,
            prop,
            unit,
            observation_type,
            description,
            aggregation,
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """A SensorThings API 1.1 Observation plus the routing keys sinks need.

    `phenomenon_end` set means an interval (aggregates); otherwise an instant.
    """

    datastream_id: int
    sensor_id: str
    property: str
    phenomenon_time: float
    result_time: float
    result: Result | None  # None only for a suppressed small count
    phenomenon_end: float | None = None
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.result, float) and not math.isfinite(self.result):
            raise ValueError("Observation result must be finite")

    def sensorthings(self) -> dict[str, object]:
        """The Observation entity as published on `v1.1/Datastreams(<id>)/Observations`."""
        pt = iso(self.phenomenon_time)
        if self.phenomenon_end is not None:
            pt = f"{pt}/{iso(self.phenomenon_end)}"
        body: dict[str, object] = {
            "phenomenonTime": pt,
            "resultTime": iso(self.result_time),
            "result": self.result,
            "Datastream": {"@iot.id": self.datastream_id},
        }
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body

    def sensorthings_json(self) -> bytes:
        """Exactly `compact_json(self.sensorthings())` (tests/unit/test_model_record.py holds it
        to `json.dumps` over every kind of value), written directly for the usual types as
        `to_record` writes them: the file and MQTT sinks write one per row, and json's encoder
        of the nested dict cost ~4 µs of it (issue 19). The times' text (`iso`) needs no
        escaping: digits, `-`, `:`, `.`, `T`, `Z` and `/`."""
        ds, r = self.datastream_id, self.result
        kind = type(r)
        if kind is float or kind is int:  # a float result is finite (__post_init__)
            rs = repr(r)
        elif kind is str:
            rs = encode_basestring(r)  # type: ignore[arg-type]
        elif r is None or kind is bool:
            rs = _CONSTANT[r]  # type: ignore[index]
        else:
            return compact_json(self.sensorthings())
        if type(ds) is not int:
            return compact_json(self.sensorthings())
        pt = iso(self.phenomenon_time)
        if self.phenomenon_end is not None:
            pt = f"{pt}/{iso(self.phenomenon_end)}"
        body = f'{{"phenomenonTime":"{pt}","resultTime":"{iso(self.result_time)}","result":{rs},"Datastream":{{"@iot.id":{ds}}}'
        if self.parameters:
            body += ',"parameters":' + _COMPACT.encode(dict(self.parameters))
        return (body + "}").encode()

    def to_record(self) -> bytes:
        """Compact JSON for the outbox row: everything a sink needs, nothing else.

        Exactly `compact_json` of the fields (tests/unit/test_model_record.py holds it to
        `json.dumps` over every kind of value), written directly for the usual types: the names'
        part once per Datastream, the numbers as `json` writes them (`float.__repr__`,
        `int.__repr__`), a word with json's own escaping. Anything else goes through `json`."""
        t, rt, r, te = self.phenomenon_time, self.result_time, self.result, self.phenomenon_end
        if not (type(t) is float and type(rt) is float and -_INF < t < _INF and -_INF < rt < _INF):
            return self._record_json()  # an int time, NaN or an infinity: json's spelling
        kind = type(r)
        if kind is float or kind is int:  # a float result is finite (__post_init__)
            rs = repr(r)
        elif kind is str:
            rs = encode_basestring(r)  # type: ignore[arg-type]
        elif r is None or kind is bool:
            rs = _CONSTANT[r]  # type: ignore[index]
        else:
            return self._record_json()
        key = (self.datastream_id, self.sensor_id, self.property)
        head = _HEADS.get(key)
        if head is None:
            head = _head(key)
            if head is None:
                return self._record_json()
        times = _TIMES  # one read of the global: another thread may replace it meanwhile
        if times[0] is t and times[1] is rt:  # the reading's other values: the same objects
            body = f"{head}{times[2]}{rs}"
        else:
            # a group's readings share their result time (the committer's clock, read once)
            rts = times[3] if times[1] is rt else repr(rt)
            mid = f"{t!r},\"rt\":{rts},\"r\":"
            _remember_times(t, rt, mid, rts)
            body = f"{head}{mid}{rs}"
        if te is not None:
            if not (type(te) is float and -_INF < te < _INF):
                return self._record_json()
            body += f",\"te\":{te!r}"
        if self.parameters:
            body += ',"pa":' + _COMPACT.encode(dict(self.parameters))
        return (body + "}").encode()

    def _record_json(self) -> bytes:
        rec: dict[str, object] = {
            "ds": self.datastream_id,
            "s": self.sensor_id,
            "p": self.property,
            "t": self.phenomenon_time,
            "rt": self.result_time,
            "r": self.result,
        }
        if self.phenomenon_end is not None:
            rec["te"] = self.phenomenon_end
        if self.parameters:
            rec["pa"] = dict(self.parameters)
        return compact_json(rec)

    @classmethod
    def from_record(cls, raw: bytes | str) -> Observation:
        rec = json.loads(raw)
        return cls(
            datastream_id=int(rec["ds"]),
            sensor_id=str(rec["s"]),
            property=str(rec["p"]),
            phenomenon_time=float(rec["t"]),
            result_time=float(rec["rt"]),
            result=rec["r"],
            phenomenon_end=float(rec["te"]) if "te" in rec else None,
            parameters=rec.get("pa", {}),
        )


_new_observation = object.__new__
_OBS_SLOTS = tuple(getattr(Observation, name).__set__ for name in Observation.__slots__)


def finite_observation(ds: int, sensor_id: str, prop: str, t: float, rt: float, result: float,
                       parameters: Mapping[str, ParamValue]) -> Observation:  # fmt: skip
    """`Observation(ds, sensor_id, prop, t, rt, result, None, parameters)` for a `result` the
    caller holds finite (what `__post_init__` checks), set slot by slot rather than through the
    frozen dataclass's `object.__setattr__` per field: the privacy stage makes one per usual
    value, at half the cost. Equal to the constructor's (tests/unit/test_model_record.py)."""
    o = _new_observation(Observation)
    set_ds, set_sensor, set_prop, set_t, set_rt, set_result, set_end, set_params = _OBS_SLOTS
    set_ds(o, ds)
    set_sensor(o, sensor_id)
    set_prop(o, prop)
    set_t(o, t)
    set_rt(o, rt)
    set_result(o, result)
    set_end(o, None)
    set_params(o, parameters)
    return o
