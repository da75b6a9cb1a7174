"""What the three Paxcounter codecs share: the catalogue and the count-port option."""

from __future__ import annotations

from pydantic import Field as OptionField

from firmware_bridge.base import Catalogue, Decoded, DecodeError, Event
from firmware_bridge.options import DriverOptions
from firmware_bridge.paxcounter_payload import COUNTER_PORT, PaxCounts, catalogue_fields

# LoRaWAN application fPorts are 1..223; 224 is the test port, 0 carries MAC commands only.
FPort = OptionField(COUNTER_PORT, ge=1, le=223, description="COUNTERPORT of the firmware build")


class CountPortOptions(DriverOptions):
    count_port: int = FPort


def catalogue(codec: str, encoder: str) -> Catalogue:
    return Catalogue(
        driver=codec,
        make="Open source (cyberman54/ESP32-Paxcounter)",
        model="ESP32 Paxcounter",
        description=f"On-device Wi-Fi/BLE device counts over LoRaWAN, {encoder} payload encoder",
        transport="lorawan",
        fields=catalogue_fields(),
        datasheet="ESP32-Paxcounter docs/payloadformat.md",
    )


def events(result: PaxCounts | DecodeError | None) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, DecodeError):
        return [result]
    return [Decoded(result.values())]
