"""Poison isolation in the committer, against a real privacy stage, guard and SQLite outbox.

Random groups of readings with random poison at random places: a category word with a lone
surrogate (cannot be serialised), a time no sink could format, and a word the outbox itself
refuses (a SQLite trigger on the real outbox aborts the row, as a constraint would): every good
reading is committed, every acknowledgement runs exactly once, every poison is counted per sensor
and stage, and the log names the sensor and stage but never the poison's content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.committer import Committer, Stats
from gateway.config import parse_config
from gateway.model import Observation, Reading
from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox, Outbox
from gateway.plan import build_plan
from gateway.privacy.guard import EgressGuard, Verdict
from gateway.privacy.stage import PrivacyStage

T0 = 1_800_000_000.0
REFUSED = "refused-by-outbox"
# a category leaves only as a word of its declared vocabulary; the config cannot declare a lone
# surrogate (pydantic refuses it), but a driver's catalogue is code and could: the test's
# catalogue declares the poison words too, so they reach serialisation
WORDS = frozenset({"bad\ud800word", "AB12 CDE\ud800", "fine", "x", REFUSED, *(f"w{i}" for i in range(1, 500))})
CONFIG = """
gateway: {id: poison-test, borough: camden, location: {lat: 51.5, lon: -0.14}, data_dir: /tmp/unused}
inputs: {mqtt: {}}
sensors:
  - {id: s1, driver: generic_json, mqtt: {topic: a/+}, options: {fields: [
      {path: v, property: pm2_5, unit: ug/m3}, {path: w, property: state, type: category, allowed: [x]}]}}
  - {id: s2, driver: generic_json, mqtt: {topic: b/+}, options: {fields: [
      {path: v, property: pm2_5, unit: ug/m3}, {path: w, property: state, type: category, allowed: [x]}]}}
sinks: {file: {}}
"""

# (kind, the word in the category field, the reading's time)
GOOD = "good"
POISON = {
    "surrogate": ("bad\ud800word", None),  # UnicodeEncodeError in Observation.to_record
    "time": ("fine", math.nan),  # no sink could write this time
    "outbox": (REFUSED, None),  # the outbox refuses the row: found by bisection
}
STAGE = {"surrogate": "serialise", "time": "time", "outbox": "outbox"}


def make(tmp: Path) -> tuple[Committer, Outbox, Registry]:
    plan = build_plan(parse_config(CONFIG, "t.yaml", {}))
    for sid, sp in list(plan.sensors.items()):
        published = tuple(replace(f, vocabulary=WORDS) if f.key == "state" else f for f in sp.published)
        plan.sensors[sid] = replace(sp, published=published)
    metrics = Registry()
    privacy = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    c = Committer(privacy=privacy, guard=EgressGuard(frozenset(plan.datastreams)), clock=lambda: T0,
                  group_commit_s=0.0, metrics=metrics, stats=Stats())  # fmt: skip
    ob = Outbox(tmp / "outbox.sqlite", sinks=["file"])
    # a real constraint on the real outbox: rows carrying this word are refused (IntegrityError)
    ob.db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON obs WHEN instr(CAST(NEW.body AS TEXT), '{REFUSED}') "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
    return c, ob, metrics


items_strategy = st.lists(
    st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from([GOOD, GOOD, GOOD, *POISON])),
    min_size=1, max_size=120,
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(items_strategy, min_size=1, max_size=4))
def test_random_poison_costs_no_good_reading_and_every_ack_runs_once(
    tmp_path_factory: pytest.TempPathFactory, groups: list[list[tuple[str, str]]]
) -> None:
    tmp = tmp_path_factory.mktemp("poison")
    c, ob, metrics = make(tmp)
    acks: dict[int, int] = {}
    good: set[int] = set()
    poison: dict[tuple[str, str], int] = {}

    async def run() -> None:
        c.outbox = AsyncOutbox(ob)
        n = 0
        for group in groups:
            items = []
            for sensor, kind in group:
                n += 1
                i = n
                word, t = (f"w{i}", None) if kind == GOOD else POISON[kind]
                reading = Reading(sensor, T0 + i if t is None else t, {"pm2_5": float(i), "state": word})

                def ack(i: int = i) -> None:
                    acks[i] = acks.get(i, 0) + 1

                items.append((reading, ack))
                if kind == GOOD:
                    good.add(i)
                else:
                    key = (sensor, STAGE[kind])
                    poison[key] = poison.get(key, 0) + (2 if kind == "time" else 1)
            await c.commit_items(items)
        await c.outbox.close()

    asyncio.run(run())
    total = sum(len(g) for g in groups)
    assert acks == {i: 1 for i in range(1, total + 1)}, "every acknowledgement runs, exactly once"
    db = sqlite3.connect(tmp / "outbox.sqlite")
    bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM obs ORDER BY seq")]
    db.close()
    # a good reading: both of its observations; a poison one: what of it is not poison
    values = sorted(int(b["r"]) for b in bodies if b["p"] == "pm2_5")
    words = {b["r"] for b in bodies if b["p"] == "state"}
    assert {f"w{i}" for i in good} <= words
    assert set(values) >= good
    assert REFUSED not in words and not any("\ud800" in w for w in words)
    counted = metrics.counter("gateway_quarantined_total", "")
    got = {(dict(k)["sensor"], dict(k)["stage"]): int(v) for k, v in counted.values.items()}
    assert got == poison


def test_a_poison_is_logged_once_without_its_content(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c, ob, _ = make(tmp_path)

    async def run() -> None:
        c.outbox = AsyncOutbox(ob)
        secret = "AB12 CDE\ud800"
        await c.commit_items([(Reading("s1", T0, {"pm2_5": 1.0, "state": secret}), None)] * 5)
        await c.outbox.close()

    with caplog.at_level(logging.ERROR, logger="gateway.committer"):
        asyncio.run(run())
    poison_lines = [r for r in caplog.records if "poison" in r.getMessage()]
    assert len(poison_lines) == 1
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "AB12" not in text and "\ud800" not in text
    assert poison_lines[0].__dict__["sensor"] == "s1" and poison_lines[0].__dict__["stage"] == "serialise"


def test_an_outbox_that_cannot_write_is_retried_and_nothing_is_quarantined(tmp_path: Path) -> None:
    """A failure of the database (here: a read-only handle, as on a remounted read-only card)
    is no verdict on the readings: nothing is quarantined or acknowledged until it writes."""
    c, ob, metrics = make(tmp_path)
    acked: list[int] = []

    async def run() -> None:
        c.outbox = AsyncOutbox(ob)
        ob.db.execute("PRAGMA query_only = ON")  # every write now fails with OperationalError
        task = asyncio.create_task(c.commit_items([(Reading("s1", T0, {"pm2_5": 1.0, "state": "x"}), lambda: acked.append(1))]))
        while metrics.counter("gateway_outbox_append_failures_total", "").total() < 2:
            await asyncio.sleep(0.05)
        assert not acked and c.failing is not None
        await c.outbox.call(ob.db.execute, "PRAGMA query_only = OFF")
        await asyncio.wait_for(task, 10)
        await c.outbox.close()

    asyncio.run(run())
    assert acked == [1] and c.failing is None
    assert metrics.counter("gateway_quarantined_total", "").total() == 0
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    assert db.execute("SELECT COUNT(*) FROM obs").fetchone()[0] == 2
    db.close()


RETRY_CONFIG = """
gateway: {id: retry-test, borough: camden, location: {lat: 51.5, lon: -0.14}, data_dir: /tmp/unused}
inputs: {mqtt: {}}
sensors:
  - {id: gj, driver: generic_json, mqtt: {topic: a/+}, options: {fields: [
      {path: v, property: pm2_5, unit: ug/m3}],
      aggregates: [{property: pm2_5_mean, of: pm2_5, aggregation: mean}]}}
