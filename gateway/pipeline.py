"""Wiring and lifecycle: sources -> committer (privacy, guard, outbox) -> one runner per sink.

The parts each have one job (gateway/committer.py, gateway/sinkrunner.py, the source and sink
registries, gateway/ops/pipeline_metrics.py); this module only builds them from the plan,
starts them in order under one supervisor (gateway/supervisor.py: a task that crashes is logged,
shown on /readyz and restarted) and stops them in the reverse order without losing what was
received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from gateway.committer import Committer, Stats
from gateway.config import Config
from gateway.model import Observation, Reading
from gateway.ops.metrics import Registry
from gateway.ops.pipeline_metrics import PipelineMetrics
from gateway.outbox import AsyncOutbox, Outbox
from gateway.plan import SitePlan, build_plan
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage
from gateway.sinkrunner import ClockGate, SinkRunner
from gateway.sinks import SINKS
from gateway.sinks.base import Sink, SinkContext
from gateway.sources import SOURCES
from gateway.sources.base import Ack, Runnable, SourceContext
from gateway.supervisor import Supervisor, cancel_and_wait

__all__ = ["Pipeline", "build_sinks", "build_sources", "cancel_and_wait"]

log = logging.getLogger("gateway.pipeline")


def build_sinks(cfg: Config, plan: SitePlan, guard: EgressGuard) -> list[Sink]:
    """One instance per `sinks:` entry, built by its type's module."""
    ctx = SinkContext(cfg.gateway.id, cfg.gateway.borough, cfg.gateway.data_dir, plan, guard)
    return [SINKS[s.type].build(ctx, name, s) for name, s in cfg.sinks.items()]


