"""Paxcounter, plain encoder (PAYLOAD_ENCODER 1): big-endian counts, an SDS011 reading appended
as text. Map it to the count port (COUNTERPORT, 1 by default)."""

from __future__ import annotations

from firmware_bridge.base import Catalogue, Event
from firmware_bridge.codecs._paxcounter import catalogue, events
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.options import DriverOptions
from firmware_bridge.paxcounter_payload import decode_plain_counts


class Options(DriverOptions):
    """No options: the port this codec is mapped to is the count port."""


def catalogue_for(options: Options) -> Catalogue:
    return catalogue("paxcounter_plain", "plain")


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    return events(decode_plain_counts(payload))


CODEC = CodecSpec(
    name="paxcounter_plain",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/codecs/paxcounter_plain.md",
)
