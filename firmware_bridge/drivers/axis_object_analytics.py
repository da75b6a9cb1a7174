"""AXIS Object Analytics (AOA) people and vehicle counting: the camera counts, the gateway relays.

The camera's MQTT client publishes each event to `<condition prefix>/<condition topic>`; with the
defaults that is `axis/<serial>/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario<N>`,
and with "Include condition namespaces" each level may carry an ONVIF namespace prefix
(`tnsaxis:CameraApplicationPlatform/…`). The default subscription `axis/+/event/#` takes every
event of the camera; events that are not Object Analytics are `Ignored`.

The payload says nothing about the scenario's type: Axis's own Crossline example has no
`scenario` key, and where one is present it is the name the installer typed. The content
decides: `total<Class>` keys (`totalHuman`, `totalMotorcycle/bicycle`, …) are a Crossline
scenario's running totals since its counter was reset; `total` with plain class keys (`human`)
is an Occupancy scenario's count of objects present now; an event with only `active` is an
object-in-area or line-crossing trigger, valid and ignored. Counts arrive as strings. The camera
serial is device metadata and never enters a reading.

Passage totals are running totals whose steps are people (and vehicles, i.e. their drivers)
crossing: they leave only as per-window increments. Occupancy is a count of people made by the
device: it leaves only as the largest count per window.
"""

from __future__ import annotations

import json
import random
import re

from pydantic import Field as Opt

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
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import PayloadDecoder, as_int, load_json
from firmware_bridge.options import PayloadOptions

MAX_COUNT = 10**9
CONDITION = ("CameraApplicationPlatform", "ObjectAnalytics")

# Object classes AOA counts, as snake_case of the payload's class names (`Motorcycle/bicycle`
# -> motorcycle_bicycle, `otherVehicle` -> other_vehicle). A class not listed here is skipped
# and the reading flagged `unmapped_class`, not refused.
CLASSES = ("human", "car", "truck", "bus", "bike", "bicycle", "motorcycle",
           "motorcycle_bicycle", "vehicle", "other_vehicle", "unknown")  # fmt: skip
_WHAT = {"": "Objects", "human": "People", "car": "Cars", "truck": "Trucks", "bus": "Buses",
         "bike": "Bikes", "bicycle": "Bicycles", "motorcycle": "Motorcycles",
         "motorcycle_bicycle": "Motorcycles and bicycles", "vehicle": "Vehicles",
         "other_vehicle": "Other vehicles", "unknown": "Unclassified objects"}  # fmt: skip
