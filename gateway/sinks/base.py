"""What every sink shares: the spec a sink module exports, the error tree, the interface the sink
runner drives.

A sink module exports `SPEC = SinkSpec(...)`: its settings model (the entry under `sinks:`, with
`type: <name>`), a `build` that makes a sink instance, and what the privacy report and the
catalogue say about it. Several instances of one type can exist (two MQTT feeds, say); each has
its own name, which is also the name of its outbox cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field, SecretStr

from gateway.configtypes import Duration, Strict
from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard

if TYPE_CHECKING:
    from gateway.plan import SitePlan
    from gateway.standards.formats import Format, Message

Loc = tuple[str | int, ...]


class SinkError(Exception):
    """Base of sink errors; wraps the client library's error once, at the boundary."""


class RetryableError(SinkError):
    """Network down, 5xx, 429, broker gone: keep the rows, back off, try again."""


class PermanentError(SinkError):
    """The destination's verdict on these rows themselves (e.g. 400 with a parse error). The
    runner quarantines the whole batch it wrote and moves on: a sink that can find the refused
    rows (the InfluxDB sink splits the batch) does so itself and returns them as `rejected`."""


class BlockedError(SinkError):
    """The destination refuses *us*, not the rows: credentials refused (HTTP 401, MQTT
    not-authorised), no permission (403), no such bucket or path (404), a read-only target.
    Nothing is quarantined: the backlog stays, the runner backs off to a cap and shows the sink
    as blocked, with `code` (a short word for metrics) and the message, until it writes again.
    An expired token must never throw away what was queued while it was expired."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class WriteResult:
    """Rows written; `rejected` lists seqs the destination refused permanently (quarantined)."""

    written: int
    rejected: list[int] = field(default_factory=list)
    blocked: int = 0  # rows the egress guard stopped


class Sink(Protocol):
    """What the sink runner drives. A sink whose write is quick local I/O (a file) may also
    have `write_local(rows) -> WriteResult`, blocking: the runner then runs a small batch on
    the outbox's thread followed by the cursor advance there, one thread hand-off for both."""

    name: str
    batch_size: int

    async def start(self) -> None: ...

    async def write(self, rows: Sequence[Row]) -> WriteResult: ...

    async def close(self) -> None: ...


class SinkSettings(Strict):
    """Base of every sink's settings. `type` is the registry key; a subclass narrows it to a
    Literal so that `sinks:` entries validate against the right model."""

    type: str
    flush_interval: Duration = Field(
        0.25, le=60,
        description="How long rows may wait for more before a write, unless a full batch is "
        "waiting: longer = fewer writes and less CPU, later data; a crash costs nothing (the "
        "rows stay in the outbox). 0: write as soon as rows are committed.",
    )  # fmt: skip

    def secrets(self) -> Iterator[str]:
        """Every secret value, so logs can be checked never to contain them."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                yield value.get_secret_value()


@dataclass
class SinkContext:
    """What a sink instance gets besides its settings."""

    gateway_id: str
    borough: str
    data_dir: Path
    plan: SitePlan
    guard: EgressGuard

    def resolve(self, path: Path) -> Path:
        """Relative paths in sink settings live under the data dir."""
        return path if path.is_absolute() else self.data_dir / path


@dataclass(frozen=True)
class Offer:
    """How consumers read one sensor's data from one sink instance: one DCAT-AP Distribution in
    the catalogue. Built from settings that are not secret; never carries a credential."""

    sensor: str  # the sensor, i.e. the catalogue's Dataset
    format: str  # a key of gateway.standards.formats.DESCRIBED
    access_urls: tuple[str, ...]
    title: str
    description: str


@dataclass(frozen=True)
class Destination:
    """One line of the privacy report's "what leaves, to where"."""

    name: str
    type: str
    where: str  # host, URL or file path (never a credential)
    what: str  # the format and what it carries
    on_device: str | None = None  # if the sink keeps data on the box too, where and how long


def _no_problems(settings: Any) -> list[tuple[Loc, str]]:
    return []


def _no_offers(name: str, settings: Any, plan: SitePlan) -> list[Offer]:
    return []


@dataclass(frozen=True)
class SinkSpec:
    name: str  # the registry key: what `type:` says in the config
    settings: type[SinkSettings]
    build: Callable[[SinkContext, str, Any], Sink]
    describe: Callable[[str, Any, Path], Destination]  # (name, settings, data dir)
    # problems `check` finds beyond the schema, as (loc under the sink entry, message)
    check: Callable[[Any], list[tuple[Loc, str]]] = field(default=_no_problems)
    doc: str = ""
    # what consumers can read from this sink (the catalogue's distributions); none: local only
    offers: Callable[[str, Any, SitePlan], list[Offer]] = field(default=_no_offers)
    # what `check` prints as a warning and accepts (a secret in clear with allow_plaintext: true)
    warn: Callable[[Any], list[tuple[Loc, str]]] = field(default=_no_problems)


def guarded_messages(rows: Sequence[Row], guard: EgressGuard, fmt: Format,
                     plan: SitePlan) -> tuple[list[Message], int]:  # fmt: skip
    """The rows as `fmt`'s messages. Every Observation is cleared by the egress guard first
    (`guarded_observations`); SensorThings messages are built from cleared parts only, so they
    are not scanned again; SenML and NGSI-LD compose text of their own (names, entity ids), so
    each of their messages is scanned whole as well. Returns the messages and how many
    Observations were blocked."""
    from gateway.standards.formats import encode

    items, blocked = guarded_observations(rows, guard)
    if fmt == "sensorthings":
        return encode(fmt, plan, items), blocked
    out: list[Message] = []
    for m in encode(fmt, plan, items):
        if guard.check_text(m.payload.decode()).ok:
            out.append(m)
        else:
            blocked += m.observations
    return out, blocked


def guarded_observations(rows: Sequence[Row], guard: EgressGuard) -> tuple[list[tuple[Observation, bytes]], int]:
    """Each row as the SensorThings Observation JSON a sink sends, and how many the egress guard
    blocked (counted by the guard, per reason). The one serialisation file and MQTT share.

    The JSON is built from the Observation the guard cleared (`EgressGuard.clear_record_json`): its
    Datastream id, its times as ISO 8601, its result and parameters exactly as the guard scanned
    them (`renderings`), so the bytes need no scan of their own."""
    out: list[tuple[Observation, bytes]] = []
    blocked = 0
    clear = guard.clear_record_json
    for row in rows:
        made = clear(row.body)
        if made is None:
            blocked += 1
        else:
            out.append(made)
    return out, blocked

