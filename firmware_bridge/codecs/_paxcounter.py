"""What the three Paxcounter codecs share: the catalogue and turning a result into events."""

from __future__ import annotations

from firmware_bridge.base import Catalogue, Decoded, DecodeError, Event, Ignored
from firmware_bridge.paxcounter_payload import PaxCounts, catalogue_fields


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
        return [Ignored("not_a_count")]  # status or battery frame on the same port
    if isinstance(result, DecodeError):
        return [result]
    return [Decoded(result.values())]