# payload keys that are not counts: the scenario's name, the last object's class, reset time
_META = frozenset({"scenario", "reason", "startTime", "active", "triggerTime"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Options(PayloadOptions):
    scenario: str | None = Opt(
        None, pattern=r"^Device\d{1,3}Scenario(\d{1,4}|ANY)$",
        description="Only this scenario's events (the condition's last level, e.g. "
        "Device1Scenario1). Totals of two scenarios must never share a sensor.",
    )  # fmt: skip


def _class_key(name: str) -> str:
    return _CAMEL.sub("_", name).lower().replace("/", "_")


def _suffix(cls: str) -> str:
    return f"_{cls}" if cls else ""


def _fields() -> tuple[Field, ...]:
    passages: list[Field] = []
    occupancy: list[Field] = []
    increments: list[Field] = []
    peaks: list[Field] = []
    for cls in ("", *CLASSES):
        what = _WHAT[cls]
        p = Field(f"passages{_suffix(cls)}", "{count}", ObservationType.COUNT,
                  f"{what} that crossed the line, running total since the counter reset",
                  role=Role.RUNNING_TOTAL, minimum=0, maximum=2**32 - 1)  # fmt: skip
        o = Field(f"occupancy{_suffix(cls)}", "{count}", ObservationType.COUNT,
                  f"{what} in the area now", role=Role.PERSON_COUNT, minimum=0,
                  maximum=10_000)  # fmt: skip
        passages.append(p)
        occupancy.append(o)
        increments.append(Field(f"{p.key}_increment", "{count}", ObservationType.COUNT,
                                f"{what} that crossed the line in the window",
                                aggregation=Aggregation.INCREMENT, source=p.key, minimum=0))  # fmt: skip
        peaks.append(Field(f"{o.key}_max", "{count}", ObservationType.COUNT,
                                f"Most {what.lower()} in the area at once in the window",
                                aggregation=Aggregation.MAX, source=o.key, minimum=0))  # fmt: skip
    return (*passages, *occupancy, *increments, *peaks)


CATALOGUE = Catalogue(
    driver="axis_object_analytics",
    make="Axis",
    model="AXIS Object Analytics (ACAP) on an Axis camera",
    description="Camera-side people and vehicle counting; only counts are published",
    transport="mqtt",
    datasheet="AXIS Object Analytics user manual (MQTT event integration)",
    fields=_fields(),
)
_DECLARED = frozenset(f.key for f in CATALOGUE.fields)


def _levels(path: str) -> list[str]:
    """Topic levels without ONVIF namespace prefixes (`tnsaxis:ObjectAnalytics` -> ObjectAnalytics)."""
    return [level.rsplit(":", 1)[-1] for level in path.split("/")]


def scenario_of(path: object) -> str | None:
    """The scenario level after `CameraApplicationPlatform/ObjectAnalytics` (`Device1Scenario1`,
    or `""` when the path stops there); None when the path is not an Object Analytics event."""
    if not isinstance(path, str) or len(path) > 512:
        return None
    levels = _levels(path)
    for i in range(len(levels) - 1):
        if tuple(levels[i : i + 2]) == CONDITION:
            return levels[i + 2] if i + 2 < len(levels) else ""
    return None


class Decoder(PayloadDecoder):
    """Stateless: each event carries the camera's own counts and timestamp (ms)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.scenario = options.scenario

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        event = load_json(payload, self.limit)
        if isinstance(event, DecodeError):
            return [event]
        if not isinstance(event, dict):
            return [DecodeError("wrong_type", "event is not a JSON object")]
        scenario = scenario_of(topic) or scenario_of(event.get("topic"))
        if scenario is None:
            return [Ignored("other_event")]  # I/O ports, motion, tampering, other apps
        if self.scenario is not None and scenario != self.scenario:
            return [Ignored("other_scenario")]
        body = event.get("message")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return [DecodeError("missing_field", "event has no data object to read counts from")]
        counts = {k: v for k, v in data.items() if k not in _META}
        class_totals = {k[5:]: v for k, v in counts.items() if k.startswith("total") and k != "total"}
        if "total" not in counts:
            if class_totals:
                return [DecodeError("missing_field", "count event lacks its overall total")]
            if "active" in data:
                return [Ignored("trigger")]  # object in area, line crossing, time in area
            return [DecodeError("unknown_event", "event data is neither a count nor a trigger")]
        if class_totals:
            prefix, classes = "passages", class_totals
        else:
            prefix, classes = "occupancy", {k: v for k, v in counts.items() if k != "total"}
        values: dict[str, FieldValue] = {}
        flags: tuple[str, ...] = ()
        for name, raw in (("", counts["total"]), *classes.items()):
            key = prefix + _suffix(_class_key(name)) if name else prefix
            if key not in _DECLARED:
                flags = ("unmapped_class",)
                continue
            count = as_int(raw)
            if count is None or not 0 <= count <= MAX_COUNT:
                return [DecodeError("wrong_type", "a count is not a non-negative integer")]
            values[key] = count
        millis = event.get("timestamp")
        when = millis / 1000 if isinstance(millis, int) and not isinstance(millis, bool) else None
        if when is not None and not 0 < when < 2**33:
            when = None
        return [Decoded(values, device_time=when, flags=flags)]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def _scenario_topic(base_topic: str, scenario: int) -> str:
    levels = [("ACCC8E000001" if level == "+" else level) for level in base_topic.split("/")]
    while levels and levels[-1] == "#":
        levels.pop()
    tail = {"event": [*CONDITION, f"Device1Scenario{scenario}"],
            "ObjectAnalytics": [f"Device1Scenario{scenario}"]}.get(levels[-1] if levels else "", [])  # fmt: skip
    return "/".join(levels + tail)


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A Crossline event in the shape of Axis's own example (no `scenario` key; running totals
    since a midnight reset) and an Occupancy event in the shape barnowl-axis reads."""
    hour = (now % 86400) / 3600
    busy = max(0.1, 1 - abs(hour - 13) / 10)
    total = int((now % 86400) / 30)  # about two objects a minute, never decreasing within a day
    humans = total - total // 6
    cars = total - humans - total // 40
    millis = int(now * 1000)

    def event(scenario: int, data: dict[str, str]) -> bytes:
        return json.dumps({
            "topic": f"axis:CameraApplicationPlatform/ObjectAnalytics/Device1Scenario{scenario}",
            "timestamp": millis,
            "serial": "ACCC8E000001",
            "message": {"source": {}, "key": {}, "data": data},
        }).encode()  # fmt: skip

    occupants = rng.randint(0, int(12 * busy) + 1)
    crossline = {"startTime": "2026-01-01T00:00:00Z", "reason": "human", "total": str(total),
                 "totalBus": "0", "totalCar": str(cars), "totalHuman": str(humans),
                 "totalMotorcycle/bicycle": str(total - humans - cars), "totalTruck": "0",
                 "totalUnknown": "0"}  # fmt: skip
    occupancy = {"scenario": "Occupancy", "total": str(occupants), "human": str(occupants)}
    return [(_scenario_topic(base_topic, 1), event(1, crossline)),
            (_scenario_topic(base_topic, 2), event(2, occupancy))]  # fmt: skip


DRIVER = MessageDriver(
    name="axis_object_analytics",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="axis/+/event/#",
    simulate=simulate,
    doc="docs/drivers/axis_object_analytics.md",
)