def build_sources(cfg: Config, plan: SitePlan, ctx_for: Callable[[str], SourceContext]) -> list[Runnable]:
    """Each source gets the sensors that arrive through it (the plan decided which)."""
    out: list[Runnable] = []
    for name in SOURCES:  # the names; only the sources that sensors use are imported
        plans = [sp for sp in plan.sensors.values() if sp.transport == name]
        if plans:
            out += SOURCES[name].build(ctx_for(name), plans)
    return out


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
        if not cfg.secrets_resolved:  # placeholders from load_config(secrets=False) never leave
            raise ValueError("this config was loaded without its secrets (for a report): it cannot run")
        self.cfg = cfg
        self.plan = plan or build_plan(cfg)
        self.clock = clock
        self.metrics = Registry()
        self.guard = EgressGuard(frozenset(self.plan.datastreams), vocabularies=self.plan.vocabularies)
        self.privacy = PrivacyStage(self.plan, key_factory=key_factory,
                                    salt_rotation_s=cfg.privacy.salt_rotation, started_at=clock())  # fmt: skip
        self.sinks = sinks if sinks is not None else build_sinks(cfg, self.plan, self.guard)
        self.guard.row_readers = len(self.sinks)  # each reads every row: one parse shared (guard.py)
        self.stats = Stats()
        self.committer = Committer(privacy=self.privacy, guard=self.guard, clock=clock,
                                   group_commit_s=cfg.outbox.group_commit, metrics=self.metrics,
                                   stats=self.stats, on_commit=self._wake_sinks)  # fmt: skip
        self.gauges = PipelineMetrics(self.metrics, self.guard, self.privacy, clock)
        self.outbox: AsyncOutbox | None = None
        self.runners: list[SinkRunner] = []
        self.sources: list[Runnable] = []
        self.supervisor = Supervisor(self.metrics)
        self.housekeeping_s = 5.0
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ ingest

    @property
    def queue(self) -> asyncio.Queue[tuple[Reading | None, Ack | None]]:
        return self.committer.queue

    async def submit(self, reading: Reading, ack: Ack | None = None) -> None:
        """Hand a reading to the committer; `ack` runs after it is durable (or absorbed)."""
        await self.committer.submit(reading, ack)

    async def commit(self, observations: list[Observation]) -> None:
        await self.committer.commit(observations)

    def _wake_sinks(self) -> None:
        for r in self.runners:
            r.committed()

    async def _windows(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.commit(self.privacy.due(self.clock()))

    async def _housekeeping(self) -> None:
        if self.outbox is None:
            raise AssertionError("self.outbox is not None")
        while True:
            await asyncio.sleep(self.housekeeping_s)
            await self.outbox.call(self.outbox.sync.enforce_bounds, self.clock())
            while await self.outbox.call(self.outbox.sync.reclaim):
                await asyncio.sleep(0)  # chunks, so no long pause
            await self.refresh_outbox_metrics()

    async def refresh_outbox_metrics(self) -> None:
        if self.outbox is not None:
            await self.gauges.refresh_outbox(self.outbox, [s.name for s in self.sinks])

    # ------------------------------------------------------------------ lifecycle

    def open_outbox(self) -> AsyncOutbox:
        ob = self.cfg.outbox
        sync = Outbox(self.cfg.gateway.data_dir / "outbox.sqlite", sinks=[s.name for s in self.sinks],
                      max_bytes=ob.max_bytes, max_age_s=ob.max_age, sync=ob.sync,
                      when_full=ob.when_full)  # fmt: skip
        for event in sync.events:
            log.warning(event)
        return AsyncOutbox(sync)

    def _source_context(self, name: str) -> SourceContext:
        # the committer's own `submit` (what `self.submit` calls): one coroutine per reading, not two
        return SourceContext(self.cfg.gateway.id, self.committer.submit, self.metrics, self.clock,
                             inputs=self.cfg.input(name))  # fmt: skip

    async def start(self) -> None:
        self.outbox = self.committer.outbox = self.open_outbox()
        # a clock that knows provisional stamps (GatewayClock) gets them re-stamped before they leave
        gate = ClockGate(self.clock, self.cfg.clock.max_hold) if hasattr(self.clock, "restamp") else None  # type: ignore[arg-type]
        self.runners = [SinkRunner(s, self.outbox, self.stats, self.metrics, self._stopping, gate,
                                   flush_interval=self._flush_interval(s.name))
                        for s in self.sinks]  # fmt: skip
        sup = self.supervisor
        sup.start("committer", self.committer.run)
        sup.start("windows", self._windows)
        sup.start("housekeeping", self._housekeeping)
        for r in self.runners:
            sup.start(r.name, r.run)
        self.sources = build_sources(self.cfg, self.plan, self._source_context)
        for src in self.sources:
            sup.start(src.name, src.run)
        self.ready.set()
        log.info("gateway started", extra={"gateway": self.cfg.gateway.id, "sensors": len(self.plan.sensors), "sinks": ",".join(s.name for s in self.sinks)})  # fmt: skip

    def _flush_interval(self, sink: str) -> float:
        settings = self.cfg.sinks.get(sink)
        return settings.flush_interval if settings is not None else 0.0

    def problems(self) -> list[str]:
        """What keeps data from getting through right now (empty: ready), for /readyz."""
        out = self.supervisor.problems()
        if self.committer.failing:
            out.append(self.committer.failing)
        out += [p for r in self.runners if (p := r.problem)]
        return out

    @property
    def committer_alive(self) -> bool:
        """False while the committer task is down: the systemd watchdog must not be fed."""
        return self.supervisor.up("committer")

    def source(self, name: str) -> Runnable | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def mqtt_source(self) -> Any:
        return self.source("mqtt")

    async def stop(self, drain_timeout: float = 3.0) -> None:
        """Stop sources, commit what was received, close windows, deliver what we can."""
        log.info("gateway stopping")
        await self.supervisor.stop([s.name for s in self.sources], drain_timeout)
        if self.outbox is not None:
            if not await self.committer.flush(drain_timeout):
                log.error("readings still queued at shutdown; unacknowledged ones will be redelivered")
            await self.commit(self.privacy.drain(self.clock()))
        # let each sink finish the batch it is writing (so its cursor moves and nothing is sent
        # twice), then stop the rest; whatever is left is drained below or waits in the outbox
        self._stopping.set()
        for r in self.runners:
            r.wake.set()
        sink_tasks = [self.supervisor.tasks[r.name] for r in self.runners]
        if sink_tasks:
            await asyncio.wait(sink_tasks, timeout=drain_timeout)
        await self.supervisor.stop(None, drain_timeout)
        if self.outbox is not None:
            deadline = time.monotonic() + drain_timeout
            for r in self.runners:
                await r.drain(deadline)
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        if self.outbox is not None:
            await self.outbox.close()
        log.info("gateway stopped", extra={"committed": self.stats.committed})
