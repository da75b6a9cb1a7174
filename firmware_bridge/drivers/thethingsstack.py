"""A LoRaWAN device through The Things Stack v3's MQTT server (The Things Network, TTI Cloud or
a private deployment).

The Things Stack publishes uplinks to `v3/<application id>[@<tenant id>]/devices/<device id>/up`
(snake_case JSON, the uplink under `uplink_message`, zero values left out). The topic carries
the end device id, not the DevEUI: one sensor is one device, named by `device_id` (the id it
has in the Console) and/or `dev_eui`; without `device_id` the sensor subscribes to
`eui-<dev_eui>`, the id The Things Stack's own integrations give a device registered by DevEUI.
A DevEUI in the message that is not the configured one is an error, never someone else's data.
What the sensor reads from each uplink is chosen per fPort in `firmware_bridge.lorawan_profile`
(a built-in codec, or the `decoded_payload` of the application's payload formatter).
"""

from __future__ import annotations

import base64
import json
import random
import struct
from datetime import UTC, datetime
from typing import Any

from pydantic import Field as Opt
from pydantic import model_validator

from firmware_bridge.base import Catalogue, DecodeError, Ignored
from firmware_bridge.driver import MessageDriver
from firmware_bridge.lorawan import Uplink, parse_tts
from firmware_bridge.lorawan_profile import DEV_EUI, Decoder, LorawanOptions, Server, catalogue

NAME = "thethingsstack"
# The Things Stack ids: lower-case letters, digits and single dashes, 3 to 36 characters
# (lorawan-stack-docs concepts/architecture/id-eui-constraints).
DEVICE_ID = r"^[a-z0-9](?:-?[a-z0-9]){2,35}$"
SIM_DEV_EUI = "70B3D57ED0061C2E"


class Options(LorawanOptions):
    dev_eui: str | None = Opt(None, pattern=DEV_EUI, description="The device's DevEUI, 16 hex "
                              "digits; checked against every uplink.")  # fmt: skip
    device_id: str | None = Opt(None, pattern=DEVICE_ID, description="The end device id in the "
                                "Console; default eui-<dev_eui in lower case>.")  # fmt: skip

    @model_validator(mode="after")
    def _named(self) -> Options:
        if self.dev_eui is None and self.device_id is None:
            raise ValueError("name the device: `dev_eui`, `device_id`, or both")
        return self

    @property
    def device(self) -> str:
        return self.device_id or f"eui-{(self.dev_eui or '').lower()}"


def _identify(up: Uplink, options: Options) -> Ignored | DecodeError | None:
    if up.device != options.device:
        return Ignored("other_device")  # a wider `mqtt.topic` than this device's own
    if options.dev_eui is not None and up.dev_eui is not None and up.dev_eui != options.dev_eui.upper():
        return DecodeError("identity_mismatch", "the uplink's DevEUI is not the configured one")
    return None


SERVER = Server(parse=parse_tts, identify=_identify)


def new_decoder(options: Options) -> Decoder:
    return Decoder(options, SERVER)


def catalogue_for(options: Options) -> Catalogue:
    return catalogue(NAME, "The Things Stack", options)


def topic_for(options: Options) -> str:
    return f"v3/+/devices/{options.device}/up"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """An air-quality node (the example options' device): its payload formatter's
    `decoded_payload` beside the raw bytes, in the shape of The Things Stack's documented
    uplink message, radio metadata included (the profile must never read it)."""
    levels = base_topic.split("/")
    shaped = len(levels) == 5 and levels[0] == "v3" and levels[2] == "devices"
    application = levels[1] if shaped and levels[1] not in ("+", "#") else "air-quality@camden"
    device = levels[3] if shaped and levels[3] not in ("+", "#") else f"eui-{SIM_DEV_EUI.lower()}"
    dev_eui = device[4:].upper() if device.startswith("eui-") and len(device) == 20 else SIM_DEV_EUI
    pm2_5 = round(max(0.0, rng.gauss(9, 3)), 1)
    pm10 = round(pm2_5 * rng.uniform(1.2, 1.8), 1)
    temperature = round(rng.gauss(14, 4), 1)
    humidity = round(min(100.0, max(0.0, rng.gauss(70, 10))) * 2) / 2
    frm = struct.pack(">HHhB", int(pm2_5 * 10), int(pm10 * 10), int(temperature * 10),
                      int(humidity * 2))  # fmt: skip
    received = _iso(now)
    body: dict[str, Any] = {
        "end_device_ids": {
            "device_id": device,
            "application_ids": {"application_id": application.split("@", 1)[0]},
            "dev_eui": dev_eui, "join_eui": "0000000000000000", "dev_addr": "260B5A7C",
        },
        "correlation_ids": [f"as:up:01H{rng.getrandbits(80):020X}", "gs:uplink:01HX"],
        "received_at": received,
        "uplink_message": {
            "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
            "f_port": 2,
            "f_cnt": int(now) % 2**32,
            "frm_payload": base64.b64encode(frm).decode(),
            "decoded_payload": {"pm2_5": pm2_5, "pm10": pm10, "temperature": temperature,
                                "humidity": humidity},
            "rx_metadata": [{
                "gateway_ids": {"gateway_id": "camden-lc-0423", "eui": "9C5C8E00001A05C4"},
                "time": received, "rssi": rng.randint(-120, -60), "channel_rssi": -35,
                "snr": round(rng.uniform(-10, 10), 1),
                "location": {"latitude": 51.5421, "longitude": -0.1426, "altitude": 30},
            }],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                         "frequency": "868300000"},
            "received_at": received,
            "consumed_airtime": "0.061696s",
        },
    }  # fmt: skip
    topic = f"v3/{application}/devices/{device}/up"
    return [(topic, json.dumps(body).encode())]


DRIVER = MessageDriver(
    name=NAME,
    catalogue_for=catalogue_for,
    new_decoder=new_decoder,
    options=Options,
    default_topic="v3/+/devices/+/up",
    topic_for=topic_for,
    simulate=simulate,
    doc="docs/drivers/thethingsstack.md",
    example_options={"dev_eui": SIM_DEV_EUI, "decoded": {"fields": [
        {"path": "pm2_5", "property": "pm2_5", "unit": "ug/m3"},
        {"path": "pm10", "property": "pm10", "unit": "ug/m3"},
        {"path": "temperature", "property": "temperature", "unit": "Cel"},
        {"path": "humidity", "property": "humidity", "unit": "%"},
    ]}},
)
