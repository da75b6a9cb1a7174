"""One runner per sink: read the sink's next rows from the outbox, write them, move its cursor.

The cursor moves only after the sink reports the write done, so an outage, a crash or a restart
repeats at most the batch in flight and loses nothing. Three kinds of failure, three answers:
- retryable (network down, 5xx): back off with jitter up to SINK_BACKOFF_MAX and try again;
- blocked (credentials refused, no permission, no such bucket): the destination refuses the
  gateway, not the rows. Nothing is quarantined; the runner backs off up to BLOCKED_BACKOFF_MAX
  and shows the sink as blocked, with the reason, on /readyz, the status page and
  `gateway_sink_blocked`, until a write succeeds;
- a verdict on specific rows (the sink reports them `rejected`): only those are quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from gateway.committer import Stats
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox, Row
from gateway.sinks.base import BlockedError, PermanentError, RetryableError, Sink

log = logging.getLogger("gateway.sinkrunner")

SINK_BACKOFF_MAX = 15.0  # a store back after an outage is written to within ~15 s
BLOCKED_BACKOFF_MAX = 60.0  # a fixed credential is noticed within a minute


class SinkRunner:
    def __init__(self, sink: Sink, outbox: AsyncOutbox, stats: Stats, metrics: Registry,
                 stopping: asyncio.Event) -> None:  # fmt: skip
        self.sink = sink
        self.name = f"sink-{sink.name}"
        self.outbox = outbox
        self.stats = stats
        self.stopping = stopping
        self.wake = asyncio.Event()
        self.throttle = Throttle()
        self.m_delivered = metrics.counter("gateway_sink_delivered_total", "Observations delivered")
        self.m_failures = metrics.counter("gateway_sink_failures_total", "Failed sink writes")
        self.m_quarantined = metrics.counter("gateway_sink_quarantined_total", "Rows refused for good")
        self.m_blocked = metrics.gauge(
            "gateway_sink_blocked", "1 while the destination refuses the gateway (reason: why)"
        )
        self.blocked: BlockedError | None = None
        self._show_blocked(None)

    def _show_blocked(self, error: BlockedError | None) -> None:
        """Log and show a change of blocked state; one gauge series per sink, with its reason."""
        name = self.sink.name
        if error is not None and (self.blocked is None or str(self.blocked) != str(error)):
            log.error("sink blocked: the destination refuses the gateway; the backlog is kept",
                      extra={"sink": name, "reason": error.code, "detail": str(error)})  # fmt: skip
        elif error is None and self.blocked is not None:
            log.warning("sink unblocked; delivering the backlog", extra={"sink": name})
        self.blocked = error
        for key in [k for k in self.m_blocked.values if ("sink", name) in k]:
            del self.m_blocked.values[key]
        if error is None:
            self.m_blocked.set(0, sink=name, reason="")
        else:
            self.m_blocked.set(1, sink=name, reason=error.code)

    @property
    def problem(self) -> str | None:
        """Why this sink cannot deliver right now, for /readyz and the status page."""
        return f"sink {self.sink.name} blocked ({self.blocked})" if self.blocked is not None else None

    async def run(self) -> None:
        sink = self.sink
        backoff = 1.0
        started = False
        while not self.stopping.is_set():
            if not started:
                try:
                    await sink.start()
                    started = True
                except BlockedError as e:
                    self._show_blocked(e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BLOCKED_BACKOFF_MAX)
                    continue
                except (RetryableError, OSError) as e:
                    log.warning("sink not started, retrying", extra={"sink": sink.name, "reason": str(e)})  # fmt: skip
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, SINK_BACKOFF_MAX)
                    continue
            rows = await self.outbox.read(sink.name, sink.batch_size)
            if not rows:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                continue
            try:
                await self.deliver(rows)
            except BlockedError as e:
                self.m_failures.inc(sink=sink.name)
                self._show_blocked(e)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BLOCKED_BACKOFF_MAX)
                continue
            except RetryableError as e:
                self.m_failures.inc(sink=sink.name)
                n = self.throttle.should_log(("sink", sink.name), time.monotonic())
                if n is not None:
                    log.warning("sink write failed, will retry", extra={"sink": sink.name, "reason": str(e), "backoff_s": round(backoff, 1), "failures_since_last": n})  # fmt: skip
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, SINK_BACKOFF_MAX)
                continue
            if self.blocked is not None:
                self._show_blocked(None)
            backoff = 1.0

    async def deliver(self, rows: list[Row]) -> None:
        """Write one batch and move the cursor past it (RetryableError leaves the cursor)."""
        sink = self.sink
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

    async def drain(self, deadline: float) -> None:
        """Best effort at shutdown: what is not delivered by `deadline` stays for next time."""
        while time.monotonic() < deadline:
            rows = await self.outbox.read(self.sink.name, self.sink.batch_size)
            if not rows:
                return
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self.deliver(rows)
            except (RetryableError, BlockedError, TimeoutError):
                return
