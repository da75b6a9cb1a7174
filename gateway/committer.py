"""The committer: readings in, durable non-personal Observations out, acknowledgements last.

One task. It takes readings from the bounded ingest queue in groups (group commit), runs each
through the privacy stage (the only road from `Reading` to `Observation`), checks every record
with the egress guard, appends the group to the outbox in one transaction and only then runs the
readings' acknowledgement callbacks (MQTT PUBACK). A reading whose fields are all personal is
absorbed into the RAM privacy window and acknowledged without touching disk, on purpose.

Poison isolation: one bad reading never costs the others. Each reading is staged on its own
(privacy stage, serialisation, guard), so one that fails there is quarantined alone; a group the
outbox refuses for a row's sake (a constraint, a value SQLite cannot bind) is bisected until the
refused rows are found. Quarantined readings are counted per sensor and reason, logged without
their content, and acknowledged: redelivering them would only fail again. A failure of the
outbox itself (disk full, I/O error) is no verdict on any reading: the group is kept and retried
with backoff, so nothing is quarantined or acknowledged for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gateway.model import Observation, Reading
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Metric, Registry
from gateway.outbox import AsyncOutbox
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage
from gateway.sources.base import Ack
from gateway.wakeup import Wakeup

log = logging.getLogger("gateway.committer")

INGEST_QUEUE = 1_000  # readings waiting for the committer; sources wait when it is full
COMMIT_BATCH = 1_000
# While MQTT acknowledgements are pending a group still gathers for up to `group_commit`, but a
# broker sends only its in-flight window of unacknowledged messages (`max_inflight_messages`:
# 100 in deploy/ and the tests, Mosquitto's default 20), so waiting for more than that would
# only stall it: below ACK_SURE pending acks (under any broker's window) the group waits for the
# deadline; from there on only while the broker keeps sending (a pause of ACK_GAP ends it), and
# never beyond ACK_WINDOW.
ACK_SURE = 16
ACK_WINDOW = 64
ACK_GAP = 0.01
APPEND_BACKOFF_MAX = 30.0  # an outbox that cannot write is retried at least this often
LATEST_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z: beyond it no sink can format a time
Item = tuple[Reading | None, Ack | None]
# what an outbox row can be refused for (a verdict on the row, not on the database)
# (a closed database raises ProgrammingError, a bug TypeError or ValueError: those are no verdict
# on a row, and treating them as one would quarantine, and so acknowledge, every reading)
ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, OverflowError)


class Record(NamedTuple):
    """One outbox row, (ds, t, body) as the outbox takes it, and whose it is (for counting,
    never for logging content). A tuple: built for every observation, so built cheaply."""

    ds: int
    t: float
    body: bytes
    sensor: str


# Record(ds, t, body, sensor) without the Python-level __new__ a NamedTuple has (one per row)
_record: Callable[[tuple[int, float, bytes, str]], Record] = functools.partial(tuple.__new__, Record)


@dataclass
class Stats:
    """What the status page shows about the data's way through."""

    readings: int = 0
    committed: int = 0
    quarantined: int = 0
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
        self._arrived = Wakeup()  # set by `submit` (acked readings): a group waits on it, not on the queue
        self.throttle = Throttle()
        self.failing: str | None = None  # why the outbox refuses appends right now, if it does
        self._inflight: list[Item] = []  # taken from the queue, not yet committed and acked
        # the in-flight group's outbox rows, staged once: a retry after a crash appends these
        # rather than passing the readings through the privacy stage again (which would count
        # their people twice in the open windows)
        self._staged: tuple[list[Item], list[Record]] | None = None
        self.m_readings: Metric = metrics.counter("gateway_readings_total", "Readings from sensors")
        self._sensor_keys: dict[str, tuple[tuple[str, str], ...]] = {}
        self.m_obs: Metric = metrics.counter(
            "gateway_observations_committed_total", "Observations in the outbox"
        )
        self.m_quarantined: Metric = metrics.counter(
            "gateway_quarantined_total",
            "Poison readings (stage privacy) or observations (serialise, time, outbox) set aside "
            "and acknowledged, by sensor and stage",
        )
        self.m_append_failures: Metric = metrics.counter(
            "gateway_outbox_append_failures_total", "Outbox appends that failed and were retried"
        )

    async def submit(self, reading: Reading, ack: Ack | None = None) -> None:
        """Hand a reading over; `ack` runs after it is durable (or absorbed, or quarantined)."""
        queue = self.queue
        if queue.full():
            await queue.put((reading, ack))  # wait for room: back-pressure on the source
        else:
            queue.put_nowait((reading, ack))  # the usual case, without a coroutine per reading
        if ack is not None or queue.full():
            # a group waits for its deadline anyway unless acks are pending: a reading with no
            # ack (serial) wakes no one; `_gather` takes it from the queue at the deadline
            self._arrived.set()

    async def run(self) -> None:
        """Group, commit, acknowledge, forever. A group taken from the queue is kept until it is
        committed, so if this task dies and the supervisor restarts it, the group is not lost."""
        while True:
            if not self._inflight:
                self._inflight = await self._gather()
            items = self._inflight
            await self.commit_items(items)
            self._inflight = []
            for _ in items:
                self.queue.task_done()

    async def _gather(self) -> list[Item]:
        """One group: what is queued now, then what arrives within `group_commit_s` (one fsync
        for all of it). With acknowledgements pending the wait is shorter (ACK_SURE, ACK_GAP,
        ACK_WINDOW above): the broker may be waiting for our acks. Readings arriving during
        this commit's fsync form the next group."""
        first = await self.queue.get()
        items = [first]
        deadline = time.monotonic() + self.group_commit_s
        acks = int(first[1] is not None)
        while len(items) < COMMIT_BATCH:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0 or acks >= ACK_WINDOW:
                    break
                # the queue is empty and nothing can arrive before this await: wait for the
                # next `submit` (not asyncio.timeout around queue.get(): see gateway/wakeup.py;
                # not wait_for: on 3.11 it can swallow a cancellation, hanging shutdown)
                self._arrived.clear()
                paced = acks >= ACK_SURE
                if not await self._arrived.wait(min(left, ACK_GAP) if paced else left) and paced:
                    break  # the broker paused: it may be waiting for our acks
                continue  # take what came (at the deadline: what queued without a wake-up)
            items.append(item)
            acks += item[1] is not None
        return items

    # ------------------------------------------------------------------ one group

    async def commit_items(self, items: list[Item]) -> None:
        """Stage every reading on its own, append what staged in one transaction (bisected on a
        row the outbox refuses), then run every acknowledgement: committed, absorbed and
        quarantined readings alike. Called again with the same group after a crash (the
        supervisor restarts `run` with its in-flight group), it appends the rows staged the first
        time: each reading passes the privacy stage once."""
        if self._staged is not None and self._staged[0] is items:
            records = self._staged[1]
        else:
            records = self._stage_readings(items)
            self._staged = (items, records)
        await self.append(records)
        self._staged = None
        for _, ack in items:
            if ack is not None:
                try:
                    ack()
                except Exception:  # an ack failing must not stop ingestion
                    log.exception("acknowledgement failed")

    def _stage_readings(self, items: list[Item]) -> list[Record]:
        now = self.clock()
        clock_flags = getattr(self.clock, "quality_flags", None)  # GatewayClock: provisional stamps
        records: list[Record] = []
        count = self.m_readings.inc_key
        keys = self._sensor_keys
        for reading, _ in items:
            if reading is None:
                continue
            if clock_flags is not None and (extra := clock_flags(reading.time)):
                reading = Reading(reading.sensor_id, reading.time, reading.values, (*reading.flags, *extra))
            self.stats.readings += 1
            key = keys.get(reading.sensor_id)
            if key is None:
                key = keys[reading.sensor_id] = Metric.key(sensor=reading.sensor_id)
            count(key)  # m_readings.inc(sensor=…), its key made once
            try:
                observations = self.privacy.process(reading, now)
            except Exception as e:  # a reading the privacy stage chokes on is poison, alone
                self.quarantine(reading.sensor_id, "privacy", e)
                continue
            records.extend(self.stage(observations))
        return records

    async def commit(self, observations: list[Observation]) -> None:
        """Guard and durably append observations (closed windows; no acknowledgements)."""
        await self.append(self.stage(observations))

    def stage(self, observations: list[Observation]) -> list[Record]:
        """Each observation as an outbox row, guarded. One that cannot be serialised, or whose
        time no sink could write, is quarantined alone; the guard's refusals are its own."""
        out: list[Record] = []
        check = self.guard.check_observation
        last_values = self.stats.last_values
        for obs in observations:
            try:
                body = obs.to_record()
            except Exception as e:  # e.g. a lone surrogate in a category word: UnicodeEncodeError
                self.quarantine(obs.sensor_id, "serialise", e)
                continue
            try:
                # every time one every sink can format (ISO 8601, milliseconds); NaN fails too
                t, rt, te = obs.phenomenon_time, obs.result_time, obs.phenomenon_end
                times_ok = 0.0 <= t <= LATEST_TIME and 0.0 <= rt <= LATEST_TIME and (
                    te is None or 0.0 <= te <= LATEST_TIME)  # fmt: skip
                verdict = check(obs) if times_ok else None  # its parts (counted)
            except Exception as e:  # the guard choking on a value: fail closed, on it alone
                self.quarantine(obs.sensor_id, "guard", e)
                continue
            if verdict is None:
                self.quarantine(obs.sensor_id, "time", None)
                continue
            if not verdict.ok:
                n = self.throttle.should_log(("guard", verdict.reason), time.monotonic())
                if n is not None:
                    log.error("egress guard blocked an observation", extra={"sensor": obs.sensor_id, "property": obs.property, "reason": verdict.reason, "suppressed_since_last": n})  # fmt: skip
                continue
            out.append(_record((obs.datastream_id, t, body, obs.sensor_id)))
            last_values[(obs.sensor_id, obs.property)] = obs.result
        return out

    async def append(self, records: list[Record]) -> None:
        """Durably append `records`. A row the outbox refuses is found by bisection and
        quarantined; a failing outbox is retried with backoff until it takes the rows."""
        if not records:
            return
        if self.outbox is None:
            raise AssertionError("self.outbox is not None")
        backoff = 0.5
        while True:
            try:
                await self.outbox.append([r[:3] for r in records])  # (ds, t, body)
                break
            except ROW_ERRORS as e:
                if len(records) == 1:
                    self.quarantine(records[0].sensor, "outbox", e)
                    self._done(records)
                    return
                mid = len(records) // 2
                await self.append(records[:mid])
                await self.append(records[mid:])
                return
            except (sqlite3.Error, OSError) as e:  # the database, not a row: keep and retry
                self.failing = f"outbox append failing: {type(e).__name__}"
                self.m_append_failures.inc()
                if self.throttle.should_log(("append", type(e).__name__), time.monotonic()) is not None:
                    log.error("outbox append failed; retrying, nothing acknowledged meanwhile",
                              extra={"error": type(e).__name__, "rows": len(records), "retry_s": backoff})  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, APPEND_BACKOFF_MAX)
        self.failing = None
        self._done(records)
        self.stats.committed += len(records)
        self.m_obs.inc(len(records))
        self.on_commit()

    def _done(self, records: list[Record]) -> None:
        """Appended or quarantined: a retry of the in-flight group after a crash (one half of a
        bisection appended, the other not) does not append these again."""
        if self._staged is not None:
            if len(records) == len(self._staged[1]):  # the whole group (records are a part of it)
                self._staged = (self._staged[0], [])
                return
            done = {id(r) for r in records}
            self._staged = (self._staged[0], [r for r in self._staged[1] if id(r) not in done])

    def quarantine(self, sensor: str, stage: str, error: BaseException | None) -> None:
        """Count and log a poison reading or observation: its sensor, stage and the kind of
        error, never its content (it may be personal, and it is what broke things)."""
        self.stats.quarantined += 1
        self.m_quarantined.inc(sensor=sensor, stage=stage)
        n = self.throttle.should_log(("poison", f"{sensor}/{stage}"), time.monotonic())
        if n is not None:
            log.error("poison reading quarantined and acknowledged",
                      extra={"sensor": sensor, "stage": stage, "error": type(error).__name__ if error else "out_of_range", "suppressed_since_last": n})  # fmt: skip

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued reading is committed; False if that took too long."""
        try:
            async with asyncio.timeout(timeout):
                await self.queue.join()
        except TimeoutError:
            return False
        return True

