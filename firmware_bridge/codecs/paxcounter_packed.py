"""Paxcounter, packed encoder (the firmware default, PAYLOAD_ENCODER 2): little-endian counts.
Map it to the count port (COUNTERPORT, 1 by default); the firmware's other ports (status 2,
config 3, GPS 4, button 5, BME 7, battery 8, time 9, sensors 10-12) carry no counts."""

from __future__ import annotations

from firmware_bridge.base import Catalogue, Event
from firmware_bridge.codecs._paxcounter import catalogue, events
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.options import DriverOptions
from firmware_bridge.paxcounter_payload import decode_packed_counts


class Options(DriverOptions):
    """No options: the port this codec is mapped to is the count port."""


def catalogue_for(options: Options) -> Catalogue:
    return catalogue("paxcounter_packed", "packed")


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    return events(decode_packed_counts(payload))


CODEC = CodecSpec(
    name="paxcounter_packed",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/codecs/paxcounter_packed.md",
)
