"""How the committer groups readings into one commit (one fsync) while MQTT acks are pending.

A broker sends only its in-flight window of unacknowledged messages (Mosquitto's default 20), and
the gateway acknowledges after the commit. So a group waits for `group_commit` while few acks are
pending (below ACK_SURE, under any broker's window: the next message is surely allowed to come),
and once ACK_SURE are pending ends as soon as the broker pauses ACK_GAP (it may be waiting for our
acks). Readings already queued always join the group.

The pauses here are many times ACK_GAP and group_commit (2 s) several times the feeding, so the
outcome does not depend on the machine's speed; nothing asserts on wall time.
"""

from __future__ import annotations

import asyncio

from gateway.committer import ACK_GAP, ACK_SURE, ACK_WINDOW, Committer, Item, Stats
from gateway.config import parse_config
from gateway.model import Reading
from gateway.ops.metrics import Registry
from gateway.plan import build_plan
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage

T0 = 1_800_000_000.0
CONFIG = """
gateway: {id: gather-test, borough: camden, location: {lat: 51.5, lon: -0.14}, data_dir: /tmp/unused}
inputs: {mqtt: {}}
sensors:
  - {id: s1, driver: generic_json, mqtt: {topic: a/+}, options: {fields: [{path: v, property: pm2_5, unit: ug/m3}]}}
sinks: {file: {}}
"""
PAUSE = 20 * ACK_GAP  # a broker that stopped sending


def committer(group_commit_s: float) -> Committer:
    plan = build_plan(parse_config(CONFIG, "t.yaml", {}))
    privacy = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    return Committer(privacy=privacy, guard=EgressGuard(frozenset(plan.datastreams)), clock=lambda: T0,
                     group_commit_s=group_commit_s, metrics=Registry(), stats=Stats())  # fmt: skip


def item(i: int, acked: bool = True) -> Item:
    return (Reading("s1", T0 + i, {"v": float(i)}), (lambda: None) if acked else None)


async def feed(c: Committer, bursts: list[int], acked: bool = True) -> None:
    """Bursts of readings, each after a PAUSE, then nothing (the broker waits for acks)."""
    n = 0
    for size in bursts:
        await asyncio.sleep(PAUSE)
        for _ in range(size):
            await c.submit(*item(n, acked))
            n += 1


async def groups(c: Committer, bursts: list[int], acked: bool = True, count: int = 1) -> list[int]:
    await c.submit(*item(-1, acked))
    feeder = asyncio.create_task(feed(c, bursts, acked))
    sizes = [len(await c._gather()) for _ in range(count)]
    await feeder
    return sizes


def test_few_pending_acks_wait_for_the_deadline() -> None:
    # 1 + 5 + 5 acks pending: under ACK_SURE, so the pauses do not end the group
    assert ACK_SURE > 11
    assert asyncio.run(groups(committer(2.0), [5, 5], count=1)) == [11]


def test_enough_pending_acks_end_the_group_when_the_broker_pauses() -> None:
    # ACK_SURE acks pending, then the broker pauses (waiting for our acks): the group ends there
    c = committer(2.0)
    assert asyncio.run(groups(c, [ACK_SURE - 1, 3], count=2)) == [ACK_SURE, 3]


def test_readings_without_acks_wait_for_the_deadline() -> None:
    # serial readings (no ack): only group_commit or COMMIT_BATCH ends a group
    assert asyncio.run(groups(committer(2.0), [ACK_SURE, ACK_SURE], acked=False)) == [2 * ACK_SURE + 1]


def test_a_group_stops_waiting_at_the_ack_window_but_takes_what_is_queued() -> None:
    async def run() -> list[int]:
        c = committer(2.0)
        for i in range(ACK_WINDOW + 10):
            await c.submit(*item(i))  # already queued: all join the first group
        first = len(await c._gather())
        late = asyncio.create_task(feed(c, [1]))
        await c.submit(*item(-1))
        second = len(await c._gather())
        await late
        return [first, second]

    # the second group: 1 ack pending, the broker's next message joins it after a pause
    assert asyncio.run(run()) == [ACK_WINDOW + 10, 2]

