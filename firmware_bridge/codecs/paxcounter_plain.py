"""Paxcounter, plain encoder (PAYLOAD_ENCODER 1): big-endian counts on the count port, an
SDS011 reading appended as text; every other port is ignored."""

from __future__ import annotations

from firmware_bridge.base import Catalogue, Event
from firmware_bridge.codecs._paxcounter import CountPortOptions, catalogue, events
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.paxcounter_payload import decode_plain_counts


class Options(CountPortOptions):
    pass


def catalogue_for(options: Options) -> Catalogue:
    return catalogue("paxcounter_plain", "plain")


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    if fport is not None and fport != options.count_port:
        return []
    return events(decode_plain_counts(payload))


CODEC = CodecSpec(
    name="paxcounter_plain",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/drivers/firmware-findings.md",
)
