"""Generic JSON device: a declarative mapping from payload paths to properties, so that a borough
can add a device in YAML without code.

Default deny: only mapped paths are read, everything else in the payload is never emitted.
The mapping itself (paths, units, roles, aggregates) lives in `firmware_bridge.jsonmapping`,
shared with the LoRaWAN profiles' decoded payloads.
"""

from __future__ import annotations

import json
import random
from typing import Any

from firmware_bridge.base import Catalogue, DecodeError, Event
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonmapping import Mapping, build_spec, map_document, parse_path
from firmware_bridge.jsonpayload import PayloadDecoder, concrete_topic, load_json
from firmware_bridge.options import PayloadOptions

__all__ = ["DRIVER", "Decoder", "Options", "catalogue_for", "parse_path", "simulate"]


class Options(PayloadOptions, Mapping):
    description: str = "Device mapped by the generic JSON driver"


class Decoder(PayloadDecoder):
    """Stateless: one JSON payload in, at most one reading (plus one error per bad field)."""

    def __init__(self, options: Options) -> None:
        self.spec = build_spec(options)
        super().__init__(options)

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        document = load_json(payload, self.limit)
        if isinstance(document, DecodeError):
            return [document]
        return map_document(self.spec, document)


def catalogue_for(options: Options) -> Catalogue:
    spec = build_spec(options, options.description)
    return Catalogue(
        driver="generic_json",
        make="any",
        model="JSON over MQTT (declarative mapping)",
        description=spec.description,
        transport="mqtt",
        fields=tuple(f.field for f in spec.fields) + spec.aggregates,
    )


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """An air-quality node in the shape of the sample in docs/drivers/generic_json.md."""
    pm25 = round(max(0.0, rng.gauss(9, 3)), 1)
    body: dict[str, Any] = {
        "ts": int(now),
        "data": {
            "pm25": pm25,
            "pm10": round(pm25 * rng.uniform(1.2, 1.8), 1),
            "temp": round(rng.gauss(14, 4), 1),
        },
        "sensors": [{"status": "ok"}],
        "device": {"id": "aq-node-7", "wifi": "BoroughIoT"},
    }
    return [(concrete_topic(base_topic, "aq-node-7"), json.dumps(body).encode())]


DRIVER = MessageDriver(
    name="generic_json",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="sensors/+/json",
    simulate=simulate,
    example_options={"time_path": "ts", "fields": [
        {"path": "data.pm25", "property": "pm2_5", "unit": "ug/m3"},
        {"path": "data.pm10", "property": "pm10", "unit": "ug/m3"},
        {"path": "data.temp", "property": "temperature", "unit": "Cel"},
        {"path": "sensors[0].status", "property": "sensor_status", "type": "category",
         "allowed": ["ok", "warming_up", "fault"]},
    ]},
    doc="docs/drivers/generic_json.md",
)