sinks: {file: {}}
"""


class OutboxThatDiesOnce(AsyncOutbox):
    """A real outbox whose first append raises what no retry loop expects (a bug, a
    MemoryError): the committer task dies and the supervisor runs it again."""

    died = False

    async def append(self, rows: list[tuple[int, float, bytes]]) -> int:
        if not self.died:
            self.died = True
            raise RuntimeError("injected")
        return await super().append(rows)


def test_a_group_retried_after_a_crash_passes_the_privacy_stage_once(tmp_path: Path) -> None:
    """The in-flight group survives the committer's crash; its retry appends the rows staged
    the first time, so the open window counts every reading once (twice would put people
    counted in aggregates past a threshold they do not reach)."""
    plan = build_plan(parse_config(RETRY_CONFIG, "t.yaml", {}))
    privacy = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    c = Committer(privacy=privacy, guard=EgressGuard(frozenset(plan.datastreams)), clock=lambda: T0,
                  group_commit_s=0.0, metrics=Registry(), stats=Stats())  # fmt: skip
    ob = Outbox(tmp_path / "outbox.sqlite", sinks=["file"])
    acked: list[int] = []

    async def run() -> None:
        c.outbox = OutboxThatDiesOnce(ob)
        for i in range(5):
            await c.submit(Reading("gj", T0 + i, {"pm2_5": 10.0 + i}), lambda i=i: acked.append(i))
        with pytest.raises(RuntimeError, match="injected"):
            await c.run()  # dies in its first append, holding the group
        assert acked == []  # nothing acknowledged before it is durable
        task = asyncio.create_task(c.run())  # what the supervisor does
        await asyncio.wait_for(c.flush(10), 15)
        task.cancel()

    asyncio.run(run())
    assert sorted(acked) == [0, 1, 2, 3, 4]
    assert c.stats.readings == 5
    rows = ob.db.execute("SELECT count(*) FROM obs").fetchone()[0]
    assert rows == 5
    mean = [o for o in privacy.drain(T0 + 10) if o.property == "pm2_5_mean"]
    assert mean[0].parameters["samples"] == 5 and mean[0].result == 12.0


class GuardThatChokes(EgressGuard):
    """A guard with a bug that raises on one value (as `math.isfinite` would on a non-number)."""

    def check_observation(self, obs: Observation) -> Verdict:
        if obs.result == 666.0:
            raise TypeError("injected guard bug")
        return super().check_observation(obs)


def test_a_guard_that_raises_on_one_observation_costs_only_that_one(tmp_path: Path) -> None:
    """Fail closed and alone: the observation the guard chokes on is quarantined (stage guard),
    every other reading of the group is committed and every acknowledgement runs; before, the
    exception left the group and the restarted committer met it again, forever."""
    plan = build_plan(parse_config(RETRY_CONFIG, "t.yaml", {}))
    privacy = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    metrics = Registry()
    c = Committer(privacy=privacy, guard=GuardThatChokes(frozenset(plan.datastreams)), clock=lambda: T0,
                  group_commit_s=0.0, metrics=metrics, stats=Stats())  # fmt: skip
    ob = Outbox(tmp_path / "outbox.sqlite", sinks=["file"])
    acked: list[int] = []

    async def run() -> None:
        c.outbox = AsyncOutbox(ob)
        for i, v in enumerate((10.0, 666.0, 12.0)):
            await c.submit(Reading("gj", T0 + i, {"pm2_5": v}), lambda i=i: acked.append(i))
        task = asyncio.create_task(c.run())
        await asyncio.wait_for(c.flush(10), 15)
        task.cancel()

    asyncio.run(run())
    assert sorted(acked) == [0, 1, 2]
    assert ob.db.execute("SELECT count(*) FROM obs").fetchone()[0] == 2
    assert metrics.counter("gateway_quarantined_total", "").get(sensor="gj", stage="guard") == 1


class OutboxWithABug(AsyncOutbox):
    async def append(self, rows: list[tuple[int, float, bytes]]) -> int:
        raise ValueError("a bug in the outbox, not a verdict on any row")


def test_an_outbox_bug_is_no_verdict_on_the_rows_nothing_is_quarantined_or_acknowledged(tmp_path: Path) -> None:
    plan = build_plan(parse_config(RETRY_CONFIG, "t.yaml", {}))
    privacy = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    c = Committer(privacy=privacy, guard=EgressGuard(frozenset(plan.datastreams)), clock=lambda: T0,
                  group_commit_s=0.0, metrics=Registry(), stats=Stats())  # fmt: skip
    acked: list[int] = []

    async def run() -> None:
        c.outbox = OutboxWithABug(Outbox(tmp_path / "outbox.sqlite", sinks=["file"]))
        for i in range(4):
            await c.submit(Reading("gj", T0 + i, {"pm2_5": 10.0 + i}), lambda i=i: acked.append(i))
        with pytest.raises(ValueError, match="a bug"):  # a task that dies, not one quarantining all
            await asyncio.wait_for(c.run(), 10)

    asyncio.run(run())
    assert acked == [] and c.stats.quarantined == 0


def test_a_crash_between_the_halves_of_a_bisection_appends_nothing_twice(tmp_path: Path) -> None:
    """The outbox refuses one row, so the group is bisected; the task dies after the first half
    was appended. The retried group appends only what is not in the outbox yet: no duplicate
    rows (the MQTT sink is not idempotent), the refused row quarantined, every ack once."""
    c, ob, metrics = make(tmp_path)
    acked: list[int] = []

    class DiesOnTheSecondHalf(AsyncOutbox):
        calls = 0

        async def append(self, rows: list[tuple[int, float, bytes]]) -> int:
            self.calls += 1
            if self.calls == 3:  # 1: the whole group (refused), 2: the first half, 3: the second
                raise RuntimeError("injected crash")
            return await super().append(rows)

    async def run() -> None:
        c.outbox = DiesOnTheSecondHalf(ob)
        words = ["x", "x", "x", REFUSED, "x", "x"]  # the refused row in the second half
        for i, w in enumerate(words):
            await c.submit(Reading("s1", T0 + i, {"pm2_5": float(i), "state": w}), lambda i=i: acked.append(i))
        with pytest.raises(RuntimeError, match="injected"):
            await c.run()
        task = asyncio.create_task(c.run())  # the supervisor
        await asyncio.wait_for(c.flush(10), 15)
        task.cancel()

    asyncio.run(run())
    assert sorted(acked) == list(range(6))
    bodies = [json.loads(b) for (b,) in ob.db.execute("SELECT body FROM obs")]
    values = [b["r"] for b in bodies if b["p"] == "pm2_5"]
    assert sorted(values) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # once each
    assert metrics.counter("gateway_quarantined_total", "").get(sensor="s1", stage="outbox") == 1
