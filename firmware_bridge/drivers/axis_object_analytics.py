"""Axis Object Analytics (AOA) people/vehicle counter: the camera counts, the gateway relays.

The camera publishes one event per change to
`axis/<serial>/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario<N>`; subscribe one
sensor per scenario. Counts arrive as strings. A passage count is the scenario's running total
since its counter was last reset in the camera; an occupancy count is the number present now.
The camera serial in the payload is device metadata and is never put into a reading.
"""

from __future__ import annotations

import json
import random

from firmware_bridge.base import Catalogue, Decoded, DecodeError, Event, Field, ObservationType
from firmware_bridge.base import Value as FieldValue
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import (
    PayloadDecoder,
    as_int,
    concrete_topic,
    load_json,
)
from firmware_bridge.options import PayloadOptions

MAX_COUNT = 10**9

# scenario -> {payload key: field}; keys absent from a message are simply not reported
SCENARIOS: dict[str, dict[str, str]] = {
    "passageCounts": {
        "total": "passages",
        "totalHuman": "passages_human",
        "totalCar": "passages_car",
        "totalTruck": "passages_truck",
        "totalBus": "passages_bus",
        "totalBike": "passages_bike",
        "totalOtherVehicle": "passages_other_vehicle",
    },
    "numberOfOccupants": {
        "total": "occupancy",
        "human": "occupancy_human",
        "car": "occupancy_car",
        "truck": "occupancy_truck",
        "bus": "occupancy_bus",
        "bike": "occupancy_bike",
        "otherVehicle": "occupancy_other_vehicle",
    },
}
REQUIRED = "total"  # both scenarios always carry a total


def _passage(key: str, what: str) -> Field:
    return Field(
        key,
        "{count}",
        ObservationType.COUNT,
        f"{what} that crossed the line, running total since the counter reset",
        minimum=0,
    )


def _occupancy(key: str, what: str) -> Field:
    return Field(key, "{count}", ObservationType.COUNT, f"{what} in the area now", minimum=0)


_WHAT = {
    "": "Objects", "_human": "People", "_car": "Cars", "_truck": "Trucks", "_bus": "Buses",
    "_bike": "Bikes", "_other_vehicle": "Other vehicles",
}  # fmt: skip

CATALOGUE = Catalogue(
    driver="axis_object_analytics",
    make="Axis",
    model="AXIS Object Analytics (ACAP) on an Axis camera",
    description="Camera-side people and vehicle counting; only counts are published",
    transport="mqtt",
    datasheet="AXIS Object Analytics user manual (MQTT event integration)",
    fields=tuple(_passage(f"passages{s}", w) for s, w in _WHAT.items())
    + tuple(_occupancy(f"occupancy{s}", w) for s, w in _WHAT.items()),
)


class Decoder(PayloadDecoder):
    """Stateless: each event carries the camera's own counts and timestamp (ms)."""

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        event = load_json(payload, self.limit)
        if isinstance(event, DecodeError):
            return [event]
        if not isinstance(event, dict):
            return [DecodeError("wrong_type", "event is not a JSON object")]
        body = event.get("message")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return [DecodeError("missing_field", "event has no data object to read counts from")]
        scenario = data.get("scenario")
        keys = SCENARIOS.get(scenario) if isinstance(scenario, str) else None
        if keys is None:
            return [
                DecodeError(
                    "unknown_scenario",
                    "event is neither a line crossing tally nor an occupancy tally",
                )
            ]
        if REQUIRED not in data:
            return [DecodeError("missing_field", "count event lacks its overall total")]
        values: dict[str, FieldValue] = {}
        for key, field in keys.items():
            if key not in data:
                continue
            count = as_int(data[key])
            if count is None or not 0 <= count <= MAX_COUNT:
                return [DecodeError("wrong_type", "a count is not a non-negative integer")]
            values[field] = count
        millis = event.get("timestamp")
        when = millis / 1000 if isinstance(millis, int) and not isinstance(millis, bool) else None
        if when is not None and not 0 < when < 2**33:
            when = None
        return [Decoded(values, device_time=when)]


class Options(PayloadOptions):
    """No options beyond the shared payload size limit."""


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A passage event (running total since a midnight reset) and an occupancy snapshot."""
    topic = concrete_topic(base_topic, "ACCC8E000001")
    if topic.endswith("/ObjectAnalytics"):
        topic += "/Device1Scenario1"
    hour = (now % 86400) / 3600
    busy = max(0.1, 1 - abs(hour - 13) / 10)
    total = int((now % 86400) / 30)  # about two people a minute, never decreasing within a day
    humans = total - total // 12
    millis = int(now * 1000)

    def event(data: dict[str, str]) -> bytes:
        return json.dumps(
            {
                "topic": "axis:CameraApplicationPlatform/ObjectAnalytics/Device1ScenarioANY",
                "timestamp": millis,
                "serial": "ACCC8E000001",
                "message": {"source": {}, "key": {}, "data": data},
            }
        ).encode()

    occupants = rng.randint(0, int(12 * busy) + 1)
    return [
        (
            topic,
            event(
                {
                    "scenario": "passageCounts",
                    "reason": "human",
                    "total": str(total),
                    "totalHuman": str(humans),
                    "totalCar": str(total - humans),
                }
            ),
        ),
        (
            topic,
            event(
                {"scenario": "numberOfOccupants", "total": str(occupants), "human": str(occupants)}
            ),
        ),
    ]


DRIVER = MessageDriver(
    name="axis_object_analytics",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="axis/+/event/CameraApplicationPlatform/ObjectAnalytics/#",
    simulate=simulate,
    doc="docs/drivers/axis_object_analytics.md",
)
