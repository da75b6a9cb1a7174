"""What every sink shares: the error tree and the interface the sink runner drives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard


class SinkError(Exception):
    """Base of sink errors; wraps the client library's error once, at the boundary."""


class RetryableError(SinkError):
    """Network down, 5xx, 429, broker gone: keep the rows, back off, try again."""


class PermanentError(SinkError):
    """The destination refused these rows for good (e.g. 400 bad point): quarantine them."""


@dataclass
class WriteResult:
    """Rows written; `rejected` lists seqs the destination refused permanently (quarantined)."""

    written: int
    rejected: list[int] = field(default_factory=list)
    blocked: int = 0  # rows the egress guard stopped


class Sink(Protocol):
    name: str
    batch_size: int

    async def start(self) -> None: ...

    async def write(self, rows: Sequence[Row]) -> WriteResult: ...

    async def close(self) -> None: ...


def guarded_observations(rows: Sequence[Row], guard: EgressGuard) -> tuple[list[tuple[Observation, bytes]], int]:
    """Each row as the SensorThings Observation JSON a sink sends, and how many the egress guard
    blocked (counted by the guard, per reason). The one serialisation file and MQTT share."""
    out: list[tuple[Observation, bytes]] = []
    blocked = 0
    for row in rows:
        obs = Observation.from_record(row.body)
        payload = json.dumps(obs.sensorthings(), separators=(",", ":"), ensure_ascii=False).encode()
        if guard.check_observation_json(payload).ok:
            out.append((obs, payload))
        else:
            blocked += 1
    return out, blocked
