"""The formats a sink can publish Observations in, and what the catalogue says about each. Pure.

`sensorthings` (the default) is one OGC SensorThings API 1.1 Observation per message; `senml` is
one RFC 8428 pack per sensor; `ngsi-ld` is one FIWARE Smart Data Models entity per sensor and
Observation time. `line-protocol` is the time-series store's (the `influxdb` sink), listed here
so the catalogue describes every distribution from one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gateway.model import Observation, compact_json
from gateway.standards import ngsi_ld, senml

if TYPE_CHECKING:  # the plan imports the config, which imports the sinks, which import this
    from gateway.plan import SitePlan

Format = Literal["sensorthings", "senml", "ngsi-ld"]
FORMATS: tuple[Format, ...] = ("sensorthings", "senml", "ngsi-ld")

IANA = "http://www.iana.org/assignments/media-types/"
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"


@dataclass(frozen=True, slots=True)
class Described:
    """What a catalogue record says about a format."""

    label: str
    media_type: str  # IANA media type
    file_type: str  # EU Publications Office file-type authority code (dct:format)
    standard: str  # the specification the data conforms to (dct:conformsTo)
    standard_title: str


DESCRIBED: dict[str, Described] = {
    "sensorthings": Described("SensorThings API 1.1 Observations (JSON)", "application/json", "JSON",
                              "http://www.opengis.net/doc/is/sensorthings/1.1",
                              "OGC SensorThings API Part 1: Sensing, version 1.1 (OGC 18-088)"),
    "senml": Described("SenML packs (JSON)", "application/senml+json", "JSON",
                       "https://www.rfc-editor.org/info/rfc8428",
                       "RFC 8428: Sensor Measurement Lists (SenML)"),
    "ngsi-ld": Described("NGSI-LD entities (FIWARE Smart Data Models)", "application/ld+json", "JSON_LD",
                         "https://www.etsi.org/deliver/etsi_gs/CIM/001_099/009/01.03.01_60/gs_cim009v010301p.pdf",
                         "ETSI GS CIM 009 V1.3.1: NGSI-LD API (entities from FIWARE Smart Data Models)"),
    "line-protocol": Described("InfluxDB line protocol", "text/plain", "TXT",
                               "https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/",
                               "InfluxDB line protocol"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    """One payload in a format: about a Datastream (sensorthings) or a sensor (senml, ngsi-ld)."""

    sensor_id: str
    datastream_id: int | None
    payload: bytes
    observations: int  # how many Observations it carries


def encode(fmt: Format, plan: SitePlan, items: Sequence[tuple[Observation, bytes]]) -> list[Message]:
    """Observations (each with its SensorThings JSON, as the egress guard passed it) as the
    format's messages. SenML and NGSI-LD leave out what they cannot carry: a suppressed count
    has no value in SenML, and a sensor no Smart Data Model fits has no NGSI-LD entity."""
    if fmt == "sensorthings":
        return [Message(o.sensor_id, o.datastream_id, payload, 1) for o, payload in items]
    observations = [o for o, _ in items]
    if fmt == "senml":
        counts: dict[str, int] = {}
        for o in observations:
            if o.result is not None:
                counts[o.sensor_id] = counts.get(o.sensor_id, 0) + 1
        return [Message(sensor, None, compact_json(pack), counts.get(sensor, 0))
                for sensor, pack in senml.packs(plan.gateway_id, observations, plan.datastreams)]  # fmt: skip
    out: list[Message] = []
    for sensor, entity in ngsi_ld.encode(plan, observations):
        out.append(Message(sensor, None, compact_json(entity), 1))
    return out


def carries(fmt: Format, plan: SitePlan) -> list[str]:
    """The sensors whose data the format carries."""
    if fmt == "ngsi-ld":
        return ngsi_ld.covered(plan)
    return [sp.id for sp in plan.sensors.values() if sp.datastreams]
