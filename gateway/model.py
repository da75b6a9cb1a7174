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

from firmware_bridge.base import ObservationType, Value

Result = float | int | str | bool
ParamValue = float | int | str | bool


# One encoder for every compact JSON the gateway writes per observation: `json.dumps` with
# keyword arguments builds a new JSONEncoder per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: object) -> bytes:
    """`json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()`, cheaper."""
    return _COMPACT.encode(value).encode()


def stable_id(*parts: str) -> int:
    """A 16-digit integer id derived from names, stable across restarts and reinstalls.

    Integers keep SensorThings MQTT topics unquoted (`Datastreams(1234…)`); a fixed width of 16
    digits keeps them clear of the egress guard's identifier patterns.
    """
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return 10**15 + int.from_bytes(digest[:8], "big") % (9 * 10**15 - 10**15)


def iso(t: float) -> str:
    """Epoch seconds to ISO 8601 UTC with millisecond precision, as SensorThings expects."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    def to_record(self) -> bytes:
        """Compact JSON for the outbox row: everything a sink needs, nothing else."""
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
