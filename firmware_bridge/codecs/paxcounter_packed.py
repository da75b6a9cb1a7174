"""Paxcounter, packed encoder (the firmware default, PAYLOAD_ENCODER 2): little-endian counts
on the count port; every other port (status, config, GPS, BME, battery) is ignored."""

from __future__ import annotations

from firmware_bridge.base import Catalogue, Event
from firmware_bridge.codecs._paxcounter import CountPortOptions, catalogue, events
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.paxcounter_payload import decode_packed_counts


class Options(CountPortOptions):
    pass


def catalogue_for(options: Options) -> Catalogue:
    return catalogue("paxcounter_packed", "packed")


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    if fport is not None and fport != options.count_port:
        return []
    return events(decode_packed_counts(payload))


CODEC = CodecSpec(
    name="paxcounter_packed",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/drivers/firmware-findings.md",
)
