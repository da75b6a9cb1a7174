"""A LoRaWAN device through ChirpStack v4's MQTT integration (JSON marshaler, the default).

ChirpStack publishes each device event to `application/<application id>/device/<DevEUI>/event/
<event>` (DevEUI in lower-case hex, lrwn `EUI64` Display); an uplink is `…/event/up`, an
`integration.UplinkEvent` in the Protocol Buffers JSON mapping. One sensor is one device:
`options.dev_eui` names it and the subscription follows
(`application/+/device/<dev_eui>/event/up`). What the sensor reads from each uplink is chosen
per fPort in `firmware_bridge.lorawan_profile` (a built-in codec, or the `object` ChirpStack's
device-profile codec decoded).
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from typing import Any

from pydantic import Field as Opt

from firmware_bridge.base import Catalogue, DecodeError, Ignored
from firmware_bridge.driver import MessageDriver
from firmware_bridge.lorawan import Uplink, parse_chirpstack
from firmware_bridge.lorawan_profile import DEV_EUI, Decoder, LorawanOptions, Server, catalogue

NAME = "chirpstack"
SIM_APPLICATION = "17c82e96-be03-4f38-aef3-f83d48582d97"
SIM_DEV_EUI = "70b3d57ed0051a2b"


class Options(LorawanOptions):
    dev_eui: str = Opt(pattern=DEV_EUI, description="The device's DevEUI, 16 hex digits.")


def _identify(up: Uplink, options: Options) -> Ignored | DecodeError | None:
    if (up.dev_eui or "") != options.dev_eui.upper():
        return Ignored("other_device")  # a wider `mqtt.topic` than this device's own
    return None


SERVER = Server(parse=parse_chirpstack, identify=_identify)


def new_decoder(options: Options) -> Decoder:
    return Decoder(options, SERVER)


def catalogue_for(options: Options) -> Catalogue:
    return catalogue(NAME, "ChirpStack", options)


def topic_for(options: Options) -> str:
    return f"application/+/device/{options.dev_eui.lower()}/event/up"


def _uplink(rng: random.Random, now: float, application: str, dev_eui: str, f_cnt: int,
            data: bytes, gateway: str) -> dict[str, Any]:  # fmt: skip
    """An UplinkEvent as ChirpStack's JSON marshaler writes it (chirpstack-docs events.md),
    radio metadata included: the profile must never read it."""
    return {
        "deduplicationId": f"{rng.getrandbits(32):08x}-4401-4b8d-9386-{rng.getrandbits(48):012x}",
        "time": datetime.fromtimestamp(now, UTC).isoformat(),
        "deviceInfo": {
            "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "Camden",
            "applicationId": application, "applicationName": "footfall",
            "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
            "deviceProfileName": "Paxcounter", "deviceName": "pax-high-street",
            "devEui": dev_eui, "deviceClassEnabled": "CLASS_A", "tags": {},
        },
        "devAddr": "00189440", "adr": True, "dr": 5, "fCnt": f_cnt, "fPort": 1,
        "confirmed": False, "data": base64.b64encode(data).decode(),
        "rxInfo": [{
            "gatewayId": gateway, "uplinkId": rng.getrandbits(32), "rssi": rng.randint(-120, -60),
            "snr": round(rng.uniform(-10, 10), 1), "channel": 2, "rfChain": 1,
            "location": {"latitude": 51.5421, "longitude": -0.1426, "altitude": 30},
            "context": "E3OWOQ==", "metadata": {"region_common_name": "EU868"},
            "crcStatus": "CRC_OK",
        }],
        "txInfo": {"frequency": 867100000,
                   "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7,
                                           "codeRate": "CR_4_5"}}},
    }  # fmt: skip


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A Paxcounter (packed encoder, Wi-Fi only) uplink on fPort 1, the example options' device;
    now and then the same uplink again as a second server instance heard it through another
    gateway (a new deduplicationId, the same frame counter): a duplicate to drop."""
    levels = base_topic.split("/")
    shaped = len(levels) == 6 and levels[0] == "application" and levels[2] == "device"
    application = levels[1] if shaped and levels[1] not in ("+", "#") else SIM_APPLICATION
    dev_eui = levels[3] if shaped and levels[3] not in ("+", "#") else SIM_DEV_EUI
    topic = f"application/{application}/device/{dev_eui}/event/up"
    hour = (now % 86400) / 3600
    wifi = max(0, int(rng.gauss(40 * max(0.05, 1 - abs(hour - 13) / 9), 5)))
    f_cnt = int(now) % 2**32
    data = wifi.to_bytes(2, "little")
    messages = [(topic, json.dumps(_uplink(rng, now, application, dev_eui, f_cnt, data,
                                           "0016c001f153a14c")).encode())]  # fmt: skip
    if rng.random() < 0.2:
        messages.append((topic, json.dumps(_uplink(rng, now + 0.01, application, dev_eui, f_cnt,
                                                   data, "0016c001f153a14d")).encode()))  # fmt: skip
    return messages


DRIVER = MessageDriver(
    name=NAME,
    catalogue_for=catalogue_for,
    new_decoder=new_decoder,
    options=Options,
    default_topic="application/+/device/+/event/up",
    topic_for=topic_for,
    simulate=simulate,
    doc="docs/drivers/chirpstack.md",
    example_options={"dev_eui": SIM_DEV_EUI, "ports": {1: {"codec": "paxcounter_packed"}}},
)
