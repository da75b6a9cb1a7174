"""The committer: readings in, durable non-personal Observations out, acknowledgements last.

One task. It takes readings from the bounded ingest queue in groups (group commit), runs each
through the privacy stage (the only road from `Reading` to `Observation`), checks every record
with the egress guard, appends the group to the outbox in one transaction and only then runs the
readings' acknowledgement callbacks (MQTT PUBACK). A reading whose fields are all personal is
absorbed into the RAM privacy window and acknowledged without touching disk, on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Observation, Reading
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Metric, Registry
from gateway.outbox import AsyncOutbox
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage
from gateway.sources.base import Ack

log = logging.getLogger("gateway.committer")

INGEST_QUEUE = 1_000  # readings waiting for the committer; sources wait when it is full
COMMIT_BATCH = 1_000
Item = tuple[Reading | None, Ack | None]


@dataclass
class Stats:
    """What the status page shows about the data's way through."""

    readings: int = 0
    committed: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    last_values: dict[tuple[str, str], Any] = field(default_factory=dict)


class Committer:
    name = "committer"

    def __init__(
        self,
        *,
        privacy: PrivacyStage,
        guard: EgressGuard,
        clock: Callable[[], float],
        group_commit_s: float,
        metrics: Registry,
        stats: Stats,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.privacy = privacy
        self.guard = guard
        self.clock = clock
        self.group_commit_s = group_commit_s
        self.stats = stats
        self.on_commit = on_commit  # wakes the sink runners
        self.outbox: AsyncOutbox | None = None  # set when the pipeline opens it
        self.queue: asyncio.Queue[Item] = asyncio.Queue(INGEST_QUEUE)
        self.throttle = Throttle()
        self.m_readings: Metric = metrics.counter("gateway_readings_total", "Readings from sensors")
        self.m_obs: Metric = metrics.counter(
            "gateway_observations_committed_total", "Observations in the outbox"
        )

    async def submit(self, reading: Reading, ack: Ack | None = None) -> None:
        """Hand a reading over; `ack` runs after it is durable (or absorbed)."""
        await self.queue.put((reading, ack))

    async def run(self) -> None:
        while True:
            items = await self._gather()
            try:
                await self.commit_items(items)
            except Exception:
                # never let one bad batch stop ingestion; unacked MQTT messages are redelivered
                log.exception("commit of a batch failed", extra={"readings": len(items)})
                await asyncio.sleep(1.0)
            for _ in items:
                self.queue.task_done()

    async def _gather(self) -> list[Item]:
        """One group: what is queued now, waiting up to `group_commit_s` for more unless an
        acknowledgement is pending (an MQTT broker sends only so many unacknowledged messages:
        lingering would only stall it; readings arriving during this commit's fsync form the
        next group, which is group commit without the wait)."""
        first = await self.queue.get()
        items = [first]
        deadline = time.monotonic() + self.group_commit_s
        waiting_acks = first[1] is not None
        while len(items) < COMMIT_BATCH:
            try:
                item = self.queue.get_nowait()
                items.append(item)
                waiting_acks = waiting_acks or item[1] is not None
            except asyncio.QueueEmpty:
                if waiting_acks:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation (hanging shutdown) when the inner call completes at once
                    async with asyncio.timeout(left):
                        items.append(await self.queue.get())
                except TimeoutError:
                    break
        return items

    async def commit_items(self, items: list[Item]) -> None:
        now = self.clock()
        clock_flags = getattr(self.clock, "quality_flags", None)  # GatewayClock: provisional stamps
        observations: list[Observation] = []
        for reading, _ in items:
            if reading is None:
                continue
            if clock_flags is not None and (extra := clock_flags(reading.time)):
                reading = Reading(reading.sensor_id, reading.time, reading.values, (*reading.flags, *extra))
            self.stats.readings += 1
            self.m_readings.inc(sensor=reading.sensor_id)
            observations.extend(self.privacy.process(reading, now))
        await self.commit(observations)
        for _, ack in items:
            if ack is not None:
                try:
                    ack()
                except Exception:  # an ack failing must not stop ingestion
                    log.exception("acknowledgement failed")

    async def commit(self, observations: list[Observation]) -> None:
        """Guard and durably append observations (one transaction)."""
        if not observations:
            return
        assert self.outbox is not None
        records: list[tuple[int, float, bytes]] = []
        for obs in observations:
            body = obs.to_record()
            verdict = self.guard.check_record(body)
            if not verdict.ok:
                n = self.throttle.should_log(("guard", verdict.reason), time.monotonic())
                if n is not None:
                    log.error("egress guard blocked an observation", extra={"sensor": obs.sensor_id, "property": obs.property, "reason": verdict.reason, "suppressed_since_last": n})  # fmt: skip
                continue
            records.append((obs.datastream_id, obs.phenomenon_time, body))
            self.stats.last_values[(obs.sensor_id, obs.property)] = obs.result
        if not records:
            return
        await self.outbox.append(records)
        self.stats.committed += len(records)
        self.m_obs.inc(len(records))
        self.on_commit()

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued reading is committed; False if that took too long."""
        try:
            async with asyncio.timeout(timeout):
                await self.queue.join()
        except TimeoutError:
            return False
        return True
