"""One runner per sink: read the sink's next rows from the outbox, write them, move its cursor.

The cursor moves only after the sink reports the write done, so an outage, a crash or a restart
repeats at most the batch in flight and loses nothing. Three kinds of failure, three answers:
- retryable (network down, 5xx): back off with jitter up to SINK_BACKOFF_MAX and try again;
- blocked (credentials refused, no permission, no such bucket): the destination refuses the
  gateway, not the rows. Nothing is quarantined; the runner backs off up to BLOCKED_BACKOFF_MAX
  and shows the sink as blocked, with the reason, on /readyz, the status page and
  `gateway_sink_blocked`, until a write succeeds;
- a verdict on specific rows (the sink reports them `rejected`): only those are quarantined.

Linger: rows wait up to the sink's `flush_interval` for more before a write, unless a full
batch is already waiting, so a trickle of live data is written in batches rather than per
commit (the runner knows how many rows wait from the outbox's in-memory head, without a call).
A crash while rows linger costs nothing: they are in the outbox. Shutdown does not linger.

Exact clocks: rows stamped while the gateway clock was provisional (`clock_unsynced`) are held
back until the clock synchronises, then re-stamped with their exact true time before they
leave (`ClockGate`); a row held `clock.max_hold` is sent as it is, flagged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.committer import Stats
from gateway.model import compact_json
from gateway.ops.clock import CORRECTED
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox, Row
from gateway.sinks.base import BlockedError, PermanentError, RetryableError, Sink, WriteResult
from gateway.wakeup import Wakeup

log = logging.getLogger("gateway.sinkrunner")

SINK_BACKOFF_MAX = 15.0  # a store back after an outage is written to within ~15 s
BLOCKED_BACKOFF_MAX = 60.0  # a fixed credential is noticed within a minute


LOCAL_ROWS = 200  # a sink's `write_local` runs on the outbox's thread for batches up to this


def _verdict(write: Callable[[Sequence[Row]], WriteResult], rows: Sequence[Row]) -> WriteResult | PermanentError:
    """`write(rows)`, with the destination's verdict on the rows returned rather than raised:
    the cursor moves past them either way (retryable and blocked errors raise: it stays)."""
    try:
        return write(rows)
    except PermanentError as e:
        return e


class RestampingClock(Protocol):
    """What the gate needs of the gateway clock (gateway/ops/clock.py: GatewayClock)."""

    def __call__(self) -> float: ...

    def provisional(self, t: float) -> bool: ...

    def restamp(self, t: float) -> float | None: ...

    def quality_flags(self, t: float) -> tuple[str, ...]: ...


FLAG = b"clock_unsynced"


class ClockGate:
    """Rows on their way to a sink: provisional stamps re-stamped with their true time once the
    clock knows it; until then a provisional row, and every row after it, waits (the cursor is
    in order), for at most `max_hold` of the row's age. Rows without the flag pass untouched."""

    def __init__(self, clock: RestampingClock, max_hold: float) -> None:
        self.clock = clock
        self.max_hold = max_hold

    def prepare(self, rows: Sequence[Row]) -> tuple[list[Row], bool]:
        """(rows to send now, held): `held` means the rows after those wait for the clock."""
        out: list[Row] = []
        for row in rows:
            if FLAG not in row.body:
                out.append(row)
                continue
            rec = json.loads(row.body)
            times = {k: rec[k] for k in ("t", "rt", "te") if isinstance(rec.get(k), int | float)}
            if any(self.clock.provisional(t) for t in times.values()):
                age = self.clock() - float(rec.get("rt", rec["t"]))  # both provisional: exact
                if age < self.max_hold:
                    return out, True
                out.append(row)  # held long enough: out as it is, flagged
                continue
            out.append(self._restamped(row, rec, times))
        return out, False

    def _restamped(self, row: Row, rec: dict[str, Any], times: dict[str, float]) -> Row:
        """The row with its provisional times replaced by their true times. An instant's times
        are stamps the clock handed out, each corrected on its own; an aggregate's interval
        (`t`..`te`: window bounds computed from provisional readings, not stamps themselves)
        moves as a whole with the correction of its era."""
        true = {k: self.clock.restamp(t) for k, t in times.items()}
        if "te" in times:
            probes = [times.get("rt"), times["t"], times["te"], (times["t"] + times["te"]) / 2]
            shift = next((c - x for x in probes if x is not None and (c := self.clock.restamp(x)) is not None), None)
            if shift is not None:
                true["t"], true["te"] = times["t"] + shift, times["te"] + shift
        if all(v is None for v in true.values()):
            return row  # flagged, but not ours to correct (held time, or an earlier run)
        for k, v in true.items():
            if v is not None:
                rec[k] = round(v, 6)
        pa = rec.setdefault("pa", {})
        flags = [f for f in str(pa.get("quality", "")).split(",") if f and f != FLAG.decode()]
        if any(true[k] is None and self.clock.quality_flags(t) for k, t in times.items()):
            flags.append(FLAG.decode())  # a time that could not be corrected keeps the flag
        pa["quality"] = ",".join(sorted({*flags, CORRECTED}))
        body = compact_json(rec)
        return Row(row.seq, row.ds, float(rec["t"]), body)


