"""Wiring and lifecycle: sources -> privacy -> guard -> outbox -> one runner per sink.

A reading counts as received when its observations are committed to the outbox; only then is
its acknowledgement callback (MQTT PUBACK) run. Readings whose fields are all personal are
absorbed into the in-RAM privacy window and acknowledged without touching disk, on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.model import Observation, Reading
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox, Outbox, Row
from gateway.plan import SitePlan, build_plan
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage
from gateway.sinks.base import PermanentError, RetryableError, Sink

log = logging.getLogger("gateway.pipeline")

INGEST_QUEUE = 1_000  # readings waiting for the committer; sources wait when it is full
COMMIT_BATCH = 1_000
SINK_BACKOFF_MAX = 15.0  # a store back after an outage is written to within ~15 s
Ack = Callable[[], None]


@dataclass
class Stats:
    readings: int = 0
    committed: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    last_values: dict[tuple[str, str], Any] = field(default_factory=dict)


def build_sinks(cfg: Config, plan: SitePlan, guard: EgressGuard) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.sinks.file is not None:
        from gateway.sinks.file import FileSink

        f = cfg.sinks.file
        sinks.append(FileSink(cfg.resolve(f.path), max_bytes=f.max_bytes, keep=f.keep, guard=guard))
    if cfg.sinks.influxdb is not None:
        from gateway.sinks.influxdb import InfluxSink

        tags = {"gateway": cfg.gateway.id, "borough": cfg.gateway.borough}
        sinks.append(InfluxSink(cfg.sinks.influxdb, site_tags=tags, guard=guard))
    if cfg.sinks.mqtt is not None:
        from gateway.sinks.mqtt import MqttSink

        sinks.append(MqttSink(cfg, plan, guard=guard))
    return sinks


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout: float, what: str) -> None:
    """Cancel and wait, bounded. On Python 3.11 a cancellation can be swallowed inside
    `asyncio.wait_for` (libraries use it: aiomqtt's publish does), so a task may survive one
    cancel(): it is asked again, and shutdown never hangs on it."""
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
    if pending:
        log.error("tasks did not stop in time", extra={"what": what, "count": len(pending)})


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        *,
        plan: SitePlan | None = None,
        clock: Callable[[], float] = time.time,
        key_factory: Callable[[], bytes] = lambda: os.urandom(32),
        sinks: list[Sink] | None = None,
    ) -> None:
        self.cfg = cfg
        self.plan = plan or build_plan(cfg)
        self.clock = clock
        self.metrics = Registry()
        self.guard = EgressGuard(frozenset(self.plan.datastreams))
        self.privacy = PrivacyStage(
            self.plan,
            key_factory=key_factory,
            salt_rotation_s=cfg.privacy.salt_rotation,
            started_at=clock(),
        )
        self.sinks = sinks if sinks is not None else build_sinks(cfg, self.plan, self.guard)
        self.stats = Stats()
        self.queue: asyncio.Queue[tuple[Reading | None, Ack | None]] = asyncio.Queue(INGEST_QUEUE)
        self.outbox: AsyncOutbox | None = None
        self._sink_events: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._sources: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.throttle = Throttle()
        self._define_metrics()

    # ------------------------------------------------------------------ metrics

    def _define_metrics(self) -> None:
        m = self.metrics
        self.m_readings = m.counter("gateway_readings_total", "Readings from sensors")
        self.m_obs = m.counter("gateway_observations_committed_total", "Observations in the outbox")
        self.m_delivered = m.counter("gateway_sink_delivered_total", "Observations delivered")
        self.m_failures = m.counter("gateway_sink_failures_total", "Failed sink writes")
        self.m_quarantined = m.counter("gateway_sink_quarantined_total", "Rows refused for good")
        self.m_blocked = m.counter("gateway_guard_blocked_total", "Payloads blocked by the egress guard")
        self.m_privacy = m.counter("gateway_privacy_dropped_total", "Fields withheld by the privacy stage")
        self.m_suppressed = m.counter("gateway_privacy_suppressed_windows_total", "Small counts not published")
        self.m_lag = m.gauge("gateway_sink_lag_observations", "Observations not yet delivered")
        self.m_oldest = m.gauge("gateway_sink_oldest_pending_age_seconds", "Age of the oldest undelivered")
        self.m_depth = m.gauge("gateway_outbox_observations", "Rows in the outbox")
        self.m_bytes = m.gauge("gateway_outbox_bytes", "Approximate payload bytes in the outbox")
        self.m_drops = m.counter("gateway_outbox_dropped_total", "Observations dropped at a bound")

        def collect() -> None:
            for reason, n in self.guard.blocked.items():
                self.m_blocked.set(n, reason=reason)
            for (sensor, reason), n in self.privacy.dropped.items():
                self.m_privacy.set(n, sensor=sensor, reason=reason)
            for sensor, n in self.privacy.suppressed.items():
                self.m_suppressed.set(n, sensor=sensor)

        m.collectors.append(collect)

    async def refresh_outbox_metrics(self) -> None:
        if self.outbox is None:
            return
        ob = self.outbox.sync
        now = self.clock()

        def read() -> dict[str, Any]:
            return {
                "lag": {s.name: ob.lag(s.name) for s in self.sinks},
                "oldest": {s.name: ob.oldest_pending_time(s.name) for s in self.sinks},
                "count": ob.count(),
                "bytes": ob.payload_bytes,
                "drops": ob.drops(),
            }

        r = await self.outbox.call(read)
        for name, lag in r["lag"].items():
            self.m_lag.set(lag, sink=name)
            t = r["oldest"][name]
            self.m_oldest.set(max(0.0, now - t) if t else 0, sink=name)
        self.m_depth.set(r["count"])
        self.m_bytes.set(r["bytes"])
        by_reason: dict[str, int] = {}
        for (_, reason), n in r["drops"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        for reason, n in by_reason.items():
            self.m_drops.set(n, reason=reason)

    # ------------------------------------------------------------------ ingest

    async def submit(self, reading: Reading, ack: Ack | None = None) -> None:
        """Hand a reading to the committer; `ack` runs after it is durable (or absorbed)."""
        await self.queue.put((reading, ack))

    async def _committer(self) -> None:
        assert self.outbox is not None
        while True:
            first = await self.queue.get()
            items = [first]
            deadline = time.monotonic() + self.cfg.outbox.group_commit
            waiting_acks = first[1] is not None
            while len(items) < COMMIT_BATCH:
                try:
                    item = self.queue.get_nowait()
                    items.append(item)
                    waiting_acks = waiting_acks or item[1] is not None
                except asyncio.QueueEmpty:
                    if waiting_acks:
                        # an MQTT broker sends only so many unacknowledged messages: lingering
                        # would only stall it. Readings arriving during this commit's fsync
                        # form the next batch, which is group commit without the wait.
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
            try:
                await self._commit_items(items)
            except Exception:
                # never let one bad batch stop ingestion; unacked MQTT messages are redelivered
                log.exception("commit of a batch failed", extra={"readings": len(items)})
                await asyncio.sleep(1.0)
            for _ in items:
                self.queue.task_done()

    async def _commit_items(self, items: list[tuple[Reading | None, Ack | None]]) -> None:
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
        """Guard and durably append observations (group commit)."""
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
        for ev in self._sink_events.values():
            ev.set()

    async def _windows(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.commit(self.privacy.due(self.clock()))

    async def _housekeeping(self) -> None:
        assert self.outbox is not None
        while True:
            await asyncio.sleep(5.0)
            await self.outbox.call(self.outbox.sync.enforce_bounds, self.clock())
            while await self.outbox.call(self.outbox.sync.reclaim):
                await asyncio.sleep(0)  # chunks, so no long pause
            await self.refresh_outbox_metrics()

    # ------------------------------------------------------------------ sinks

    async def _run_sink(self, sink: Sink) -> None:
        assert self.outbox is not None
        event = self._sink_events[sink.name]
        backoff = 1.0
        started = False
        while not self._stopping.is_set():
            if not started:
                try:
                    await sink.start()
                    started = True
                except (RetryableError, OSError) as e:
                    log.warning("sink not started, retrying", extra={"sink": sink.name, "reason": str(e)})  # fmt: skip
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, SINK_BACKOFF_MAX)
                    continue
            rows = await self.outbox.read(sink.name, sink.batch_size)
            if not rows:
                event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await event.wait()
                continue
            try:
                await self._deliver(sink, rows)
            except RetryableError as e:
                self.m_failures.inc(sink=sink.name)
                n = self.throttle.should_log(("sink", sink.name), time.monotonic())
                if n is not None:
                    log.warning("sink write failed, will retry", extra={"sink": sink.name, "reason": str(e), "backoff_s": round(backoff, 1), "failures_since_last": n})  # fmt: skip
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, SINK_BACKOFF_MAX)
                continue
            backoff = 1.0

    async def _deliver(self, sink: Sink, rows: list[Row]) -> None:
        """Write one batch and move the sink's cursor past it. A batch the destination refuses
        for good is quarantined (counted, logged, skipped); RetryableError leaves the cursor."""
        assert self.outbox is not None
        written = 0
        try:
            result = await sink.write(rows)
            written = result.written
            if result.rejected:
                self.m_quarantined.inc(len(result.rejected), sink=sink.name)
                log.error("sink refused observations for good; quarantined", extra={"sink": sink.name, "rows": len(result.rejected)})  # fmt: skip
        except PermanentError as e:
            self.m_quarantined.inc(len(rows), sink=sink.name)
            log.error("sink refused a batch for good; quarantined", extra={"sink": sink.name, "reason": str(e), "rows": len(rows)})  # fmt: skip
        await self.outbox.advance(sink.name, rows[-1].seq)
        self.stats.delivered[sink.name] = self.stats.delivered.get(sink.name, 0) + written
        self.m_delivered.inc(written, sink=sink.name)

    async def _drain_sinks(self, timeout: float) -> None:
        """Best effort at shutdown: whatever is not delivered stays in the outbox for next time."""
        assert self.outbox is not None
        deadline = time.monotonic() + timeout
        for sink in self.sinks:
            while time.monotonic() < deadline:
                rows = await self.outbox.read(sink.name, sink.batch_size)
                if not rows:
                    break
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await self._deliver(sink, rows)
                except (RetryableError, TimeoutError):
                    break

    # ------------------------------------------------------------------ lifecycle

    def open_outbox(self) -> AsyncOutbox:
        ob = self.cfg.outbox
        path = self.cfg.gateway.data_dir / "outbox.sqlite"
        sync = Outbox(
            path,
            sinks=[s.name for s in self.sinks],
            max_bytes=ob.max_bytes,
            max_age_s=ob.max_age,
            sync=ob.sync,
            when_full=ob.when_full,
        )
        for event in sync.events:
            log.warning(event)
        return AsyncOutbox(sync)

    def add_source(self, coro: Any) -> None:
        self._sources.append(asyncio.create_task(coro))

    async def start(self) -> None:
        self.outbox = self.open_outbox()
        for sink in self.sinks:
            self._sink_events[sink.name] = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._windows(), name="windows"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        self._tasks += [asyncio.create_task(self._run_sink(s), name=f"sink-{s.name}") for s in self.sinks]
        self._start_sources()
        self.ready.set()
        log.info("gateway started", extra={"gateway": self.cfg.gateway.id, "sensors": len(self.plan.sensors), "sinks": ",".join(s.name for s in self.sinks)})  # fmt: skip

    def _start_sources(self) -> None:
        from gateway.sources.serial import SerialSource

        mqtt_plans = []
        for sp in self.plan.sensors.values():
            if sp.serial is not None:
                src = SerialSource(sp, self.submit, self.metrics, self.clock)
                self.add_source(src.run())
            elif sp.mqtt is not None:
                mqtt_plans.append(sp)
        if mqtt_plans:
            from gateway.sources.mqtt import MqttSource

            assert self.cfg.inputs.mqtt is not None
            msrc = MqttSource(self.cfg.inputs.mqtt, mqtt_plans, self.submit, self.metrics,
                              self.clock, gateway_id=self.cfg.gateway.id)  # fmt: skip
            self.mqtt_source = msrc
            self.add_source(msrc.run())

    async def stop(self, drain_timeout: float = 3.0) -> None:
        """Stop sources, commit what was received, close windows, deliver what we can."""
        log.info("gateway stopping")
        await cancel_and_wait(self._sources, drain_timeout, "sources")
        if self.outbox is not None:
            try:
                async with asyncio.timeout(drain_timeout):
                    await self.queue.join()
            except TimeoutError:
                log.error("readings still queued at shutdown; unacknowledged ones will be redelivered")
            await self.commit(self.privacy.drain(self.clock()))
        # let each sink finish the batch it is writing (so its cursor moves and nothing is sent
        # twice), then stop the rest; whatever is left is drained below or waits in the outbox
        self._stopping.set()
        for ev in self._sink_events.values():
            ev.set()
        sink_tasks = [t for t in self._tasks if t.get_name().startswith("sink-")]
        if sink_tasks:
            await asyncio.wait(sink_tasks, timeout=drain_timeout)
        await cancel_and_wait(self._tasks, drain_timeout, "pipeline tasks")
        if self.outbox is not None:
            await self._drain_sinks(drain_timeout)
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        if self.outbox is not None:
            await self.outbox.close()
        log.info("gateway stopped", extra={"committed": self.stats.committed})
