"""A LoRaWAN device heard through its network server's MQTT integration: what the `chirpstack` and
`thethingsstack` profiles share.

One sensor is one device, named by its DevEUI in the sensor's options; its subscription follows
from that (ChirpStack puts the DevEUI in the topic, The Things Stack the device id). Each uplink
becomes readings in one of two ways, chosen per fPort:

- `ports: {1: {codec: paxcounter_packed}}`: a built-in codec from `firmware_bridge.codecs`
  decodes the FRMPayload bytes (Cayenne LPP, Paxcounter packed/plain/LPP);
- `decoded: {fields: [...]}`: the server's own payload formatter already decoded it
  (ChirpStack `object`, TTS `decoded_payload`); the generic_json mapping picks fields from it.

Uplinks repeated by a second integration, server or a resend are dropped (`Deduplicator`: the
server's uplink id, or DevEUI + session + frame counter). The device time is the server's
receive time. Radio metadata is never read (`firmware_bridge.lorawan`), so no gateway id, RSSI,
SNR or gateway position can reach a reading, a log line or a metric. Everything valid that is
not a reading (joins, status events, another device, a duplicate, an unmapped port) is
`Ignored`, counted apart from errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field as Opt
from pydantic import create_model, model_validator

from firmware_bridge.base import Catalogue, Decoded, DecodeError, Event, Field, Ignored
from firmware_bridge.codecs import CODECS, CodecSpec, guarded
from firmware_bridge.jsonmapping import Mapping, Spec, build_spec, map_document
from firmware_bridge.jsonpayload import PayloadDecoder
from firmware_bridge.lorawan import Deduplicator, Uplink
from firmware_bridge.options import DriverOptions, PayloadOptions

FPort = Annotated[int, Opt(ge=1, le=223)]  # LoRaWAN application ports; 0 is MAC commands only
DEV_EUI = r"^[0-9A-Fa-f]{16}$"
DEDUP_CAPACITY = 4096  # keys (two per uplink): about two days of a device sending every minute
DEDUP_WINDOW_S = 900.0  # of server time: a repeat later than this is a new frame (ABP reboot)


class PortCodecBase(DriverOptions):
    """A built-in codec for one fPort: `{codec: <name>, options: {...}}`."""

    codec: str
    options: Any


def _port_codec(name: str, spec: CodecSpec[Any]) -> type[PortCodecBase]:
    return create_model(
        f"PortCodec_{name}",
        __base__=PortCodecBase,
        __doc__=f"Decode this port with the `{name}` codec ({spec.doc}).",
        codec=(Literal[name], Opt(description=f"{name}: see {spec.doc}")),  # type: ignore[arg-type]
        options=(spec.Options, Opt(default_factory=spec.Options)),
    )


if TYPE_CHECKING:
    PortCodec = PortCodecBase
else:  # a discriminated union over the registry: `check` names the codecs when one is unknown
    PortCodec = Annotated[
        Union[tuple(_port_codec(n, s) for n, s in CODECS.items())],  # noqa: UP007
        Opt(discriminator="codec"),
    ]


class DecodedMapping(Mapping):
    """The network server's decoded payload, mapped like a generic_json document."""

    ports: list[FPort] | None = Opt(
        None, description="fPorts whose decoded payload is mapped; default: every port "
        "without a codec (a status port can be left out here)."
    )  # fmt: skip


class LorawanOptions(PayloadOptions):
    ports: dict[FPort, PortCodec] = Opt(
        default_factory=dict, description="fPort -> built-in codec for the FRMPayload bytes."
    )
    decoded: DecodedMapping | None = Opt(
        None, description="Fields from the server's decoded payload (ChirpStack `object`, "
        "The Things Stack `decoded_payload`), mapped like generic_json."
    )  # fmt: skip
    description: str = "LoRaWAN device through its network server"

    @model_validator(mode="after")
    def _payload_source(self) -> LorawanOptions:
        if not self.ports and self.decoded is None:
            raise ValueError("give `ports` (a codec per fPort) or `decoded` (a mapping of the "
                             "server's decoded payload), or both")  # fmt: skip
        if self.decoded is not None and self.decoded.ports is not None:
            both = sorted(set(self.decoded.ports) & set(self.ports))
            if both:
                raise ValueError(f"decoded.ports: fPort {both[0]} already has a codec in `ports`")
        fields(self)  # raises on two sources declaring one key differently
        return self