class SinkRunner:
    def __init__(self, sink: Sink, outbox: AsyncOutbox, stats: Stats, metrics: Registry,
                 stopping: asyncio.Event, gate: ClockGate | None = None,
                 flush_interval: float = 0.0) -> None:  # fmt: skip
        self.sink = sink
        self.flush_interval = flush_interval
        self._empty_at = -1  # head of the outbox when a read last found nothing to send
        self.name = f"sink-{sink.name}"
        self.outbox = outbox
        self.stats = stats
        self.stopping = stopping
        self.gate = gate
        self.holding = False  # provisional rows wait for the clock
        self.wake = Wakeup()  # set after a commit (`committed`) and at shutdown
        self._lingering = False  # rows wait for flush_interval: a commit need not wake the runner
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
            if not await self._linger():
                continue
            try:
                if not await self._next_batch():
                    await self._sleep(1.0)
                    continue
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

    async def _next_batch(self) -> bool:
        """Read the sink's next rows and deliver them (`deliver`); False if none were there to
        send. The batch lives in this call's frame only, so it is freed before the runner
        lingers and reads the next one: a batch kept by the loop's variables until then meant
        two batches in memory at once (2 x 5,000 rows, ~1.5 MiB each; issue 19, peak RSS)."""
        read = await self.outbox.read(self.sink.name, self.sink.batch_size)
        rows = self._gated(read) if read and self.gate is not None else read
        if not rows:
            if not read:  # nothing readable (rows dropped at a bound), not rows held for the clock
                self._empty_at = self.outbox.head
            return False
        await self.deliver(rows)
        return True

    def committed(self) -> None:
        """Rows were committed: wake the runner, unless it lingers on rows already and no full
        batch waits (it reads at the end of its linger anyway; waking it only to sleep again is
        a wake-up per commit)."""
        if self._lingering and self.outbox.pending(self.sink.name) < self.sink.batch_size:
            return
        self.wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Until a commit wakes the runner, or `seconds`."""
        self.wake.clear()
        await self.wake.wait(seconds)

    async def _linger(self) -> bool:
        """Wait until it is time to read and write: a full batch waits, or rows have waited
        `flush_interval` since the runner first saw them. False if the runner is stopping."""
        if self.holding:  # provisional rows wait for the clock: the caller re-reads each second
            return not self.stopping.is_set()
        first_seen: float | None = None
        while not self.stopping.is_set():
            waiting = self.outbox.pending(self.sink.name)
            if self._empty_at >= 0:  # nothing was readable up to that head (rows dropped at a bound)
                waiting = min(waiting, self.outbox.head - self._empty_at)
            if waiting <= 0:
                first_seen = None
                await self._sleep(1.0)
                continue
            if self.flush_interval <= 0 or waiting >= self.sink.batch_size:
                break
            now = time.monotonic()
            first_seen = now if first_seen is None else first_seen
            left = first_seen + self.flush_interval - now
            if left <= 0:
                break
            self._lingering = True
            try:
                await self._sleep(left)
            finally:
                self._lingering = False
        self._empty_at = -1
        return not self.stopping.is_set()

    def _gated(self, rows: list[Row]) -> list[Row]:
        if self.gate is None:
            raise AssertionError("self.gate is not None")
        ready, held = self.gate.prepare(rows)
        if held != self.holding:
            log.info("sink holding provisional rows until the clock synchronises" if held
                     else "sink delivering: provisional rows re-stamped or held long enough",
                     extra={"sink": self.sink.name})  # fmt: skip
        self.holding = held
        return ready

    async def deliver(self, rows: list[Row]) -> None:
        """Write one batch and move the cursor past it (RetryableError leaves the cursor)."""
        sink = self.sink
        written = 0
        local = getattr(sink, "write_local", None)
        outcome: WriteResult | PermanentError
        if local is not None and len(rows) <= LOCAL_ROWS:
            # quick local I/O (a file): written on the outbox's thread, then the cursor moved
            # there too, one hand-off for both (large batches keep the outbox free meanwhile)
            outcome = await self.outbox.write_then_advance(sink.name, rows, functools.partial(_verdict, local))
        else:
            try:
                outcome = await sink.write(rows)
            except PermanentError as e:
                outcome = e
            await self.outbox.advance(sink.name, rows[-1].seq)  # no fsync of its own (outbox.py)
        if isinstance(outcome, PermanentError):
            self.m_quarantined.inc(len(rows), sink=sink.name)
            log.error("sink refused a batch for good; quarantined", extra={"sink": sink.name, "reason": str(outcome), "rows": len(rows)})  # fmt: skip
        else:
            written = outcome.written
            if outcome.rejected:
                self.m_quarantined.inc(len(outcome.rejected), sink=sink.name)
                log.error("sink refused observations for good; quarantined", extra={"sink": sink.name, "rows": len(outcome.rejected)})  # fmt: skip
        self.stats.delivered[sink.name] = self.stats.delivered.get(sink.name, 0) + written
        self.m_delivered.inc(written, sink=sink.name)

    async def drain(self, deadline: float) -> None:
        """Best effort at shutdown: what is not delivered by `deadline` stays for next time."""
        while time.monotonic() < deadline:
            rows = await self.outbox.read(self.sink.name, self.sink.batch_size)
            if rows and self.gate is not None:
                rows = self._gated(rows)
            if not rows:
                return
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self.deliver(rows)
            except (RetryableError, BlockedError, TimeoutError):
                return
