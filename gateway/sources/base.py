"""What every source shares: the spec a source module exports and what it is given to run.

A source is the I/O that brings bytes or messages from devices (a tty, the local broker, the
OCPP tap). Its spec names the sensor's config key (`serial:`, `mqtt:` …), an optional gateway-wide
`inputs.<name>` section, and a `build` that turns the planned sensors into runnables the
supervisor keeps alive. Sources know nothing of privacy, the outbox or sinks: they hand
`Reading`s to `submit` and run `ack` callbacks the committer calls once a reading is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from gateway.model import Reading

if TYPE_CHECKING:
    from gateway.ops.metrics import Registry
    from gateway.plan import SensorPlan

Ack = Callable[[], None]
Submit = Callable[[Reading, Ack | None], Awaitable[None]]
Loc = tuple[str | int, ...]


class Runnable(Protocol):
    """A long-running task. `run` returns only when cancelled; if it raises, the supervisor logs
    it with `name` and runs it again after a backoff."""

    name: str

    async def run(self) -> None: ...


@dataclass
class SourceContext:
    gateway_id: str
    submit: Submit
    metrics: Registry
    clock: Callable[[], float]
    inputs: Any = None  # this source's `inputs.<name>` section, if it has one


def _no_problems(plan: SensorPlan) -> list[tuple[Loc, str]]:
    return []


def _no_conflicts(plans: list[SensorPlan]) -> list[tuple[str, Loc, str]]:
    return []


def duplicates(plans: list[SensorPlan], key: Callable[[SensorPlan], object], loc: Loc,
               what: str) -> list[tuple[str, Loc, str]]:  # fmt: skip
    """A conflict for every sensor whose `key` an earlier sensor already uses."""
    seen: dict[object, str] = {}
    out: list[tuple[str, Loc, str]] = []
    for sp in plans:
        k = key(sp)
        if k in seen:
            out.append((sp.id, loc, f"{what} is already used by sensor {seen[k]!r}"))
        else:
            seen[k] = sp.id
    return out


@dataclass(frozen=True)
class SourceSpec:
    name: str  # the sensor's config key, e.g. `serial`
    section: type[BaseModel]  # what goes under that key
    build: Callable[[SourceContext, list[SensorPlan]], list[Runnable]]
    describe: Callable[[Any], str]  # one line: where the data comes from
    inputs: type[BaseModel] | None = None  # `inputs.<name>`, if the source has shared settings
    inputs_required: bool = False  # sensors of this source need `inputs.<name>`
    # problems `check` finds on a machine (a missing port), as (loc under the sensor, message)
    check: Callable[[SensorPlan], list[tuple[Loc, str]]] = field(default=_no_problems)
    # config problems between sensors of this source (one port twice), as (sensor id, loc, message)
    conflicts: Callable[[list[SensorPlan]], list[tuple[str, Loc, str]]] = field(default=_no_conflicts)
    doc: str = ""