def fields(options: LorawanOptions) -> tuple[Field, ...]:
    """Every field the configured codecs and mapping yield, each key once."""
    out: dict[str, tuple[Field, str]] = {}

    def add(field: Field, where: str) -> None:
        seen = out.get(field.key)
        if seen is not None and seen[0] != field:
            raise ValueError(f"{where}: field `{field.key}` is also declared by {seen[1]}, differently")
        out.setdefault(field.key, (field, where))

    for port, choice in sorted(options.ports.items()):
        for field in CODECS[choice.codec].catalogue_for(choice.options).fields:
            add(field, f"ports.{port}")
    if options.decoded is not None:
        spec = build_spec(options.decoded)
        for field in (*(f.field for f in spec.fields), *spec.aggregates):
            add(field, "decoded")
    return tuple(f for f, _ in out.values())


def catalogue(driver: str, server: str, options: LorawanOptions) -> Catalogue:
    codecs = sorted({c.codec for c in options.ports.values()})
    model = ", ".join(codecs) + (" + " if codecs and options.decoded else "")
    model += "server-decoded payload" if options.decoded is not None else ""
    return Catalogue(
        driver=driver,
        make=f"LoRaWAN device via {server}",
        model=model,
        description=options.description,
        transport="mqtt",
        fields=fields(options),
        datasheet=", ".join(CODECS[c].doc for c in codecs),
    )


@dataclass(frozen=True, slots=True)
class Server:
    """What differs between network servers: the envelope parser and who the device is."""

    parse: Callable[[str, bytes, int], Uplink | DecodeError | None]
    # None: this sensor's device; Ignored: another device; DecodeError: identities disagree
    identify: Callable[[Uplink, Any], Ignored | DecodeError | None]


class Decoder(PayloadDecoder):
    """One device's uplinks. RAM-only state: recent uplink digests, to drop repeats."""

    def __init__(self, options: LorawanOptions, server: Server) -> None:
        super().__init__(options)
        self.options = options
        self.server = server
        self.codecs = {p: (CODECS[c.codec], c.options) for p, c in options.ports.items()}
        self.mapping: Spec | None = None
        self.mapped_ports: frozenset[int] | None = None
        if options.decoded is not None:
            self.mapping = build_spec(options.decoded)
            if options.decoded.ports is not None:
                self.mapped_ports = frozenset(options.decoded.ports)
        self.dedup = Deduplicator(DEDUP_CAPACITY, DEDUP_WINDOW_S)
        self._clock = 0.0  # the latest server time seen: the dedup window's clock

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        up = self.server.parse(topic, payload, self.limit)
        if up is None:
            return [Ignored("not_an_uplink")]  # join, status, ack, log, location, downlink
        if isinstance(up, DecodeError):
            return [up]
        other = self.server.identify(up, self.options)
        if other is not None:
            return [other]
        if up.device_time is not None:
            self._clock = max(self._clock, up.device_time)
        if self.dedup.seen(up.dedup_keys, self._clock):
            return [Ignored("duplicate")]
        if up.f_port == 0:
            return [Ignored("mac_commands")]
        return [self._stamped(e, up) for e in self._payload(up)]

    def _payload(self, up: Uplink) -> list[Event]:
        codec = self.codecs.get(up.f_port)
        if codec is not None:
            return guarded(codec[0], up.payload, up.f_port, codec[1])
        if self.mapping is not None and (self.mapped_ports is None or up.f_port in self.mapped_ports):
            if up.decoded is None:
                return [DecodeError("no_decoded_payload", "the network server sent no decoded "
                                    "payload: check the device's payload formatter")]  # fmt: skip
            return map_document(self.mapping, up.decoded)
        return [Ignored("unmapped_port")]

    @staticmethod
    def _stamped(event: Event, up: Uplink) -> Event:
        """The server's receive time, unless the device's own payload carried one."""
        if isinstance(event, Decoded) and event.device_time is None and up.device_time is not None:
            flags = tuple(f for f in event.flags if f != "no_device_time")
            return dataclasses.replace(event, device_time=up.device_time, flags=flags)
        return event
