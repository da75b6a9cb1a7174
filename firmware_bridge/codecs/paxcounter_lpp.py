"""Paxcounter, Cayenne LPP encoders: dynamic (PAYLOAD_ENCODER 3, counts on channels 21/22,
everything on fPort 1) or packed (4, channel-less, everything on fPort 2). The firmware puts
status and battery frames on the same port, so a frame without counts is ignored, not an error.
Kept apart from the generic `cayenne_lpp` codec because packed LPP counts are told apart only
by their order, which a channel mapping cannot express."""

from __future__ import annotations

from typing import Literal

from firmware_bridge.base import Catalogue, Event
from firmware_bridge.codecs._paxcounter import catalogue, events
from firmware_bridge.codecs.spec import CodecSpec
from firmware_bridge.options import DriverOptions
from firmware_bridge.paxcounter_payload import LPP_PACKED_PORT, decode_lpp_counts


class Options(DriverOptions):
    # auto: the firmware's own ports decide, CAYENNE_LPP2 (2) packed, anything else dynamic
    layout: Literal["auto", "dynamic", "packed"] = "auto"


def catalogue_for(options: Options) -> Catalogue:
    return catalogue("paxcounter_lpp", "Cayenne LPP")


def decode(payload: bytes, fport: int | None, options: Options) -> list[Event]:
    packed = options.layout == "packed" or (options.layout == "auto" and fport == LPP_PACKED_PORT)
    return events(decode_lpp_counts(payload, packed))


CODEC = CodecSpec(
    name="paxcounter_lpp",
    Options=Options,
    catalogue_for=catalogue_for,
    decode=decode,
    doc="docs/codecs/paxcounter_lpp.md",
)
