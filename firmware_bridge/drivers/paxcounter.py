"""ESP32-Paxcounter over MQTT: the device counts hashed Wi-Fi and BLE devices on board and
publishes only the counts, the same bytes it would send over LoRaWAN.

The firmware's MQTT client (`src/mqttclient.cpp`, boards with `HAS_MQTT`) publishes each
payload to `<MQTT_OUTTOPIC>/<port>` (`paxout/1` for counts by default) as base64 text of the
binary payload; the encoder is chosen at build time (`PAYLOAD_ENCODER`: packed by default,
plain, or Cayenne LPP) and decoded by `firmware_bridge.paxcounter_payload`, which the LoRaWAN
codecs share. On connect it publishes its client name once, as text, on `paxout` itself.

A count of devices nearby is still about people (a `1` at night can single someone out): the
counts are person counts and leave only as the largest count per window, under the privacy
stage's disclosure control.
"""

from __future__ import annotations

import base64
import binascii
import random
from typing import Literal

from pydantic import Field as Opt

from firmware_bridge.base import Catalogue, Decoded, DecodeError, Event, Ignored
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import PayloadDecoder, concrete_topic
from firmware_bridge.options import PayloadOptions
from firmware_bridge.paxcounter_payload import (
    COUNTER_PORT,
    LPP_PACKED_PORT,
    PaxCounts,
    catalogue_fields,
    decode_lpp_counts,
    decode_packed_counts,
    decode_plain_counts,
)

MAX_BASE64 = 4 * 86  # the firmware's payload buffer is PAYLOAD_BUFFER_SIZE 51 bytes; leave room

CATALOGUE = Catalogue(
    driver="paxcounter",
    make="Open source (cyberman54/ESP32-Paxcounter)",
    model="ESP32 Paxcounter (MQTT client build)",
    description="On-device counts of Wi-Fi and Bluetooth LE devices nearby",
    transport="mqtt",
    datasheet="ESP32-Paxcounter docs/payloadformat.md, src/mqttclient.cpp",
    fields=catalogue_fields(),
)

# The status frame a packed-encoder device sends on STATUSPORT (2): battery mV, uptime, CPU
# temperature, free heap, reset reason and restart count, as the firmware's own addStatus()
# wrote it for tests/data/firmware/paxcounter.json (`packed`, case `status`).
_STATUS_FRAME = bytes.fromhex("181080510100000000002940e201000103000000")


class Options(PayloadOptions):
    encoder: Literal["packed", "plain", "lpp"] = Opt(
        "packed",
        description="PAYLOAD_ENCODER of the firmware build: packed (2, the default), plain (1), "
        "or lpp (Cayenne LPP 3 or 4; the port tells which).",
    )
    count_port: int = Opt(
        COUNTER_PORT, ge=1, le=223, description="COUNTERPORT of the build (packed and plain)."
    )


class Decoder(PayloadDecoder):
    """Stateless: the port is the topic's last level, the payload base64 of the frame."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.encoder = options.encoder
        self.count_port = options.count_port

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        levels = topic.split("/")
        if len(levels) == 1:
            return [Ignored("hello")]  # the client name, published once on connect
        port_text = levels[-1]
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 3):
            return [DecodeError("bad_port", "topic's last level is not a port number")]
        port = int(port_text)
        if self.encoder != "lpp" and port != self.count_port:
            return [Ignored("not_count_port")]  # status, config, GPS, battery, time, sensors
        if len(payload) > min(self.limit, MAX_BASE64):
            return [DecodeError("too_large", "payload is longer than any Paxcounter frame")]
        try:
            frame = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return [DecodeError("bad_base64", "payload is not the firmware's base64 text")]
        result: PaxCounts | DecodeError | None
        if self.encoder == "packed":
            result = decode_packed_counts(frame)
        elif self.encoder == "plain":
            result = decode_plain_counts(frame)
        else:
            result = decode_lpp_counts(frame, packed=port == LPP_PACKED_PORT)
        if result is None:
            return [Ignored("not_a_count")]  # LPP status or battery frame on the same port
        if isinstance(result, DecodeError):
            return [result]
        return [Decoded(result.values())]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """One count report of a default build (packed encoder, Wi-Fi only: BLECOUNTER 0), busier
    around midday, and now and then the status frame a remote command asks for."""
    root = concrete_topic(base_topic, "1").rsplit("/", 1)[0]
    hour = (now % 86400) / 3600
    busy = max(0.05, 1 - abs(hour - 13) / 9)
    wifi = max(0, int(rng.gauss(30 * busy, 4)))
    messages = [(f"{root}/{COUNTER_PORT}", base64.b64encode(wifi.to_bytes(2, "little")))]
    if rng.random() < 0.1:
        messages.append((f"{root}/2", base64.b64encode(_STATUS_FRAME)))
    return messages


DRIVER = MessageDriver(
    name="paxcounter",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    default_topic="paxout/+",
    simulate=simulate,
    options=Options,
    doc="docs/drivers/paxcounter.md",
)
