"""The vocabulary every driver shares: what a decoder yields and what a catalogue declares.

Pure and sans-I/O: nothing here reads a clock, a socket or a file. Drivers take bytes (serial)
or a topic and payload (MQTT) and return events; the gateway shell stamps time and moves bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

Value = float | int | str | bool


class ObservationType(StrEnum):
    """OGC O&M observation types used by SensorThings Datastreams."""

    MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
    COUNT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation"
    CATEGORY = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation"
    TRUTH = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation"
    OBSERVATION = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation"


class Aggregation(StrEnum):
    """How the privacy stage may publish a field that is only allowed out in aggregate."""

    NONE = "none"  # published per reading (non-personal fields only)
    DISTINCT_COUNT = "distinct_count"  # count distinct pseudonyms per window (e.g. footfall)
    SUM = "sum"
    MEAN = "mean"
    COUNT = "count"  # number of events per window (e.g. charging sessions started)
    LAST = "last"  # last value in the window (e.g. status on a single bay)
    INCREMENT = "increment"  # increase of a running total over the window (resets tolerated)
    MAX = "max"  # largest value in the window (e.g. a device-made people count)


class Role(StrEnum):
    """What a field is, as far as people are concerned. The privacy stage, the broker design
    and the privacy report all decide from this one declaration, never from field names."""

    READING = "reading"  # the environment or the device itself: may leave per reading
    IDENTIFIER = "identifier"  # MAC, idTag, plate, transaction id: never leaves; RAM pseudonyms
    PERSON_EVENT = "person_event"  # a value of one person's event (a session's energy)
    RUNNING_TOTAL = "running_total"  # a register whose steps are person events (crossing totals)
    PERSON_COUNT = "person_count"  # a count of people or devices made by the device itself
    CONTEXT = "context"  # personal-at-source side data an estimator reads (RSSI, random-MAC bit)


# The physical range a numeric field mapped by configuration (generic_json, senml) gets when its
# mapping states none: beyond it a value is withheld. It keeps the store's other values exact
# (VictoriaMetrics holds ~12 significant digits per block: 1e300 zeroes its neighbours).
DEFAULT_LIMIT = 1e9

# Fields with these roles never leave raw: only through windowed aggregates under disclosure
# control (docs/privacy.md).
PERSONAL_ROLES = frozenset(
    {Role.IDENTIFIER, Role.PERSON_EVENT, Role.RUNNING_TOTAL, Role.PERSON_COUNT, Role.CONTEXT}
)
# A device whose raw messages carry one of these is personal at source: its raw stream identifies
# or describes one person (a MAC and its signal strength, an idTag, a session's energy) and must
# never be queued or persisted anywhere on the box, the local broker included. Counts and
# registers made by the device (PERSON_COUNT, RUNNING_TOTAL) single nobody out while they sit in
# a queue; they are published only as protected per-window figures, but they may be queued
# durably, so a broker restart costs them nothing.
RAW_PERSONAL_ROLES = frozenset({Role.IDENTIFIER, Role.PERSON_EVENT, Role.CONTEXT})


@dataclass(frozen=True, slots=True)
class Field:
    """One thing a driver can report, or one aggregate the privacy stage derives from it.

    `role` other than READING means the raw value identifies or singles out a person; the
    privacy stage never lets it out as-is. An aggregate field (`aggregation` other than NONE) is
    never in a decoded reading: the privacy stage computes it per window from the field named
    `source` — e.g. `footfall` = DISTINCT_COUNT of `mac`, estimated by the `wifi_footfall`
    estimator which also reads the `inputs` `rssi` and `randomised`.
    """

    key: str
    unit: str | None  # UCUM code, None for categorical/identifier fields
    observation_type: ObservationType = ObservationType.MEASUREMENT
    description: str = ""
    role: Role = Role.READING
    aggregation: Aggregation = Aggregation.NONE
    source: str | None = None  # for aggregates: the decoded field they are computed from
    estimator: str | None = None  # for aggregates: a named method (privacy.estimators table)
    inputs: tuple[str, ...] = ()  # further decoded fields the estimator reads
    minimum: float | None = None  # physical range; outside it the value is flagged/withheld
    maximum: float | None = None
    vocabulary: frozenset[str] | None = None  # category fields: the words that may leave

    @property
    def personal(self) -> bool:
        return self.role in PERSONAL_ROLES

    @property
    def derived(self) -> bool:
        return self.aggregation is not Aggregation.NONE


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A driver's declaration: which fields it yields, their units, which are personal."""

    driver: str
    make: str
    model: str
    description: str
    transport: str  # "serial" or "mqtt"
    fields: tuple[Field, ...]
    datasheet: str = ""

    def field(self, key: str) -> Field | None:
        for f in self.fields:
            if f.key == key:
                return f
        return None

    @property
    def public_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.personal and not f.derived)

    @property
    def personal_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.personal)

    @property
    def personal_at_source(self) -> bool:
        """True when the device's raw messages identify or describe one person (see
        RAW_PERSONAL_ROLES). A driver whose raw messages carry an identifier it never decodes
        (a card UID in a topic it ignores) still declares it, as an IDENTIFIER field."""
        return any(f.role in RAW_PERSONAL_ROLES for f in self.fields)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One reading as the device reported it. `values` may contain personal fields."""

    values: Mapping[str, Value]
    device_time: float | None = None  # epoch seconds, if the device stamped it
    flags: tuple[str, ...] = ()  # quality flags, e.g. "warm_up", "out_of_range"


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A rejected frame or payload. `reason` is a short machine word for counters; `detail`
    is a human sentence that must never contain the payload's content."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid message the profile does not turn into a reading: retained housekeeping, device
    metadata, a key it does not collect, a duplicate. Counted apart from errors so that a field
    engineer sees real faults only. `reason` is a short fixed word, never payload content."""

    reason: str


Event = Decoded | DecodeError | Ignored


@dataclass(slots=True)
class FrameCounters:
    """Per-decoder counters the serial source exports as metrics."""

    bytes: int = 0
    frames_ok: int = 0
    checksum_errors: int = 0
    resyncs: int = 0
    rejected: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PollCounters:
    """Per-poller counters the serial source exports: every request answered or timed out,
    and cycles that could not start on time because the previous one was still running."""

    requests: int = 0
    answered: int = 0
    timeouts: int = 0
    late_cycles: int = 0


class StreamDecoder(Protocol):
    """A serial decoder: feed it any split of the byte stream, get events back."""

    counters: FrameCounters

    def feed(self, data: bytes) -> list[Event]: ...


class MessageDecoder(Protocol):
    """An MQTT decoder: one message in, events out. Never raises on bad input. A valid message
    it does not use should give `Ignored(reason)`, so it is counted apart from errors."""

    def decode(self, topic: str, payload: bytes) -> list[Event]: ...
