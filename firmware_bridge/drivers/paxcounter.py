"""ESP32 Paxcounter: the device counts hashed Wi-Fi and BLE devices on board and publishes only
the counts, so nothing personal reaches the gateway and both counts are per-reading fields.

A count of devices nearby is still about people: a `1` at night can single someone out. The
privacy stage's small-count suppression is configured per gateway; the catalogue declares the
counts as ordinary non-personal fields and leaves that policy to it.
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

MAX_DEVICES = 100_000
KEYS = {"wifi": "wifi_devices", "ble": "ble_devices"}

CATALOGUE = Catalogue(
    driver="paxcounter",
    make="Open source (cyberman54/ESP32-Paxcounter)",
    model="ESP32 Paxcounter",
    description="On-device counts of Wi-Fi and Bluetooth LE devices nearby",
    transport="mqtt",
    datasheet="ESP32-Paxcounter README",
    fields=(
        Field(
            "wifi_devices",
            "{devices}",
            ObservationType.COUNT,
            "Wi-Fi devices seen in the device's counting cycle",
            minimum=0,
        ),
        Field(
            "ble_devices",
            "{devices}",
            ObservationType.COUNT,
            "Bluetooth LE devices seen in the device's counting cycle",
            minimum=0,
        ),
    ),
)


class Decoder(PayloadDecoder):
    """Stateless; either count may be missing (a device built without BLE sends only wifi)."""

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        message = load_json(payload, self.limit)
        if isinstance(message, DecodeError):
            return [message]
        if not isinstance(message, dict):
            return [DecodeError("wrong_type", "count message is not a JSON object")]
        values: dict[str, FieldValue] = {}
        for key, field in KEYS.items():
            if key in message:
                count = as_int(message[key])
                if count is None or not 0 <= count <= MAX_DEVICES:
                    return [DecodeError("wrong_type", "a device count is not a plausible integer")]
                values[field] = count
        if not values:
            return [DecodeError("missing_field", "message carries neither device count")]
        return [Decoded(values)]


class Options(PayloadOptions):
    """No options beyond the shared payload size limit."""


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """One count report; busier around midday."""
    topic = concrete_topic(base_topic, "pax-1")
    hour = (now % 86400) / 3600
    busy = max(0.05, 1 - abs(hour - 13) / 9)
    body = {"wifi": int(rng.gauss(30 * busy, 4)) % 200, "ble": int(rng.gauss(50 * busy, 6)) % 300}
    return [(topic, json.dumps(body).encode())]


DRIVER = MessageDriver(
    name="paxcounter",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    default_topic="paxcounter/+/count",
    simulate=simulate,
    options=Options,
    doc="docs/drivers/paxcounter.md",
)
